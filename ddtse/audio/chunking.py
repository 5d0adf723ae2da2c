"""Chunked overlap-add over long inputs: run a model on fixed-size chunks, crossfade the overlaps.

The one place every inference path cuts long audio. Chunks of ``chunk_samples`` start every
``hop = chunk_samples - overlap_samples`` samples; the last one is zero-padded to full length.
Consecutive chunks share exactly ``overlap_samples`` samples, where the earlier chunk fades out
with ``cos^2`` and the later one fades in with ``1 - cos^2`` (a Hann half-window), so the
weights sum to 1 at every sample: an identity ``fn`` reproduces the input, and a model whose
receptive field fits inside the overlap gives the whole-file result (up to the crossfade of
two nearly equal estimates), without clicks at chunk borders.

Memory is bounded: only ``batch_size`` chunks (and their outputs) live at once; the output is
accumulated in place into one preallocated (T,) tensor.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from ddtse.errors import DdtseError


def crossfade_ramp(overlap: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """Fade-in weights (overlap,) rising from ~0 to ~1 (Hann half-window); fade-out is ``1 - ramp``."""
    if overlap <= 0:
        return torch.ones(0, dtype=dtype, device=device)
    pos = (torch.arange(overlap, dtype=torch.float64, device=device) + 0.5) / overlap
    return (torch.sin(0.5 * math.pi * pos) ** 2).to(dtype)


def chunk_starts(total: int, chunk_samples: int, overlap_samples: int) -> list[int]:
    """Start samples of the chunks covering ``total`` samples (the last chunk may run past the end)."""
    if total <= chunk_samples:
        return [0]
    hop = chunk_samples - overlap_samples
    n = math.ceil((total - overlap_samples) / hop)
    return [i * hop for i in range(n)]


def overlap_add(
    fn: Callable[[torch.Tensor], torch.Tensor],
    wav,
    chunk_samples: int,
    overlap_samples: int,
    batch_size: int = 1,
    progress: bool = False,
    desc: str | None = None,
) -> torch.Tensor:
    """Apply ``fn`` ((B, C, L) -> (B, L)) to ``wav`` (C, T) or (T,) in crossfaded chunks; returns (T,).

    ``chunk_samples`` and ``overlap_samples`` are in samples (0 <= overlap < chunk). Inputs no
    longer than one chunk are processed whole (no padding). Runs under ``torch.no_grad``; the
    output lives on ``wav``'s device as float32 (``fn`` may move chunks to another device).
    """
    if isinstance(wav, np.ndarray):
        wav = torch.from_numpy(np.ascontiguousarray(wav))
    if wav.dim() == 1:
        wav = wav.unsqueeze(0)
    if wav.dim() != 2:
        raise DdtseError(f"overlap_add expects audio of shape (C, T) or (T,), got {tuple(wav.shape)}")
    chunk_samples, overlap_samples = int(chunk_samples), int(overlap_samples)
    if chunk_samples <= 0:
        raise DdtseError(f"chunk length must be positive, got {chunk_samples} samples")
    if not 0 <= overlap_samples < chunk_samples:
        raise DdtseError(
            f"chunk overlap must be in [0, chunk length): got {overlap_samples} for chunks of {chunk_samples} samples"
        )
    if batch_size < 1:
        raise DdtseError(f"batch_size must be >= 1, got {batch_size}")
    channels, total = wav.shape
    wav = wav.float()

    with torch.no_grad():
        if total <= chunk_samples:
            est = _call(fn, wav.unsqueeze(0), total)
            return est[0].to(wav.device, torch.float32)

        starts = chunk_starts(total, chunk_samples, overlap_samples)
        fade_in = crossfade_ramp(overlap_samples, device=wav.device)
        fade_out = 1.0 - fade_in
        out = torch.zeros(total, dtype=torch.float32, device=wav.device)
        bar = tqdm(total=len(starts), unit="chunk", disable=not progress, desc=desc, leave=False)
        try:
            for b0 in range(0, len(starts), batch_size):
                group = starts[b0 : b0 + batch_size]
                batch = wav.new_zeros(len(group), channels, chunk_samples)
                for k, s in enumerate(group):
                    piece = wav[:, s : min(s + chunk_samples, total)]
                    batch[k, :, : piece.shape[-1]] = piece
                est = _call(fn, batch, chunk_samples).to(wav.device, torch.float32)
                for k, s in enumerate(group):
                    idx = b0 + k
                    y = est[k]
                    if overlap_samples:
                        if idx > 0:
                            y[:overlap_samples] *= fade_in
                        if idx < len(starts) - 1:
                            y[-overlap_samples:] *= fade_out
                    n = min(chunk_samples, total - s)
                    out[s : s + n] += y[:n]
                del batch, est
                bar.update(len(group))
        finally:
            bar.close()
    return out


def _call(fn, batch: torch.Tensor, length: int) -> torch.Tensor:
    est = fn(batch)
    if est.dim() == 3 and est.shape[1] == 1:
        est = est[:, 0]
    if est.dim() != 2 or est.shape[0] != batch.shape[0] or est.shape[-1] != length:
        raise DdtseError(
            f"the chunk function must map (B, C, L) to (B, L); got {tuple(est.shape)} for input {tuple(batch.shape)}"
        )
    return est
