"""Clean/dirty mixing (ddtse/data/clean_dirty.py): shift/pad/loop, gains, peak guard, determinism, errors."""
import numpy as np
import pytest
import soundfile as sf

from ddtse.data.clean_dirty import CleanDirtyDataset, dirty_segment, shift_clip
from ddtse.errors import DdtseError
from ddtse.registry import DATASETS

SR = 8000


def write(path, wav, sr=SR):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(wav, np.float32), sr, subtype="FLOAT")


@pytest.fixture
def corpus(tmp_path):
    """datasets/clean/alice/{train,valid}, datasets/dirty/{music,voices}/{train,valid}; tiny signals."""
    root = tmp_path / "datasets"
    t = np.arange(SR) / SR
    for i in range(2):
        write(root / "clean/alice/train" / f"a{i}.wav", 0.1 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.01 * (i + 1))
    write(root / "clean/alice/valid/v0.wav", 0.1 * np.sin(2 * np.pi * 300 * t[: SR // 2]))
    write(root / "clean/bob/train/b0.wav", np.zeros(100))
    write(root / "dirty/music/train/m0.wav", np.full(SR * 2, 0.1))
    write(root / "dirty/voices/train/x0.wav", np.full(SR // 4, 0.1))  # shorter than the clean clips: looped
    write(root / "dirty/music/valid/mv.wav", np.full(SR, 0.1))
    return root


def make(root, **kw):
    opts = dict(root=str(root), speaker="alice", sample_rate=SR, seed=3, train=True)
    opts.update(kw)
    return CleanDirtyDataset(**opts)


def test_shift_clip_and_dirty_segment():
    x = np.arange(1, 9, dtype=np.float32)
    assert shift_clip(x, 3).tolist() == [0, 0, 0, 1, 2, 3, 4, 5]
    assert shift_clip(x, -2).tolist() == [3, 4, 5, 6, 7, 8, 0, 0]
    assert shift_clip(x, 0).tolist() == x.tolist() and not shift_clip(x, 8).any()
    rng = np.random.default_rng(0)
    looped = dirty_segment(x, 20, rng, "loop")
    assert looped.shape == (20,) and np.all(np.diff(looped)[np.diff(looped) != -7] == 1)  # 1..8 repeating
    padded = dirty_segment(x, 20, rng, "pad")
    assert padded.shape == (20,) and padded.sum() == x.sum() and (padded != 0).sum() == 8
    seg = dirty_segment(np.arange(100, dtype=np.float32), 10, rng)
    assert np.all(np.diff(seg) == 1)


def test_items_mix_target_and_gained_dirty(corpus):
    ds = make(corpus, gain_range=[0.6, 1.2])
    assert len(ds) == 2 and DATASETS.get("clean_dirty") is CleanDirtyDataset
    for index in range(2):
        for epoch in range(4):
            item = ds[(index, epoch)]
            assert item["mixture"].shape == (1, SR) and item["target"].shape == (SR,)
            assert item["mixture"].dtype == np.float32 and item["id"] == f"alice/a{index}"
            noise = item["mixture"][0] - item["target"]
            assert np.allclose(noise, noise[0], atol=1e-6)  # the constant dirty signal, looped or cut
            assert 0.06 - 1e-6 <= noise[0] <= 0.12 + 1e-6  # 0.1 * U(0.6, 1.2), no peak guard needed
            assert "enrollment" not in item


def test_shift_is_a_zero_filled_offset_within_half_the_clip(corpus):
    ds = make(corpus)
    clean = sf.read(str(corpus / "clean/alice/train/a0.wav"), dtype="float32")[0]
    offsets = set()
    for epoch in range(6):
        target = ds[(0, epoch)]["target"]
        matches = [o for o in range(-SR // 2, SR // 2 + 1) if np.allclose(target, shift_clip(clean, o), atol=1e-6)]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 1 and all(abs(o) <= SR // 2 for o in offsets)


def test_deterministic_from_seed_index_epoch(corpus):
    a, b = make(corpus), make(corpus)
    assert np.array_equal(a[(1, 2)]["mixture"], b[(1, 2)]["mixture"])
    assert not np.array_equal(a[(1, 2)]["mixture"], a[(1, 3)]["mixture"])
    assert not np.array_equal(a[(1, 2)]["mixture"], make(corpus, seed=4)[(1, 2)]["mixture"])


def test_validation_is_fixed_and_unshifted(corpus):
    ds = make(corpus, train=False)
    assert len(ds) == 1
    clean = sf.read(str(corpus / "clean/alice/valid/v0.wav"), dtype="float32")[0]
    first, again = ds[(0, 0)], ds[(0, 7)]
    assert np.array_equal(first["mixture"], again["mixture"]) and np.allclose(first["target"], clean, atol=1e-6)


def test_segment_crop_keeps_speech_and_resampling(corpus):
    ds = make(corpus, segment_seconds=0.25, repeat=3)
    assert len(ds) == 6
    for i in range(6):
        target = ds[(i, 1)]["target"]
        assert target.shape == (SR // 4,) and np.count_nonzero(target) >= SR // 8
    up = make(corpus, sample_rate=16000, train=False)
    assert up[0]["target"].shape == (16000 // 2,)


def test_peak_guard_scales_both(corpus):
    ds = make(corpus, gain_range=[8.0, 8.0])
    item = ds[(0, 0)]
    assert np.abs(item["mixture"]).max() == pytest.approx(0.9, abs=1e-5)
    noise = item["mixture"][0] - item["target"]
    ratio = noise[0] / 0.1  # the guard scaled target and dirty together
    assert ratio < 8.0 and np.allclose(noise, noise[0], atol=1e-6)


def test_clear_errors(corpus, tmp_path):
    with pytest.raises(DdtseError, match="speaker 'carol' not found.*alice, bob"):
        make(corpus, speaker="carol")
    with pytest.raises(DdtseError, match="no clean audio files"):
        make(corpus, speaker="bob", train=False)
    write(corpus / "clean/alice/test/t0.wav", np.zeros(SR))
    with pytest.raises(DdtseError, match="no dirty audio files"):
        make(corpus, subset="test")
    (corpus / "clean/alice/train/broken.wav").write_bytes(b"not a wav file")
    with pytest.raises(DdtseError, match="broken.wav"):
        make(corpus)
    with pytest.raises(DdtseError, match="speaker"):
        make(corpus, speaker=None)
