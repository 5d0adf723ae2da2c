"""Argument parsing for the data scripts: prepare_libri2mix, make_extr_lists, make_demo_corpus."""
from __future__ import annotations

import json
import sys

from ddtse.cli import ArgumentParser
from ddtse.errors import DdtseError


def _run(func, argv) -> int:
    try:
        return func(argv)
    except DdtseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _split_sizes(text: str, what: str) -> dict[str, int]:
    """'train-100=1000,dev=100' -> {'train-100': 1000, 'dev': 100}."""
    out = {}
    for part in filter(None, text.split(",")):
        name, sep, value = part.partition("=")
        if not sep or not value.strip().isdigit():
            raise DdtseError(f"--{what} expects split=count[,split=count...], got '{text}'")
        out[name.strip()] = int(value)
    return out


def prepare_libri2mix_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="prepare_libri2mix.py",
        description="Check a Libri2Mix tree (files, rates, lengths, counts) and write the lists and "
                    "enrollment maps the libri2mix loader reads (use them with lists_dir: OUT_DIR).",
        legacy={"--out": "--out_dir", "--sample-rate": "--sample_rate", "--enrollment-map": "--enrollment_map",
                "--no-audio-check": "--no_audio_check", "--splits": "--split"})
    parser.add_argument("--root", required=True, help="Libri2Mix root (holding wav8k/ and/or wav16k/)")
    parser.add_argument("--out_dir", required=True,
                        help="output folder for <split>/mixture_*.csv and map_mixture2enrollment")
    parser.add_argument("--split", nargs="+", default=["dev", "test"], help="split(s) to prepare, e.g. train-100 dev test")
    parser.add_argument("--sample_rate", type=int, default=16000, choices=[8000, 16000])
    parser.add_argument("--mode", default="min", choices=["min", "max"])
    parser.add_argument("--types", nargs="+", default=["mix_both"], choices=["mix_both", "mix_clean", "mix_single"])
    parser.add_argument("--seed", type=int, default=0, help="seed of generated enrollment maps")
    parser.add_argument("--enrollment_map", action="append", default=[], metavar="SPLIT=PATH",
                        help="existing SpeakerBeam map or WeSep folder/spk*.enroll for a split (repeatable)")
    parser.add_argument("--no_audio_check", action="store_true", help="only check that files exist (faster)")
    parser.add_argument("--overwrite", action="store_true", help="replace lists an earlier run wrote in --out_dir")
    return parser


def _prepare_libri2mix(argv) -> int:
    from ddtse.data.prepare import prepare_libri2mix

    args = prepare_libri2mix_parser().parse_args(argv)
    maps = {}
    for item in args.enrollment_map:
        split, sep, path = item.partition("=")
        if not sep or not path:
            raise DdtseError(f"--enrollment_map expects SPLIT=PATH, got '{item}'")
        maps[split] = path
    reports = prepare_libri2mix(args.root, args.out_dir, args.split, args.sample_rate, args.mode, args.types,
                                args.seed, maps, not args.no_audio_check, overwrite=args.overwrite)
    failed = False
    for report in reports:
        print("\n".join(report.lines()))
        for path in report.outputs:
            print(f"  wrote {path}")
        failed |= bool(report.problems)
    if failed:
        print("problems found (see above); fix the tree or the maps", file=sys.stderr)
    return 1 if failed else 0


def prepare_libri2mix_main(argv=None) -> int:
    """Entry point of data/prepare_libri2mix.py (exit 0 good, 1 problems found, 2 user error)."""
    return _run(_prepare_libri2mix, argv)


def make_extr_lists_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="make_extr_lists.py",
        description="Write a WSJ0-2mix-extr style list (target SNR interferer -SNR enrollment) from a "
                    "speaker-labelled corpus.",
        legacy={"--out": "--output", "--snr-max": "--snr_max"})
    parser.add_argument("--source", required=True,
                        help="folder <speaker>/.../<utt>.wav, a CSV (speaker,path), or a Libri2Mix split folder with --librimix")
    parser.add_argument("--librimix", action="store_true", help="--source is a Libri2Mix split folder (uses s1/s2)")
    parser.add_argument("--root", default=None, help="paths in the list are relative to this (default: --source)")
    parser.add_argument("--output", required=True, help="list file to write")
    parser.add_argument("--num", type=int, default=1000, help="number of lines")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--snr_max", type=float, default=2.5,
                        help="SNR ~ U(0, snr_max); the relative level is twice that")
    parser.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    return parser


def _make_extr_lists(argv) -> int:
    from pathlib import Path

    from ddtse.data.lists import make_extr_lines, write_extr_list

    args = make_extr_lists_parser().parse_args(argv)
    out = Path(args.output)
    if args.num < 1:
        raise DdtseError(f"--num must be at least 1, got {args.num}")
    if out.is_dir():
        raise DdtseError(f"--output {out} is a folder; name the list file to write (e.g. {out / 'list.txt'})")
    if out.exists() and not args.overwrite:
        raise DdtseError(f"--output {out} exists; pass --overwrite to replace it")
    source = {"type": "librimix", "path": args.source} if args.librimix else args.source
    root = args.root or (args.source if not args.source.endswith(".csv") else str(Path(args.source).parent))
    lines = make_extr_lines(source, args.num, root, args.seed, args.snr_max)
    print(f"wrote {write_extr_list(out, lines)} ({len(lines)} lines, paths relative to {root})")
    return 0


def make_extr_lists_main(argv=None) -> int:
    """Entry point of data/make_extr_lists.py."""
    return _run(_make_extr_lists, argv)


def make_demo_corpus_parser() -> ArgumentParser:
    from ddtse.data.demo_corpus import DEFAULT_MIXTURES, DEFAULT_SPEAKERS

    fmt = lambda d: ",".join(f"{k}={v}" for k, v in d.items())  # noqa: E731
    parser = ArgumentParser(
        prog="make_demo_corpus.py",
        description="Render a small Libri2Mix-shaped corpus from espeak-ng voices (pip only).",
        legacy={"--out": "--out_dir"})
    parser.add_argument("--out_dir", default="data/demo_corpus/Libri2Mix", help="Libri2Mix root to create")
    parser.add_argument("--mixtures", default=fmt(DEFAULT_MIXTURES), help="mixtures per split")
    parser.add_argument("--speakers", default=fmt(DEFAULT_SPEAKERS), help="speakers per split (disjoint voices)")
    parser.add_argument("--rates", type=int, nargs="+", default=[16000, 8000])
    parser.add_argument("--modes", nargs="+", default=["min"], choices=["min", "max"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=2)
    return parser


def _make_demo_corpus(argv) -> int:
    from ddtse.data.demo_corpus import build_demo_corpus

    args = make_demo_corpus_parser().parse_args(argv)
    summary = build_demo_corpus(args.out_dir, _split_sizes(args.mixtures, "mixtures"),
                                _split_sizes(args.speakers, "speakers"), args.rates, args.modes, args.seed,
                                args.processes)
    print(json.dumps(summary))
    return 0


def make_demo_corpus_main(argv=None) -> int:
    """Entry point of data/make_demo_corpus.py."""
    return _run(_make_demo_corpus, argv)
