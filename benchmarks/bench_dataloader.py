#!/usr/bin/env python
"""Items/s of the training loader on the demo corpus (libri2mix, 3 s segments, 16 kHz, 2 workers).

Writes benchmarks/results/bench_dataloader.{json,md}. Build the corpus first:
``python data/make_demo_corpus.py`` (default output data/demo_corpus/Libri2Mix).
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

from ddtse.cli import ArgumentParser
from ddtse.data.datamodule import build_dataset, make_loader

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None):
    parser = ArgumentParser(description=__doc__.splitlines()[0], legacy={
        "--batch-size": "--batch_size", "--num-workers": "--num_workers", "--segment-seconds": "--segment_seconds",
        "--enrollment-seconds": "--enrollment_seconds"})
    parser.add_argument("--root", default="data/demo_corpus/Libri2Mix")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=100, help="timed batches (after 5 warm-up batches)")
    parser.add_argument("--segment_seconds", type=float, default=3.0)
    parser.add_argument("--enrollment_seconds", type=float, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    cfg = {"name": "libri2mix", "root": args.root, "split": "train-100", "mixture_type": "mix_both",
           "segment_seconds": args.segment_seconds, "enrollment_seconds": args.enrollment_seconds}
    t0 = time.perf_counter()
    dataset = build_dataset(cfg, 16000, seed=0, train=True)
    init_s = time.perf_counter() - t0
    loader = make_loader(dataset, args.batch_size, args.num_workers, seed=0, train=True)
    items, warm, start = 0, 5, None
    while items < (args.batches + warm) * args.batch_size:
        for i, batch in enumerate(loader):
            if start is None and i == warm:
                start, items = time.perf_counter(), 0
            items += len(batch["ids"])
            if start is not None and items >= args.batches * args.batch_size:
                break
        if start is not None and items >= args.batches * args.batch_size:
            break
    seconds = time.perf_counter() - start
    result = {
        "items_per_s": round(items / seconds, 1), "items": items, "seconds": round(seconds, 2),
        "dataset_init_s": round(init_s, 3), "dataset_items": len(dataset), "batch_size": args.batch_size,
        "num_workers": args.num_workers, "segment_seconds": args.segment_seconds,
        "enrollment_seconds": args.enrollment_seconds, "sample_rate": 16000, "root": args.root,
        "cpu_count": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
        "python": platform.python_version(), "torch": torch.__version__,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_dataloader.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = "\n".join(f"| {k} | {v} |" for k, v in result.items())
    (RESULTS / "bench_dataloader.md").write_text(
        "# Training loader throughput (demo corpus, libri2mix train-100)\n\n| key | value |\n|---|---|\n" + rows + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
