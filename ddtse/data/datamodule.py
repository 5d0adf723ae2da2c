"""Datasets by config and the Lightning DataModule (the batch collate is ddtse/data/batch.py).

Config (``data:`` section)::

    data:
      sample_rate: 16000        # every dataset delivers audio at this rate
      batch_size: 4             # training
      valid_batch_size: 1       # validation/test (full-length items)
      num_workers: 2
      train: {name: libri2mix, root: ..., split: train-100, segment_seconds: 3.0, ...}
      valid: {name: libri2mix, root: ..., split: dev, ...}
      test:  {name: libri2mix, root: ..., split: test, ...}

A dataset class registered in ``DATASETS`` must take
``cls(*, sample_rate: int, seed: int, train: bool, **options)`` (``options`` = its sub-config
without ``name``), implement ``__len__`` and ``__getitem__(key)`` where ``key`` is an int index
or an ``(index, epoch)`` tuple (training loaders use :class:`EpochSampler`, which yields tuples
so per-item randomness can follow the epoch; subclass ddtse.data.base.ExtractionDataset to get
this), and return a dict per item: ``id`` (str), ``mixture`` float32 (T,) or (C, T),
``target`` (T,) [optional], ``enrollment`` (Te,) [optional], ``group`` (str), ``embedding`` (D,),
``speaker_index`` (int), ``interferer`` (T,) (the other speaker's source, for selection metrics) [all optional]. Other keys are ignored by :func:`collate_batch`.
"""
from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from ddtse.data.batch import collate_batch  # noqa: F401  (the collate of every loader; re-exported)
from ddtse.errors import DdtseError
from ddtse.registry import DATASETS

SHARED_KEYS = ("sample_rate", "batch_size", "valid_batch_size", "num_workers", "train", "valid", "test",
               "pin_memory")


def build_dataset(dataset_cfg: dict, sample_rate: int, seed: int = 0, train: bool = False):
    """Build one registered dataset from ``{name: ..., **options}``; refuses empty datasets."""
    if not isinstance(dataset_cfg, dict):
        raise DdtseError(f"a dataset config must be a mapping with a 'name', got {dataset_cfg!r}")
    dataset = DATASETS.build(dataset_cfg, sample_rate=int(sample_rate), seed=int(seed), train=bool(train))
    if len(dataset) == 0:
        raise DdtseError(f"dataset '{dataset_cfg['name']}' has no items (check its list/folder)")
    return dataset


class EpochSampler(Sampler):
    """Yields ``(index, epoch)``; shuffles with ``(seed, epoch)``. Lightning calls ``set_epoch``;
    without it the epoch advances after each pass."""

    def __init__(self, length: int, seed: int = 0, shuffle: bool = True):
        self.length, self.seed, self.shuffle, self.epoch = int(length), int(seed), bool(shuffle), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        if self.shuffle:
            order = np.random.default_rng([self.seed & 0xFFFFFFFF, epoch]).permutation(self.length)
        else:
            order = np.arange(self.length)
        return iter([(int(i), epoch) for i in order])


def seed_worker(worker_id: int) -> None:
    """Seed numpy/random in a loader worker from torch's per-worker seed, which the loader derives
    from its generator (seeded with the run seed) and which differs per worker and per epoch."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(dataset, batch_size: int, num_workers: int = 0, seed: int = 0, train: bool = False,
                pin_memory: bool = False, drop_last: bool | None = None) -> DataLoader:
    """A DataLoader with :func:`collate_batch`, :class:`EpochSampler` and seeded workers."""
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return DataLoader(
        dataset,
        batch_size=int(batch_size),
        sampler=EpochSampler(len(dataset), seed, shuffle=train),
        num_workers=int(num_workers),
        collate_fn=collate_batch,
        worker_init_fn=seed_worker,
        generator=generator,
        pin_memory=pin_memory,
        drop_last=train if drop_last is None else drop_last,
        persistent_workers=num_workers > 0 and train,
    )


def _datamodule_base():
    import lightning as L

    return L.LightningDataModule


class TseDataModule(_datamodule_base()):
    """Builds ``train``/``valid``/``test`` datasets of a ``data`` config lazily (see module docstring)."""

    def __init__(self, data_cfg: dict, seed: int = 0):
        super().__init__()
        if not isinstance(data_cfg, dict):
            raise DdtseError("the 'data' config section must be a mapping")
        if "sample_rate" not in data_cfg:
            raise DdtseError("data.sample_rate is required (e.g. 16000)")
        self.cfg = data_cfg
        self.seed = int(seed)
        self.sample_rate = int(data_cfg["sample_rate"])
        self.batch_size = int(data_cfg.get("batch_size", 4))
        self.valid_batch_size = int(data_cfg.get("valid_batch_size", 1))
        self.num_workers = int(data_cfg.get("num_workers", 0))
        self.pin_memory = bool(data_cfg.get("pin_memory", False))
        self.datasets: dict = {}

    def dataset(self, part: str):
        """The dataset of ``part`` (train/valid/test), built on first use."""
        if part not in self.datasets:
            sub = self.cfg.get(part)
            if sub is None:
                raise DdtseError(f"data.{part} is not configured")
            self.datasets[part] = build_dataset(sub, self.sample_rate, self.seed, train=(part == "train"))
        return self.datasets[part]

    def setup(self, stage: str | None = None) -> None:
        parts = {"fit": ["train", "valid"], "validate": ["valid"], "test": ["test"]}.get(stage, [])
        for part in parts:
            if part == "valid" and self.cfg.get("valid") is None:
                continue
            self.dataset(part)

    def train_dataloader(self):
        return make_loader(self.dataset("train"), self.batch_size, self.num_workers, self.seed, True, self.pin_memory)

    def val_dataloader(self):
        if self.cfg.get("valid") is None:
            return []
        return make_loader(self.dataset("valid"), self.valid_batch_size, self.num_workers, self.seed, False,
                           self.pin_memory)

    def test_dataloader(self):
        return make_loader(self.dataset("test"), self.valid_batch_size, self.num_workers, self.seed, False,
                           self.pin_memory)


def build_datamodule(data_cfg: dict, seed: int = 0) -> TseDataModule:
    """The LightningDataModule of a ``data`` config section (datasets are built in ``setup``)."""
    return TseDataModule(data_cfg, seed)
