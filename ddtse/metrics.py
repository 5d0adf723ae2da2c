"""Speech metrics: SI-SDR(i) (torch and numpy, batched), PESQ (WB at 16 kHz, NB at 8 kHz), ESTOI,
target-selection metrics (SI-SDR to the interferer, confusion, acceptance), DNSMOS and speaker
similarity."""
from __future__ import annotations

import math
import warnings
from pathlib import Path

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


def _masked_energy(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Sum of squares (B,) of (B, T) signals over the first ``lengths[b]`` samples (all when None)."""
    x = x.float()
    if lengths is not None:
        x = x * (torch.arange(x.shape[-1], device=x.device)[None, :] < lengths[:, None])
    return x.pow(2).sum(-1)


def absent_energy_db(estimate: torch.Tensor, mixture: torch.Tensor, lengths: torch.Tensor | None,
                       tau: float = 1e-3) -> torch.Tensor:
    """Output energy (B,) relative to the mixture, 10 log10(||estimate||^2 / ||mixture||^2 + tau) dB,
    over the valid samples. With ``tau`` > 0 it is the loss for items whose target is absent, minimal
    (10 log10 tau) for an output more than -10 log10 tau dB below the mixture (the soft threshold
    keeps it from chasing exact zeros); with ``tau`` = 0 the measurement."""
    est = _masked_energy(estimate, lengths)
    mix = _masked_energy(mixture, lengths).clamp_min(1e-8)
    return 10.0 * torch.log10((est / mix + tau).clamp_min(1e-12))


def level_error_db(estimate: torch.Tensor, reference: torch.Tensor, lengths: torch.Tensor | None,
                   eps: float = 1e-8) -> torch.Tensor:
    """|10 log10(||estimate||^2 / ||reference||^2)| (B,) over the valid samples: how far (dB) the
    output's level is from the target's, the part of the error that SI-SDR ignores."""
    est, ref = _masked_energy(estimate, lengths), _masked_energy(reference, lengths)
    return (10.0 * torch.log10((est + eps) / (ref + eps))).abs()


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


ACCEPT_SI_SDRI_DB = 1.0  # WeSep's acceptance rate: an item counts as extracted above this SI-SDRi
SELECT_MARGIN_DB = 1.0  # an estimate "selects" the target when it is this much closer to it than to the interferer
DNSMOS_RATE = 16000
DNSMOS_METRICS = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808")
METRIC_NAMES = ("si_sdr", "si_sdri", "pesq", "estoi", "si_sdr_interferer", "confusion", "selected", "accepted",
                "absent_energy_db", "present_energy_db", *DNSMOS_METRICS, "spk_sim")
DEFAULT_METRICS = ("si_sdr", "si_sdri", "pesq", "estoi")
#: metrics that need no clean reference (they judge the estimate alone, or against the enrollment)
NON_INTRUSIVE = (*DNSMOS_METRICS, "spk_sim")
#: metrics that need the interfering speaker's source
NEEDS_INTERFERER = ("si_sdr_interferer", "confusion", "selected")

_dnsmos_model = None


def load_dnsmos(threads: int | None = None):
    """speechmos's DNSMOS (its ONNX files), loaded once per process; ``threads`` caps onnxruntime's."""
    global _dnsmos_model
    if _dnsmos_model is None:
        import onnxruntime as ort
        from speechmos import dnsmos as package

        models = Path(package.__file__).parent
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1

        def session(path: Path):
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        model = package.DNSMOS.__new__(package.DNSMOS)  # same model and features, our sessions
        model.primary_model_path = str(models / "dnsmos_models" / "sig_bak_ovr.onnx")
        model.onnx_sess = session(models / "dnsmos_models" / "sig_bak_ovr.onnx")
        model.p808_onnx_sess = session(models / "dnsmos_models" / "model_v8.onnx")
        _dnsmos_model = model
    return _dnsmos_model


def dnsmos_scores(estimate: np.ndarray, sample_rate: int) -> dict[str, float]:
    """DNSMOS P.835 (SIG, BAK, OVRL) and P.808 MOS of a 1-D signal, as the ``speechmos`` package
    computes them (resampled to 16 kHz; samples clipped to [-1, 1], which the models require)."""
    from ddtse.audio.io import resample

    wav = resample(np.asarray(estimate, dtype=np.float32), sample_rate, DNSMOS_RATE)
    out = load_dnsmos()(np.clip(wav, -1.0, 1.0), DNSMOS_RATE, False)
    return {"dnsmos_sig": float(out["sig_mos"]), "dnsmos_bak": float(out["bak_mos"]),
            "dnsmos_ovrl": float(out["ovrl_mos"]), "dnsmos_p808": float(out["p808_mos"])}


SILENCE_PEAK = 1e-6  # -120 dBFS: a signal whose peak is below this is silent


def is_silent(wav: np.ndarray) -> bool:
    """Peak below -120 dBFS (or no samples): a silent estimate, or a reference whose target is absent."""
    return wav.size == 0 or float(np.max(np.abs(wav))) < SILENCE_PEAK


def energy_ratio_db(estimate: np.ndarray, mixture: np.ndarray) -> float:
    """10 log10(||estimate||^2 / ||mixture||^2) in dB, floored at -120 dB (absent-target items)."""
    est = float(np.sum(np.square(estimate, dtype=np.float64)))
    mix = max(float(np.sum(np.square(mixture, dtype=np.float64))), 1e-20)
    return 10.0 * math.log10(max(est / mix, 1e-12))


def cosine_similarity(a: np.ndarray, b: np.ndarray, eps: float = EPS) -> float:
    """Cosine of the angle between two embedding vectors (D,), in [-1, 1]."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), eps))


def compute_metrics(reference: np.ndarray | None, estimate: np.ndarray, sample_rate: int,
                    mixture: np.ndarray | None = None, metrics=DEFAULT_METRICS,
                    interferer: np.ndarray | None = None) -> dict[str, float]:
    """The requested metrics for one utterance (1-D arrays, trimmed to the shortest).

    ``interferer`` is the other speaker's source (for ``si_sdr_interferer``, ``confusion`` and
    ``selected``: SI-SDR to the target more than 1 dB above SI-SDR to the interferer);
    ``reference`` may be None when only non-intrusive metrics (DNSMOS) are asked for. Speaker
    similarity needs a model and is computed by the scorer (ddtse.scoring).
    """
    signals = [x for x in (reference, estimate, mixture, interferer) if x is not None]
    n = min(len(x) for x in signals)
    est = estimate[:n]
    ref = reference[:n] if reference is not None else None
    out: dict[str, float] = {}
    wanted = set(metrics)
    if ref is not None and is_silent(ref):  # an absent-target item: only the output energy means anything
        if "absent_energy_db" in wanted and mixture is not None:
            out["absent_energy_db"] = energy_ratio_db(est, mixture[:n])
        if wanted & set(DNSMOS_METRICS):
            out.update({k: v for k, v in dnsmos_scores(estimate, sample_rate).items() if k in wanted})
        return out
    if ref is not None and wanted & {"si_sdr", "si_sdri", "confusion", "selected", "accepted"}:
        out["si_sdr"] = float(si_sdr(est, ref))
    if ref is not None and mixture is not None and wanted & {"si_sdri", "accepted"}:
        out["si_sdri"] = out["si_sdr"] - float(si_sdr(mixture[:n], ref))
    if "accepted" in wanted and "si_sdri" in out:
        out["accepted"] = float(out["si_sdri"] > ACCEPT_SI_SDRI_DB)
    if interferer is not None and wanted & set(NEEDS_INTERFERER):
        out["si_sdr_interferer"] = float(si_sdr(est, interferer[:n]))
    if "confusion" in wanted and "si_sdr" in out and "si_sdr_interferer" in out:
        out["confusion"] = float(out["si_sdr_interferer"] > out["si_sdr"])
    if "selected" in wanted and "si_sdr" in out and "si_sdr_interferer" in out:
        out["selected"] = float(out["si_sdr"] > out["si_sdr_interferer"] + SELECT_MARGIN_DB)
    if "present_energy_db" in wanted and ref is not None and mixture is not None:
        # beside absent_energy_db: a model that is silent on absent items only by being quiet everywhere shows here
        out["present_energy_db"] = energy_ratio_db(est, mixture[:n])
    if "pesq" in wanted and ref is not None:
        out["pesq"] = pesq_score(ref, est, sample_rate)
    if "estoi" in wanted and ref is not None:
        out["estoi"] = estoi_score(ref, est, sample_rate)
    if wanted & set(DNSMOS_METRICS):
        out.update({k: v for k, v in dnsmos_scores(estimate, sample_rate).items() if k in wanted})
    return out
