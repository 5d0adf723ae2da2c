"""Peak memory and speed of chunked extraction on long 44.1 kHz inputs (10 s and 60 s by default).

Each length runs in a fresh subprocess, which reports its peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) before and after extraction, so lengths do not
share an allocator high-water mark. The model is a checkpoint (``--ckpt``, through
ddtse.extract.Extractor) or, without one, a randomly initialised DPTNet from a model config
run through ddtse.audio.chunking.overlap_add directly. Memory must not grow with the input
length beyond the input/output buffers (4 bytes per sample each).

    python benchmarks/bench_long_file.py [--ckpt exp/focused_tiny/checkpoints/last.ckpt] \
        [--model_config conf/model/dptnet_tiny.yaml] [--seconds 10 60] [--chunk_seconds 4]

Writes benchmarks/results/long_file.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from ddtse.cli import ArgumentParser

ROOT = Path(__file__).resolve().parents[1]


def worker(args) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    sr = args.sample_rate
    rng = np.random.default_rng(0)
    mixture = (0.1 * rng.standard_normal(int(args.worker_seconds * sr))).astype(np.float32)
    if args.ckpt:
        from ddtse.extract import Extractor

        extractor = Extractor.load(args.ckpt, device="cpu")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        out, _ = extractor.extract(mixture, sample_rate=sr, chunk_seconds=args.chunk_seconds,
                                   overlap_seconds=args.overlap_seconds)
    else:
        from ddtse.audio.chunking import overlap_add
        from ddtse.config import load_config
        from ddtse.registry import MODELS

        torch.manual_seed(0)
        model = MODELS.build(load_config(args.model_config)["model"]).eval()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        out = overlap_add(model, torch.from_numpy(mixture)[None], int(args.chunk_seconds * sr),
                          int(args.overlap_seconds * sr)).numpy()
    seconds = time.perf_counter() - start
    assert out.shape == mixture.shape and np.isfinite(out).all()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"input_seconds": args.worker_seconds, "peak_rss_mib": peak / 1024, "rss_before_mib": before / 1024,
            "growth_mib": (peak - before) / 1024, "seconds": seconds, "rtf": seconds / args.worker_seconds}


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.splitlines()[0], legacy={"--out": "--output"})
    p.add_argument("--ckpt", default=None)
    p.add_argument("--model_config", default=str(ROOT / "conf/model/dptnet_tiny.yaml"))
    p.add_argument("--seconds", type=float, nargs="+", default=[10.0, 60.0])
    p.add_argument("--sample_rate", type=int, default=44100)
    p.add_argument("--chunk_seconds", type=float, default=4.0)
    p.add_argument("--overlap_seconds", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--output", default=str(ROOT / "benchmarks/results/long_file"),
                   help="results file without its suffix (writes .json and .md)")
    p.add_argument("--worker_seconds", type=float, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.worker_seconds is not None:
        print(json.dumps(worker(args)))
        return 0
    rows = []
    for seconds in args.seconds:
        cmd = [sys.executable, __file__, "--worker_seconds", str(seconds)] + [
            a for a in (sys.argv[1:] if argv is None else argv)
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if done.returncode:
            sys.stderr.write(done.stderr)
            return done.returncode
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{seconds:6.1f} s: peak RSS {rows[-1]['peak_rss_mib']:.0f} MiB "
              f"(+{rows[-1]['growth_mib']:.0f} MiB during extraction), RTF {rows[-1]['rtf']:.3f}")
    result = {
        "model": args.ckpt or args.model_config, "sample_rate": args.sample_rate,
        "chunk_seconds": args.chunk_seconds, "overlap_seconds": args.overlap_seconds, "threads": args.threads,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "python": platform.python_version(),
        "runs": rows,
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    lines = [
        f"# Long-file extraction: peak memory ({Path(result['model']).name}, {args.sample_rate} Hz)",
        "",
        f"Chunks of {args.chunk_seconds} s with {args.overlap_seconds} s overlap, {args.threads} CPU threads; "
        "one fresh process per length (ru_maxrss).",
        "",
        "| input (s) | peak RSS (MiB) | growth during extraction (MiB) | time (s) | RTF |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['input_seconds']:.0f} | {r['peak_rss_mib']:.0f} | {r['growth_mib']:.0f} | {r['seconds']:.2f} | "
              f"{r['rtf']:.3f} |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
