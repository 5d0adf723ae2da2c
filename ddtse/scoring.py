"""Score extracted audio against references: folders or Libri2Mix splits, in parallel.

Writes ``per_utt.csv``, ``summary.json`` and ``summary.md`` (mean, std, 95% CI, count per metric,
optional per-group means) and returns the summary.
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

from ddtse.audio.io import audio_info, find_audio_files, load_audio
from ddtse.errors import DdtseError
from ddtse.metrics import METRIC_NAMES, compute_metrics, pesq_mode


@dataclass
class ScoreItem:
    """One utterance to score: id (relative path without extension) and its files."""

    id: str
    reference: Path
    estimate: Path
    mixture: Path | None = None
    group: str | None = None


@dataclass
class ScoreReport:
    rows: list[dict]
    summary: dict
    missing: list[str] = field(default_factory=list)


# -- pairing --------------------------------------------------------------------------------
def _index(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).with_suffix("").as_posix(): p for p in find_audio_files(root)}


def _require_dir(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise DdtseError(f"{what} directory not found: {path}")
    return path


def pair_folders(gt_dir, enhanced_dir, mix_dir=None) -> tuple[list[ScoreItem], list[str]]:
    """Match files by relative path (then by unique file name) under the three folders.

    Returns (items, missing ids): a reference with no estimate is missing.
    """
    gt_dir, enhanced_dir = _require_dir(gt_dir, "reference"), _require_dir(enhanced_dir, "enhanced")
    refs, ests = _index(gt_dir), _index(enhanced_dir)
    if not refs:
        raise DdtseError(f"no audio files (.wav/.flac/.ogg) under the reference directory {gt_dir}")
    if not ests:
        raise DdtseError(f"no audio files (.wav/.flac/.ogg) under the enhanced directory {enhanced_dir}")
    mixes = _index(_require_dir(mix_dir, "mixture")) if mix_dir else {}
    est_by_name = _unique_by_name(ests)
    mix_by_name = _unique_by_name(mixes)
    items, missing = [], []
    for key, ref in refs.items():
        est = ests.get(key) or est_by_name.get(Path(key).name)
        if est is None:
            missing.append(key)
            continue
        mix = (mixes.get(key) or mix_by_name.get(Path(key).name)) if mix_dir else None
        if mix_dir and mix is None:
            raise DdtseError(f"no mixture for '{key}' under {mix_dir}")
        items.append(ScoreItem(key, ref, est, mix))
    if not items:
        raise DdtseError(f"no file under {enhanced_dir} matches a reference under {gt_dir} by name")
    return items, missing


def _unique_by_name(index: dict[str, Path]) -> dict[str, Path]:
    counts: dict[str, int] = {}
    for key in index:
        counts[Path(key).name] = counts.get(Path(key).name, 0) + 1
    return {Path(k).name: p for k, p in index.items() if counts[Path(k).name] == 1}


def pair_librimix(split_dir, enhanced_dir, mixture_type: str = "mix_both",
                  score_mixture: bool = False) -> tuple[list[ScoreItem], list[str]]:
    """Items of a Libri2Mix split: estimates at ``<enhanced>/s<k>/<mixture_ID>.wav``, references at
    ``<split>/s<k>/``, mixtures at ``<split>/<mixture_type>/``; the groups (FF/MM/FM) come from the
    tree's speaker-sex info CSV when there is one. ``score_mixture`` scores the mixture itself as the
    estimate (the baseline row), on the items present in ``enhanced_dir`` when one is given."""
    split_dir = _require_dir(split_dir, "Libri2Mix split")
    enhanced_dir = _require_dir(enhanced_dir, "enhanced") if enhanced_dir is not None else None
    mix_root = split_dir / mixture_type
    if not mix_root.is_dir():
        raise DdtseError(f"{split_dir} has no '{mixture_type}' folder; is it a Libri2Mix split (e.g. wav16k/min/test)?")
    groups = librimix_groups(split_dir)
    ests = _index(enhanced_dir) if enhanced_dir is not None else {}
    if enhanced_dir is None and not score_mixture:
        raise DdtseError("give the folder of extracted audio")
    items, missing = [], []
    for k in (1, 2):
        src = split_dir / f"s{k}"
        if not src.is_dir():
            raise DdtseError(f"{split_dir} has no s{k} folder")
        for ref in sorted(src.glob("*.wav")):
            key = f"s{k}/{ref.stem}"
            if score_mixture and (enhanced_dir is None or key in ests):
                est = mix_root / ref.name
            elif score_mixture:
                continue  # not in the subset being compared
            else:
                est = ests.get(key)
            if est is None:
                missing.append(key)
                continue
            items.append(ScoreItem(key, ref, est, mix_root / ref.name, groups.get(ref.stem)))
    if not items:
        raise DdtseError(f"no file under {enhanced_dir} is named like s1/<mixture_ID>.wav for {split_dir}")
    return items, missing


def librimix_groups(split_dir: Path) -> dict[str, str]:
    """mixture_ID -> FF / FM / MM from the tree's speaker-sex info CSV; empty when there is none."""
    from ddtse.data.librimix import find_info_csv, read_groups as read_info_groups

    info = find_info_csv(split_dir)
    return read_info_groups(info) if info else {}


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


def apply_groups(items: list[ScoreItem], groups: dict[str, str]) -> None:
    """Set each item's group by its id, its file name, or (Libri2Mix) its mixture ID."""
    for item in items:
        for key in (item.id, Path(item.id).name, item.id.split("/")[-1]):
            if key in groups:
                item.group = groups[key]
                break


# -- scoring --------------------------------------------------------------------------------
def _load_first_channel(path: Path, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """(first channel of ``path`` at ``sample_rate`` (default: its own), the file's own rate)."""
    info = audio_info(path)
    wav = load_audio(path, sample_rate, channel=0 if info.channels > 1 else None)
    return wav, info.sample_rate


def _pesq_mode_label(rates) -> str:
    """How PESQ ran for these reference rates, e.g. ``WB@16k`` or ``NB@8k/WB@16k``."""
    return "/".join(sorted({f"{pesq_mode(sr)[1].upper()}@{pesq_mode(sr)[0] // 1000}k" for sr in rates}))


def _score_one(args) -> dict:
    item, metrics = args
    ref, sr = _load_first_channel(item.reference)
    est, est_rate = _load_first_channel(item.estimate, sr)
    mix = _load_first_channel(item.mixture, sr)[0] if item.mixture is not None else None
    lengths = {len(ref), len(est)} | ({len(mix)} if mix is not None else set())
    row = {"id": item.id}
    if item.group is not None:
        row["group"] = item.group
    row.update(compute_metrics(ref, est, sr, mix, metrics))
    row["_trimmed"] = len(lengths) > 1
    row["_resampled"] = est_rate != sr
    row["_rate"] = sr
    return row


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
             ("n_trimmed", "length mismatch(es) trimmed to the shorter"),
             ("n_resampled", "estimate(s) resampled to the reference rate")) if summary.get(k)]
    if notes:
        lines += ["", "Notes: " + "; ".join(notes) + "."]
    return "\n".join(lines) + "\n"


def _label(metric: str, summary: dict) -> str:
    if metric == "pesq" and summary.get("pesq_mode"):
        return f"PESQ ({summary['pesq_mode']})"
    return {"si_sdr": "SI-SDR (dB)", "si_sdri": "SI-SDRi (dB)", "estoi": "ESTOI"}.get(metric, metric)


def score_items(items: list[ScoreItem], out_dir: str | Path | None = None, *, jobs: int | None = None,
                metrics=METRIC_NAMES, missing: list[str] = (), overwrite: bool = True,
                progress: bool = True, title: str | None = None) -> ScoreReport:
    """Score ``items`` with ``jobs`` processes (default: all cores); write the files to ``out_dir``."""
    if not items:
        raise DdtseError("nothing to score")
    metrics = [m for m in metrics if m != "si_sdri" or any(i.mixture for i in items)]
    if out_dir is not None:
        out_dir = Path(out_dir)
        existing = [out_dir / n for n in ("per_utt.csv", "summary.json", "summary.md") if (out_dir / n).exists()]
        if existing and not overwrite:
            raise DdtseError(f"scores exist in {out_dir}; pass --overwrite to replace them")
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(items)))
    tasks = [(item, metrics) for item in items]
    bar = dict(total=len(tasks), desc="scoring", unit="utt", disable=not progress)
    if jobs == 1:
        rows = [_score_one(t) for t in tqdm(tasks, **bar)]
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            rows = list(tqdm(pool.map(_score_one, tasks, chunksize=max(1, len(tasks) // (jobs * 8))), **bar))
    rows.sort(key=lambda r: r["id"])
    rates = sorted({r["_rate"] for r in rows})
    summary = summarise(rows, metrics)
    summary.update({
        "n_items": len(rows), "n_missing": len(missing), "missing": list(missing),
        "n_trimmed": sum(r["_trimmed"] for r in rows), "n_resampled": sum(r["_resampled"] for r in rows),
        "sample_rates": rates,
    })
    if "pesq" in metrics:
        summary["pesq_mode"] = _pesq_mode_label(rates)
    if summary["n_resampled"]:
        warnings.warn(f"{summary['n_resampled']} estimate(s) at another sample rate were resampled")
    clean_rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    if out_dir is not None:
        write_report(out_dir, clean_rows, summary, metrics, title)
    return ScoreReport(clean_rows, summary, list(missing))


def write_report(out_dir: Path, rows: list[dict], summary: dict, metrics, title=None) -> None:
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
                  metrics=METRIC_NAMES, progress: bool = True, title: str | None = None, **opts) -> ScoreReport:
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
