"""benchmarks/demo_corpus_voices.py: the F0 estimate, the pitch-clash rule and the per-voice split."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def voices():
    spec = importlib.util.spec_from_file_location("demo_corpus_voices", REPO / "benchmarks" / "demo_corpus_voices.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("f0", [95.0, 124.0, 231.0, 310.0])
def test_f0_of_a_harmonic_tone(voices, f0):
    sr = 16000
    t = np.arange(sr) / sr
    wav = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8)).astype(np.float32)
    wav[: sr // 4] = 0.0  # silent frames are skipped
    frames = voices.median_f0(wav, sr)
    assert len(frames) > 50
    assert abs(np.median(frames) / f0 - 1.0) < 0.03


def test_noise_has_no_voiced_frames(voices):
    wav = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    assert len(voices.median_f0(wav, 16000)) < 5


def test_clash_is_unison_or_octave_within_tolerance(voices):
    assert voices.clash(124.0, 126.0, 0.10) and voices.clash(126.0, 124.0, 0.10)
    assert voices.clash(124.0, 239.0, 0.10)        # 1.93: an octave within 10 %
    assert not voices.clash(124.0, 195.0, 0.10)    # 1.57
    assert not voices.clash(100.0, 115.0, 0.10)    # 15 % apart
    assert voices.clash(100.0, 115.0, 0.20)


def test_scores_split_by_target_voice_and_clash(voices, tmp_path):
    pitch = {"1": {"f0_hz": 124.0}, "2": {"f0_hz": 125.0}, "3": {"f0_hz": 190.0}}
    rows = ["id,si_sdri,selected",
            "s1/1-0-0_2-0-0,4.0,1.0",    # target 1 against 2: clash
            "s2/1-0-1_2-0-1,-2.0,0.0",   # target 2 against 1: clash
            "s1/1-0-2_3-0-0,6.0,1.0",    # target 1 against 3: clear
            "s2/1-0-3_3-0-1,1.0,0.0"]    # target 3 against 1: clear
    path = tmp_path / "per_utt.csv"
    path.write_text("\n".join(rows) + "\n")
    out = voices.split_scores(path, pitch, 0.10)
    assert out["clash"] == {"items": 2, "si_sdri": 1.0, "selected_pct": 50.0}
    assert out["clear"] == {"items": 2, "si_sdri": 3.5, "selected_pct": 50.0}
    assert out["by_target"]["1"] == {"items": 2, "si_sdri": 5.0, "selected_pct": 100.0}
    assert out["by_target"]["2"]["si_sdri"] == -2.0 and out["by_target"]["3"]["si_sdri"] == 1.0


def test_bad_scores_are_one_clear_error(voices, tmp_path):
    from ddtse.errors import DdtseError

    bad_columns, bad_id = tmp_path / "columns.csv", tmp_path / "id.csv"
    bad_columns.write_text("a,b\n1,2\n")
    bad_id.write_text("id,si_sdri\nfoo.wav,1.0\n")
    with pytest.raises(DdtseError, match="no id, si_sdri column"):
        voices.split_scores(bad_columns, {}, 0.1)
    with pytest.raises(DdtseError, match="is not s1/<utt1>_<utt2>"):
        voices.split_scores(bad_id, {}, 0.1)
    with pytest.raises(DdtseError, match="not a file"):  # refused before any audio is read
        voices.main(["--root", str(tmp_path / "missing"), "--scores", f"x={tmp_path / 'none.csv'}"])
