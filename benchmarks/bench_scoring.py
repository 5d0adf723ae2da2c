#!/usr/bin/env python
"""Scoring throughput of calc_metrics: 1 job against N jobs, now and before the scaling work.

    python benchmarks/bench_scoring.py [--files 100] [--rounds 3] [--jobs 2] [--wait_for_idle 600]

The pairs are the shipped real recordings (tests/assets) with different noise per file. Each
round runs every (code, jobs) case back to back, so all cases see the same machine load; the
table reports medians over the rounds, wall time and CPU time (this process plus its workers).
"before" is ddtse/scoring.py at commit BEFORE (read with git; skipped when git or the commit is
missing). Writes benchmarks/results/bench_scoring.{json,md}.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, write_results  # noqa: E402

from ddtse import scoring  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "tests" / "assets"
BEFORE = "ec573a1"  # the last commit before per-worker set-up, chunked tasks and one BLAS thread


def load_before():
    """The scorer as it was at BEFORE, as a module; None when git cannot show it."""
    try:
        source = subprocess.run(["git", "show", f"{BEFORE}:ddtse/scoring.py"], cwd=REPO, capture_output=True,
                                text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("scoring_before")
    module.__file__ = str(REPO / "ddtse" / "scoring.py")
    sys.modules["scoring_before"] = module  # worker processes unpickle its functions by this name
    exec(compile(source, f"{BEFORE}:ddtse/scoring.py", "exec"), module.__dict__)
    return module


def cpu_seconds() -> float:
    """User + system CPU of this process and of its finished children (the pool's workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def idle_fraction(seconds: float = 3.0) -> float:
    """Share of all cores idle over the next ``seconds`` (Linux /proc/stat; NaN elsewhere)."""
    def sample():
        with open("/proc/stat") as f:
            values = [int(x) for x in f.readline().split()[1:]]
        return values[3] + values[4], sum(values[:8])  # idle + iowait, total

    try:
        idle0, total0 = sample()
        time.sleep(seconds)
        idle1, total1 = sample()
    except OSError:
        return float("nan")
    return (idle1 - idle0) / max(1, total1 - total0)


def wait_for_idle(seconds: float, threshold: float) -> float:
    """Wait up to ``seconds`` until at least ``threshold`` of the cores are idle; returns the last share."""
    deadline = time.time() + seconds
    idle = idle_fraction()
    while not idle >= threshold and time.time() < deadline:
        idle = idle_fraction()
    return idle


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="the parallel case (default: all cores)")
    p.add_argument("--metrics", default="si_sdr,pesq,estoi")
    p.add_argument("--wait_for_idle", type=float, default=0.0,
                   help="before each round, wait up to this many seconds for --idle_threshold of the cores to be idle")
    p.add_argument("--idle_threshold", type=float, default=0.9)
    p.add_argument("--no_before", action="store_true", help="skip the code at commit BEFORE")
    p.add_argument("--out_dir", default=None)
    args = p.parse_args()
    metrics = args.metrics.split(",")
    codes = {"now": scoring}
    before = None if args.no_before else load_before()
    if before is not None:
        codes["before"] = before
    clips = [sf.read(ASSETS / n, dtype="float32")[0] for n in
             ("pesq_speech.wav", "arctic_a0007_male.wav", "arctic_a0009_female.wav")]
    rng = np.random.default_rng(0)
    runs = []
    load_start = uptime()
    with tempfile.TemporaryDirectory() as tmp:
        gt, enh = Path(tmp, "gt"), Path(tmp, "enh")
        gt.mkdir(), enh.mkdir()
        for i in range(args.files):
            ref = clips[i % 3]
            sf.write(gt / f"u{i:03d}.wav", ref, 16000)
            sf.write(enh / f"u{i:03d}.wav", ref + 10 ** (-i % 20 / 20) * 0.05 * rng.standard_normal(len(ref)), 16000)
        items = {name: code.pair_folders(gt, enh)[0] for name, code in codes.items()}
        for name, code in codes.items():  # warm-up: imports and file cache, not timed
            code.score_items(items[name][:3], None, jobs=1, metrics=metrics, progress=False)
        round_idle = []
        for r in range(args.rounds):
            round_idle.append(wait_for_idle(args.wait_for_idle, args.idle_threshold) if args.wait_for_idle
                              else idle_fraction())
            print(f"round {r}: {100 * round_idle[-1]:.0f}% of the cores idle before it", flush=True)
            for name, code in codes.items():
                for jobs in (1, args.jobs):
                    cpu, start = cpu_seconds(), time.perf_counter()
                    code.score_items(items[name], None, jobs=jobs, metrics=metrics, progress=False)
                    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
                    runs.append({"code": name, "round": r, "jobs": jobs, "seconds": wall, "cpu_seconds": cpu,
                                 "load_1min": os.getloadavg()[0]})
                    print(runs[-1], flush=True)
    load_end = uptime()
    rows, speedups = [], {}
    for name in codes:
        for jobs in (1, args.jobs):
            mine = [x for x in runs if x["code"] == name and x["jobs"] == jobs]
            wall = statistics.median(x["seconds"] for x in mine)
            cpu = statistics.median(x["cpu_seconds"] for x in mine)
            rows.append({"code": name, "jobs": jobs, "seconds": wall, "files_per_s": args.files / wall,
                         "cpu_ms_per_file": 1000 * cpu / args.files, "cores_busy": cpu / wall})
        per_round = [a["seconds"] / b["seconds"] for a, b in zip(
            [x for x in runs if x["code"] == name and x["jobs"] == 1],
            [x for x in runs if x["code"] == name and x["jobs"] == args.jobs])]
        one, many = [x for x in rows if x["code"] == name]
        speedups[name] = {"median": one["seconds"] / many["seconds"], "per_round": per_round}
    md = [f"### calc_metrics throughput ({args.files} files of 3.1-4.0 s, {', '.join(metrics)}; "
          f"{args.rounds} interleaved rounds, medians)", "",
          "| code | jobs | seconds | files/s | CPU ms per file | cores busy |", "|---|---|---|---|---|---|"]
    md += [f"| {r['code']} | {r['jobs']} | {r['seconds']:.2f} | {r['files_per_s']:.1f} | {r['cpu_ms_per_file']:.0f} "
           f"| {r['cores_busy']:.2f} |" for r in rows]
    md += [""] + [f"Speed-up of {args.jobs} jobs over 1, {name}: **{s['median']:.2f}x** (per round: "
                  f"{', '.join(f'{x:.2f}' for x in s['per_round'])})." for name, s in speedups.items()]
    md += ["", f"Load at the start: `{load_start}`; at the end: `{load_end}`. Cores idle just before each round "
           f"(other sessions' work): {', '.join(f'{100 * x:.0f}%' for x in round_idle)}"
           + (f" (each round waited up to {args.wait_for_idle:.0f} s for {100 * args.idle_threshold:.0f}%)."
              if args.wait_for_idle else ".")]
    if "before" in codes:
        md += ["", f"\"before\" is ddtse/scoring.py at commit {BEFORE}: one task per item in pool.map, "
               "each worker importing PESQ/pystoi on its first item, and numpy's BLAS at its default thread "
               "count in every process (OpenBLAS threads spin-wait, so two workers on two cores "
               "oversubscribe them). \"now\": a pool initializer (one BLAS/OpenMP/torch thread per worker, "
               "metric packages and models loaded once per worker), a few chunks of items per worker, "
               "one progress update per chunk, and one BLAS thread in the single-process case too."]
    md += ["", "\"cores busy\" = CPU seconds / wall seconds. On a machine shared with other work "
           "(Linux autogroup scheduling shares the CPUs between sessions, not processes), the parallel "
           "case cannot get more than this session's share, which caps the wall-clock speed-up; the "
           "CPU ms per file show whether the parallel case does extra work."]
    write_results("bench_scoring", {"files": args.files, "metrics": metrics, "rounds": args.rounds,
                                    "rows": rows, "runs": runs, "speedup": speedups["now"]["median"],
                                    "speedups": speedups, "load_start": load_start, "load_end": load_end,
                                    "idle_before_rounds": round_idle,
                                    "before_commit": BEFORE if "before" in codes else None,
                                    "environment": environment()}, "\n".join(md), args.out_dir)


if __name__ == "__main__":
    main()
