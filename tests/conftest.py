"""Shared fixtures: real speech clips from tests/assets and small synthetic signals."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))
ASSETS = Path(__file__).parent / "assets"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def assets() -> Path:
    return ASSETS


@pytest.fixture
def speech_pair():
    """(clean, noisy, sample_rate): the PESQ package's real sentence and its 0 dB babble version."""
    import soundfile as sf

    clean, sr = sf.read(ASSETS / "pesq_speech.wav", dtype="float32")
    noisy, _ = sf.read(ASSETS / "pesq_speech_bab_0dB.wav", dtype="float32")
    return clean, noisy, sr


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one thread avoids OpenMP spin-waits when the CPU is shared.
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

