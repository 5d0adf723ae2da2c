"""The batch of docs/design.md: dataset items (dicts) collated with zero padding.

Training (``ddtse.data.datamodule``'s loaders) and inference (``ddtse.extract``) both import this,
so the one batch shape has one maker and inference does not reach into the Lightning data module.
"""
from __future__ import annotations

import numpy as np
import torch

from ddtse.errors import DdtseError


def _pad_stack(arrays: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([a.shape[-1] for a in arrays], dtype=torch.int64)
    longest = int(lengths.max())
    out = torch.zeros((len(arrays), *arrays[0].shape[:-1], longest), dtype=torch.float32)
    for i, a in enumerate(arrays):
        out[i, ..., : a.shape[-1]] = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    return out, lengths


def collate_batch(items: list[dict]) -> dict:
    """Items -> the batch dict of docs/design.md (zero padding; ``lengths``, ``enrollment_lengths``)."""
    if not items:
        raise DdtseError("cannot collate an empty batch")
    mixtures = [np.atleast_2d(np.asarray(it["mixture"], dtype=np.float32)) for it in items]
    channels = {m.shape[0] for m in mixtures}
    if len(channels) > 1:
        raise DdtseError(f"items in one batch have different channel counts: {sorted(channels)}")
    batch: dict = {"ids": [it["id"] for it in items]}
    batch["mixture"], batch["lengths"] = _pad_stack(mixtures)
    if all("target" in it for it in items):
        batch["target"], target_lengths = _pad_stack([np.asarray(it["target"]) for it in items])
        if batch["target"].shape[-1] != batch["mixture"].shape[-1] or not torch.equal(target_lengths, batch["lengths"]):
            bad = [it["id"] for it, a, b in zip(items, target_lengths, batch["lengths"]) if a != b]
            raise DdtseError(f"target and mixture lengths differ for item(s) {', '.join(bad)}")
    if all("interferer" in it for it in items):
        batch["interferer"], _ = _pad_stack([np.asarray(it["interferer"]) for it in items])
    if all("enrollment" in it for it in items):
        batch["enrollment"], batch["enrollment_lengths"] = _pad_stack([np.asarray(it["enrollment"]) for it in items])
    if all("embedding" in it for it in items):
        batch["embedding"] = torch.from_numpy(np.stack([np.asarray(it["embedding"], np.float32) for it in items]))
    if any("absent" in it for it in items):  # absent-target items (silent target)
        batch["absent"] = torch.tensor([bool(it.get("absent", False)) for it in items])
    if all("group" in it for it in items):
        batch["group"] = [it["group"] for it in items]
    if all("speaker_index" in it for it in items):
        batch["speaker_index"] = torch.tensor([int(it["speaker_index"]) for it in items], dtype=torch.int64)
    return batch
