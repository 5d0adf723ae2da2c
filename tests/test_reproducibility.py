"""Seeded training is reproducible on one machine: two runs of the same config give the same weights,
and a different seed gives different ones (DDTSE: random t, noise and the stage-2 branch draws)."""
import copy
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_ckpt import make_tiny_corpus, tiny_config as tiny_model_config  # noqa: E402

from ddtse.checkpoint import load_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_tiny_corpus(tmp_path_factory)


def ddtse_config(root: Path, seed: int, stage: int = 1) -> dict:
    cfg = copy.deepcopy(tiny_model_config("ddtse", 8000))
    split = lambda s, **kw: {"name": "libri2mix", "root": str(root), "split": s, "mode": "min",  # noqa: E731
                             "mixture_type": "mix_both", **kw}
    cfg.update({"seed": seed,
                "data": {"sample_rate": 8000, "batch_size": 2, "valid_batch_size": 1, "num_workers": 0,
                         "train": split("train-100", segment_seconds=0.5, enrollment_seconds=1.0),
                         "valid": split("dev", max_items=1), "test": split("test")},
                "trainer": {"max_epochs": 2, "limit_train_batches": 3, "limit_val_batches": 1,
                            "accelerator": "cpu", "devices": 1, "enable_progress_bar": False,
                            "num_sanity_val_steps": 0, "log_every_n_steps": 1}})
    cfg["system"].update({"stage": stage, "val_metric_items": 0, "ema_decay": 0.9})
    if stage == 2:
        cfg["system"].update({"max_threshold": 1.0, "threshold_epochs": 1})
    return cfg


def _weights(exp: Path) -> dict:
    return load_checkpoint(exp / "checkpoints" / "last.ckpt")["state_dict"]


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def test_seeded_ddtse_training_is_bitwise_reproducible(corpus, tmp_path, one_thread):
    from ddtse.training import run_training

    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        run_training(ddtse_config(corpus, seed), tmp_path / name, resume=False)
        runs[name] = _weights(tmp_path / name)
    assert _max_diff(runs["a"], runs["b"]) == 0.0
    assert _max_diff(runs["a"], runs["c"]) > 1e-6  # the seed matters
    # stage 2 (both emulation branches) from the same stage-1 weights
    for name in ("s2a", "s2b"):
        cfg = ddtse_config(corpus, 0, stage=2)
        cfg["system"]["init_from"] = str(tmp_path / "a" / "checkpoints" / "last.ckpt")
        run_training(cfg, tmp_path / name, resume=False)
    assert _max_diff(_weights(tmp_path / "s2a"), _weights(tmp_path / "s2b")) == 0.0
    assert torch.is_tensor(next(iter(runs["a"].values())))
