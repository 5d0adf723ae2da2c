"""Shared helpers of the benchmark scripts: environment block, JSON + Markdown writing, timing."""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def environment(device: str = "cpu") -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "cpu_count": os.cpu_count(), "machine": platform.machine(), "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def timed(fn, repeats: int = 3, warmup: int = 1, device: str = "cpu") -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def write_results(name: str, data: dict, markdown: str, out_dir: str | Path | None = None) -> Path:
    """Write ``<name>.json`` and ``<name>.md`` (with the environment block) and print the Markdown."""
    out = Path(out_dir) if out_dir else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(data, indent=2, default=str))
    env = data.get("environment", {})
    footer = "\n\nEnvironment: " + ", ".join(f"{k} {v}" for k, v in env.items()) + "\n" if env else "\n"
    (out / f"{name}.md").write_text(markdown.rstrip() + footer)
    print(markdown)
    return out / f"{name}.json"
