"""Audio: soundfile I/O and its bad inputs, the 1D components, fractalize and higher-rate decoding."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from collagekit_audio.audioio import load_audio, save_audio
from collagekit_audio.components import Segments, SignTime
from conftest import invoke

from collagekit.errors import CollagekitError
from collagekit.grid import AveragePooler
from collagekit.metrics import psnr, psnr_float, snr
from collagekit.operator import CollageParams, GridCollage
from collagekit.solver import fixed_point

DATA = Path(__file__).parent / "data"
SPEECH = DATA / "speech_quarter_s.flac"  # 4000 samples of LibriSpeech, 16 kHz mono
STEREO = DATA / "trumpet_stereo_100ms.flac"  # 4410 samples, 44.1 kHz stereo
LIMIT = 1 << 20


def test_load_mono_and_stereo() -> None:
    mono = load_audio(SPEECH, LIMIT)
    stereo = load_audio(STEREO, LIMIT)
    assert mono.shape == (1, 1, 4000) and stereo.shape == (1, 2, 4410)
    for z in (mono, stereo):
        assert z.dtype == torch.float32 and 0.0 <= float(z.min()) and float(z.max()) <= 1.0
    raw, _ = sf.read(SPEECH, dtype="float32")
    torch.testing.assert_close(mono[0, 0] * 2 - 1, torch.from_numpy(raw))


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_lossless_round_trip_and_rate_scaling(tmp_path: Path, suffix: str) -> None:
    z = load_audio(STEREO, LIMIT)
    save_audio(z, tmp_path / f"a{suffix}", sample_rate=44100)
    back = load_audio(tmp_path / f"a{suffix}", LIMIT)
    assert float((back - z).abs().max()) <= 1 / 32768  # 16-bit PCM: half a step in [0, 1]
    save_audio(z, tmp_path / f"b{suffix}", sample_rate=22050, scale=2)
    assert sf.info(tmp_path / f"b{suffix}").samplerate == 44100


def test_lossy_formats_write_files_that_decode(tmp_path: Path) -> None:
    z = load_audio(SPEECH, LIMIT)
    save_audio(z, tmp_path / "a.ogg", sample_rate=16000)
    back = load_audio(tmp_path / "a.ogg", LIMIT)
    assert back.shape[1] == 1 and abs(back.shape[2] - 4000) < 64
    assert psnr(z[..., :3000], back[..., :3000]) > 20.0  # Vorbis is lossy but close


def _write(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    sf.write(path, samples, rate, subtype="PCM_16" if path.suffix == ".wav" else None)
    return path


def test_bad_audio_files(tmp_path: Path) -> None:
    cases = {
        "empty": (_write(tmp_path / "empty.wav", np.zeros((0, 1), dtype=np.float32)), "holds no samples"),
        "silent": (_write(tmp_path / "silent.wav", np.zeros(800, dtype=np.float32)), "is silent"),
        "channels": (_write(tmp_path / "three.wav", np.random.default_rng(0).uniform(-0.5, 0.5, (100, 3))), "3 channels"),
    }
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    cases["text"] = (text, "not an audio file")
    for name, (path, needle) in cases.items():
        with pytest.raises(CollagekitError, match=needle):
            load_audio(path, LIMIT)
        assert name  # each case named for the failure message
    with pytest.raises(CollagekitError, match="above the limit"):
        load_audio(SPEECH, 1000)
    with pytest.raises(CollagekitError, match="no valid sample rate"):
        save_audio(load_audio(SPEECH, LIMIT), tmp_path / "x.wav", sample_rate=None)
    assert not (tmp_path / "x.wav").exists()


def test_clipped_audio_loads_with_a_warning(tmp_path: Path) -> None:
    t = np.linspace(0, 20 * math.pi, 1600)
    clipped = _write(tmp_path / "clipped.wav", np.clip(1.5 * np.sin(t), -1, 1).astype(np.float32))
    with pytest.warns(UserWarning, match="clipped"):
        z = load_audio(clipped, LIMIT)
    assert z.shape == (1, 1, 1600)


def test_sign_time_cells_are_the_three_non_identity_isometries() -> None:
    aux = SignTime(SignTime.Config())
    aux.bind((4,))
    pooled = torch.arange(8.0).reshape(1, 1, 2, 4)  # (b c n r): two domains
    cells = aux(pooled)
    assert cells.shape == (1, 1, 6, 4) and aux.count(2) == 6
    torch.testing.assert_close(cells[0, 0, 0], -pooled[0, 0, 0])
    torch.testing.assert_close(cells[0, 0, 2], pooled[0, 0, 0].flip(-1))
    torch.testing.assert_close(cells[0, 0, 4], -pooled[0, 0, 0].flip(-1))
    variants = {tuple(c.tolist()) for c in cells[0, 0, ::2]} | {tuple(pooled[0, 0, 0].tolist())}
    assert len(variants) == 4
    with pytest.raises(CollagekitError, match="1D"):
        aux.bind((4, 4))


def test_1d_collage_with_sign_time_cells_is_contractive_and_decodes_at_any_rate() -> None:
    collage = GridCollage(
        Segments(Segments.Config(range_size=8, domain_size=16, domain_stride=8)), AveragePooler(AveragePooler.Config()),
        [SignTime(SignTime.Config())], contraction=0.9,
    ).double()
    spatial = (64,)
    g = torch.Generator().manual_seed(3)
    shapes = collage.param_shapes(1, spatial)
    params = CollageParams.from_tensors({k: torch.randn(1, *s, generator=g, dtype=torch.float64) for k, s in shapes.items()})
    assert float(collage.lipschitz_bound(params).max()) < 0.9
    one, stats = fixed_point(collage.step_fn(params, spatial), torch.zeros(1, 1, 64, dtype=torch.float64), tol=1e-10, gradient="none")
    assert stats.converged
    two, _ = fixed_point(collage.step_fn(params, spatial, scale=2), torch.zeros(1, 1, 128, dtype=torch.float64), tol=1e-10, gradient="none")
    assert two.shape == (1, 1, 128)
    # Average pooling commutes with the operator: pairs of samples of the 2x decode average to the 1x one.
    torch.testing.assert_close(two.reshape(1, 1, 64, 2).mean(-1), one, rtol=0, atol=1e-9)


def test_fractalize_then_decode_at_a_higher_rate(tmp_path: Path) -> None:
    out = tmp_path / "f.wav"
    metrics_file = tmp_path / "m.json"
    done = invoke("fractalize", str(SPEECH), "-o", str(out), "--scale", "2", "encoder.steps=20",
                  "encoder.collage_steps=20", f"metrics={metrics_file}")
    assert done.returncode == 0, done.stderr
    info = sf.info(out)
    assert (info.samplerate, info.frames, info.channels) == (32000, 8000, 1)
    metrics = json.loads(metrics_file.read_text())
    assert metrics["snr_db"] > 6.0 and metrics["psnr_db"] > metrics["snr_db"]  # SNR beside PSNR (peak 2)
    # It represents the clip: the first release's collage gave 0.7 dB SNR here, at more than half the PCM
    # (this quarter second's header and tree cost more, relatively, than a longer clip's).
    assert metrics["code_bytes"] < 0.5 * 4000 * 2

    again = tmp_path / "again.flac"
    done = invoke("decompress", str(out.with_suffix(".clg")), "-o", str(again))
    assert done.returncode == 0, done.stderr
    assert sf.info(again).samplerate == 16000
    # The saved code decodes, as a 16-bit file, to the SNR and PSNR the fit reported.
    reference, decoded = load_audio(SPEECH, LIMIT) * 2 - 1, load_audio(again, LIMIT) * 2 - 1
    assert snr(reference, decoded) == pytest.approx(metrics["snr_db"], abs=1e-3)
    assert psnr_float(reference, decoded, peak=2.0) == pytest.approx(metrics["psnr_db"], abs=1e-3)

    tripled = tmp_path / "x3.wav"
    assert invoke("decompress", str(out.with_suffix(".clg")), "-o", str(tripled), "--scale", "3").returncode == 0
    assert (sf.info(tripled).samplerate, sf.info(tripled).frames) == (48000, 12000)


def test_fractalize_errors_are_one_line(tmp_path: Path) -> None:
    silent = _write(tmp_path / "silent.wav", np.zeros(800, dtype=np.float32))
    done = invoke("fractalize", str(silent), "-o", str(tmp_path / "o.wav"))
    assert done.returncode == 1 and done.stderr.strip().startswith("error: ") and "is silent" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.wav").exists() and not (tmp_path / "o.clg").exists()
