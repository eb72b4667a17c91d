"""The Neural Collage audio codec: model, .clg round trip, decoding at k x the sample rate, bad files,
CLI compress/decompress --rate, training objective and crops, the compress recipe and the benchmark."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from collagekit_audio.acodec import AudioCollageCodec, decode_latents, encode_latents, read_code
from collagekit_audio.audioio import load_audio
from collagekit_audio.features import mel_distance_db
from collagekit_audio.neural import AudioCollageModel, AudioModelConfig, from_segments, to_segments
from collagekit_audio.pretrained import MODEL_FORMAT, STORE
from collagekit_audio.splits import TEST, VALIDATION
from collagekit_audio.train import ClipCrops, RateDistortion
from conftest import DATA, invoke
from torch.nn import functional as F

from collagekit.container import from_bytes, read_container, to_bytes, write_container
from collagekit.errors import CollagekitError
from collagekit.metrics import psnr_float, snr
from collagekit.training import save_weights

SPEECH = DATA / "speech_quarter_s.flac"  # 4000 samples of LibriSpeech, 16 kHz mono
STEREO = DATA / "trumpet_stereo_100ms.flac"  # 4410 samples, 44.1 kHz stereo
SMALL = AudioModelConfig(segment=64, range_size=8, domain_size=16, domain_stride=16, patches=4, width=8, max_symbol=63)
CODEC = AudioCollageCodec()
CPU = torch.device("cpu")


def _lively_model() -> AudioCollageModel:
    """A random small model whose codes are not all zero (a fresh one's round to zero): larger output weights."""
    torch.manual_seed(0)
    model = AudioCollageModel(SMALL)
    with torch.no_grad():
        model.encoder.head[-1].weight.mul_(20.0)
    return model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    model = _lively_model()
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_weights(model, path, {"format": MODEL_FORMAT, "name": "tiny", "version": "3", "config": SMALL.model_dump_json()})
    return path


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    return load_audio(SPEECH, 1 << 20)  # (1 1 4000)


def _container(x: torch.Tensor, model: Path):
    from collagekit.registry import get_registry

    return CODEC.encode(x, get_registry(), quality=None, device=CPU, options={"model": str(model)})


# ---------------------------------------------------------------- model and geometry
def test_segments_round_trip_and_pad_never_crop() -> None:
    wave = torch.randn(2, 2, 150)
    segments = to_segments(wave, 64)
    assert segments.shape == (2 * 2 * 3, 1, 64)
    assert torch.equal(from_segments(segments, 2, 2, 150), wave)
    assert torch.equal(segments[2, 0, 150 - 128 :], wave[0, 0, -1].expand(64 - 22))  # end padded with the last sample


def test_hypernetwork_gives_every_segment_its_parameters_in_one_pass() -> None:
    model = AudioCollageModel(SMALL)
    y = model.latents(torch.randn(5, 1, 64) * 0.1)
    assert y.shape == (5, model.channels, 64 // 8)
    params = model.params(torch.round(y))
    assert float(model.collage.lipschitz_bound(params).max().detach()) < SMALL.contraction
    assert model.decode(torch.round(y), scale=3).shape == (5, 1, 192)


def test_offsets_are_predicted_along_time_within_each_channel() -> None:
    """The offsets' grid lays every channel's range cells end to end: a level rising by one per cell
    leaves residuals of 1 after each channel's first cell (channel-major segments, as encode_latents)."""
    from collagekit_audio.acodec import _grids

    channels, segments, cells = 2, 5, 8
    level = torch.arange(channels * segments * cells).reshape(channels, segments * cells) + 100 * torch.arange(channels)[:, None]
    block = level.reshape(channels * segments, 1, cells)  # (t 1 k), t channel-major
    r = _grids(channels, cells)["b"].residuals(block).reshape(channels, segments * cells)
    assert r[:, 0].tolist() == level[:, 0].tolist() and (r[:, 1:] == 1).all()


@pytest.mark.skipif("ac-q1" not in STORE.shipped(), reason="no shipped model")
def test_a_wandering_level_is_coded_by_prediction_and_decodes_to_the_same_codes() -> None:
    t = torch.arange(16000) / 16000
    x = (0.5 + 0.35 * torch.sin(2 * math.pi * 3 * t) + 0.05 * torch.sin(2 * math.pi * 440 * t))[None, None]
    container = AudioCollageCodec().encode(x, None, quality=None, device=torch.device("cpu"), options={"model": "ac-q1"})
    assert container.header["predicted"] == ["b"]
    loaded, q, _ = read_code(from_bytes(to_bytes(container)))
    assert torch.equal(q, encode_latents(loaded.model, x).long())


def test_waveform_metrics() -> None:
    a = torch.sin(torch.linspace(0, 20, 1000))
    noise = torch.full_like(a, 0.01)
    assert snr(a, a + noise) == pytest.approx(10 * math.log10(float((a**2).sum()) / (0.01**2 * 1000)), rel=1e-6)
    assert psnr_float(a, a + noise, peak=2.0) == pytest.approx(20 * math.log10(2 / 0.01), rel=1e-6)
    assert psnr_float(a, a, peak=2.0) == math.inf


def test_mel_distance_measures_spectral_error() -> None:
    torch.manual_seed(0)
    wave = 0.3 * torch.randn(2, 16000)  # broadband: every mel band above the floor
    assert mel_distance_db(wave, wave, 16000) == 0.0
    # Half the amplitude is a quarter of the power in every band: 10 log10(4) dB everywhere.
    assert mel_distance_db(wave, 0.5 * wave, 16000) == pytest.approx(10 * math.log10(4), rel=1e-3)
    slightly, badly = (mel_distance_db(wave, wave + s * torch.randn_like(wave), 16000) for s in (0.01, 0.1))
    assert 0.0 < slightly < badly
    with pytest.raises(ValueError, match="shapes differ"):
        mel_distance_db(wave, wave[:1], 16000)
    # Clips shorter than a window (a real file can be 100 samples) get a shorter window, not a crash;
    # below 16 samples there is no spectrum to compare.
    short = wave[:, :100]
    assert 0.0 < mel_distance_db(short, 0.5 * short, 16000) < math.inf
    assert mel_distance_db(short[:, :15], short[:, :15], 16000) is None


# ---------------------------------------------------------------- the codec
def test_file_decodes_on_its_own_to_the_codes_decoded_directly(tiny_model: Path, speech: torch.Tensor, tmp_path: Path) -> None:
    path = tmp_path / "s.clg"
    size = write_container(path, _container(speech, tiny_model))
    loaded, q, info = read_code(read_container(path), str(tiny_model))
    direct = encode_latents(loaded.model, speech).long()
    assert torch.equal(q, direct.clamp(-63, 63)) and q.abs().sum() > 0
    assert info["channels"] == 1 and info["samples"] == 4000 and size == path.stat().st_size
    decoded = CODEC.decode(read_container(path), None, scale=1, device=CPU, options={"model": str(tiny_model)})
    wave = decode_latents(loaded.model, direct, 1, 4000, 1, CPU)
    assert decoded.shape == (1, 1, 4000)
    torch.testing.assert_close(decoded, ((wave + 1) / 2).clamp(0, 1))


def test_stereo_and_twice_the_rate(tiny_model: Path) -> None:
    x = load_audio(STEREO, 1 << 20)
    container = from_bytes(to_bytes(_container(x, tiny_model)))
    once = CODEC.decode(container, None, scale=1, device=CPU, options={"model": str(tiny_model)})
    twice = CODEC.decode(container, None, scale=2, device=CPU, options={"model": str(tiny_model)})
    assert once.shape == (1, 2, 4410) and twice.shape == (1, 2, 8820)
    # The 2x decode is the same attractor sampled twice as densely: pooled back, it stays close.
    pooled = F.avg_pool1d(twice[0], 2)[None]
    assert psnr_float(once * 2 - 1, pooled * 2 - 1, peak=2.0) > 35.0


def test_bad_and_corrupted_files_are_clear_errors(tiny_model: Path, speech: torch.Tensor) -> None:
    model = {"model": str(tiny_model)}
    data = to_bytes(_container(speech, tiny_model))
    with pytest.raises(CollagekitError, match="not a valid .clg"):
        from_bytes(data[: len(data) // 2])
    container = from_bytes(data)
    streams = container.tensors["streams"].clone()
    streams[len(streams) // 2] ^= 0x55
    with pytest.raises(CollagekitError, match="checksum"):
        CODEC.decode(type(container)(container.header, {"streams": streams}), None, scale=1, device=CPU, options=model)
    for key, value, needle in (("shape", [1, 2, 3], "parameter shape"), ("signal", {"channels": 5, "samples": 9}, "signal.channels must be an integer from 1 to 2"),
                               ("split", ["z"], "per-channel"), ("quantiser", {"kind": "integer", "max_symbol": 7}, "quantiser")):
        bad = type(container)({**container.header, key: value}, container.tensors)
        with pytest.raises(CollagekitError, match=needle):
            CODEC.decode(bad, None, scale=1, device=CPU, options=model)
    with pytest.raises(CollagekitError, match="does not take"):
        CODEC.encode(speech, None, quality=None, device=CPU, options={**model, "speed": 2})
    with pytest.raises(CollagekitError, match="mono or stereo"):
        CODEC.encode(speech[0], None, quality=None, device=CPU, options=model)
    with pytest.raises(CollagekitError, match="unknown Neural Collage audio model"):
        STORE.load("nope")


# ---------------------------------------------------------------- CLI
def test_cli_compress_and_decompress_at_a_higher_rate(tiny_model: Path, tmp_path: Path) -> None:
    code = tmp_path / "s.clg"
    result = invoke("compress", str(SPEECH), "-o", str(code), "--model", str(tiny_model))
    assert result.returncode == 0, result.stderr
    assert read_container(code).header["signal_attrs"] == {"sample_rate": 16000}
    result = invoke("decompress", str(code), "-o", str(tmp_path / "out.wav"), "--rate", "32000", f"model={tiny_model}")
    assert result.returncode == 0, result.stderr
    info = sf.info(tmp_path / "out.wav")
    assert info.samplerate == 32000 and info.frames == 8000
    # A rate that is no whole multiple: decoded at the next multiple (32 kHz), resampled to 24 kHz.
    result = invoke("decompress", str(code), "-o", str(tmp_path / "odd.wav"), "--rate", "24000", f"model={tiny_model}")
    assert result.returncode == 0, result.stderr
    odd, rate = sf.read(tmp_path / "odd.wav", dtype="float32")
    twice, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    assert rate == 24000 and len(odd) == 6000
    from torchaudio.functional import resample

    expected = resample(torch.from_numpy(twice), 32000, 24000).numpy()
    assert snr(expected, odd) > 40.0  # equal up to the 16-bit rounding of the 32 kHz file
    result = invoke("decompress", str(code), "-o", str(tmp_path / "huge.wav"), "--rate", str(65 * 16000), f"model={tiny_model}")
    assert result.returncode == 1 and "above 64 x the stored sample rate 16000" in result.stderr
    (tmp_path / "cut.clg").write_bytes(code.read_bytes()[:-30])
    result = invoke("decompress", str(tmp_path / "cut.clg"), "-o", str(tmp_path / "cut.wav"), f"model={tiny_model}")
    assert result.returncode == 1 and result.stderr.startswith("error:") and result.stderr.count("\n") == 1
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(800, dtype=np.float32), 16000)
    result = invoke("compress", str(silent), "-o", str(tmp_path / "q.clg"), "--model", str(tiny_model))
    assert result.returncode == 1 and "is silent" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.clg", "odd.wav", "out.wav", "s.clg", "silent.wav"]


# ---------------------------------------------------------------- training
def test_training_objective_reaches_every_learned_part(tmp_path: Path) -> None:
    model = _lively_model()
    objective = RateDistortion(model, lmbda=2000.0, spectral=0.05, tol=1e-3, max_iter=10)
    crops = load_audio(SPEECH, 1 << 20)[0, :, :1024].repeat(2, 1) * 2 - 1
    loss, metrics = objective(crops)
    loss.backward()
    assert math.isfinite(float(loss.detach())) and set(metrics) == {"bits_per_sample", "psnr", "mrstft"}
    for name, part in (("encoder", model.encoder), ("patches", model.collage), ("prior", model.prior)):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters()), name
    assert model.log_gain.grad.abs().sum() > 0


def test_crops_are_deterministic_and_skip_test_and_validation_clips(tmp_path: Path) -> None:
    shutil.copy(SPEECH, tmp_path / "speech_a.flac")
    shutil.copy(STEREO, tmp_path / "music_b.flac")
    for stem in (TEST[0], TEST[-1], VALIDATION[0], VALIDATION[-1]):
        shutil.copy(SPEECH if stem.startswith("speech") else STEREO, tmp_path / f"{stem}.flac")
    stream = ClipCrops(tmp_path, crop=512, batch=4, seed=1, speech_fraction=0.5)
    assert stream.names == ["music_b.flac", "speech_a.flac"]
    assert len(stream.sources["music"]) == 2  # stereo: one mono source per channel
    a, b = stream(3, 0, 1), stream(3, 0, 1)
    assert a.shape == (4, 512) and torch.equal(a, b) and not torch.equal(a, stream(4, 0, 1))
    assert float(a.abs().max()) <= 1.0
    (tmp_path / "speech_a.flac").unlink()
    (tmp_path / "music_b.flac").unlink()
    with pytest.raises(CollagekitError, match="test and validation clips are skipped"):
        ClipCrops(tmp_path, crop=512, batch=4, seed=1, speech_fraction=0.5)


# ---------------------------------------------------------------- recipe and benchmark
def test_compress_recipe_reports_rate_and_quality(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.wav"
    result = invoke("run", "audio_compress", f"input={SPEECH}", f"output={out}", f"code={tmp_path / 'o.clg'}", f"model={tiny_model}",
                    f"metrics={tmp_path / 'm.json'}", "repeats=1")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "m.json").read_text())
    size = (tmp_path / "o.clg").stat().st_size
    assert metrics["code_bytes"] == size and metrics["kbit_per_s"] == pytest.approx(size * 8 / 0.25 / 1000, abs=1e-3)
    stored, _ = sf.read(out, dtype="float32")
    reference, _ = sf.read(SPEECH, dtype="float32")
    assert metrics["psnr_db"] == pytest.approx(psnr_float(reference, stored, peak=2.0), abs=1e-3)
    mel = mel_distance_db(torch.from_numpy(reference)[None], torch.from_numpy(stored)[None], 16000)
    assert metrics["mel_distance_db"] == pytest.approx(mel, abs=1e-3)
    assert metrics["lipschitz_bound"] < SMALL.contraction


def test_bench_writes_results(tiny_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(SPEECH, data / f"{TEST[0]}.flac")
    shutil.copy(STEREO, data / f"{TEST[-1]}.flac")
    result = invoke("bench", "audio", "--data", str(data), "--out", str(tmp_path / "res"), f"models={tiny_model}", "repeats=1")
    assert result.returncode == 1 and "test clip(s) not found" in result.stderr and TEST[1] in result.stderr
    for stem in TEST[1:-1]:
        shutil.copy(SPEECH if stem.startswith("speech") else STEREO, data / f"{stem}.flac")
    result = invoke("bench", "audio", "--data", str(data), "--out", str(tmp_path / "res"), f"models={tiny_model}", "repeats=1")
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "res" / "audio.json").read_text())
    assert set(results["clips"]) == set(TEST) and "conditions" in results
    speech = results["clips"][TEST[0]]
    assert len(speech["collage"]) == 1 and len(speech["mp3"]) >= 3 and len(speech["vorbis"]) >= 3
    assert speech["mp3"][0]["kbit_per_s"] > speech["mp3"][-1]["kbit_per_s"]  # level 0 spends the most bits
    assert {"snr_db", "psnr_db", "mp3_snr_db_at_rate", "mp3_psnr_db_at_rate"} <= set(speech["collage"][0])
    assert [(m["kind"], m["clips"]) for m in results["means"]] == [("music", 2), ("speech", 2)]
    text = (tmp_path / "res" / "audio.md").read_text()
    assert "speech: PSNR" in text and "| SNR dB | PSNR dB |" in text
@pytest.mark.skipif(not STORE.shipped(), reason="no shipped model")
def test_shipped_models_compress_by_default_and_decode_at_twice_the_rate(tmp_path: Path) -> None:
    assert STORE.qualities() == [1, 2, 3]
    code = tmp_path / "s.clg"
    assert invoke("compress", str(SPEECH), "-o", str(code)).returncode == 0
    assert read_container(code).header["model"]["name"] == "ac-q2"  # the middle one
    for args, name in (((), "once.wav"), (("--rate", "32000"), "twice.wav")):
        result = invoke("decompress", str(code), "-o", str(tmp_path / name), *args)
        assert result.returncode == 0, result.stderr
    reference, _ = sf.read(SPEECH, dtype="float64")
    once, _ = sf.read(tmp_path / "once.wav", dtype="float64")
    twice, rate = sf.read(tmp_path / "twice.wav", dtype="float64")
    assert rate == 32000 and twice.shape == (8000,)
    assert psnr_float(reference, once, peak=2.0) > 35.0
    assert psnr_float(once, twice.reshape(-1, 2).mean(1), peak=2.0) > 35.0
