"""Speech metrics: SI-SDR(i) (torch and numpy, batched), PESQ (WB at 16 kHz, NB at 8 kHz), ESTOI."""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch

EPS = 1e-8


def si_sdr(estimate, reference, eps: float = EPS):
    """Scale-invariant SDR in dB over the last axis; torch or numpy, any leading dims.

    Both signals are made zero-mean. A silent reference or estimate gives a finite value
    (eps keeps the logarithm defined) instead of NaN.
    """
    if isinstance(estimate, torch.Tensor):
        est = estimate - estimate.mean(dim=-1, keepdim=True)
        ref = reference - reference.mean(dim=-1, keepdim=True)
        scale = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)
        target = scale * ref
        noise = est - target
        return 10 * torch.log10((target.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps))
    est = np.asarray(estimate, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    est = est - est.mean(axis=-1, keepdims=True)
    ref = ref - ref.mean(axis=-1, keepdims=True)
    scale = (est * ref).sum(-1, keepdims=True) / ((ref**2).sum(-1, keepdims=True) + eps)
    target = scale * ref
    noise = est - target
    return 10 * np.log10(((target**2).sum(-1) + eps) / ((noise**2).sum(-1) + eps))


def si_sdr_improvement(estimate, reference, mixture, eps: float = EPS):
    """SI-SDRi = SI-SDR(estimate, reference) - SI-SDR(mixture, reference), in dB."""
    return si_sdr(estimate, reference, eps) - si_sdr(mixture, reference, eps)


def masked_si_sdr(estimate: torch.Tensor, reference: torch.Tensor, lengths: torch.Tensor | None,
                  eps: float = EPS) -> torch.Tensor:
    """SI-SDR (B,) of (B, T) signals counting only the first ``lengths[b]`` samples of each item."""
    if lengths is None:
        return si_sdr(estimate, reference, eps)
    mask = (torch.arange(estimate.shape[-1], device=estimate.device)[None, :] < lengths[:, None]).to(estimate.dtype)
    n = mask.sum(-1, keepdim=True).clamp_min(1)
    est = (estimate - (estimate * mask).sum(-1, keepdim=True) / n) * mask
    ref = (reference - (reference * mask).sum(-1, keepdim=True) / n) * mask
    scale = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)
    target = scale * ref
    noise = est - target
    return 10 * torch.log10((target.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps))


def pesq_mode(sample_rate: int) -> tuple[int, str]:
    """(rate PESQ runs at, mode): 8 kHz -> NB, 16 kHz -> WB, anything else resampled to 16 kHz WB."""
    if sample_rate == 8000:
        return 8000, "nb"
    return 16000, "wb"


def pesq_score(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
    """PESQ (P.862 NB at 8 kHz, P.862.2 WB at 16 kHz; other rates resampled to 16 kHz WB).

    Returns NaN when PESQ finds no utterance in the reference (e.g. silence).
    """
    from pesq import NoUtterancesError, PesqError, pesq

    from ddtse.audio.io import resample

    rate, mode = pesq_mode(sample_rate)
    ref = np.asarray(reference, dtype=np.float32)
    est = np.asarray(estimate, dtype=np.float32)
    if rate != sample_rate:
        ref, est = resample(ref, sample_rate, rate), resample(est, sample_rate, rate)
    n = min(len(ref), len(est))
    try:
        return float(pesq(rate, ref[:n], est[:n], mode))
    except (NoUtterancesError, PesqError, ValueError) as exc:
        if not isinstance(exc, NoUtterancesError):
            warnings.warn(f"PESQ failed: {exc}")
        return math.nan


def estoi_score(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
    """Extended STOI (pystoi, extended=True); NaN if the signals are too short or silent."""
    from pystoi import stoi

    ref = np.asarray(reference, dtype=np.float64)
    est = np.asarray(estimate, dtype=np.float64)
    n = min(len(ref), len(est))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value = float(stoi(ref[:n], est[:n], sample_rate, extended=True))
        except Exception:
            return math.nan
    return value if np.isfinite(value) else math.nan


METRIC_NAMES = ("si_sdr", "si_sdri", "pesq", "estoi")


def compute_metrics(reference: np.ndarray, estimate: np.ndarray, sample_rate: int,
                    mixture: np.ndarray | None = None, metrics=METRIC_NAMES) -> dict[str, float]:
    """All requested metrics for one utterance (equal-length 1-D arrays; trimmed to the shorter)."""
    n = min(len(reference), len(estimate), len(mixture) if mixture is not None else len(estimate))
    ref, est = reference[:n], estimate[:n]
    out: dict[str, float] = {}
    if "si_sdr" in metrics or "si_sdri" in metrics:
        out["si_sdr"] = float(si_sdr(est, ref))
    if "si_sdri" in metrics and mixture is not None:
        out["si_sdri"] = out["si_sdr"] - float(si_sdr(mixture[:n], ref))
    if "pesq" in metrics:
        out["pesq"] = pesq_score(ref, est, sample_rate)
    if "estoi" in metrics:
        out["estoi"] = estoi_score(ref, est, sample_rate)
    return out
