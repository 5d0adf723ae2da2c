"""python train.py --config conf/X.yaml [--out_dir DIR] [key=value ...]"""
from __future__ import annotations

import sys
from pathlib import Path

from ddtse.cli import ArgumentParser, run_cli

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "conf" / "ddtse_stage1.yaml"


def parse_args(argv=None):
    p = ArgumentParser(description="Train an extractor (DDTSE, SGMSE+, TD-SpeakerBeam, DPTNet, ...).",
                       legacy={"--base_dir": "--out_dir"})
    p.add_argument("--config", default=None, help=f"YAML config (default: {DEFAULT_CONFIG.name})")
    p.add_argument("--out_dir", default=None, help="experiment folder (default: exp/<config name>)")
    p.add_argument("--no_resume", action="store_true", help="start over even if --out_dir has last.ckpt")
    p.add_argument("--print_config", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. system.lr=5e-5 trainer.max_epochs=10")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import yaml

    from ddtse.config import load_config
    from ddtse.schema import validate_config
    from ddtse.training import run_training

    config_path = Path(args.config) if args.config else DEFAULT_CONFIG
    config = validate_config(load_config(config_path, args.overrides))  # before anything is built
    if args.print_config:
        print(yaml.safe_dump(config, sort_keys=False))
        return 0
    base_dir = Path(args.out_dir) if args.out_dir else Path("exp") / config_path.stem
    trainer = run_training(config, base_dir, resume=not args.no_resume)
    if trainer.is_global_zero:
        print(f"checkpoints in {base_dir / 'checkpoints'}; TensorBoard: tensorboard --logdir {base_dir / 'tb'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
