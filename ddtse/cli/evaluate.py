"""Score a checkpoint on a dataset section of a config (dynamic mixtures, extraction lists, splits).

    python -m ddtse.cli.evaluate --ckpt C [--config X.yaml] [--set test] [--limit N] --out_dir D
"""
from __future__ import annotations

import argparse
import sys

from ddtse.cli import run_cli


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Extract and score the items of a dataset defined in a config.")
    p.add_argument("--ckpt", required=True)
    p.add_argument("--config", default=None, help="config whose data section to use (default: the checkpoint's)")
    p.add_argument("--set", default="test", choices=["train", "valid", "test"])
    p.add_argument("--limit", type=int, default=None, help="first N items only")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--seed", type=int, default=100)
    p.add_argument("--device", default="auto")
    p.add_argument("--title", default=None)
    p.add_argument("--metrics", default="si_sdr,si_sdri,pesq,estoi",
                   help="comma-separated (as calc_metrics.py; e.g. absent_energy_db for absent-target items)")
    p.add_argument("overrides", nargs="*", help="dotted overrides of the config, e.g. data.test.num_items=40")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from pathlib import Path

    from ddtse.config import apply_overrides, load_config
    from ddtse.data.datamodule import build_dataset
    from ddtse.errors import DdtseError
    from ddtse.extract import Extractor, load_checkpoint
    from ddtse.scoring import format_markdown, score_dataset

    extractor = Extractor.load(args.ckpt, args.device)
    config = (load_config(args.config, args.overrides) if args.config
              else apply_overrides(load_checkpoint(args.ckpt)["hyper_parameters"]["config"], args.overrides))
    section = (config.get("data") or {}).get(args.set)
    if not section:
        raise DdtseError(f"the config has no data.{args.set} section")
    dataset = build_dataset(section, extractor.sample_rate, seed=int(config.get("seed", 0)), train=False)
    from ddtse.metrics import METRIC_NAMES

    wanted = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = [m for m in wanted if m not in METRIC_NAMES or m in ("spk_sim", "si_sdr_interferer", "confusion",
                                                                    "selected")]
    if unknown:
        raise DdtseError(f"evaluate cannot compute {', '.join(unknown)} (choose from si_sdr, si_sdri, pesq, estoi, "
                         "accepted, absent_energy_db, present_energy_db, dnsmos_*)")
    report = score_dataset(extractor, dataset, Path(args.out_dir), limit=args.limit, title=args.title,
                           metrics=wanted, seed=args.seed)
    metrics = [m for m in wanted if m in report.summary]
    print(format_markdown(report.summary, metrics, args.title))
    print(f"wrote {args.out_dir}/per_utt.csv, summary.json, summary.md")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
