"""Score a checkpoint on a dataset section of a config (dynamic mixtures, extraction lists, splits),
or on the items of any source (extracted to <out_dir>/extracted, then scored by id).

    python -m ddtse.cli.evaluate --ckpt C [--config X.yaml] [--split test] [--limit N] --out_dir D
    python -m ddtse.cli.evaluate --ckpt C (--list items.csv | --source NAME --source_opt K=V ...) --out_dir D
"""
from __future__ import annotations

import sys

from ddtse.cli import ArgumentParser, run_cli


def parse_args(argv=None):
    from ddtse.data.sources import add_source_args

    p = ArgumentParser(description="Extract and score the items of a dataset defined in a config, or of an "
                                   "item source.", legacy={"--set": "--split"})
    p.add_argument("--ckpt", required=True)
    p.add_argument("--config", default=None, help="config whose data section to use (default: the checkpoint's)")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"],
                   help="the config's data section to evaluate (default test)")
    add_source_args(p, shorthands=("--list", "--extr_list"), flags=(),
                    title="items of a source instead of a config section (Libri2Mix: --source librimix "
                          "--source_opt split_dir=DIR)")
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
    from ddtse.data.sources import source_request
    from ddtse.extract import Extractor, load_checkpoint
    from ddtse.scoring import format_markdown, score_dataset

    extractor = Extractor.load(args.ckpt, args.device)
    if source_request(args) is not None:
        return _evaluate_source(args, extractor)
    config = (load_config(args.config, args.overrides) if args.config
              else apply_overrides(load_checkpoint(args.ckpt)["hyper_parameters"]["config"], args.overrides))
    section = (config.get("data") or {}).get(args.split)
    if not section:
        raise DdtseError(f"the config has no data.{args.split} section")
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


def _evaluate_source(args, extractor) -> int:
    """Extract the source's items to <out_dir>/extracted (``run_inference``) and score them by id."""
    from pathlib import Path

    from ddtse.data.sources import items_from_args
    from ddtse.errors import DdtseError
    from ddtse.inference import run_inference
    from ddtse.metrics import METRIC_NAMES
    from ddtse.scoring import attach_estimates, format_markdown, score_items

    wanted = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = [m for m in wanted if m not in METRIC_NAMES or m == "spk_sim"]
    if unknown:
        raise DdtseError(f"evaluate cannot compute {', '.join(unknown)} (choose from "
                         f"{', '.join(m for m in METRIC_NAMES if m != 'spk_sim')})")
    if args.overrides:
        raise DdtseError("config overrides apply to a config section, not to --source/--list items")
    if args.limit is not None and args.limit < 1:
        raise DdtseError(f"--limit must be >= 1, got {args.limit}")
    items = items_from_args(args)[: args.limit]
    out_dir = Path(args.out_dir)
    extracted = out_dir / "extracted"
    summary = run_inference(extractor, items, extracted, overwrite=True, progress=False, seed=args.seed)
    if summary["failed"]:
        raise DdtseError(f"{len(summary['failed'])} of {len(items)} item(s) failed to extract (listed in "
                         f"{extracted / 'failed.txt'})")
    items, missing = attach_estimates(items, extracted)
    report = score_items(items, out_dir, metrics=wanted, missing=missing, progress=False, title=args.title)
    print(format_markdown(report.summary, [m for m in wanted if m in report.summary], args.title))
    print(f"wrote {out_dir}/per_utt.csv, summary.json, summary.md (audio in {extracted})")
    if report.failed:
        raise DdtseError(f"{len(report.failed)} of {len(items)} item(s) could not be scored; "
                         f"listed in {out_dir / 'failed.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
