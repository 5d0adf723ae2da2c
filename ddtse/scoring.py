"""Score extracted audio against references: folders or Libri2Mix splits, in parallel.

Writes ``per_utt.csv``, ``summary.json`` and ``summary.md`` (mean, std, 95% CI, count per metric,
optional per-group means), plus ``failed.txt`` listing the items that could not be scored (an
unreadable, empty, non-finite or silent file, a length mismatch), and returns the summary.
"""
from __future__ import annotations

import csv
import json
import math
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ddtse.audio.io import audio_info, load_audio, resample
from ddtse.data.items import (FolderMatcher, Item, audio_index, items_from_folders, require_dir,
                              unique_by_name)
from ddtse.data.lists import is_rendered, render_item
from ddtse.errors import DdtseError
from ddtse.metrics import (DEFAULT_METRICS, DNSMOS_METRICS, NEEDS_INTERFERER, NON_INTRUSIVE, compute_metrics,
                           cosine_similarity, is_silent, pesq_mode)

LENGTH_TOLERANCE_MS = 10.0  # an estimate this much longer/shorter than its reference is trimmed


@dataclass
class ScoreReport:
    rows: list[dict]
    summary: dict
    missing: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (id, why)


# -- pairing --------------------------------------------------------------------------------
def attach_estimates(items: list[Item], enhanced_dir=None, score_mixture: bool = False) -> tuple[list[Item], list[str]]:
    """Pair items of any source with their estimates by id: ``<enhanced_dir>/<id>.<ext>``, then, when
    the id's file name is unique among both the items and the estimates, by that name.

    Returns (items with ``estimate`` set, in id order; ids without an estimate). ``score_mixture``
    scores each item's mixture itself (the baseline row), on the items present in ``enhanced_dir``
    when one is given. An interferer file that does not exist is dropped (the selection metrics
    then say what is missing)."""
    enhanced_dir = require_dir(enhanced_dir, "enhanced") if enhanced_dir is not None else None
    if enhanced_dir is None and not score_mixture:
        raise DdtseError("give the folder of extracted audio")
    ests = audio_index(enhanced_dir) if enhanced_dir is not None else {}
    if enhanced_dir is not None and not ests:
        raise DdtseError(f"no audio files (.wav/.flac/.ogg) under the enhanced directory {enhanced_dir}")
    est_by_name = unique_by_name(ests)
    item_by_name = unique_by_name({item.id: item for item in items if isinstance(item.id, str) and item.id})
    paired, missing = [], []
    for item in sorted(items, key=lambda i: str(i.id)):
        name = Path(item.id).name if item.id else ""
        found = ests.get(item.id) or (est_by_name.get(name) if name in item_by_name else None)
        if score_mixture:
            if enhanced_dir is not None and found is None:
                continue  # not in the subset being compared
            if item.mixture is None:
                raise DdtseError(f"--score_mixture: item {item.id} has no mixture file")
            found = item.mixture
        if found is None:
            missing.append(item.id)
            continue
        item.estimate = Path(found)
        if item.interferer is not None and not Path(item.interferer).is_file():
            item.interferer = None
        paired.append(item)
    if not paired:
        raise DdtseError(f"no file under {enhanced_dir} is named like an item id (e.g. {items[0].id}.wav)"
                         if items else "the source lists no items")
    return paired, missing


def pair_folders(gt_dir, enhanced_dir, mix_dir=None, interferer_dir=None,
                 enroll_dir=None) -> tuple[list[Item], list[str]]:
    """The ``folders`` source (``items_from_folders``) paired with the estimates under ``enhanced_dir``.

    Returns (items, missing ids): a reference with no estimate is missing. Without ``gt_dir``
    every estimate is an item with no reference (for non-intrusive metrics).
    """
    if gt_dir is None:
        return estimates_only(enhanced_dir, enroll_dir), []
    items = items_from_folders(gt_dir, mix_dir, interferer_dir, enroll_dir)
    try:
        return attach_estimates(items, enhanced_dir)
    except DdtseError as exc:
        if "is named like an item id" in str(exc):
            raise DdtseError(f"no file under {enhanced_dir} matches a reference under {gt_dir} by name") from exc
        raise


def estimates_only(enhanced_dir, enroll_dir=None) -> list[Item]:
    """Every estimate under ``enhanced_dir`` as an item with no reference (non-intrusive metrics), with
    its enrollment from ``enroll_dir`` (matched by relative path or unique name) when given."""
    enhanced_dir = require_dir(enhanced_dir, "enhanced")
    ests = audio_index(enhanced_dir)
    if not ests:
        raise DdtseError(f"no audio files (.wav/.flac/.ogg) under the enhanced directory {enhanced_dir}")
    enroll = FolderMatcher(enroll_dir, "enrollment") if enroll_dir is not None else None
    return [Item(key, estimate=est, enrollment=enroll.find(key) if enroll else None) for key, est in ests.items()]


def pair_librimix(split_dir, enhanced_dir, mixture_type: str = "mix_both", score_mixture: bool = False,
                  enrollments: bool = False, enrollment_map=None) -> tuple[list[Item], list[str]]:
    """The items of a Libri2Mix split (the ``librimix`` source: reference, interferer, mixture,
    FF/MM/FM group, and with ``enrollments`` the enrollment from the split's or the given map)
    paired with their estimates ``<enhanced>/s<k>/<mixture_ID>.wav`` (``attach_estimates``)."""
    from ddtse.data.librimix import items_from_librimix

    return attach_estimates(items_from_librimix(split_dir, mixture_type, enrollment_map, enrollments=enrollments),
                            enhanced_dir, score_mixture)


def read_groups(path: str | Path) -> dict[str, str]:
    """``utterance category`` per line (whitespace or comma separated); '#' comments allowed."""
    path = Path(path)
    if not path.is_file():
        raise DdtseError(f"groups file not found: {path}")
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.replace(",", " ").split()
        if len(parts) < 2:
            raise DdtseError(f"{path}:{n}: expected 'utterance category', got '{line}'")
        out[parts[0]] = parts[1]
    return out


def apply_groups(items: list[Item], groups: dict[str, str]) -> None:
    """Set each item's group by its id, its file name, or (Libri2Mix) its mixture ID."""
    for item in items:
        for key in (item.id, Path(item.id).name, item.id.split("/")[-1]):
            if key in groups:
                item.group = groups[key]
                break


# -- loading ----------------------------------------------------------------------------------
def _load_first_channel(path: Path, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """(first channel of ``path`` at ``sample_rate`` (default: its own), the file's own rate)."""
    info = audio_info(path)
    wav = load_audio(path, sample_rate, channel=0 if info.channels > 1 else None)
    return wav, info.sample_rate


def _pesq_mode_label(rates) -> str:
    """How PESQ ran for these reference rates, e.g. ``WB@16k`` or ``NB@8k/WB@16k``."""
    return "/".join(sorted({f"{pesq_mode(sr)[1].upper()}@{pesq_mode(sr)[0] // 1000}k" for sr in rates}))


# -- speaker similarity ---------------------------------------------------------------------
class SpeakerEmbedder:
    """A trained speaker encoder: ``embed(wav (T,), sample_rate) -> (D,)`` at the encoder's rate."""

    def __init__(self, module, sample_rate: int):
        self.module, self.sample_rate = module.eval(), int(sample_rate)

    def embed(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        import torch

        x = torch.from_numpy(resample(wav, sample_rate, self.sample_rate))[None]
        with torch.inference_mode():
            return self.module(x, torch.tensor([x.shape[-1]]))[0].float().numpy()


def load_speaker_embedder(path: str | Path) -> SpeakerEmbedder:
    """The speaker encoder of a project checkpoint (a speaker_encoder system, or an extractor such as
    DDTSE whose network has a speaker module reading the enrollment), read with weights_only loading."""
    from ddtse.checkpoint import load_speaker_encoder

    module = load_speaker_encoder(path)
    return SpeakerEmbedder(module, module.sample_rate)


# -- scoring --------------------------------------------------------------------------------
_WORKER: dict = {}  # per process: metrics, length tolerance, speaker encoder, enrollment embeddings


def _init_worker(metrics, length_tolerance_ms: float, speaker_ckpt, single_thread: bool) -> None:
    """Set up a scoring process once: one math thread (workers share the cores), the metric
    packages imported and the models (DNSMOS, speaker encoder) loaded before the first item."""
    if single_thread:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = "1"
        import torch

        torch.set_num_threads(1)
        _WORKER["thread_limits"] = _one_blas_thread()
    _WORKER.update(metrics=list(metrics), length_tolerance_ms=float(length_tolerance_ms),
                   speaker=None, enrollments={})
    if "pesq" in metrics:
        import pesq  # noqa: F401
    if "estoi" in metrics:
        import pystoi  # noqa: F401
    if set(metrics) & set(DNSMOS_METRICS):
        from ddtse.metrics import load_dnsmos

        load_dnsmos(threads=1 if single_thread else None)
    if "spk_sim" in metrics:
        _WORKER["speaker"] = load_speaker_embedder(speaker_ckpt)


def _one_blas_thread():
    """Limit numpy's BLAS/OpenMP pools to one thread (threadpoolctl, via librosa's scikit-learn);
    usable as a context manager; a no-op when threadpoolctl is absent."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1)


def _score_chunk(items: list[Item]) -> list[dict]:
    return [_score_item(item) for item in items]


def _score_item(item: Item) -> dict:
    """One row of metrics; a bad item gives a row with ``_error`` (why) instead of stopping the run."""
    row = {"id": item.id}
    if item.group is not None:
        row["group"] = item.group
    try:
        row.update(_measure(item))
    except DdtseError as exc:
        row["_error"] = str(exc)
    except Exception as exc:  # a broken file must not stop the other items
        row["_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return row


def _measure(item: Item) -> dict:
    metrics = _WORKER["metrics"]
    ref = mix = interferer = None
    if is_rendered(item):  # an extraction-list item: scored against its sources as mixed
        mix, ref, interferer, sr = render_item(item)
        est, est_rate = _load_first_channel(item.estimate, sr)
    elif item.reference is not None:
        ref, sr = _load_first_channel(item.reference)
        est, est_rate = _load_first_channel(item.estimate, sr)
    else:
        est, sr = _load_first_channel(item.estimate)
        est_rate = sr
    absent = ref is not None and is_silent(ref)  # target absent: a silent estimate is the right answer
    if not absent and is_silent(est):
        raise DdtseError(f"the estimate {item.estimate} is silent (peak below -120 dBFS)")
    if item.mixture is not None:
        mix = _load_first_channel(item.mixture, sr)[0]
    if interferer is None and item.interferer is not None:
        interferer = _load_first_channel(item.interferer, sr)[0]
    if ref is not None:
        for what, wav in (("estimate", est), ("mixture", mix), ("interferer", interferer)):
            if wav is not None:
                _check_length(what, wav, ref, sr, _WORKER["length_tolerance_ms"])
    signals = [x for x in (ref, est, mix, interferer) if x is not None]
    out = compute_metrics(ref, est, sr, mix, metrics, interferer)
    if "spk_sim" in metrics:
        out["spk_sim"] = _speaker_similarity(est, sr, item.enrollment)
    out.update(_trimmed=len({len(x) for x in signals}) > 1, _resampled=est_rate != sr, _rate=sr)
    return out


def _check_length(what: str, wav: np.ndarray, reference: np.ndarray, sample_rate: int, tolerance_ms: float) -> None:
    """A signal longer or shorter than its reference by more than ``tolerance_ms`` is an error."""
    diff = len(wav) - len(reference)
    if abs(diff) * 1000.0 / sample_rate > tolerance_ms:
        raise DdtseError(f"{what} is {abs(diff)} samples ({abs(diff) * 1000.0 / sample_rate:.1f} ms) "
                         f"{'longer' if diff > 0 else 'shorter'} than its reference; more than the "
                         f"{tolerance_ms:g} ms tolerance (--length_tolerance_ms)")


def _speaker_similarity(estimate: np.ndarray, sample_rate: int, enrollment: Path) -> float:
    """Cosine similarity of the estimate's and the enrollment's speaker embeddings."""
    speaker, cache = _WORKER["speaker"], _WORKER["enrollments"]
    if enrollment not in cache:
        wav, rate = _load_first_channel(enrollment)
        cache[enrollment] = speaker.embed(wav, rate)
    return cosine_similarity(speaker.embed(estimate, sample_rate), cache[enrollment])


def check_request(items: list[Item], metrics, speaker_ckpt=None) -> None:
    """Refuse, in one line, metrics the items cannot give (no reference, interferer, mixture,
    enrollment or speaker checkpoint)."""
    def lacking(attr):  # an extraction-list item's mixture is made from its sources
        return any(getattr(item, attr) is None and not (attr == "mixture" and is_rendered(item)) for item in items)

    intrusive = [m for m in metrics if m not in NON_INTRUSIVE]
    if intrusive and lacking("reference"):
        raise DdtseError(f"{', '.join(intrusive)} need(s) a reference (--gt_dir, a reference column in --list, "
                         f"or --split); without one only "
                         f"{', '.join(NON_INTRUSIVE)} can be scored")
    needs_interferer = [m for m in metrics if m in NEEDS_INTERFERER]
    if needs_interferer and lacking("interferer"):
        raise DdtseError(f"{', '.join(needs_interferer)} need(s) the interfering speaker's source: "
                         "give --interferer_dir (folder mode), an interferer column in --list, or a Libri2Mix "
                         "split with s1/ and s2/")
    if "accepted" in metrics and lacking("mixture"):
        raise DdtseError("accepted (SI-SDRi > 1 dB) needs the mixture: give --mix_dir")
    for energy in ("absent_energy_db", "present_energy_db"):
        if energy in metrics and lacking("mixture"):
            raise DdtseError(f"{energy} (output energy re the mixture) needs the mixture: give --mix_dir")
    if "spk_sim" in metrics:
        if speaker_ckpt is None:
            raise DdtseError("spk_sim needs --speaker_ckpt (a checkpoint whose model has a speaker encoder)")
        if lacking("enrollment"):
            raise DdtseError("spk_sim needs an enrollment per item: --enroll_dir (folder mode), an enrollment "
                             "column in --list, or --enrollment_map (Libri2Mix mode)")


def summarise(rows: list[dict], metrics) -> dict:
    """mean, std, 95% CI half-width, count and NaN count per metric; per-group means."""
    out: dict = {}
    for m in metrics:
        values = np.array([r[m] for r in rows if m in r], dtype=float)
        finite = values[np.isfinite(values)]
        n = len(finite)
        out[m] = {
            "mean": float(finite.mean()) if n else math.nan,
            "std": float(finite.std(ddof=1)) if n > 1 else 0.0 if n == 1 else math.nan,
            "ci95": float(1.96 * finite.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
            "count": n,
            "nan_count": int(len(values) - n),
        }
    groups = sorted({r["group"] for r in rows if r.get("group")})
    if groups:
        out["groups"] = {
            g: {
                **{m: float(np.nanmean([r[m] for r in rows if r.get("group") == g and m in r]))
                   for m in metrics if any(m in r for r in rows)},
                "count": sum(1 for r in rows if r.get("group") == g),
            }
            for g in groups
        }
    return out


def format_markdown(summary: dict, metrics, title: str | None = None) -> str:
    """A Markdown table of the summary (and per-group means when present)."""
    lines = [f"### {title}", ""] if title else []
    lines += ["| metric | mean | std | 95% CI | count | NaN |", "|---|---|---|---|---|---|"]
    for m in metrics:
        s = summary.get(m)
        if not s or s["count"] == 0 and s["nan_count"] == 0:
            continue
        lines.append(f"| {_label(m, summary)} | {s['mean']:.3f} | {s['std']:.3f} | ±{s['ci95']:.3f} "
                     f"| {s['count']} | {s['nan_count']} |")
    if summary.get("groups"):
        present = [m for m in metrics if summary.get(m, {}).get("count")]
        lines += ["", "| group | " + " | ".join(_label(m, summary) for m in present) + " | count |",
                  "|---|" + "---|" * (len(present) + 1)]
        for g, vals in summary["groups"].items():
            lines.append(f"| {g} | " + " | ".join(f"{vals.get(m, math.nan):.3f}" for m in present)
                         + f" | {vals['count']} |")
    notes = [f"{summary[k]} {v}" for k, v in (("n_missing", "missing estimate(s)"),
             ("n_failed", "item(s) that could not be scored (failed.txt)"),
             ("n_trimmed", "length mismatch(es) trimmed to the shorter"),
             ("n_resampled", "estimate(s) resampled to the reference rate")) if summary.get(k)]
    if notes:
        lines += ["", "Notes: " + "; ".join(notes) + "."]
    return "\n".join(lines) + "\n"


def _label(metric: str, summary: dict) -> str:
    if metric == "pesq" and summary.get("pesq_mode"):
        return f"PESQ ({summary['pesq_mode']})"
    return METRIC_LABELS.get(metric, metric)


METRIC_LABELS = {
    "si_sdr": "SI-SDR (dB)", "si_sdri": "SI-SDRi (dB)", "estoi": "ESTOI",
    "si_sdr_interferer": "SI-SDR to interferer (dB)", "confusion": "confusion rate",
    "selected": "selection rate (target > interferer + 1 dB)",
    "absent_energy_db": "output energy re mixture, absent-target items (dB)",
    "present_energy_db": "output energy re mixture, present-target items (dB)",
    "accepted": "acceptance rate (SI-SDRi > 1 dB)", "dnsmos_sig": "DNSMOS SIG", "dnsmos_bak": "DNSMOS BAK",
    "dnsmos_ovrl": "DNSMOS OVRL", "dnsmos_p808": "DNSMOS P.808", "spk_sim": "speaker similarity (cos)",
}


def score_items(items: list[Item], out_dir: str | Path | None = None, *, jobs: int | None = None,
                metrics=DEFAULT_METRICS, missing: list[str] = (), overwrite: bool = True,
                progress: bool = True, title: str | None = None, speaker_ckpt: str | Path | None = None,
                length_tolerance_ms: float = LENGTH_TOLERANCE_MS) -> ScoreReport:
    """Score ``items`` with ``jobs`` processes (default: all cores); write the files to ``out_dir``.

    Items that cannot be scored are left out of the means and listed in ``report.failed`` (and
    ``failed.txt``); the caller decides how to end.
    """
    if not items:
        raise DdtseError("nothing to score")
    metrics = [m for m in metrics if m != "si_sdri" or any(i.mixture or is_rendered(i) for i in items)]
    check_request(items, metrics, speaker_ckpt)
    if "spk_sim" in metrics:
        load_speaker_embedder(speaker_ckpt)  # a bad checkpoint is one error here, not one per item
    if out_dir is not None:
        out_dir = Path(out_dir)
        existing = [out_dir / n for n in ("per_utt.csv", "summary.json", "summary.md", "failed.txt")
                    if (out_dir / n).exists()]
        if existing and not overwrite:
            raise DdtseError(f"scores exist in {out_dir}; pass --overwrite to replace them")
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(items)))
    setup = (metrics, length_tolerance_ms, speaker_ckpt)
    bar = tqdm(total=len(items), desc="scoring", unit="utt", disable=not progress)
    if jobs == 1:
        _init_worker(*setup, single_thread=False)
        rows = []
        with _one_blas_thread():  # numpy's BLAS threads only spin on these small products
            for item in items:
                rows.append(_score_item(item))
                bar.update()
    else:
        # a few chunks per worker: little pickling and scheduling, still balanced at the end
        size = max(1, math.ceil(len(items) / (jobs * 4)))
        chunks = [items[i:i + size] for i in range(0, len(items), size)]
        rows = []
        with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker, initargs=(*setup, True)) as pool:
            for chunk_rows in pool.map(_score_chunk, chunks):
                rows.extend(chunk_rows)
                bar.update(len(chunk_rows))
    bar.close()
    rows.sort(key=lambda r: r["id"])
    failed = [(r["id"], r["_error"]) for r in rows if "_error" in r]
    rows = [r for r in rows if "_error" not in r]
    rates = sorted({r["_rate"] for r in rows})
    summary = summarise(rows, metrics)
    summary.update({
        "n_items": len(rows), "n_missing": len(missing), "missing": list(missing),
        "n_failed": len(failed), "failed": [{"id": i, "error": e} for i, e in failed],
        "n_trimmed": sum(r["_trimmed"] for r in rows), "n_resampled": sum(r["_resampled"] for r in rows),
        "sample_rates": rates, "length_tolerance_ms": float(length_tolerance_ms),
    })
    if "pesq" in metrics:
        summary["pesq_mode"] = _pesq_mode_label(rates)
    if summary["n_resampled"]:
        warnings.warn(f"{summary['n_resampled']} estimate(s) at another sample rate were resampled")
    clean_rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    if out_dir is not None:
        write_report(out_dir, clean_rows, summary, metrics, title, failed)
    return ScoreReport(clean_rows, summary, list(missing), failed)


def write_report(out_dir: Path, rows: list[dict], summary: dict, metrics, title=None, failed=()) -> None:
    """per_utt.csv, summary.json, summary.md and (when some items failed) failed.txt."""
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = ["id"] + (["group"] if any("group" in r for r in rows) else []) + list(metrics)
    tmp = out_dir / ".per_utt.csv.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()})
    tmp.replace(out_dir / "per_utt.csv")
    (out_dir / "summary.json").write_text(json.dumps(_nan_to_none(summary), indent=2))
    (out_dir / "summary.md").write_text(format_markdown(summary, metrics, title))
    failed_path = out_dir / "failed.txt"
    if failed:
        failed_path.write_text("".join(f"{item_id}\t{why}\n" for item_id, why in failed))
    elif failed_path.exists():
        failed_path.unlink()  # from an earlier run


def _nan_to_none(obj):
    """JSON has no NaN: write null instead."""
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def score_dataset(extractor, dataset, out_dir: str | Path | None = None, *, limit: int | None = None,
                  metrics=DEFAULT_METRICS, progress: bool = True, title: str | None = None, **opts) -> ScoreReport:
    """Run ``extractor`` over a dataset's items (e.g. dynamic mixtures that exist only in memory)
    and score each estimate against the item's target; writes the same files as ``score_items``."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    rows = []
    sr = dataset.sample_rate if hasattr(dataset, "sample_rate") else extractor.sample_rate
    for index in tqdm(range(n), desc="evaluating", unit="utt", disable=not progress):
        item = dataset[index]
        if "target" not in item:
            raise DdtseError(f"dataset item {item.get('id', index)} has no target to score against")
        mixture = np.asarray(item["mixture"], dtype=np.float32)
        mixture = mixture[None] if mixture.ndim == 1 else mixture
        estimate, info = extractor.extract(mixture, item.get("enrollment"), sr, **opts)
        row = {"id": item.get("id", str(index))}
        if item.get("group"):
            row["group"] = item["group"]
        row.update(compute_metrics(np.asarray(item["target"], np.float32), estimate, sr, mixture[0], metrics))
        row["nfe"] = info.get("nfe", 1)
        rows.append(row)
    summary = summarise(rows, metrics)
    summary.update({"n_items": len(rows), "n_missing": 0, "sample_rates": [sr]})
    if "pesq" in metrics:
        summary["pesq_mode"] = _pesq_mode_label([sr])
    if out_dir is not None:
        write_report(Path(out_dir), rows, summary, metrics, title)
    return ScoreReport(rows, summary)
