"""CPU speed of exported ONNX extractors (onnxruntime) against the same network in PyTorch.

For each model config (default: TD-SpeakerBeam as in the Libri2Mix recipe at 8 kHz, the ASA
paper's TD-SpeakerBeam, DPTNet with the paper's sizes at 44.1 kHz), a randomly initialised
discriminative system is written as a checkpoint, exported with ddtse/export.py, and both run the
same input (one item, ``--seconds`` of noise, a 4 s enrollment) side by side: rounds interleaved,
medians reported, at each thread count. The largest output difference is reported too.

    python benchmarks/bench_export.py [--models tsb_libri2mix tsb_asa_paper dptnet_paper] [--threads 1 2]

Writes benchmarks/results/bench_export.{json,md}.
"""
from __future__ import annotations

import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ddtse.cli import ArgumentParser  # noqa: E402

RATES = {"tsb_libri2mix": 8000, "tsb_asa_paper": 8000, "dptnet_paper": 44100}


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(RATES), help="configs under conf/model/")
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--seconds", type=float, default=4.0, help="input length (DPTNet: half of it, at 44.1 kHz)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out_dir", default=str(ROOT / "benchmarks" / "results"))
    return p.parse_args(argv)


def build_checkpoint(model: str, path: Path) -> tuple[Path, int]:
    import torch

    from ddtse.config import load_config
    from ddtse.registry import SYSTEMS
    from ddtse.systems.base import CHECKPOINT_KEY

    rate = RATES.get(model, 16000)
    config = {"seed": 0, "data": {"sample_rate": rate}, "model": load_config(ROOT / "conf" / "model" / f"{model}.yaml")["model"],
              "system": {"name": "discriminative", "ema_decay": 0.0}}
    torch.manual_seed(0)
    system = SYSTEMS.get("discriminative")(config)
    torch.save({CHECKPOINT_KEY: "discriminative", "state_dict": system.state_dict(),
                "hyper_parameters": {"config": config}}, path)
    return path, rate


def measure(model: str, threads: list[int], seconds: float, rounds: int, tmp: Path) -> list[dict]:
    import numpy as np
    import torch

    from ddtse.export import OnnxExtractor, export_extractor
    from ddtse.extract import Extractor

    ckpt, rate = build_checkpoint(model, tmp / f"{model}.ckpt")
    onnx_path = tmp / f"{model}.onnx"
    start = time.perf_counter()
    export_extractor(ckpt, "onnx", onnx_path)
    export_seconds = time.perf_counter() - start
    n = int((seconds / 2 if rate > 16000 else seconds) * rate)
    rng = np.random.default_rng(0)
    batch = {"mixture": torch.from_numpy((0.1 * rng.standard_normal((1, 1, n))).astype(np.float32)),
             "lengths": torch.tensor([n])}
    torch_ex = Extractor.load(ckpt, "cpu")
    if torch_ex.needs_enrollment:
        batch["enrollment"] = torch.from_numpy((0.1 * rng.standard_normal((1, 4 * rate))).astype(np.float32))
        batch["enrollment_lengths"] = torch.tensor([4 * rate])
    rows = []
    for t in threads:
        torch.set_num_threads(t)
        onnx_ex = OnnxExtractor(onnx_path, threads=t)
        torch_ex.extract_batch(batch)  # warm-up
        onnx_ex.extract_batch(batch)
        times, outputs = {"torch": [], "onnxruntime": []}, {}
        for _ in range(rounds):
            for name, ex in (("torch", torch_ex), ("onnxruntime", onnx_ex)):
                start = time.perf_counter()
                outputs[name], _ = ex.extract_batch(batch)
                times[name].append(time.perf_counter() - start)
        diff = float((outputs["torch"] - outputs["onnxruntime"]).abs().max())
        medians = {k: statistics.median(v) for k, v in times.items()}
        rows.append({"model": model, "sample_rate": rate, "input_seconds": n / rate, "threads": t,
                     "torch_s": medians["torch"], "onnxruntime_s": medians["onnxruntime"],
                     "speedup": medians["torch"] / medians["onnxruntime"],
                     "rtf_torch": medians["torch"] / (n / rate), "rtf_onnxruntime": medians["onnxruntime"] / (n / rate),
                     "max_abs_diff": diff, "export_s": export_seconds,
                     "parameters": sum(p.numel() for p in torch_ex.system.model.parameters())})
        print(f"{model} threads {t}: torch {medians['torch']:.3f} s, onnxruntime {medians['onnxruntime']:.3f} s "
              f"(x{rows[-1]['speedup']:.2f}), max diff {diff:.1e}", flush=True)
    return rows


def main(argv=None) -> int:
    import onnxruntime
    import torch

    args = parse_args(argv)
    import os

    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [r for model in args.models for r in measure(model, args.threads, args.seconds, args.rounds, Path(tmp))]
    env = {"python": platform.python_version(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
           "machine": platform.machine(), "cpu_count": os.cpu_count(), "rounds": args.rounds,
           "load_average_start": round(load_start[0], 2), "load_average_end": round(os.getloadavg()[0], 2)}
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_export.json").write_text(json.dumps({"rows": rows, "environment": env}, indent=2))
    lines = [f"### Exported ONNX (onnxruntime) against PyTorch, CPU, one item (medians of {args.rounds} interleaved rounds)",
             "", "| model | rate | input (s) | params | threads | torch (s) | onnxruntime (s) | speed-up | RTF torch | "
             "RTF onnxruntime | max abs diff |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['sample_rate']} | {r['input_seconds']:.1f} | {r['parameters'] / 1e6:.2f} M "
                     f"| {r['threads']} | {r['torch_s']:.3f} | {r['onnxruntime_s']:.3f} | {r['speedup']:.2f}x "
                     f"| {r['rtf_torch']:.3f} | {r['rtf_onnxruntime']:.3f} | {r['max_abs_diff']:.1e} |")
    lines += ["", "Randomly initialised networks of the named conf/model/ configs (speed does not depend on the "
              "weights); the input is noise. Command: `python benchmarks/bench_export.py`.",
              "", "Environment: " + ", ".join(f"{k} {v}" for k, v in env.items())]
    (out / "bench_export.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'bench_export.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
