#!/usr/bin/env python
"""Quality and speed against network calls: DDTSE (K = NFE - 1) and MeanFlow-TSE (nfe = NFE) at
1, 2 and 4 calls, with equal training steps on the demo corpus (issue 23).

    python benchmarks/bench_nfe.py [--corpus data/demo_corpus/Libri2Mix] [--steps 1000] [--items 100]
        [--nfe "1 2 4"] [--exp_dir exp/bench_nfe] [--device cpu]
        [--ddtse_ckpt CKPT --meanflow_ckpt CKPT]      # reuse trained checkpoints instead of training

Training (skipped for a system whose checkpoint is given): DDTSE stage 1 for steps / 2 optimiser
steps, then stage 2 from it for the other half (conf/demo/ddtse_stage{1,2}.yaml), and MeanFlow-TSE
for ``steps`` (conf/demo/meanflow_tse.yaml; its alpha curriculum spans these steps), each through
train.py. Then infer.py on the first ``--items`` test items at each NFE and calc_metrics.py
(SI-SDRi, PESQ, selection); RTF from inference.json. Every command is listed in the output.
Writes benchmarks/results/<--name>.{json,md} (default bench_nfe). CPU-heavy at full size.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, write_results  # noqa: E402

from ddtse.cli import run_cli  # noqa: E402
from ddtse.errors import DdtseError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
METRICS = "si_sdr,si_sdri,pesq,si_sdr_interferer,selected"
#: system -> (label, checkpoint system name, infer.py option of NFE n)
SYSTEMS = {
    "ddtse": ("DDTSE stage 2", "ddtse", lambda n: ["--K", str(n - 1)]),
    "meanflow": ("MeanFlow-TSE", "meanflow_tse", lambda n: ["--opt", f"nfe={n}"]),
}


def parse_nfe(text: str) -> list[int]:
    """"1 2 4" -> [1, 2, 4]: positive integers, no repeats."""
    values = []
    for word in str(text).replace(",", " ").split():
        if not word.isdigit() or int(word) < 1:
            raise DdtseError(f"--nfe takes positive integers (network calls), got {word!r}")
        values.append(int(word))
    if not values or len(set(values)) != len(values):
        raise DdtseError(f"--nfe needs one or more distinct values, got {text!r}")
    return values


def check_args(args) -> Path:
    """Refuse bad arguments in one line before any work; returns the test split folder."""
    if args.items < 1:
        raise DdtseError(f"--items must be >= 1, got {args.items}")
    split = Path(args.corpus) / f"wav{args.sample_rate // 1000}k" / "min" / "test"
    if not (split / "mix_both").is_dir():
        raise DdtseError(f"--corpus {args.corpus}: no Libri2Mix test split at {split} (build the demo corpus with "
                         "data/make_demo_corpus.py, or give --corpus)")
    if (not args.ddtse_ckpt or not args.meanflow_ckpt) and args.steps < 2:
        raise DdtseError(f"--steps must be >= 2 (DDTSE trains half in stage 1, half in stage 2), got {args.steps}")
    from ddtse.checkpoint import load_checkpoint

    for key, (_, system, _) in SYSTEMS.items():
        path = getattr(args, f"{key}_ckpt")
        if path:
            got = load_checkpoint(path, what=f"--{key}_ckpt").get("ddtse_system")
            if got != system:
                raise DdtseError(f"--{key}_ckpt {path} holds a '{got}' model, not '{system}'")
    return split


def _run(cmd: list[str], log: list[str]) -> None:
    log.append(shlex.join(cmd))
    print("+", log[-1], flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)


def train(args, exp: Path, log: list[str]) -> dict:
    """Train what is not given; -> {system: checkpoint path}."""
    py, conf = sys.executable, Path(args.config_dir)
    common = [f"data.{s}.root={args.corpus}" for s in ("train", "valid", "test")] + \
        ["trainer.max_epochs=100000", f"trainer.accelerator={'gpu' if args.device.startswith('cuda') else 'cpu'}"] + \
        shlex.split(args.train_overrides)
    ckpts = {}
    if args.ddtse_ckpt:
        ckpts["ddtse"] = args.ddtse_ckpt
    else:
        s1 = args.steps // 2
        _run([py, "train.py", "--config", str(conf / "ddtse_stage1.yaml"), "--out_dir", str(exp / "ddtse_stage1"),
              f"trainer.max_steps={s1}", *common], log)
        _run([py, "train.py", "--config", str(conf / "ddtse_stage2.yaml"), "--out_dir", str(exp / "ddtse_stage2"),
              f"system.init_from={exp / 'ddtse_stage1' / 'checkpoints' / 'last.ckpt'}",
              f"trainer.max_steps={args.steps - s1}", *common], log)
        ckpts["ddtse"] = str(exp / "ddtse_stage2" / "checkpoints" / "last.ckpt")
    if args.meanflow_ckpt:
        ckpts["meanflow"] = args.meanflow_ckpt
    else:
        _run([py, "train.py", "--config", str(conf / "meanflow_tse.yaml"), "--out_dir", str(exp / "meanflow_tse"),
              f"trainer.max_steps={args.steps}", *common], log)
        ckpts["meanflow"] = str(exp / "meanflow_tse" / "checkpoints" / "last.ckpt")
    return ckpts


def evaluate(args, split: Path, exp: Path, ckpts: dict, nfes: list[int], log: list[str]) -> list[dict]:
    """infer.py + calc_metrics.py per (system, NFE); -> rows."""
    py = sys.executable
    rows = []
    for key, (label, _, nfe_opt) in SYSTEMS.items():
        for n in nfes:
            name = f"{key}_nfe{n}"
            audio, scores = exp / "extracted" / name, exp / "scores" / name
            _run([py, "infer.py", "--ckpt", ckpts[key], "--librimix_split", str(split), "--mixture_type", "mix_both",
                  "--out_dir", str(audio), "--overwrite", "--limit", str(args.items), "--device", args.device,
                  "--quiet", *nfe_opt(n)], log)
            _run([py, "calc_metrics.py", "--librimix_split", str(split), "--mixture_type", "mix_both",
                  "--enhanced_dir", str(audio), "--out_dir", str(scores), "--overwrite", "--allow_missing",
                  "--metrics", METRICS, "--quiet"], log)
            inference = json.loads((audio / "inference.json").read_text())
            summary = json.loads((scores / "summary.json").read_text())
            mean = lambda m: (summary.get(m) or {}).get("mean")  # noqa: E731
            rows.append({"system": label, "key": key, "nfe": inference["nfe_per_item"], "requested_nfe": n,
                         "si_sdri": mean("si_sdri"), "si_sdr": mean("si_sdr"), "pesq": mean("pesq"),
                         "selected": mean("selected"), "rtf": inference.get("rtf"),
                         "items": summary.get("n_items", inference.get("written"))})
    return rows


def _fmt(x, digits=2):
    return "–" if x is None else f"{x:.{digits}f}"


def markdown(args, rows: list[dict], steps: dict, log: list[str], argv: list[str]) -> str:
    lines = [f"### Quality and speed against network calls, demo corpus ({rows[0]['items'] if rows else 0} test items, "
             f"{args.device})", "",
             "`" + shlex.join(["python", "benchmarks/bench_nfe.py", *argv]) + "`", "",
             "Training steps: " + ", ".join(f"{k} {v}" for k, v in steps.items()) + ".", "",
             "| system | NFE | SI-SDRi (dB) | PESQ | selected (%) | RTF | items |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        sel = "–" if r["selected"] is None else f"{100 * r['selected']:.1f}"
        lines.append(f"| {r['system']} | {r['nfe']:g} | {_fmt(r['si_sdri'])} | {_fmt(r['pesq'])} | {sel} "
                     f"| {_fmt(r['rtf'], 3)} | {r['items']} |")
    lines += ["", "DDTSE at NFE n is stage 2 with K = n - 1 re-noising steps; MeanFlow-TSE takes n average-velocity "
              "steps from the mixture (t = 0) to the target (t = 1).", "", "Commands:", "", "```", *log, "```"]
    return "\n".join(lines)


def _trained_steps(ckpt: str) -> int:
    from ddtse.checkpoint import read_checkpoint

    return int(read_checkpoint(ckpt).get("global_step", 0))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default="data/demo_corpus/Libri2Mix")
    p.add_argument("--sample_rate", type=int, default=16000)
    p.add_argument("--steps", type=int, default=1000, help="optimiser steps per system (DDTSE: stage 1 + stage 2)")
    p.add_argument("--items", type=int, default=100, help="test items scored per row")
    p.add_argument("--nfe", default="1 2 4", help="network calls per item (DDTSE K = NFE - 1)")
    p.add_argument("--exp_dir", default="exp/bench_nfe")
    p.add_argument("--config_dir", default="conf/demo")
    p.add_argument("--device", default="cpu")
    p.add_argument("--ddtse_ckpt", default=None, help="a trained DDTSE stage-2 checkpoint (no DDTSE training)")
    p.add_argument("--meanflow_ckpt", default=None, help="a trained MeanFlow-TSE checkpoint (no training)")
    p.add_argument("--train_overrides", default="", help="extra key=value overrides of both trainings")
    p.add_argument("--name", default="bench_nfe", help="results file name")
    p.add_argument("--out_dir", default=None, help="results folder (default benchmarks/results)")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(argv)
    nfes = parse_nfe(args.nfe)
    split = check_args(args)
    exp = Path(args.exp_dir)
    log: list[str] = []
    ckpts = train(args, exp, log)
    steps = {SYSTEMS[k][0]: _trained_steps(c) for k, c in ckpts.items()}
    if not args.ddtse_ckpt:
        steps[SYSTEMS["ddtse"][0]] += _trained_steps(str(exp / "ddtse_stage1" / "checkpoints" / "last.ckpt"))
    rows = evaluate(args, split, exp, ckpts, nfes, log)
    data = {"corpus": args.corpus, "items": args.items, "nfe": nfes, "training_steps": steps, "rows": rows,
            "checkpoints": ckpts, "commands": log, "environment": environment(args.device)}
    write_results(args.name, data, markdown(args, rows, steps, log, argv), args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
