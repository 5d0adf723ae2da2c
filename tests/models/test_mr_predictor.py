"""AD-FlowTSE's mixing-ratio predictor (issue 23): outputs in (0, 1), nearly gain-invariant, and its
checkpoint really loaded (strictly) by adflow_tse inference."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_ckpt import tiny_config  # noqa: E402

from ddtse.errors import DdtseError  # noqa: E402
from ddtse.registry import SYSTEMS  # noqa: E402
from ddtse.systems.base import CHECKPOINT_KEY  # noqa: E402
from ddtse.systems.mr_predictor import load_mr_predictor  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
SR = 8000
ENCODER = {"name": "ecapa_tdnn", "emb_dim": 16, "n_fft": 128, "win_length": 100, "hop_length": 40, "n_mels": 20,
           "channels": 16, "se_channels": 8, "attention_channels": 8}
CONFIG = {"seed": 0, "data": {"sample_rate": SR}, "model": {"name": "mr_predictor", "encoder": ENCODER},
          "system": {"name": "mr_predictor", "lr": 1e-3, "ema_decay": 0.0}}


def _batch(seed=0, t=4000):
    g = torch.Generator().manual_seed(seed)
    target, other = 0.3 * torch.randn(3, t, generator=g), 0.2 * torch.randn(3, t, generator=g)
    return {"mixture": (target + other)[:, None], "target": target, "lengths": torch.full((3,), t),
            "enrollment": 0.3 * torch.randn(3, SR, generator=g), "enrollment_lengths": torch.full((3,), SR)}


def _save(system, path):
    torch.save({CHECKPOINT_KEY: "mr_predictor", "state_dict": system.state_dict(),
                "hyper_parameters": {"config": system.config}}, path)
    return path


def test_predictor_range_gain_invariance_loss_and_strict_loading(tmp_path):
    torch.manual_seed(0)
    system = SYSTEMS.get("mr_predictor")(CONFIG).eval()
    batch = _batch()
    mix, enr = batch["mixture"][:, 0], batch["enrollment"]
    tau = system.model(mix, enr)
    assert tau.shape == (3,) and bool(((tau > 0) & (tau < 1)).all())
    assert torch.allclose(system.model(7.0 * mix, enr), tau, atol=1e-3)
    system.train()
    loss, logs = system.training_loss(batch)
    assert loss.requires_grad and 0 < float(loss) < 1
    path = _save(system.eval(), tmp_path / "mr.ckpt")
    loaded = load_mr_predictor(str(path))
    assert torch.equal(loaded(mix, enr), system.model(mix, enr))  # the trained weights, not fresh ones
    state = torch.load(path, weights_only=True)
    state["state_dict"].pop(next(k for k in state["state_dict"] if k.startswith("model.head")))
    torch.save(state, tmp_path / "broken.ckpt")
    with pytest.raises(DdtseError, match="do not fit"):
        load_mr_predictor(str(tmp_path / "broken.ckpt"))
    with pytest.raises(DdtseError, match="not an mr_predictor checkpoint"):
        torch.save({CHECKPOINT_KEY: "ddtse", "state_dict": {}, "hyper_parameters": {"config": {}}}, tmp_path / "x.ckpt")
        load_mr_predictor(str(tmp_path / "x.ckpt"))

    # adflow_tse starts where the loaded predictor says, with one predictor call
    flow = SYSTEMS.get("adflow_tse")(tiny_config("adflow_tse", SR)).eval()
    est, info = flow.extract_batch(dict(batch), use_ema=False, mr_source="predictor", mr_predictor=str(path))
    assert info["predictor_calls"] == 1 and info["nfe"] == 1
    assert info["tau_hat"] == [round(float(v), 4) for v in system.model(mix, enr, batch["lengths"], batch["enrollment_lengths"])]
    assert est.shape == mix.shape and torch.isfinite(est).all()
