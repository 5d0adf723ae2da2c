"""python infer.py --ckpt C (--split DIR | --list F | --input_dir D | --mixture M | --source NAME ...) ..."""
from __future__ import annotations

import sys

from ddtse.cli import ArgumentParser, run_cli

DEFAULT_SEED = 100
#: shorthands kept from before ``--opt``: each is ``--opt NAME=VALUE`` (name, type, help)
ALIASES = (
    ("K", int, "DDTSE re-noising steps (default: the checkpoint's sampler config)"),
    ("t_start", float, "X+DDTSE refinement start time (default 1.0 = the full schedule)"),
    ("N", int, "SGMSE+ predictor-corrector steps"),
    ("snr", float, "SGMSE+ corrector snr"),
)


def parse_args(argv=None):
    from ddtse.data.sources import add_source_args

    p = ArgumentParser(description="Extract the target speaker with any trained checkpoint.")
    p.add_argument("--ckpt", required=True, help="checkpoint of any model (DDTSE, SGMSE+, TD-SpeakerBeam, DPTNet), "
                                                 "or an exported .onnx file (ddtse export)")
    p.add_argument("--refine_ckpt", help="X+DDTSE: refine --ckpt's output with this checkpoint "
                   "(a system that can refine, e.g. DDTSE)")
    add_source_args(p, shorthands=("--split", "--list", "--input_dir", "--mixture", "--extr_list"),
                    flags=("--enrollment", "--mixture_type", "--enrollment_map"), title="input")
    p.add_argument("--embedding", help="pre-computed speaker embedding (.npy) for --mixture, for models that "
                   "read one (e.g. imported with ddtse import --format slt2024_ddtse); with --list: a column")
    p.add_argument("--output", help="output file for --mixture")
    p.add_argument("--out_dir", help="output folder (items written as <out_dir>/<id>.wav)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--resume", action="store_true",
                   help="skip items whose complete output exists, do the rest (e.g. after a failed or stopped run)")
    p.add_argument("--channel", type=int, default=None, help="channel of a multi-channel mixture to use")
    p.add_argument("--subtype", default="FLOAT", choices=["FLOAT", "PCM_16"])
    p.add_argument("--device", default="auto")
    opt = p.add_argument_group("sampler options (the checkpoint's system's; with --refine_ckpt the refiner's)")
    opt.add_argument("--opt", action="append", default=[], metavar="NAME=VALUE",
                     help="a sampler option, e.g. --opt K=10 (repeatable; an unknown name lists the valid ones)")
    opt.add_argument("--seed", type=int, default=None,
                     help="sampler seed (default 100; deterministic extractors ignore it)")
    for name, kind, text in ALIASES:
        opt.add_argument(f"--{name}", type=kind, default=None, help=f"= --opt {name}=VALUE: {text}")
    p.add_argument("--chunk_seconds", type=float, default=None, help="process long inputs in chunks of this length")
    p.add_argument("--overlap_seconds", type=float, default=1.0)
    p.add_argument("--batch_size", type=int, default=1, help="items per forward batch (not with --chunk_seconds)")
    p.add_argument("--limit", type=int, default=None, help="only the first N items (a fixed subset), N >= 1")
    p.add_argument("--min_enrollment_seconds", type=float, default=1.0,
                   help="refuse enrollments shorter than this (default 1 s); silent enrollments are always refused")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from pathlib import Path

    from ddtse.errors import DdtseError
    from ddtse.export import load_extractor
    from ddtse.extract import ChainExtractor, Extractor
    from ddtse.data.sources import items_from_args, source_request
    from ddtse.inference import run_inference

    request = source_request(args)
    if request is None:
        raise DdtseError("give exactly one input: --split, --list, --input_dir, --mixture, --extr_list "
                         "or --source NAME")
    _check_numbers(args)
    one_file = request[0] == "pair"
    if args.embedding and not one_file:
        raise DdtseError("--embedding goes with --mixture; for a --list give an 'embedding' column of .npy paths")
    if one_file:
        if not args.output:
            raise DdtseError("--mixture needs --output FILE")
        out = Path(args.output)
        if out.is_dir() or args.output.endswith(("/", "\\")):
            raise DdtseError(f"--output names a folder ({args.output}); give a file name, e.g. {out / 'estimate.wav'}")
        items = items_from_args(args, item_id=out.with_suffix("").name)
        if args.embedding:
            items[0].embedding = Path(args.embedding)
        out_dir = out.parent
    else:
        if not args.out_dir:
            raise DdtseError("give --out_dir for the extracted files")
        out_dir = Path(args.out_dir)
        items = items_from_args(args)
    if args.limit is not None:
        items = items[: args.limit]

    extractor = load_extractor(args.ckpt, args.device)
    if args.refine_ckpt:
        refiner = Extractor.load(args.refine_ckpt, args.device)
        if not refiner.can_refine:
            raise DdtseError(f"--refine_ckpt {args.refine_ckpt} holds a '{refiner.name}' model, which cannot "
                             "refine an initial estimate (use a DDTSE checkpoint)")
        extractor = ChainExtractor(extractor, refiner)
    opts = sampler_opts(args, extractor)
    summary = run_inference(extractor, items, out_dir, overwrite=args.overwrite, resume=args.resume,
                            subtype=args.subtype, chunk_seconds=args.chunk_seconds,
                            overlap_seconds=args.overlap_seconds, progress=not args.quiet, channel=args.channel,
                            batch_size=args.batch_size, min_enrollment_seconds=args.min_enrollment_seconds,
                            strict=one_file, **opts)
    skipped = f", {summary['skipped_existing']} already done" if summary["skipped_existing"] else ""
    print(f"{summary['written']} of {summary['items']} item(s) -> {out_dir}{skipped}  model {summary['model']}  "
          f"NFE/item {summary['nfe_per_item']:.0f}  RTF {summary['rtf']:.3f} ({summary['device']})")
    if summary["failed"]:
        print(f"error: {len(summary['failed'])} of {summary['items']} item(s) failed (listed in "
              f"{out_dir / 'failed.txt'}); fix them and rerun with --resume", file=sys.stderr)
        return 2
    return 0


def sampler_opts(args, extractor) -> dict:
    """The sampler options of the command line (--opt NAME=VALUE, --seed, the aliases), typed by the
    extractor's ``sampler_options()`` and validated by it (DdtseError names a bad one)."""
    from ddtse.errors import DdtseError

    specs = extractor.sampler_options()
    opts: dict = {}
    for text in args.opt:
        name, sep, value = text.partition("=")
        name = name.strip()
        if not sep or not name:
            raise DdtseError(f"--opt takes NAME=VALUE, got {text!r}")
        if name in opts:
            raise DdtseError(f"--opt {name} is given twice")
        opts[name] = _typed(name, value.strip(), specs)
    for name in ("seed", *(a[0] for a in ALIASES)):
        value = getattr(args, name)
        if value is None:
            continue
        if name in opts and opts[name] != value:
            raise DdtseError(f"--{name} {value} and --opt {name}={opts[name]} disagree: give one")
        opts[name] = value
    opts.setdefault("seed", DEFAULT_SEED)
    extractor.validate_options(opts)
    return opts


def _typed(name: str, value: str, specs: dict):
    """``value`` (command-line text) as the declared type of option ``name`` (unknown names stay text)."""
    from ddtse.errors import DdtseError

    if name not in specs:
        return value  # validate_options names it and lists the valid ones
    kind = specs[name][0]
    try:
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
        return kind(value)
    except ValueError:
        article = "an" if kind.__name__[0] in "aeiou" else "a"
        raise DdtseError(f"--opt {name}={value}: {name} takes {article} {kind.__name__}") from None


def _check_numbers(args) -> None:
    """Numeric options that would silently do the wrong thing are refused up front."""
    from ddtse.errors import DdtseError

    if args.limit is not None and args.limit < 1:
        raise DdtseError(f"--limit must be >= 1, got {args.limit}")
    from ddtse.inference import check_run_options

    check_run_options(args.batch_size, args.min_enrollment_seconds, args.chunk_seconds, args.overlap_seconds)
    if args.resume and args.overwrite:
        raise DdtseError("--resume keeps finished outputs and --overwrite replaces them: give one")


if __name__ == "__main__":
    sys.exit(run_cli(main))
