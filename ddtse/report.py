"""Results tables (RESULTS.md) and spectrogram PNGs for experiments."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ddtse.errors import DdtseError


def _fmt(value, digits=2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _percent(value) -> str:
    """A rate in [0, 1] as a percentage with one decimal, or '–'."""
    return _fmt(None if value is None else 100.0 * value, 1)


#: columns shown only when some row has them: metric -> (header, digits)
OPTIONAL_COLUMNS = {"dnsmos_ovrl": ("DNSMOS OVRL", 2), "absent_energy_db": ("energy re mixture, target absent (dB)", 1)}


def results_table(rows: list[dict]) -> str:
    """Markdown table; each row: system, scores (summary.json dict), inference (inference.json dict), note.

    ``selected (%)``: items whose SI-SDR to the target exceeds that to the interferer by 1 dB;
    ``confusion (%)``: items whose estimate is closer (SI-SDR) to the interfering speaker;
    ``accepted (%)``: items with SI-SDRi > 1 dB (WeSep's acceptance rate). DNSMOS OVRL and the
    absent-target energy get a column when some row has them."""
    extra = [m for m in OPTIONAL_COLUMNS if any(m in (r.get("scores") or {}) for r in rows)]
    lines = ["| system | SI-SDR (dB) | SI-SDRi (dB) | PESQ | ESTOI | " + "".join(f"{OPTIONAL_COLUMNS[m][0]} | " for m in extra)
             + "NFE | RTF | selected (%) | confusion (%) | accepted (%) | items | note |",
             "|---|---|---|---|---|" + "---|" * len(extra) + "---|---|---|---|---|---|---|"]
    for row in rows:
        s, inf = row.get("scores") or {}, row.get("inference") or {}
        mean = lambda m: (s.get(m) or {}).get("mean")  # noqa: E731
        lines.append(
            f"| {row['system']} | {_fmt(mean('si_sdr'))} | {_fmt(mean('si_sdri'))} | {_fmt(mean('pesq'))} "
            f"| {_fmt(mean('estoi'), 3)} | " + "".join(f"{_fmt(mean(m), OPTIONAL_COLUMNS[m][1])} | " for m in extra)
            + f"{inf.get('nfe_per_item', '–') if inf else '–'} "
            f"| {_fmt(inf.get('rtf'), 3) if inf else '–'} | {_percent(mean('selected'))} "
            f"| {_percent(mean('confusion'))} "
            f"| {_percent(mean('accepted'))} | {s.get('n_items', '–')} | {row.get('note', '')} |"
        )
    return "\n".join(lines) + "\n"


def load_row(system: str, scores_dir: str | Path, inference_dir: str | Path | None = None, note: str = "") -> dict:
    """Read ``summary.json`` (and ``inference.json``) of one system; missing files give an empty row."""
    scores_path = Path(scores_dir) / "summary.json"
    scores = json.loads(scores_path.read_text()) if scores_path.exists() else None
    inference = None
    if inference_dir is not None and (Path(inference_dir) / "inference.json").exists():
        inference = json.loads((Path(inference_dir) / "inference.json").read_text())
        inference["nfe_per_item"] = int(round(inference["nfe_per_item"]))
    if scores is None:
        note = (note + "; " if note else "") + "not run"
    return {"system": system, "scores": scores, "inference": inference, "note": note}


def plot_spectrograms(path: str | Path, signals: dict[str, np.ndarray], sample_rate: int, title: str = "") -> Path:
    """One PNG with a log-magnitude spectrogram per signal (e.g. mixture, enrollment, estimate, reference)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not signals:
        raise DdtseError("nothing to plot")
    n_fft = 512 if sample_rate <= 16000 else 2048
    fig, axes = plt.subplots(len(signals), 1, figsize=(8, 1.9 * len(signals)), squeeze=False)
    for ax, (name, wav) in zip(axes[:, 0], signals.items()):
        wav = np.asarray(wav, dtype=np.float32)
        hop = n_fft // 4
        frames = max(1, 1 + (len(wav) - n_fft) // hop)
        window = np.hanning(n_fft)
        spec = np.stack([np.abs(np.fft.rfft(window * np.pad(wav, (0, n_fft))[i * hop : i * hop + n_fft]))
                         for i in range(frames)], axis=1)
        db = 20 * np.log10(spec + 1e-6)
        ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=db.max() - 80, vmax=db.max(),
                  extent=(0, len(wav) / sample_rate, 0, sample_rate / 2000))
        ax.set_ylabel(f"{name}\nkHz", fontsize=8)
    axes[-1, 0].set_xlabel("time (s)")
    if title:
        axes[0, 0].set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


LEARNING_CURVE_KEYS = (("val/si_sdri", "validation SI-SDRi (dB)"), ("val/selection", "validation selection rate"))


def plot_learning_curves(path: str | Path, runs: dict[str, str | Path]) -> Path | None:
    """One PNG: validation SI-SDRi and selection rate against training step, a line per system.

    ``runs`` maps a label to an experiment folder holding ``training_curves.json`` (written by
    train.py); runs without one, or without the keys, are skipped. Returns None if nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {}
    for label, exp_dir in runs.items():
        try:
            data = json.loads((Path(exp_dir) / "training_curves.json").read_text())
        except (OSError, ValueError):
            continue
        steps = {int(e): float(s) for e, s in data.get("global_step", [])}
        curves[label] = {key: [(steps.get(int(e), float(e)), float(v)) for e, v in data.get(key, [])]
                         for key, _ in LEARNING_CURVE_KEYS}
    if not any(pts for c in curves.values() for pts in c.values()):
        return None
    fig, axes = plt.subplots(len(LEARNING_CURVE_KEYS), 1, figsize=(7, 2.6 * len(LEARNING_CURVE_KEYS)), squeeze=False)
    for ax, (key, ylabel) in zip(axes[:, 0], LEARNING_CURVE_KEYS):
        for label, c in curves.items():
            if c[key]:
                x, y = zip(*c[key])
                ax.plot(x, y, marker=".", label=label)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    axes[-1, 0].set_xlabel("training step (a stage-2 run counts from its own start)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
    return path
