"""Fixtures of the data tests (helpers in data_helpers.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))  # data_helpers.py, shared by the test modules

from data_helpers import RATE, utterance_signal, write_tree


@pytest.fixture
def librimix_root(tmp_path) -> Path:
    """A Libri2Mix root (8 kHz, min, dev) with the real IDs of tests/assets."""
    root = tmp_path / "Libri2Mix"
    write_tree(root)
    return root


@pytest.fixture
def speaker_folder(tmp_path) -> Path:
    """``<root>/<speaker>/<chapter>/<utt>.wav``: 3 speakers x 3 utterances of 0.5-0.8 s at 8 kHz."""
    root = tmp_path / "speakers"
    for s, spk in enumerate(("1272", "2035", "6313")):
        for u in range(3):
            utt = f"{spk}-{100 + s}-{u:04d}"
            path = root / spk / str(100 + s) / f"{utt}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, utterance_signal(utt) * (1 + u), RATE, subtype="FLOAT")
    return root
