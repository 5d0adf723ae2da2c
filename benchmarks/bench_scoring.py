#!/usr/bin/env python
"""Scoring throughput of calc_metrics: one job against all cores, on 60 real-speech pairs.

    python benchmarks/bench_scoring.py [--files 60]

The pairs are the shipped real recordings (tests/assets) with different noise per file. Writes
benchmarks/results/bench_scoring.{json,md}.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, write_results  # noqa: E402

from ddtse.scoring import pair_folders, score_items  # noqa: E402

ASSETS = Path(__file__).resolve().parents[1] / "tests" / "assets"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=60)
    p.add_argument("--out_dir", default=None)
    args = p.parse_args()
    clips = [sf.read(ASSETS / n, dtype="float32")[0] for n in
             ("pesq_speech.wav", "arctic_a0007_male.wav", "arctic_a0009_female.wav")]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        gt, enh = Path(tmp, "gt"), Path(tmp, "enh")
        gt.mkdir(), enh.mkdir()
        for i in range(args.files):
            ref = clips[i % 3]
            sf.write(gt / f"u{i:03d}.wav", ref, 16000)
            sf.write(enh / f"u{i:03d}.wav", ref + 10 ** (-i % 20 / 20) * 0.05 * rng.standard_normal(len(ref)), 16000)
        items, _ = pair_folders(gt, enh)
        rows = []
        for jobs in (1, os.cpu_count() or 1):
            start = time.perf_counter()
            score_items(items, None, jobs=jobs, progress=False)
            seconds = time.perf_counter() - start
            rows.append({"jobs": jobs, "seconds": seconds, "files_per_s": args.files / seconds})
            print(rows[-1], flush=True)
    speedup = rows[0]["seconds"] / rows[-1]["seconds"]
    md = [f"### calc_metrics throughput ({args.files} files, ~3.4 s each, SI-SDR + PESQ + ESTOI)", "",
          "| jobs | seconds | files/s |", "|---|---|---|"]
    md += [f"| {r['jobs']} | {r['seconds']:.2f} | {r['files_per_s']:.1f} |" for r in rows]
    md += ["", f"Speed-up with {rows[-1]['jobs']} jobs: **{speedup:.2f}x**."]
    write_results("bench_scoring", {"files": args.files, "rows": rows, "speedup": speedup,
                                    "environment": environment()}, "\n".join(md), args.out_dir)


if __name__ == "__main__":
    main()
