#!/usr/bin/env python
"""Why one demo split scores lower than another: scores per held-out voice, and by pitch clash.

Each held-out speaker's F0 is the median over the voiced frames of up to ``--utterances`` of its
clean sources (normalised autocorrelation, 40 ms frames, 60-400 Hz, voiced where the peak is
above 0.4). A mixture's two talkers *clash* when their F0 ratio lies within ``--tolerance``
(default 10 %) of unison or of an octave: their harmonics then share frequency bins, and the
espeak voices hold their pitch nearly flat, so a mask cannot tell them apart by pitch.
Given scorer outputs (``--scores NAME=per_utt.csv ...``, item ids ``s1/<utt1>_<utt2>``), it gives
each system's SI-SDRi and selection rate per target voice, and for clashing and clear pairs. With
8 voices per split and 5 items per voice as target, one hard voice moves a split's mean by a dB.

    python benchmarks/demo_corpus_voices.py --demo_exp exp/demo_default     # after bash recipes/demo/run.sh
    python benchmarks/demo_corpus_voices.py --scores NAME=per_utt.csv ...    # any scorer outputs

With ``--demo_exp`` it reads the demo's test scores of the front-end and of DDTSE stage 2 (K=3) and
scores the same checkpoints on the first ``--items`` dev items as the recipe scores test
(``infer.py`` and ``calc_metrics.py`` into ``<demo_exp>/scores/dev/``, skipped when present).

Writes benchmarks/results/demo_corpus_voices.{json,md}.
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from ddtse.cli import run_cli
from ddtse.data.base import speaker_of
from ddtse.data.librimix import librimix_split_paths
from ddtse.errors import DdtseError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HELD_OUT = ("dev", "test")
#: demo systems scored per split: name -> (checkpoint folder, infer.py options), as the recipe runs them
DEMO_SYSTEMS = {"frontend": ("frontend", []), "ddtse_stage2": ("ddtse_stage2", ["--K", "3"])}
METRICS = "si_sdr,si_sdri,si_sdr_interferer,selected,confusion,accepted"


def median_f0(wav: np.ndarray, sr: int, f_min: float = 60.0, f_max: float = 400.0) -> list[float]:
    """F0 (Hz) of each voiced 40 ms frame (10 ms hop) of ``wav``, by normalised autocorrelation."""
    frame, hop = int(0.04 * sr), int(0.01 * sr)
    wav = wav / (np.abs(wav).max() + 1e-9)
    lo, hi = int(sr / f_max), int(sr / f_min)
    window = np.hanning(frame)
    f0 = []
    for start in range(0, len(wav) - frame, hop):
        x = wav[start:start + frame] * window
        if np.sqrt(np.mean(x ** 2)) < 0.01:
            continue
        ac = np.correlate(x, x, "full")[frame - 1:]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.4 * ac[0]:
            f0.append(sr / lag)
    return f0


def clash(f0_a: float, f0_b: float, tolerance: float) -> bool:
    """Whether two F0s are within ``tolerance`` (relative) of unison or an octave."""
    ratio = max(f0_a, f0_b) / min(f0_a, f0_b)
    return min(abs(ratio - 1.0), abs(ratio - 2.0) / 2.0) < tolerance


def speaker_pitch(root: Path, utterances: int) -> dict[str, dict]:
    """{speaker: {split, sex, voice, f0}} of the held-out speakers."""
    info = {r["speaker_ID"]: r for r in csv.DictReader(open(root / "speakers.csv"))} \
        if (root / "speakers.csv").is_file() else {}
    frames: dict[str, list[float]] = {}
    split_of = {}
    for split in HELD_OUT:
        seen: dict[str, int] = {}
        for record in librimix_split_paths(root / "wav16k" / "min" / split, "mix_clean"):
            for utt, path in zip(record.utterances, record.source_paths):
                spk = speaker_of(utt)
                if seen.get(spk, 0) >= utterances:
                    continue
                seen[spk] = seen.get(spk, 0) + 1
                wav, sr = sf.read(path, dtype="float32", always_2d=True)
                frames.setdefault(spk, []).extend(median_f0(wav[:, 0], sr))  # first channel
                split_of[spk] = split
    out = {}
    for spk, f0 in sorted(frames.items()):
        row = info.get(spk, {})
        out[spk] = {"split": split_of[spk], "sex": row.get("sex", "?"),
                    "voice": f"{row.get('variant', '?')} pitch {row.get('pitch', '?')}",
                    "f0_hz": round(float(np.median(f0)), 1) if f0 else None}
    return out


def _summary(values: list[tuple[float, float]]) -> dict:
    return {"items": len(values),
            "si_sdri": round(float(np.mean([x for x, _ in values])), 2) if values else None,
            "selected_pct": round(100 * float(np.nanmean([s for _, s in values])), 1) if values else None}


def split_scores(path: Path, pitch: dict, tolerance: float) -> dict:
    """SI-SDRi and selection of a per_utt.csv: per target voice, and for clashing and clear pairs."""
    groups: dict[str, list[tuple[float, float]]] = {"clash": [], "clear": []}
    voices: dict[str, list[tuple[float, float]]] = {}
    rows = list(csv.DictReader(open(path)))
    missing = {"id", "si_sdri"} - set(rows[0] if rows else {})
    if missing:
        raise DdtseError(f"{path}: no {', '.join(sorted(missing))} column(s) (a per_utt.csv of calc_metrics.py)")
    for row in rows:
        source, _, pair = row["id"].partition("/")
        utts = pair.split("_")
        if source not in ("s1", "s2") or len(utts) != 2:
            raise DdtseError(f"{path}: item id {row['id']!r} is not s1/<utt1>_<utt2> or s2/... (a Libri2Mix 2-speaker split)")
        target, other = (utts[0], utts[1]) if source == "s1" else (utts[1], utts[0])
        a, b = pitch.get(speaker_of(target), {}).get("f0_hz"), pitch.get(speaker_of(other), {}).get("f0_hz")
        if a is None or b is None:
            continue
        selected = float(row["selected"]) if row.get("selected") not in (None, "") else float("nan")
        groups["clash" if clash(a, b, tolerance) else "clear"].append((float(row["si_sdri"]), selected))
        voices.setdefault(speaker_of(target), []).append((float(row["si_sdri"]), selected))
    out = {name: _summary(v) for name, v in groups.items()}
    out["all"] = _summary(groups["clash"] + groups["clear"])
    out["by_target"] = {spk: _summary(v) for spk, v in sorted(voices.items())}
    means = [v["si_sdri"] for v in out["by_target"].values()]
    # the spread of the per-voice means: a split's mean over V voices moves by about std / sqrt(V)
    out["voice_std_db"] = round(float(np.std(means, ddof=1)), 2) if len(means) > 1 else None
    out["voices"] = len(means)
    return out


def demo_scores(demo_exp: Path, root: Path, items: int) -> dict[str, Path]:
    """{"<system>-<split>": per_utt.csv} of the demo's systems on dev and test (dev scored if missing)."""
    out = {}
    for system, (folder, options) in DEMO_SYSTEMS.items():
        for split in HELD_OUT:
            scores = demo_exp / "scores" / split / system
            if not (scores / "per_utt.csv").is_file():
                ckpt = demo_exp / folder / "checkpoints" / "last.ckpt"
                if not ckpt.is_file():
                    raise DdtseError(f"{ckpt} not found: run bash recipes/demo/run.sh first")
                audio = demo_exp / "extracted" / split / system
                split_dir = root / "wav16k" / "min" / split
                subprocess.run([sys.executable, str(REPO / "infer.py"), "--ckpt", str(ckpt), *options,
                                "--split", str(split_dir), "--mixture_type", "mix_both",
                                "--enrollment_map", str(demo_exp / "data" / split / "map_mixture2enrollment"),
                                "--out_dir", str(audio), "--overwrite", "--seed", "100", "--device", "cpu",
                                "--limit", str(items)], check=True)
                subprocess.run([sys.executable, str(REPO / "calc_metrics.py"), "--split", str(split_dir),
                                "--mixture_type", "mix_both", "--out_dir", str(scores), "--overwrite",
                                "--allow_missing", "--title", system, "--metrics", METRICS,
                                "--enhanced_dir", str(audio)], check=True)
            out[f"{system}-{split}"] = scores / "per_utt.csv"
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data/demo_corpus/Libri2Mix")
    parser.add_argument("--utterances", type=int, default=10, help="clean utterances per speaker")
    parser.add_argument("--tolerance", type=float, default=0.10, help="relative distance to unison/octave")
    parser.add_argument("--scores", nargs="*", default=[], help="NAME=per_utt.csv of the scorer")
    parser.add_argument("--demo_exp", default=None, help="a finished demo run (exp/demo_default): its systems' scores")
    parser.add_argument("--items", type=int, default=40, help="dev items to score with --demo_exp")
    args = parser.parse_args(argv)
    given = {}
    for spec in args.scores:  # checked before the slow F0 pass
        name, _, path = spec.partition("=")
        if not path or not Path(path).is_file():
            raise DdtseError(f"--scores takes NAME=per_utt.csv; not a file: {spec!r}")
        given[name] = Path(path)
    if args.demo_exp:  # scores dev first when it is missing
        given = {**demo_scores(Path(args.demo_exp), Path(args.root), args.items), **given}
    pitch = speaker_pitch(Path(args.root), args.utterances)
    scores = {name: split_scores(path, pitch, args.tolerance) for name, path in given.items()}
    pairs = {}
    for split in HELD_OUT:
        spks = [s for s, v in pitch.items() if v["split"] == split and v["f0_hz"]]
        n = [clash(pitch[a]["f0_hz"], pitch[b]["f0_hz"], args.tolerance) for i, a in enumerate(spks) for b in spks[i + 1:]]
        pairs[split] = {"speaker_pairs": len(n), "clashing": int(sum(n))}
    result = {"root": args.root, "tolerance": args.tolerance, "speakers": pitch, "pairs": pairs, "scores": scores}
    names = list(scores)
    lines = ["# Demo corpus: the held-out voices", "",
             "`" + " ".join(["python", "benchmarks/demo_corpus_voices.py", *(sys.argv[1:] if argv is None else argv)]) + "`", ""]
    if scores:
        lines += ["| scores | items | SI-SDRi (dB) | selected (%) | voices | std of the per-voice SI-SDRi (dB) |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {n} | {s['all']['items']} | {s['all']['si_sdri']:+.2f} | {s['all']['selected_pct']:.1f} | "
                  f"{s['voices']} | {s['voice_std_db']} |" for n, s in scores.items()]
        lines.append("")
    lines += ["SI-SDRi (dB) / selected (%) (items) of the items whose target is the voice:", "",
              "| split | speaker | sex | espeak voice | F0 (Hz) |" + "".join(f" {n} |" for n in names),
              "|---|---|---|---|---|" + "---|" * len(names)]
    for spk, v in sorted(pitch.items(), key=lambda kv: (kv[1]["split"], kv[1]["sex"], kv[1]["f0_hz"] or 0)):
        cells = []
        for n in names:
            c = scores[n]["by_target"].get(spk)
            cells.append(f" {c['si_sdri']:+.2f} / {c['selected_pct']:.0f} ({c['items']}) |" if c else " – |")
        lines.append(f"| {v['split']} | {spk} | {v['sex']} | {v['voice']} | {v['f0_hz']} |" + "".join(cells))
    lines += ["", f"Speaker pairs whose F0 ratio is within {args.tolerance:.0%} of unison or an octave: "
              + ", ".join(f"{k} {v['clashing']} of {v['speaker_pairs']}" for k, v in pairs.items()) + "."]
    if scores:
        lines += ["", "| scores | clashing pairs: items | SI-SDRi (dB) | selected (%) | clear pairs: items | SI-SDRi (dB) | selected (%) |",
                  "|---|---|---|---|---|---|---|"]
        for name, s in scores.items():
            c, k = s["clash"], s["clear"]
            lines.append(f"| {name} | {c['items']} | {c['si_sdri']} | {c['selected_pct']} | {k['items']} | {k['si_sdri']} | {k['selected_pct']} |")
    write_results("demo_corpus_voices", result, "\n".join(lines))


if __name__ == "__main__":
    sys.exit(run_cli(main))
