"""calc_metrics.py: SI-SDR(i), PESQ, ESTOI, target-selection metrics (confusion, acceptance),
DNSMOS and speaker similarity of extracted audio."""
from __future__ import annotations

import sys
from pathlib import Path

from ddtse.cli import ArgumentParser, run_cli


def parse_args(argv=None):
    from ddtse.data.sources import add_source_args

    p = ArgumentParser(
        description="Score extracted speech: per-utterance CSV, summary JSON/Markdown, table on stdout.",
        epilog="Estimates are matched to items by id (<enhanced_dir>/<id>.wav). Any item source works: "
               "--list items.csv (the CSV infer.py --list reads, with reference[, interferer, mixture, "
               "enrollment] columns), --split ROOT/wav16k/min/test (files s1/<mixture_ID>.wav; the interferer "
               "is the mixture's other source), --gt_dir REF [--mix_dir MIX] [--interferer_dir INT] "
               "[--enroll_dir ENR] (folders), or --source NAME --source_opt KEY=VALUE. DNSMOS alone needs "
               "only --enhanced_dir. Items that cannot be scored are listed in failed.txt beside the scores "
               "and make the exit code non-zero.",
    )
    add_source_args(p, shorthands=("--gt_dir", "--list", "--split", "--extr_list"),
                    flags=("--mix_dir", "--interferer_dir", "--enroll_dir", "--mixture_type", "--enrollment_map"))
    p.add_argument("--enhanced_dir", help="folder of extracted audio")
    p.add_argument("--score_mixture", action="store_true",
                   help="score the unprocessed mixture (the baseline row); with --enhanced_dir, only on the "
                        "items extracted there")
    p.add_argument("--speaker_ckpt", help="a speaker_encoder checkpoint, or an extractor whose network has a speaker "
                                          "encoder (e.g. DDTSE), for spk_sim")
    p.add_argument("--length_tolerance_ms", type=float, default=10.0,
                   help="an estimate longer/shorter than its reference by more is an error for that item")
    p.add_argument("--out_dir", help="where per_utt.csv, summary.json, summary.md go (default: <enhanced_dir>_scores)")
    p.add_argument("--groups", help="file of 'utterance category' lines (e.g. FF/MM/FM) for per-group means")
    p.add_argument("--metrics", default="si_sdr,si_sdri,pesq,estoi",
                   help="comma-separated, from: si_sdr, si_sdri, pesq, estoi, si_sdr_interferer, selected, confusion, "
                        "accepted, absent_energy_db, present_energy_db, dnsmos_sig, dnsmos_bak, dnsmos_ovrl, dnsmos_p808, spk_sim")
    p.add_argument("--jobs", type=int, default=None, help="parallel processes (default: all cores)")
    p.add_argument("--allow_missing", action="store_true", help="exit 0 even if some estimates are missing")
    p.add_argument("--overwrite", action="store_true", help="replace existing score files")
    p.add_argument("--title", default=None, help="heading of the Markdown table")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from ddtse.errors import DdtseError
    from ddtse.metrics import METRIC_NAMES, NON_INTRUSIVE
    from ddtse.data.sources import items_from_args, source_request
    from ddtse.scoring import apply_groups, attach_estimates, estimates_only, format_markdown, read_groups, score_items

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = [m for m in metrics if m not in METRIC_NAMES]
    if unknown:
        raise DdtseError(f"unknown metric(s) {', '.join(unknown)} (choose from {', '.join(METRIC_NAMES)})")
    if not args.enhanced_dir and not args.score_mixture:
        raise DdtseError("give --enhanced_dir (the extracted audio)")
    if args.length_tolerance_ms < 0:
        raise DdtseError(f"--length_tolerance_ms must be >= 0, got {args.length_tolerance_ms}")
    non_intrusive = bool(metrics) and all(m in NON_INTRUSIVE for m in metrics)
    if source_request(args) is None and not non_intrusive:
        raise DdtseError("give the items: --gt_dir (folders), --list, --split (Libri2Mix) or --source NAME; only "
                         f"{', '.join(NON_INTRUSIVE)} score without a reference")
    items = items_from_args(args, required=False, enrollments="spk_sim" in metrics)
    if items is None:  # non-intrusive metrics of every estimate
        if args.score_mixture:
            raise DdtseError("--score_mixture needs a source of items with mixtures (e.g. --split or --list)")
        items, missing = estimates_only(args.enhanced_dir, args.enroll_dir), []
    else:
        items, missing = attach_estimates(items, args.enhanced_dir, args.score_mixture)
    if args.groups:
        apply_groups(items, read_groups(args.groups))
    if args.out_dir:
        out_dir = Path(args.out_dir)
    elif args.score_mixture:
        raise DdtseError("--score_mixture needs --out_dir")
    else:
        enhanced = Path(args.enhanced_dir)
        out_dir = enhanced.with_name(enhanced.name + "_scores")
    if missing:
        shown = ", ".join(missing[:10]) + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else "")
        print(f"warning: {len(missing)} estimate(s) missing: {shown}", file=sys.stderr)
        if not args.allow_missing:
            raise DdtseError(f"{len(missing)} estimate(s) missing under {args.enhanced_dir}; "
                             "pass --allow_missing to score the rest")
    report = score_items(items, out_dir, jobs=args.jobs, metrics=metrics, missing=missing,
                         overwrite=args.overwrite, progress=not args.quiet, title=args.title,
                         speaker_ckpt=args.speaker_ckpt, length_tolerance_ms=args.length_tolerance_ms)
    print(format_markdown(report.summary, [m for m in metrics if m in report.summary], args.title))
    print(f"wrote {out_dir / 'per_utt.csv'}, summary.json, summary.md")
    for item_id, why in report.failed:
        print(f"failed: {item_id}: {why}", file=sys.stderr)
    if report.failed:
        raise DdtseError(f"{len(report.failed)} of {len(items)} item(s) could not be scored; "
                         f"listed in {out_dir / 'failed.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
