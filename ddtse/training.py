"""run_training: one experiment directory, resolved config, Lightning Trainer, checkpoints, resume."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from ddtse.config import get, load_yaml, save_config
from ddtse.errors import DdtseError
from ddtse.registry import SYSTEMS

TRAINER_DEFAULTS = {"max_epochs": 100, "accelerator": "auto", "devices": "auto", "log_every_n_steps": 10}


def build_system(config: dict):
    """Instantiate the LightningModule named by ``config['system']['name']``."""
    name = get(config, "system.name")
    if not name:
        raise DdtseError("config has no system.name (e.g. ddtse, sgmse, discriminative)")
    return SYSTEMS.get(name)(config)


class CurvePlotter(Callback):
    """Keeps per-epoch scalars and writes ``training_curves.png`` and ``.json`` into the experiment dir."""

    def __init__(self, exp_dir: Path):
        self.exp_dir = Path(exp_dir)
        self.history: dict[str, list[tuple[int, float]]] = {}

    def _record(self, trainer):
        for key, value in trainer.callback_metrics.items():
            if key.startswith(("train/", "val/")) and torch.is_tensor(value) and value.numel() == 1:
                self.history.setdefault(key, []).append((trainer.current_epoch, float(value)))

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

        keys = sorted(k for k in self.history if not k.endswith("_step"))
        if not keys:
            return
        (self.exp_dir / "training_curves.json").write_text(json.dumps(self.history, indent=1))
        fig, axes = plt.subplots(len(keys), 1, figsize=(6, 2.0 * len(keys)), squeeze=False)
        for ax, key in zip(axes[:, 0], keys):
            epochs, values = zip(*self.history[key])
            ax.plot(epochs, values, marker=".")
            ax.set_ylabel(key, fontsize=8)
            ax.grid(alpha=0.3)
        axes[-1, 0].set_xlabel("epoch")
        fig.tight_layout()
        fig.savefig(self.exp_dir / "training_curves.png", dpi=100)
        plt.close(fig)


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
                "use another --base_dir, or delete the old run to start over"
            )


def run_training(config: dict, exp_dir: str | Path, resume: bool = True):
    """Train the system described by ``config`` in ``exp_dir``; returns the Trainer.

    Writes exp_dir/config.yaml before training, TensorBoard logs to exp_dir/tb, checkpoints
    (last + best-k by ``system.monitor``) to exp_dir/checkpoints; resumes from last.ckpt.
    """
    from ddtse.data.datamodule import build_datamodule

    exp_dir = Path(exp_dir)
    ckpt_dir = exp_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    ckpt_path = str(last) if (resume and last.exists()) else None
    if ckpt_path:
        _check_resumable(config, exp_dir)
    seed = int(config.setdefault("seed", 0))
    L.seed_everything(seed, workers=True, verbose=False)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)

    datamodule = build_datamodule(config["data"], seed=seed)
    system = build_system(config)
    init_from = get(config, "system.init_from")
    if init_from and ckpt_path is None:
        system.load_init_weights(init_from)

    if int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) == 0:
        save_config(config, exp_dir / "config.yaml")

    monitor = get(config, "system.monitor", "val/si_sdr")
    mode = get(config, "system.monitor_mode", "max")
    callbacks: list[Callback] = [
        ModelCheckpoint(
            dirpath=ckpt_dir, filename="best-epoch{epoch:03d}-step{step}", auto_insert_metric_name=False,
            monitor=monitor, mode=mode, save_top_k=int(get(config, "system.save_top_k", 3)), save_last=True,
        ),
        LearningRateMonitor(logging_interval="epoch"),
        CurvePlotter(exp_dir),
    ]
    patience = get(config, "system.early_stop_patience")
    if patience:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=int(patience)))

    trainer_cfg = {**TRAINER_DEFAULTS, **(config.get("trainer") or {})}
    logger = TensorBoardLogger(save_dir=str(exp_dir), name="tb", version="", default_hp_metric=False)
    trainer = L.Trainer(callbacks=callbacks, logger=logger, default_root_dir=str(exp_dir), **trainer_cfg)
    trainer.fit(system, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer
