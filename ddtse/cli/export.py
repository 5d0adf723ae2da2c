"""ddtse export --ckpt CKPT --format onnx|torchscript --output FILE: a deployable one-pass extractor."""
from __future__ import annotations

import sys

from ddtse.cli import ArgumentParser, run_cli


def parse_args(argv=None):
    p = ArgumentParser(description="Export a discriminative extractor (TD-SpeakerBeam/ASA/ASA-MP/IPD, DPTNet) "
                       "to ONNX or TorchScript, with dynamic batch and length and the enrollment as an input "
                       "where the model takes one; the file records the sample rate and the expected inputs. "
                       "`ddtse infer --ckpt FILE.onnx` runs an exported ONNX file.")
    p.add_argument("--ckpt", required=True, help="a checkpoint of a discriminative extractor")
    p.add_argument("--format", required=True, choices=("onnx", "torchscript"))
    p.add_argument("--output", required=True, help="the file to write (e.g. model.onnx, model.pt)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from ddtse.export import export_extractor

    meta = export_extractor(args.ckpt, args.format, args.output, overwrite=args.overwrite)
    print(f"wrote {args.output} ({args.format}): {meta['system']}/{meta['model']} at {meta['sample_rate']} Hz, "
          f"inputs {', '.join(meta['inputs'])}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
