"""run_training: one experiment directory, resolved config, Lightning Trainer, checkpoints, resume."""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from ddtse.checkpoint import checkpoint_step, load_checkpoint, safe_load_environment
from ddtse.config import get, load_yaml, save_config
from ddtse.errors import DdtseError
from ddtse.registry import SYSTEMS
from ddtse.schema import validate_config

TRAINER_DEFAULTS = {"max_epochs": 100, "accelerator": "auto", "devices": "auto", "log_every_n_steps": 10}
#: default of ``system.checkpoint_every_n_steps``: last.ckpt is also rewritten every this many optimiser
#: steps (a few minutes of demo training on a CPU), so a killed run loses at most that much
CHECKPOINT_EVERY_N_STEPS = 200


def build_system(config: dict):
    """Instantiate the LightningModule named by ``config['system']['name']``."""
    name = get(config, "system.name")
    if not name:
        raise DdtseError("config has no system.name (e.g. ddtse, sgmse, discriminative)")
    return SYSTEMS.get(name)(config)


class CurvePlotter(Callback):
    """Keeps per-epoch scalars and writes ``training_curves.png`` and ``.json`` into the experiment dir.

    ``history`` is ``{key: [(epoch, value), ...]}`` with one value per epoch (the latest recorded).
    A resumed run starts from the curves already on disk, up to the epoch it resumes in, so the
    files stay whole across resumes."""

    def __init__(self, exp_dir: Path, resume_epoch: int | None = None):
        self.exp_dir = Path(exp_dir)
        self.history: dict[str, list[tuple[int, float]]] = {}
        if resume_epoch is not None:
            self.history = {k: [(e, v) for e, v in pts if e < resume_epoch]
                            for k, pts in read_curves(self.exp_dir / "training_curves.json").items()}

    def _record(self, trainer):
        epoch = int(trainer.current_epoch)
        points = [p for p in self.history.get("global_step", []) if p[0] != epoch]  # x axis of learning curves
        self.history["global_step"] = sorted(points + [(epoch, float(trainer.global_step))])
        for key, value in trainer.callback_metrics.items():
            if key.startswith(("train/", "val/")) and torch.is_tensor(value) and value.numel() == 1:
                points = [p for p in self.history.get(key, []) if p[0] != epoch]
                self.history[key] = sorted(points + [(epoch, float(value))])

    def on_validation_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self._record(trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        self._record(trainer)
        if trainer.is_global_zero:
            self.write()

    def write(self):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        keys = sorted(k for k in self.history if not k.endswith("_step") and k != "global_step")
        if not keys:
            return
        tmp = self.exp_dir / "training_curves.json.tmp"
        tmp.write_text(json.dumps(self.history, indent=1))
        tmp.replace(self.exp_dir / "training_curves.json")
        fig, axes = plt.subplots(len(keys), 1, figsize=(6, 2.0 * len(keys)), squeeze=False)
        for ax, key in zip(axes[:, 0], keys):
            epochs, values = zip(*self.history[key])
            ax.plot(epochs, values, marker=".")
            ax.set_ylabel(key, fontsize=8)
            ax.grid(alpha=0.3)
        axes[-1, 0].set_xlabel("epoch")
        fig.tight_layout()
        fig.savefig(self.exp_dir / "training_curves.tmp.png", dpi=100)
        plt.close(fig)
        (self.exp_dir / "training_curves.tmp.png").replace(self.exp_dir / "training_curves.png")


def read_curves(path: Path) -> dict[str, list[tuple[int, float]]]:
    """The curves of a training_curves.json (``{}`` if absent or unreadable: they are redrawn)."""
    try:
        data = json.loads(Path(path).read_text())
        return {str(k): [(int(e), float(v)) for e, v in pts] for k, pts in data.items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def _check_resumable(config: dict, exp_dir: Path) -> None:
    """Refuse to resume a run whose saved model/system config differs from this one."""
    saved_path = exp_dir / "config.yaml"
    if not saved_path.exists():
        return
    saved = load_yaml(saved_path)
    for section in ("model", "system"):
        if saved.get(section) != config.get(section):
            raise DdtseError(
                f"{exp_dir} holds a run with a different '{section}' config; "
                "use another --out_dir, or delete the old run to start over"
            )


def _prepare_exp_dir(exp_dir: Path) -> None:
    """Create the experiment folder; an unwritable one is one clear error before anything is built."""
    try:
        (exp_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=exp_dir / "checkpoints"):  # one per process (DDP ranks)
            pass
    except OSError as exc:
        raise DdtseError(f"cannot write to the experiment folder {exp_dir} ({exc.strerror or exc}); "
                         "choose another --out_dir") from exc


def _resume_point(last: Path) -> tuple[int, int]:
    """(global step, epoch) of last.ckpt, read safely; a truncated or unsafe file is one clear error."""
    try:
        ckpt = load_checkpoint(last, what="last checkpoint")
    except DdtseError as exc:
        raise DdtseError(f"cannot resume: {exc}; move it away (or pass --no_resume) to start over") from exc
    return checkpoint_step(ckpt), int(ckpt.get("epoch", 0) or 0)


def _is_rank_zero() -> bool:
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) == 0


def run_training(config: dict, exp_dir: str | Path, resume: bool = True):
    """Train the system described by ``config`` in ``exp_dir``; returns the Trainer.

    Validates the config (ddtse/schema.py) first; writes exp_dir/config.yaml before training,
    TensorBoard logs to exp_dir/tb, checkpoints (last + best-k by ``system.monitor``) to
    exp_dir/checkpoints, last.ckpt also every ``system.checkpoint_every_n_steps`` steps; resumes
    from last.ckpt (read with weights_only=True) and says so.
    """
    from ddtse.data.datamodule import build_datamodule

    validate_config(config)
    exp_dir = Path(exp_dir)
    ckpt_dir = exp_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    ckpt_path = str(last) if (resume and last.exists()) else None
    resume_step = resume_epoch = None
    if ckpt_path:
        _check_resumable(config, exp_dir)
        resume_step, resume_epoch = _resume_point(last)
    _prepare_exp_dir(exp_dir)
    seed = int(config.setdefault("seed", 0))
    L.seed_everything(seed, workers=True, verbose=False)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)

    datamodule = build_datamodule(config["data"], seed=seed)
    system = build_system(config)
    init_from = get(config, "system.init_from")
    if init_from and ckpt_path is None:
        system.load_init_weights(init_from)

    if _is_rank_zero():
        save_config(config, exp_dir / "config.yaml")

    monitor = get(config, "system.monitor", getattr(system, "default_monitor", ("val/si_sdr", "max"))[0])
    mode = get(config, "system.monitor_mode", getattr(system, "default_monitor", ("val/si_sdr", "max"))[1])
    every = get(config, "system.checkpoint_every_n_steps", CHECKPOINT_EVERY_N_STEPS)
    if every is not None and int(every) < 0:
        raise DdtseError(f"system.checkpoint_every_n_steps must be >= 0 (0 = only at epoch ends), got {every}")
    callbacks: list[Callback] = [
        ModelCheckpoint(
            dirpath=ckpt_dir, filename="best-epoch{epoch:03d}-step{step}", auto_insert_metric_name=False,
            monitor=monitor, mode=mode, save_top_k=int(get(config, "system.save_top_k", 3)), save_last=True,
            enable_version_counter=False,
        ),
        LearningRateMonitor(logging_interval="epoch"),
        CurvePlotter(exp_dir, resume_epoch),
    ]
    if every:
        # a second checkpointer that only rewrites last.ckpt, every N optimiser steps
        callbacks.insert(1, ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=int(every), save_top_k=0,
                                            save_last=True, enable_version_counter=False))
    patience = get(config, "system.early_stop_patience")
    if patience:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=int(patience)))

    trainer_cfg = {**TRAINER_DEFAULTS, **(config.get("trainer") or {})}
    logger = TensorBoardLogger(save_dir=str(exp_dir), name="tb", version="", default_hp_metric=False)
    try:
        trainer = L.Trainer(callbacks=callbacks, logger=logger, default_root_dir=str(exp_dir), **trainer_cfg)
    except (MisconfigurationException, ValueError) as exc:
        raise DdtseError(f"bad trainer config: {str(exc).splitlines()[0]}") from exc
    if ckpt_path and trainer.is_global_zero:
        print(f"resuming from {last} at step {resume_step} (epoch {resume_epoch})", flush=True)
    with safe_load_environment():
        trainer.fit(system, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    return trainer
