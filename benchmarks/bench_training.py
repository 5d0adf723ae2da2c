#!/usr/bin/env python
"""Training throughput (steps/s, forward + backward + Adam + EMA) of the DDTSE configs.

    python benchmarks/bench_training.py [--device cpu|cuda] [--configs demo paper]

Measured on synthetic batches of each config's own training shape (segment, batch size), so the
data loader is not part of it (see bench_dataloader.py). Writes
benchmarks/results/bench_training_<device>.{json,md}.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, timed, write_results  # noqa: E402

from ddtse.config import load_config  # noqa: E402
from ddtse.training import build_system  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"demo": "conf/demo/ddtse_stage1.yaml", "paper": "conf/ddtse_stage1.yaml"}


def make_batch(config: dict, batch_size: int, device: str) -> dict:
    sr = config["data"]["sample_rate"]
    seg = int(config["data"]["train"].get("segment_seconds", 2.0) * sr)
    enr = int((config["data"]["train"].get("enrollment_seconds") or 3.0) * sr)
    g = torch.Generator().manual_seed(0)
    return {"mixture": 0.1 * torch.randn(batch_size, 1, seg, generator=g).to(device),
            "target": 0.1 * torch.randn(batch_size, seg, generator=g).to(device),
            "enrollment": 0.1 * torch.randn(batch_size, enr, generator=g).to(device),
            "lengths": torch.full((batch_size,), seg, device=device),
            "enrollment_lengths": torch.full((batch_size,), enr, device=device)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--configs", nargs="+", default=["demo", "paper"], choices=list(CONFIGS))
    p.add_argument("--batch_size", type=int, default=None, help="default: the config's (paper: 1 on CPU)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--bf16", action="store_true", help="autocast bf16 (GPU)")
    p.add_argument("--out_dir", default=None)
    args = p.parse_args()
    rows = []
    for name in args.configs:
        config = load_config(REPO / CONFIGS[name])
        system = build_system(config).to(args.device)
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        bs = args.batch_size or (1 if (name == "paper" and args.device == "cpu") else config["data"]["batch_size"])
        batch = make_batch(config, bs, args.device)
        opt = torch.optim.Adam(system.model.parameters(), lr=1e-4)

        def step():
            with torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16, enabled=args.bf16):
                loss, _ = system.training_loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            system.update_ema()

        seconds = timed(step, repeats=args.repeats, warmup=1, device=args.device)
        params = sum(p.numel() for p in system.model.parameters())
        peak = torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else None
        rows.append({"config": CONFIGS[name], "params": params, "batch_size": bs,
                     "segment_seconds": config["data"]["train"].get("segment_seconds"),
                     "seconds_per_step": seconds, "steps_per_s": 1 / seconds, "peak_gpu_gib": peak})
        print(rows[-1], flush=True)
        del system, opt
    md = [f"### DDTSE training throughput ({args.device}{', bf16' if args.bf16 else ''})", "",
          "| config | params | batch × segment | s/step | steps/s |", "|---|---|---|---|---|"]
    md += [f"| {r['config']} | {r['params'] / 1e6:.1f} M | {r['batch_size']} × {r['segment_seconds']} s "
           f"| {r['seconds_per_step']:.3f} | {r['steps_per_s']:.2f} |" for r in rows]
    write_results(f"bench_training_{args.device.split(':')[0]}{'_bf16' if args.bf16 else ''}", {"rows": rows, "environment": environment(args.device)},
                  "\n".join(md), args.out_dir)


if __name__ == "__main__":
    main()
