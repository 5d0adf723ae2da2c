"""python slicer.py INPUT [INPUT ...] --out_dir DIR [--mode openvpi|target] [options]"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ddtse.cli import ArgumentParser, run_cli


def parse_args(argv=None):
    p = ArgumentParser(
        description="Cut long clean recordings of one speaker into numbered training clips at silences "
        "(<out_dir>/<stem>_0001.wav ...). Times in ms unless noted; defaults follow openvpi/audio-slicer's CLI.",
        legacy={"--out": "--out_dir"},
    )
    p.add_argument("inputs", nargs="+", help="audio files or folders (searched recursively; the tree is mirrored)")
    p.add_argument("--out_dir", required=True, help="output folder")
    p.add_argument("--mode", choices=("openvpi", "target"), default="openvpi",
                   help="openvpi: audio-slicer's greedy cuts; target: clips of --target_min..--target_max s "
                   "chosen among silences to cover the most speech (default: openvpi)")
    p.add_argument("--threshold", type=float, default=-40.0, help="RMS below this (dB) is silence (default -40)")
    p.add_argument("--min_length", type=float, default=5000, help="openvpi: min ms between cuts (default 5000)")
    p.add_argument("--min_interval", type=float, default=300, help="min silence (ms) to cut at (default 300)")
    p.add_argument("--hop_size", type=float, default=10, help="RMS hop in ms (default 10)")
    p.add_argument("--max_sil_kept", type=float, default=500, help="max silence (ms) kept at a clip edge (default 500)")
    p.add_argument("--target_min", type=float, default=5.0, help="target mode: min clip length in s (default 5)")
    p.add_argument("--target_max", type=float, default=15.0, help="target mode: max clip length in s (default 15)")
    p.add_argument("--min_keep", type=float, default=1.0, help="drop clips shorter than this many s (default 1)")
    p.add_argument("--subtype", choices=("PCM_16", "PCM_24", "FLOAT"), default=None,
                   help="output sample format (default: the input's, else PCM_16)")
    p.add_argument("--overwrite", action="store_true", help="replace existing numbered outputs of the same stem")
    p.add_argument("--report", default=None, help="also write the summary (clips, drops and reasons) as JSON here")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from ddtse.slicer import slice_files

    kwargs = dict(
        threshold=args.threshold, min_length=args.min_length, min_interval=args.min_interval,
        hop_size=args.hop_size, max_sil_kept=args.max_sil_kept, mode=args.mode,
        target_min=args.target_min, target_max=args.target_max, min_keep=args.min_keep,
    )
    summary = slice_files(args.inputs, args.out_dir, kwargs, overwrite=args.overwrite, subtype=args.subtype)
    if args.report:
        from ddtse.audio.io import write_text_atomic

        write_text_atomic(args.report, json.dumps(summary, indent=2))
    if summary["failed"]:
        print(f"error: {len(summary['failed'])} input(s) failed (listed in {Path(args.out_dir) / 'failed.txt'})",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
