#!/usr/bin/env python
"""Inference speed at equal backbone: DDTSE (K = 10 and K = 0) vs the SGMSE+ predictor-corrector
sampler vs the flow systems (MeanFlow-TSE at 1 and 4 calls, AD-FlowTSE at 1 call from a fixed
tau_hat) vs one backbone forward, on the same 4 s input, measured side by side in one run.

    python benchmarks/bench_inference.py [--preset ncsnpp_small] [--device cpu|cuda] [--seconds 4]

Writes benchmarks/results/bench_inference_<preset>_<device>.{json,md}. Weights are random: speed
does not depend on them.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, timed, write_results  # noqa: E402

from ddtse.models.ncsnpp import ncsnpp_preset  # noqa: E402
from ddtse.registry import SYSTEMS  # noqa: E402


#: the flow systems' backbone and system options (time embedding of t; MeanFlow also of r - t)
FLOW = {"meanflow_tse": ({"time_embedding": "linear", "interval_conditional": True}, {"path": "mixture"}),
        "adflow_tse": ({"time_embedding": "linear"},
                       {"path": "background", "spec": {"transform": "exponent", "alpha": 1.0, "beta": 0.1}})}


def build(system: str, preset: str, sample_rate: int = 16000):
    backbone = dict(ncsnpp_preset(preset))
    backbone.update(in_channels=4 if system == "sgmse" else 2, time_conditional=system != "ddtse")
    backbone.update(FLOW.get(system, ({}, {}))[0])
    config = {
        "data": {"sample_rate": sample_rate},
        "model": {"name": "ddtse_net", "backbone": backbone,
                  "speaker": {"name": "spectral_speaker_encoder", "emb_dim": 256, "sample_rate": sample_rate}},
        "system": {"name": system, "ema_decay": 0.0, **FLOW.get(system, ({}, {}))[1]},
    }
    return SYSTEMS.get(system)(config).eval()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="ncsnpp_small")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out_dir", default=None)
    args = p.parse_args()
    torch.manual_seed(0)
    dev = args.device
    sr = 16000
    n = int(args.seconds * sr)
    g = torch.Generator().manual_seed(0)
    batch = {"mixture": (0.1 * torch.randn(1, 1, n, generator=g)).to(dev),
             "enrollment": (0.1 * torch.randn(1, 3 * sr, generator=g)).to(dev),
             "lengths": torch.tensor([n], device=dev), "enrollment_lengths": torch.tensor([3 * sr], device=dev)}
    ddtse, sgmse = build("ddtse", args.preset).to(dev), build("sgmse", args.preset).to(dev)
    meanflow, adflow = build("meanflow_tse", args.preset).to(dev), build("adflow_tse", args.preset).to(dev)
    params = sum(p.numel() for p in ddtse.model.backbone.parameters())
    spec = ddtse.spec(batch["mixture"][:, 0])
    frames = ddtse.spec.pad_frames(spec)[0].shape[-1]
    x = torch.randn(1, 2, spec.shape[-2], frames, device=dev)
    emb = torch.randn(1, 256, device=dev)
    rows = []
    with torch.no_grad():
        runs = [
            ("one backbone forward", 1, lambda: ddtse.model.backbone(x, emb)),
            ("STFT + forward + iSTFT", 1, lambda: ddtse.spec.inverse(
                ddtse.spec(batch["mixture"][:, 0]), n) + ddtse.model.backbone(x, emb).sum() * 0),
            ("DDTSE K=0", 1, lambda: ddtse.extract_batch(batch, use_ema=False, K=0, seed=0)),
            ("DDTSE K=10", 11, lambda: ddtse.extract_batch(batch, use_ema=False, K=10, seed=0)),
            ("MeanFlow-TSE nfe=1", 1, lambda: meanflow.extract_batch(batch, use_ema=False, nfe=1)),
            ("MeanFlow-TSE nfe=4", 4, lambda: meanflow.extract_batch(batch, use_ema=False, nfe=4)),
            ("AD-FlowTSE nfe=1 (fixed tau_hat 0.5)", 1,
             lambda: adflow.extract_batch(batch, use_ema=False, nfe=1, mr_source="fixed:0.5")),
            ("SGMSE+ PC N=30", 60, lambda: sgmse.extract_batch(batch, use_ema=False, N=30, seed=0)),
        ]
        for name, nfe, fn in runs:
            seconds = timed(fn, repeats=args.repeats if nfe < 60 else max(1, args.repeats - 1),
                            warmup=2 if nfe == 1 else 1, device=dev)
            rows.append({"run": name, "nfe": nfe, "seconds": seconds, "rtf": seconds / args.seconds})
            print(f"{name}: {seconds:.3f} s", flush=True)
    by = {r["run"]: r for r in rows}
    ratios = {
        "pc_over_ddtse_k10": by["SGMSE+ PC N=30"]["seconds"] / by["DDTSE K=10"]["seconds"],
        "ddtse_k0_over_forward_plus_stft": by["DDTSE K=0"]["seconds"] / by["STFT + forward + iSTFT"]["seconds"],
        "meanflow_nfe1_over_ddtse_k0": by["MeanFlow-TSE nfe=1"]["seconds"] / by["DDTSE K=0"]["seconds"],
    }
    data = {"preset": args.preset, "backbone_params": params, "input_seconds": args.seconds, "rows": rows,
            "ratios": ratios, "environment": environment(dev)}
    md = [f"### Inference speed, {args.preset} backbone ({params / 1e6:.2f} M), {args.seconds:.0f} s input, {dev}", "",
          "| run | NFE | seconds | RTF |", "|---|---|---|---|"]
    md += [f"| {r['run']} | {r['nfe']} | {r['seconds']:.3f} | {r['rtf']:.3f} |" for r in rows]
    md += ["", f"SGMSE+ PC / DDTSE K=10: **{ratios['pc_over_ddtse_k10']:.1f}x** (target ≥ 5x); "
               f"DDTSE K=0 / (STFT + one forward + iSTFT): **{ratios['ddtse_k0_over_forward_plus_stft']:.2f}x** "
               "(target ≤ 1.3x); MeanFlow-TSE nfe=1 / DDTSE K=0 (both one call): "
               f"**{ratios['meanflow_nfe1_over_ddtse_k0']:.2f}x**."]
    write_results(f"bench_inference_{args.preset}_{dev.split(':')[0]}", data, "\n".join(md), args.out_dir)


if __name__ == "__main__":
    main()
