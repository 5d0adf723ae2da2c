"""The espeak-ng demo corpus: layout, levels, determinism, and loading as Libri2Mix."""
from __future__ import annotations

import csv
import hashlib

import numpy as np
import pytest
import soundfile as sf

from ddtse.data.base import speaker_of
from ddtse.data.demo_corpus import build_demo_corpus
from ddtse.data.librimix import Libri2MixDataset, librimix_split_paths

SIZES = dict(mixtures={"train-100": 4, "dev": 3, "test": 3}, speakers={"train-100": 3, "dev": 3, "test": 3},
             rates=(8000,), seed=5, processes=1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "Libri2Mix"
    summary = build_demo_corpus(out, **SIZES)
    return out, summary


def digest(root):
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "speakers.csv"):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes().replace(str(root).encode(), b""))
    return h.hexdigest()


def test_layout_and_metadata(corpus):
    out, summary = corpus
    assert summary["mixtures"] == {"train-100": 4, "dev": 3, "test": 3}
    base = out / "wav8k" / "min"
    for split, n in summary["mixtures"].items():
        for sub in ("mix_clean", "mix_both", "s1", "s2", "noise"):
            assert len(list((base / split / sub).glob("*.wav"))) == n
        for mtype in ("mix_clean", "mix_both"):
            rows = list(csv.DictReader(open(base / "metadata" / f"mixture_{split}_{mtype}.csv")))
            assert len(rows) == n and rows[0]["mixture_path"].startswith(str(base / split / mtype))
    assert (base / "metadata" / "libri2mix_train-clean-100_info.csv").is_file()
    assert (base / "dev" / "map_mixture2enrollment").is_file() and (base / "test" / "map_mixture2enrollment").is_file()
    assert not (out / "wav16k").exists()
    record = librimix_split_paths(base / "dev", "mix_both")[0]
    assert all(len(u.split("-")) == 3 for u in record.utterances)  # <spk>-<chapter>-<utt>


def test_voices_disjoint_and_sexes(corpus):
    out, _ = corpus
    rows = list(csv.DictReader(open(out / "speakers.csv")))
    train = {r["variant"] for r in rows if r["split"] == "train-100"}
    held = {r["variant"] for r in rows if r["split"] != "train-100"}
    assert len(train) == 3 and len(held) == 6 and not train & held  # held-out variants never trained on
    sex = {r["speaker_ID"]: r["sex"] for r in rows}
    for info in csv.DictReader(open(out / "wav8k/min/metadata/libri2mix_dev-clean_info.csv")):
        assert info["speaker_1_sex"] == sex[info["speaker_1_ID"]]
        assert info["speaker_1_ID"] == info["mixture_ID"].split("-")[0]


def test_signals_levels_and_sums(corpus):
    out, _ = corpus
    for record in librimix_split_paths(out / "wav8k/min/train-100", "mix_both"):
        s1, sr = sf.read(record.source_paths[0], dtype="float32")
        s2, _ = sf.read(record.source_paths[1], dtype="float32")
        noise, _ = sf.read(record.noise_path, dtype="float32")
        both, _ = sf.read(record.mixture_path, dtype="float32")
        assert sr == 8000 and len(s1) == len(s2) == len(both) == record.length
        assert 1.5 * sr <= record.length <= 5.0 * sr
        np.testing.assert_allclose(both, s1 + s2 + noise, atol=4 / 32768)
        assert np.max(np.abs(both)) <= 0.9 + 1 / 32768
        guarded = np.max(np.abs(both)) > 0.899  # the 0.9 peak guard may have scaled everything down
        for wav, (lo, hi) in ((s1, (-33.01, -24.99)), (s2, (-33.01, -24.99)), (noise, (-38.01, -29.99))):
            level = 10 * np.log10(np.mean(wav.astype(np.float64) ** 2))
            assert (guarded or lo < level) and level < hi
        assert np.corrcoef(s1, s2)[0, 1] < 0.5


def test_loads_through_libri2mix_loader(corpus):
    out, _ = corpus
    ds = Libri2MixDataset(sample_rate=8000, root=str(out), split="test")
    assert len(ds) == 6
    for i in range(len(ds)):
        item = ds[i]
        k, mid = item["id"].split("/")
        utt = mid.split("_")[int(k[1]) - 1]
        enrol = item["enrollment_path"]
        assert speaker_of(enrol.rsplit("/", 1)[1].split("_")[int(enrol.rsplit("/", 2)[1][1]) - 1]) == speaker_of(utt)
        assert item["group"] in ("FF", "MM", "FM")
    tr = Libri2MixDataset(sample_rate=16000, root=str(out), split="train-100", train=True, segment_seconds=1.0)
    assert tr[(0, 0)]["mixture"].shape == (16000,)  # 8 kHz tree resampled


def test_deterministic_for_seed(corpus, tmp_path):
    out, _ = corpus
    again = tmp_path / "again" / "Libri2Mix"
    build_demo_corpus(again, **SIZES)
    assert digest(again) == digest(out)
