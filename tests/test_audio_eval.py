"""Honest audio evaluation: the clips' split, what the shipped models trained on, files of retired
models, and ``collagekit bench audio``'s clip selection, kinds and means."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from collagekit_audio.bench import select_clips
from collagekit_audio.neural import AudioCollageModel, AudioModelConfig
from collagekit_audio.pretrained import MODEL_FORMAT, STORE
from collagekit_audio.splits import HELD_OUT, SPLITS, TEST, TRAIN, VALIDATION, kind_of
from conftest import DATA, invoke

from collagekit.container import from_bytes, read_container, to_bytes
from collagekit.errors import CollagekitError
from collagekit.training import save_weights

SPEECH = DATA / "speech_quarter_s.flac"  # 4000 samples of LibriSpeech, 16 kHz mono
STEREO = DATA / "trumpet_stereo_100ms.flac"  # 4410 samples, 44.1 kHz stereo
OLD = DATA / "audio_models_v1"  # files written by the first shipped models (now retired)
SMALL = AudioModelConfig(segment=64, range_size=8, domain_size=16, domain_stride=16, patches=4, width=8, max_symbol=63)


# ---------------------------------------------------------------- the split
def test_split_is_disjoint_and_keeps_the_benchmark_clips_in_test() -> None:
    names = [stem for split in SPLITS.values() for stem in split]
    assert len(names) == len(set(names)) == 14
    assert {"speech_librispeech_train-clean-100_6476-57446-0000", "music_brid_M4-01-SA_percussion"} <= set(TEST)
    for split, speech, music in ((TEST, 2, 2), (VALIDATION, 1, 1), (TRAIN, 5, 3)):
        assert [kind_of(s) for s in split].count("speech") == speech and [kind_of(s) for s in split].count("music") == music
    assert set(HELD_OUT) == set(TEST) | set(VALIDATION)
    assert kind_of("cello.wav") == "other"


@pytest.mark.skipif(not STORE.shipped(), reason="no shipped model")
def test_shipped_models_trained_on_the_train_split_only() -> None:
    for name in STORE.shipped():
        made_by = json.loads(STORE.load(name).metadata["made_by"])
        assert {Path(c).stem for c in made_by["clips"]} == set(TRAIN), name


# ---------------------------------------------------------------- files of retired models
@pytest.mark.skipif(not STORE.shipped(), reason="no shipped model")
@pytest.mark.parametrize("quality", [2, 3])
def test_files_of_retired_models_decode_to_the_same_samples(quality: int, tmp_path: Path) -> None:
    code = OLD / f"ac_q{quality}_v1.clg"
    named = read_container(code).header["model"]
    assert named["name"] == f"ac-q{quality}" and named["version"] == "1"
    assert STORE.load(named["name"]).sha256 != named["sha256"] and named["sha256"] in STORE.retired()  # not today's weights
    out = tmp_path / "o.wav"
    result = invoke("decompress", str(code), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert np.array_equal(sf.read(out, dtype="int16")[0], sf.read(OLD / f"ac_q{quality}_v1.wav", dtype="int16")[0])


@pytest.mark.skipif(not STORE.shipped(), reason="no shipped model")
def test_a_file_naming_unknown_weights_is_refused_clearly(tmp_path: Path) -> None:
    container = from_bytes((OLD / "ac_q2_v1.clg").read_bytes())
    container.header["model"] = {**container.header["model"], "sha256": "0123456789abcdef"}
    (tmp_path / "x.clg").write_bytes(to_bytes(container))
    result = invoke("decompress", str(tmp_path / "x.clg"), "-o", str(tmp_path / "o.wav"))
    assert result.returncode == 1 and result.stderr.startswith("error: ") and "0123456789abcdef" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- bench audio: which clips, kinds, means
def test_clip_selection(tmp_path: Path) -> None:
    for name in ("speech_a.flac", "odd name.wav", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in select_clips(tmp_path, "all")] == ["odd name.wav", "speech_a.flac"]
    with pytest.raises(CollagekitError, match="validation clip"):
        select_clips(tmp_path, "validation")
    for stem in VALIDATION:
        (tmp_path / f"{stem}.flac").write_bytes(b"")
    assert [p.stem for p in select_clips(tmp_path, "validation")] == list(VALIDATION)


@pytest.fixture(scope="module")
def seen_model(tmp_path_factory) -> Path:
    """A small random model whose metadata says it trained on speech_seen.flac."""
    torch.manual_seed(0)
    model = AudioCollageModel(SMALL)
    path = tmp_path_factory.mktemp("model") / "seen.safetensors"
    made_by = json.dumps({"clips": ["speech_seen.flac"]})
    save_weights(model, path, {"format": MODEL_FORMAT, "name": "seen", "version": "1", "config": SMALL.model_dump_json(), "made_by": made_by})
    return path


def test_bench_all_clips_reports_kinds_counts_and_what_was_trained_on(seen_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name, source in (("speech_seen.flac", SPEECH), ("speech_new.flac", SPEECH), ("music_x.flac", STEREO), ("take 3.flac", SPEECH)):
        shutil.copy(source, data / name)
    result = invoke("bench", "audio", "--data", str(data), "--out", str(tmp_path / "res"), f"models={seen_model}", "repeats=1", "clips=all")
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "res" / "audio_all.json").read_text())
    clips = results["clips"]
    assert {stem: (c["kind"], c["trained_on"]) for stem, c in clips.items()} == {
        "music_x": ("music", False), "speech_new": ("speech", False), "speech_seen": ("speech", True), "take 3": ("other", False),
    }  # fmt: skip
    means = {(m["kind"], m["trained_on"]): m for m in results["means"]}
    assert {key: m["clips"] for key, m in means.items()} == {("music", False): 1, ("other", False): 1, ("speech", False): 1, ("speech", True): 1}
    assert means[("speech", False)]["snr_db"] == clips["speech_new"]["collage"][0]["snr_db"]
    assert results["targets"]["speech_met"].endswith("of 1")  # only the clip not trained on counts
    text = (tmp_path / "res" / "audio_all.md").read_text()
    assert "| SNR dB | PSNR dB |" in text and "trained on: yes" in text
