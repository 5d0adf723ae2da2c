"""Dynamic mixing: determinism, achieved SIR/SNR, peak guard, reverberation, enrollment."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data_helpers import RATE, SPEAKER_FREQ, dominant_frequency
from ddtse.data.mixing import DynamicMixDataset, colored_noise, pool_from_folder, pool_from_librimix
from ddtse.errors import DdtseError


def power_db(x):
    return 10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2))


def make(folder, **kw):
    kw.setdefault("train", True)
    kw.setdefault("segment_seconds", 0.5)
    return DynamicMixDataset(sample_rate=RATE, seed=kw.pop("seed", 11), source=str(folder), **kw)


def test_pool_from_folder_labels_speakers(speaker_folder):
    pool = pool_from_folder(speaker_folder)
    assert pool.speakers == ["1272", "2035", "6313"] and len(pool) == 9
    assert all(Path(u.path).parts[-3] == u.speaker for u in pool.utterances)


def test_pool_from_librimix_sources(librimix_root):
    pool = pool_from_librimix(librimix_root / "wav8k/min/dev", "mix_both")
    assert pool.speakers == ["1272", "2035", "6313"]
    assert len(pool) == len({u.utterance_id for u in pool.utterances}) == 16


def test_deterministic_for_seed_index_epoch(speaker_folder):
    a, b, c = make(speaker_folder), make(speaker_folder), make(speaker_folder, seed=12)
    x, y = a[(4, 2)], b[(4, 2)]
    for key in ("mixture", "target", "enrollment"):
        assert np.array_equal(x[key], y[key])
    assert not np.array_equal(a[(4, 3)]["mixture"], x["mixture"])  # epoch changes the item
    assert not np.array_equal(c[(4, 2)]["mixture"], x["mixture"])  # seed changes the item
    # evaluation items are fixed whatever epoch is asked for
    ev = make(speaker_folder, train=False)
    assert np.array_equal(ev[(1, 0)]["mixture"], ev[(1, 5)]["mixture"])


def test_sir_is_achieved(speaker_folder):
    ds = make(speaker_folder, sir_range=[-5, 5])
    sirs = []
    for i in range(len(ds)):
        item = ds[(i, 0)]
        interferer = item["mixture"] - item["target"]
        measured = power_db(item["target"]) - power_db(interferer)
        assert measured == pytest.approx(item["sir_db"][0], abs=0.02)
        assert item["mixture"].shape == (4000,)
        sirs.append(measured)
    assert max(sirs) - min(sirs) > 2  # actually random


def test_snr_is_achieved_with_colored_noise(speaker_folder):
    ds = make(speaker_folder, sir_range=[80, 80], noise="colored", noise_snr_range=[3, 10])
    for i in range(4):
        item = ds[(i, 1)]
        noise = item["mixture"] - item["target"]  # the interferer is 80 dB down
        assert power_db(item["target"]) - power_db(noise) == pytest.approx(item["snr_db"], abs=0.05)
        assert 3 <= item["snr_db"] <= 10


def test_noise_files_and_levels(speaker_folder, tmp_path):
    import soundfile as sf

    noise_dir = tmp_path / "noise"
    noise_dir.mkdir()
    sf.write(noise_dir / "n.wav", colored_noise(1000, 1.0, np.random.default_rng(0)) * 0.1, RATE)  # shorter: looped
    ds = make(speaker_folder, sir_range=[80, 80], noise=str(noise_dir), noise_snr_range=[5, 5],
              speech_level_range=[-30, -30])
    item = ds[(0, 0)]
    assert power_db(item["target"]) == pytest.approx(-30, abs=0.05)
    assert power_db(item["target"]) - power_db(item["mixture"] - item["target"]) == pytest.approx(5, abs=0.05)


def test_peak_guard(speaker_folder):
    ds = make(speaker_folder, speech_level_range=[-1, -1], sir_range=[0, 0])
    item = ds[(0, 0)]
    assert np.max(np.abs(item["mixture"])) == pytest.approx(0.9, abs=1e-5)
    interferer = item["mixture"] - item["target"]
    assert power_db(item["target"]) - power_db(interferer) == pytest.approx(0, abs=0.02)  # ratio kept


def test_enrollment_is_another_utterance_of_target(speaker_folder):
    ds = make(speaker_folder, enrollment_seconds=0.3)
    for i in range(len(ds)):
        item = ds[(i, 0)]
        assert item["enrollment_path"] != item["target_path"]
        assert Path(item["enrollment_path"]).parts[-3] == Path(item["target_path"]).parts[-3]
        spk = Path(item["target_path"]).parts[-3]
        assert abs(dominant_frequency(item["enrollment"]) - SPEAKER_FREQ[spk]) < 30
        assert item["enrollment"].shape == (2400,)
        assert ds.pool.speakers[item["speaker_index"]] == spk


def test_two_microphone_reverb(speaker_folder):
    reverb = {"mics": 2, "rt60_range": [0.2, 0.25], "max_order": 6, "target_reference": "direct"}
    ds = make(speaker_folder, reverb=reverb)
    item = ds[(0, 0)]
    assert item["mixture"].shape == (2, 4000) and item["target"].shape == (4000,)
    assert np.isfinite(item["mixture"]).all() and np.max(np.abs(item["mixture"])) <= 0.9 + 1e-6
    assert not np.allclose(item["mixture"][0], item["mixture"][1])
    assert np.array_equal(ds[(0, 0)]["mixture"], item["mixture"])  # deterministic with RIRs too
    dry = make(speaker_folder, reverb=dict(reverb, target_reference="dry"))[(0, 0)]
    assert not np.allclose(dry["target"], item["target"])


def test_errors(speaker_folder, tmp_path):
    with pytest.raises(DdtseError, match="reverb.mics must be 1 or 2"):
        make(speaker_folder, reverb={"mics": 3})
    with pytest.raises(DdtseError, match="unknown reverb option"):
        make(speaker_folder, reverb={"rt60": 0.3})
    with pytest.raises(DdtseError, match="has 3 speaker\\(s\\); 4 are needed"):
        make(speaker_folder, num_interferers=3)
    with pytest.raises(DdtseError, match="utterance folder not found"):
        make(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DdtseError, match="noise folder not found or holds no audio"):
        make(speaker_folder, noise=str(tmp_path / "empty"))
    with pytest.raises(DdtseError, match="no speaker .* has two utterances"):
        make(speaker_folder, min_enrollment_seconds=5.0)
