"""build_dataset / build_datamodule / collate_batch: batch contract, seeding, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from data_helpers import RATE
from ddtse.data.datamodule import EpochSampler, build_datamodule, build_dataset, collate_batch, make_loader
from ddtse.data.librimix import MAP_NAME, librimix_split_paths, make_enrollment_map
from ddtse.errors import DdtseError


def write_map(root):
    split_dir = root / "wav8k/min/dev"
    lines, _ = make_enrollment_map(librimix_split_paths(split_dir, "mix_both"), 0)
    (split_dir / MAP_NAME).write_text("\n".join(lines))


def data_cfg(root, **extra):
    part = {"name": "libri2mix", "root": str(root), "split": "dev"}
    cfg = {"sample_rate": RATE, "batch_size": 3, "valid_batch_size": 2, "num_workers": 0,
           "train": dict(part, segment_seconds=0.5, enrollment_seconds=0.25), "valid": dict(part), "test": dict(part)}
    cfg.update(extra)
    return cfg


def test_collate_pads_and_reports_lengths():
    items = [
        {"id": "a", "mixture": np.ones(5, np.float32), "target": np.ones(5, np.float32) * 2,
         "enrollment": np.ones(3, np.float32), "group": "FF", "speaker_index": 4, "embedding": np.ones(4)},
        {"id": "b", "mixture": np.ones(7, np.float32), "target": np.ones(7, np.float32),
         "enrollment": np.ones(6, np.float32), "group": "FM", "speaker_index": 1, "embedding": np.zeros(4)},
    ]
    batch = collate_batch(items)
    assert batch["mixture"].shape == (2, 1, 7) and batch["mixture"].dtype == torch.float32
    assert batch["target"].shape == (2, 7) and batch["enrollment"].shape == (2, 6)
    assert batch["lengths"].tolist() == [5, 7] and batch["enrollment_lengths"].tolist() == [3, 6]
    assert batch["lengths"].dtype == torch.int64
    assert batch["mixture"][0, 0, 5:].abs().sum() == 0 and batch["target"][0, :5].tolist() == [2.0] * 5
    assert batch["ids"] == ["a", "b"] and batch["group"] == ["FF", "FM"]
    assert batch["speaker_index"].tolist() == [4, 1] and batch["embedding"].shape == (2, 4)
    two = collate_batch([{"id": "x", "mixture": np.ones((2, 4), np.float32)}])
    assert two["mixture"].shape == (1, 2, 4) and "target" not in two and "enrollment" not in two
    with pytest.raises(DdtseError, match="different channel counts"):
        collate_batch([items[0], {"id": "x", "mixture": np.ones((2, 4), np.float32)}])
    with pytest.raises(DdtseError, match="target and mixture lengths differ for item\\(s\\) a"):
        collate_batch([dict(items[0], target=np.ones(4, np.float32)), items[1]])


def test_datamodule_batches_follow_contract(librimix_root):
    write_map(librimix_root)
    dm = build_datamodule(data_cfg(librimix_root), seed=3)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"ids", "mixture", "lengths", "target", "enrollment", "enrollment_lengths", "group",
                          "speaker_index"}
    assert batch["mixture"].shape == (3, 1, 4000) and batch["enrollment"].shape == (3, 2000)
    valid = next(iter(dm.val_dataloader()))
    assert valid["ids"][0].startswith("s1/") and valid["mixture"].shape[0] == 2
    assert int(valid["lengths"].max()) == valid["mixture"].shape[-1]
    dm.setup("test")
    assert len(dm.test_dataloader().dataset) == 16


def test_loader_is_seeded_per_epoch_and_worker_independent(librimix_root):
    ds = build_dataset(data_cfg(librimix_root)["train"], RATE, seed=5, train=True)
    def epoch_batches(num_workers, epochs=2):
        loader = make_loader(ds, 4, num_workers=num_workers, seed=5, train=True)
        return [[b["mixture"].clone() for b in loader] for _ in range(epochs)]
    a, b = epoch_batches(0), epoch_batches(1)
    assert all(torch.equal(x, y) for ea, eb in zip(a, b) for x, y in zip(ea, eb))  # workers do not matter
    assert not torch.equal(a[0][0], a[1][0])  # epochs differ
    sampler = EpochSampler(6, seed=1)
    sampler.set_epoch(4)
    first = list(sampler)
    assert all(e == 4 for _, e in first) and sorted(i for i, _ in first) == list(range(6))
    sampler.set_epoch(4)
    assert list(sampler) == first


def test_embedding_map(librimix_root, tmp_path):
    write_map(librimix_root)
    emb_dir = tmp_path / "emb"
    ds = build_dataset({"name": "libri2mix", "root": str(librimix_root), "split": "dev"}, RATE)
    for i in range(len(ds)):
        path = emb_dir / f"{ds.item_id(i)}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.full(8, i, np.float32))
    ds = build_dataset({"name": "libri2mix", "root": str(librimix_root), "split": "dev",
                        "embedding_map": str(emb_dir)}, RATE)
    batch = collate_batch([ds[2], ds[3]])
    assert batch["embedding"].shape == (2, 8) and batch["embedding"][:, 0].tolist() == [2.0, 3.0]
    listing = tmp_path / "emb.txt"
    listing.write_text(f"{ds.item_id(0)} emb/{ds.item_id(0)}.npy\n")
    ds = build_dataset({"name": "libri2mix", "root": str(librimix_root), "split": "dev",
                        "embedding_map": str(listing)}, RATE)
    assert ds[0]["embedding"].tolist() == [0.0] * 8
    with pytest.raises(DdtseError, match=f"embedding_map .*emb.txt has no entry for item {ds.item_id(1)}"):
        ds[1]


def test_config_errors(librimix_root):
    with pytest.raises(DdtseError, match="unknown dataset 'nope'"):
        build_dataset({"name": "nope"}, RATE)
    with pytest.raises(DdtseError, match="needs a 'name' key"):
        build_dataset({"root": "x"}, RATE)
    with pytest.raises(DdtseError, match="bad options for dataset 'libri2mix'.*unexpected keyword argument 'colour'"):
        build_dataset({"name": "libri2mix", "root": str(librimix_root), "split": "dev", "colour": 1}, RATE, train=True)
    with pytest.raises(DdtseError, match="data.sample_rate is required"):
        build_datamodule({"batch_size": 2})
    dm = build_datamodule({"sample_rate": RATE})
    with pytest.raises(DdtseError, match="data.train is not configured"):
        dm.train_dataloader()
    assert dm.val_dataloader() == []


def test_empty_dataset_refused(tmp_path):
    from ddtse.registry import DATASETS

    class Empty(torch.utils.data.Dataset):
        def __init__(self, **kw):
            pass

        def __len__(self):
            return 0

    if "empty_for_test" not in DATASETS.names():
        DATASETS.register("empty_for_test")(Empty)

    with pytest.raises(DdtseError, match="dataset 'empty_for_test' has no items"):
        build_dataset({"name": "empty_for_test"}, RATE)
