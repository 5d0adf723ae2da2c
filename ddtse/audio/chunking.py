"""Chunked overlap-add over long inputs: run a model on fixed-size chunks, crossfade the overlaps.

The one place every inference path cuts long audio. Chunks of ``chunk_samples`` start every
``hop = chunk_samples - overlap_samples`` samples; the last one is zero-padded to full length.
Consecutive chunks share ``overlap_samples`` samples. In the middle of each shared stretch a
Hann crossfade (``sin^2`` in, ``cos^2`` out) of ``min(overlap // 2, hop)`` samples hands over
from one chunk to the next; the outer quarter (at least) of the overlap belongs wholly to the
chunk that is not at its edge there. The weights sum to 1 at every sample, so an identity
``fn`` reproduces the input; a model whose one-sided receptive field is at most
``overlap // 4`` samples gives the whole-file result (each chunk's edge samples, computed next
to a cut, weigh 0); a model with a global receptive field (attention, LSTMs) gets a smooth
crossfade between two estimates, so there are no clicks at chunk borders.

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


def crossfade_ramp(length: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """Fade-in weights (length,) rising from ~0 to ~1 (Hann half-window, sin^2); fade-out is ``1 - ramp``."""
    pos = (torch.arange(max(length, 0), dtype=torch.float64, device=device) + 0.5) / max(length, 1)
    return (torch.sin(0.5 * math.pi * pos) ** 2).to(dtype)


def chunk_windows(chunk: int, overlap: int, dtype=torch.float32, device=None) -> dict[str, torch.Tensor]:
    """Weights (chunk,) of the first, middle and last chunks; consecutive ones sum to 1 where they meet.

    The crossfade between chunks k and k+1 is ``w = min(overlap // 2, hop)`` samples long and
    centred in their shared ``overlap``: each chunk's outer ``(overlap - w) // 2 >= overlap // 4``
    samples weigh exactly 0, and no sample is covered by more than two non-zero weights.
    """
    hop = chunk - overlap
    w = max(1, min(overlap // 2, hop)) if overlap else 0
    z = (overlap - w) // 2
    ramp = crossfade_ramp(w, torch.float64, device)
    fade_in = torch.ones(chunk, dtype=torch.float64, device=device)
    fade_out = torch.ones(chunk, dtype=torch.float64, device=device)
    if overlap:
        fade_in[:z] = 0
        fade_in[z : z + w] = ramp
        fade_out[hop + z : hop + z + w] = 1 - ramp
        fade_out[hop + z + w :] = 0
    return {
        "first": fade_out.to(dtype),
        "middle": (fade_in * fade_out).to(dtype),
        "last": fade_in.to(dtype),
    }


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
    pad_last: bool = True,
) -> torch.Tensor:
    """Apply ``fn`` ((B, C, L) -> (B, L)) to ``wav`` (C, T) or (T,) in crossfaded chunks; returns (T,).

    ``chunk_samples`` and ``overlap_samples`` are in samples (0 <= overlap < chunk). Inputs no
    longer than one chunk are processed whole (no padding). Runs under ``torch.no_grad``; the
    output lives on ``wav``'s device as float32 (``fn`` may move chunks to another device).
    ``pad_last=False`` runs the final chunk at its true length (in a call of its own) instead
    of zero-padding it: a multi-layer network then sees exactly the whole file's context there.
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
        windows = chunk_windows(chunk_samples, overlap_samples, device=wav.device)
        out = torch.zeros(total, dtype=torch.float32, device=wav.device)
        bar = tqdm(total=len(starts), unit="chunk", disable=not progress, desc=desc, leave=False)
        try:
            n_full = len(starts) if pad_last else len(starts) - 1
            groups = [list(range(b0, min(b0 + batch_size, n_full))) for b0 in range(0, n_full, batch_size)]
            if not pad_last:
                groups.append([len(starts) - 1])
            for group in groups:
                short = not pad_last and group[0] == len(starts) - 1
                length = total - starts[group[0]] if short else chunk_samples
                batch = wav.new_zeros(len(group), channels, length)
                for k, idx in enumerate(group):
                    piece = wav[:, starts[idx] : min(starts[idx] + length, total)]
                    batch[k, :, : piece.shape[-1]] = piece
                est = _call(fn, batch, length).to(wav.device, torch.float32)
                for k, idx in enumerate(group):
                    kind = "first" if idx == 0 else "last" if idx == len(starts) - 1 else "middle"
                    s = starts[idx]
                    n = min(length, total - s)
                    out[s : s + n] += est[k, :n] * windows[kind][:n]
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
