"""``task: audio_train``: train a Neural Collage audio codec on random crops of speech and music.

Objective: ``loss = bits per sample + lmbda * MSE + spectral * MRSTFT``. MSE is on the decoded
waveform in [-1, 1] (PSNR = 10 log10(4 / MSE)); MRSTFT is a multi-resolution STFT loss (spectral
convergence + log-magnitude L1 over several FFT sizes, torchaudio spectrograms) on the same decoded
crop; bits come from the learned prior on noisy latents. The distortion terms see straight-through
rounded latents, so training sees the quantiser the codec applies. The split's test and validation
clips (:mod:`collagekit_audio.splits`) are never training data.

Runs single-process or under ``torchrun`` through :func:`collagekit.training.train`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from collagekit.codec_training import CodecTrainTask, TrainingSetup
from collagekit.errors import CollagekitError
from collagekit.prior import quantise
from collagekit_audio.config import AudioTrainConfig
from collagekit_audio.neural import AudioCollageModel, from_segments, to_segments
from collagekit_audio.pretrained import STORE
from collagekit_audio.splits import HELD_OUT

AUDIO_SUFFIXES = (".flac", ".wav")


class MultiResolutionSTFT(nn.Module):
    """Spectral convergence + log-magnitude L1, averaged over FFT sizes (hop = n_fft / 4, Hann)."""

    def __init__(self, sizes: tuple[int, ...] = (64, 256, 1024), eps: float = 1e-3) -> None:
        super().__init__()
        import torchaudio

        self.spectrograms = nn.ModuleList(torchaudio.transforms.Spectrogram(n_fft=n, hop_length=n // 4, power=1.0) for n in sizes)
        self.eps = eps

    def forward(self, decoded: Tensor, target: Tensor) -> Tensor:
        """(b n) and (b n) waveforms -> scalar loss."""
        total = decoded.new_zeros(())
        for spec in self.spectrograms:
            s_hat, s = spec(decoded), spec(target)
            convergence = torch.linalg.norm(s - s_hat) / torch.linalg.norm(s).clamp(min=self.eps)
            log_l1 = (torch.log(s_hat + self.eps) - torch.log(s + self.eps)).abs().mean()
            total = total + convergence + log_l1
        return total / len(self.spectrograms)


class RateDistortion(nn.Module):
    """``forward(crops (b n) in [-1, 1]) -> (loss, metrics)``; owns the model being trained."""

    def __init__(self, model: AudioCollageModel, lmbda: float, spectral: float, tol: float, max_iter: int) -> None:
        super().__init__()
        self.model = model
        self.lmbda, self.spectral, self.tol, self.max_iter = lmbda, spectral, tol, max_iter
        self.stft = MultiResolutionSTFT()

    def forward(self, crops: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        model = self.model
        crops = crops.to(next(model.parameters()).device)
        b, n = crops.shape
        if n % model.cfg.segment:
            raise CollagekitError(f"training crops must be multiples of the {model.cfg.segment}-sample segment, got {n}")
        segments = to_segments(crops[:, None], model.cfg.segment)
        y = model.latents(segments)
        bits = model.prior.bits(quantise(y, "noise")).sum()
        decoded = model.decode(quantise(y, "ste"), tol=self.tol, max_iter=self.max_iter, gradient="implicit")
        out = from_segments(decoded, b, 1, n)[:, 0]
        mse = torch.mean((out - crops) ** 2)
        stft = self.stft(out, crops)
        bps = bits / (b * n)
        loss = bps + self.lmbda * mse + self.spectral * stft
        psnr = 10.0 * torch.log10(4.0 / mse.detach().clamp(min=1e-12))
        return loss, {"bits_per_sample": bps.detach(), "psnr": psnr, "mrstft": stft.detach()}


class ClipCrops:
    """Random ``crop``-sample mono crops of a folder of speech_* and music_* clips, at their own rates.

    Every channel of a stereo clip is a mono source. ``speech_fraction`` of the crops come from speech
    clips; a random gain in [1/2, 2] (clipped to [-1, 1]) varies the level. ``__call__(step, rank,
    world_size)`` is deterministic in its arguments (the shared training loop's contract).
    """

    def __init__(self, folder: Path, crop: int, batch: int, seed: int, speech_fraction: float) -> None:
        import soundfile as sf

        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p.stem not in HELD_OUT)
        self.sources: dict[str, list[Tensor]] = {"speech": [], "music": []}
        self.names: list[str] = []
        for path in paths:
            kind = "speech" if path.name.startswith("speech") else "music"
            samples, _ = sf.read(str(path), dtype="float32", always_2d=True)  # (n c)
            if samples.shape[0] >= crop:
                self.sources[kind] += [torch.from_numpy(samples[:, j].copy()) for j in range(samples.shape[1])]
                self.names.append(path.name)
        self.kinds = [k for k, v in self.sources.items() if v]
        if not self.kinds:
            raise CollagekitError(f"no training clip of at least {crop} samples in {folder} (test and validation clips are skipped: {', '.join(HELD_OUT)})")
        self.crop, self.batch, self.seed, self.speech_fraction = crop, batch, seed, speech_fraction

    def __call__(self, step: int, rank: int, world_size: int) -> Tensor:
        g = torch.Generator().manual_seed(((self.seed * 1_000_003 + step) * 1024 + rank) % (1 << 63))
        crops = []
        for _ in range(self.batch):
            speech = float(torch.rand((), generator=g)) < self.speech_fraction
            kind = "speech" if speech and "speech" in self.kinds else ("music" if "music" in self.kinds else "speech")
            pool = self.sources[kind]
            # Pick a source with probability proportional to its length: every sample equally likely.
            lengths = torch.tensor([len(s) for s in pool], dtype=torch.float64)
            wave = pool[int(torch.multinomial(lengths, 1, generator=g))]
            start = int(torch.randint(len(wave) - self.crop + 1, (1,), generator=g))
            gain = 2.0 ** (2 * float(torch.rand((), generator=g)) - 1)
            crops.append((wave[start : start + self.crop] * gain).clamp(-1.0, 1.0))
        return torch.stack(crops)


class AudioTrain(CodecTrainTask):
    store = STORE

    Config = AudioTrainConfig

    config: Config

    data_folder = "audio"

    def build(self, folder: Path) -> TrainingSetup:
        cfg = self.config
        model = AudioCollageModel(cfg.model)
        stream = ClipCrops(folder, cfg.crop, cfg.training.batch_size, cfg.training.seed, cfg.speech_fraction)
        objective = RateDistortion(model, cfg.lmbda, cfg.spectral, cfg.tol, cfg.max_iter)
        return TrainingSetup(model, objective, stream, {"crop": cfg.crop, "clips": stream.names})
