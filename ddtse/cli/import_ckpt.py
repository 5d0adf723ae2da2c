"""ddtse import --format slt2024_ddtse|sgmse --ckpt THEIRS.ckpt --output OURS.ckpt: a reference
implementation's Lightning checkpoint as a ddtse checkpoint (ddtse/reference_import.py)."""
from __future__ import annotations

import sys

from ddtse.cli import ArgumentParser, run_cli


def parse_args(argv=None):
    from ddtse.reference_import import IMPORT_FORMATS

    p = ArgumentParser(description="Import a checkpoint written by a reference implementation's train.py: "
                       "slt2024_ddtse (the DDTSE authors' code; the imported model reads a 256-d WeSpeaker "
                       "embedding per item: infer.py --embedding E.npy) or sgmse (sp-uhh/sgmse's SGMSE+; "
                       "speech enhancement, no enrollment). The file is read without running code from it "
                       "and without the reference package.")
    p.add_argument("--format", required=True, choices=list(IMPORT_FORMATS))
    p.add_argument("--ckpt", required=True, help="the reference checkpoint (.ckpt)")
    p.add_argument("--output", required=True, help="the ddtse checkpoint to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from ddtse.reference_import import import_checkpoint

    info = import_checkpoint(args.format, args.ckpt, args.output, overwrite=args.overwrite)
    print(f"wrote {args.output}: {args.format} ({info['backbone']}, epoch {info['epoch']}, step "
          f"{info['global_step']}) as a ddtse '{info['system']}' system "
          f"with raw and EMA weights; {len(info['dropped'])} unused reference tensor(s) dropped")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
