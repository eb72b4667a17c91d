"""The fixed split of the audio clips in ``$COLLAGEKIT_DATA/audio`` (DESIGN section 4), by file stem.

test: what ``collagekit bench audio`` and ``bench audio-fractalize`` report on (never trained on, never
used to choose anything). validation: where choices are judged (never trained on, never reported as the
headline). train: what the shipped models learn from; ``audio_train`` skips test and validation clips,
and any other clip in its folder is training data. Two speech and two music clips are tested, one of
each validates; the long music clips stay in training.
"""

from __future__ import annotations

from typing import Literal

TEST = (
    "speech_librispeech_train-clean-100_6476-57446-0000",
    "speech_librispeech_train-clean-100_911-128684-0000",
    "music_brid_M4-01-SA_percussion",
    "music_tinysol_flute_Fl-ord-C4-mf-N-T14d",
)
VALIDATION = (
    "speech_librispeech_train-clean-100_40-121026-0000",
    "music_sorohanro_solo-trumpet-06",
)
TRAIN = (
    "speech_librispeech_train-clean-100_103-1240-0000",
    "speech_librispeech_train-clean-100_1992-141719-0000",
    "speech_librispeech_train-clean-100_2911-12359-0000",
    "speech_librispeech_train-clean-100_5104-33406-0000",
    "speech_librispeech_train-clean-100_7800-283478-0000",
    "music_admiralbob77_choice_drum-bass",
    "music_karissa-hobbs_lets-go-fishin",
    "music_vocadito_1_solo-singing",
)
SPLITS = {"test": TEST, "validation": VALIDATION, "train": TRAIN}
HELD_OUT = TEST + VALIDATION  # never trained on

Kind = Literal["speech", "music", "other"]


def kind_of(stem: str) -> Kind:
    """A clip's kind from its name's prefix (speech_*, music_*; anything else is other)."""
    return "speech" if stem.startswith("speech_") else "music" if stem.startswith("music_") else "other"
