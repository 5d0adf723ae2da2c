import math

import pytest
import torch

from ddtse.errors import DdtseError
from ddtse.registry import SYSTEMS
from ddtse.systems.score import ScoreSystem

SR = 4000


pytestmark = pytest.mark.usefixtures("one_thread")


def make_config():
    backbone = {"name": "ncsnpp", "in_channels": 4, "out_channels": 2, "nf": 16, "ch_mult": [1, 2, 2],
                "num_res_blocks": 1, "attn_resolutions": [], "bottleneck_attention": True,
                "time_conditional": True, "bottleneck_fusion": True}
    speaker = {"name": "spectral_speaker_encoder", "emb_dim": 32, "sample_rate": SR, "n_fft": 128,
               "win_length": 100, "hop_length": 40, "n_mels": 20, "channels": 32, "layers": 2}
    return {"seed": 0, "data": {"sample_rate": SR}, "model": {"name": "ddtse_net", "backbone": backbone, "speaker": speaker},
            "system": {"name": "sgmse", "lr": 1e-3, "ema_decay": 0.999}, "sampler": {"N": 2, "seed": 100}}


def make_batch(lengths=(1999, 1500)):
    g = torch.Generator().manual_seed(0)
    T = max(lengths)
    t = torch.arange(T) / SR
    target = torch.stack([0.3 * torch.sin(2 * math.pi * (300 + 200 * b) * t) for b in range(len(lengths))])
    lengths = torch.tensor(lengths)
    keep = (torch.arange(T)[None] < lengths[:, None]).float()
    mixture = (target + 0.1 * torch.randn(len(lengths), T, generator=g)) * keep
    return {"mixture": mixture[:, None], "target": target * keep, "lengths": lengths,
            "enrollment": 0.1 * torch.randn(len(lengths), 2000, generator=g),
            "enrollment_lengths": torch.tensor([2000, 1700][: len(lengths)])}


@pytest.fixture(scope="module")
def system():
    torch.manual_seed(0)
    return SYSTEMS.get("sgmse")(make_config())


def test_registered_small_and_checks(system):
    assert isinstance(system, ScoreSystem)
    assert sum(p.numel() for p in system.model.parameters()) < 500_000
    cfg = make_config()
    cfg["model"]["backbone"]["time_conditional"] = False
    with pytest.raises(DdtseError):
        SYSTEMS.get("sgmse")(cfg)


def test_score_is_negated_output_over_t(system, monkeypatch):
    """spec §3: scale_by_sigma divides by t (not sigma(t)), then the score model negates."""
    seen = {}

    def fake(net, x, emb, t=None):
        seen["channels"] = x.shape[1]
        return torch.full_like(x[:, :1], 2.0 + 1.0j)

    monkeypatch.setattr(system, "run_backbone", fake)
    x = torch.zeros(2, 1, 64, 64, dtype=torch.complex64)
    t = torch.tensor([0.5, 0.1])
    s = system.score(system.model, x, x, t, None)
    assert seen["channels"] == 2  # [x_t, y] as complex channels -> 4 real channels
    assert torch.allclose(s[0], torch.full_like(s[0], -(2.0 + 1.0j) / 0.5))
    assert torch.allclose(s[1], torch.full_like(s[1], -(2.0 + 1.0j) / 0.1))


def test_loss_zero_for_exact_score(system, monkeypatch):
    """The target of score matching is -(x_t - mu)/sigma^2 = -z/sigma: loss 0 for that score."""
    batch = make_batch()
    y, x0, _, _ = system.prepare(batch)

    def exact(net, x_t, y_, t, emb):
        return -(x_t - system.sde.mean(x0, y_, t)) / system.sde.std(t).reshape(-1, 1, 1, 1) ** 2

    monkeypatch.setattr(system, "score", exact)
    loss, _ = system.training_loss(batch)
    assert loss.item() < 1e-6
    monkeypatch.setattr(system, "score", lambda net, x_t, y_, t, emb: torch.zeros_like(x_t))
    loss0, _ = system.training_loss(batch)
    # with s = 0 the loss is 0.5 * sum |z|^2 over valid bins: ~0.5 * bins (E|z|^2 = 1)
    bins = 64 * sum(int(n) // 32 + 1 for n in batch["lengths"]) / 2
    assert loss0.item() == pytest.approx(0.5 * bins, rel=0.05)


def test_training_step_has_gradient(system):
    loss, _ = system.training_loss(make_batch())
    loss.backward()
    assert torch.isfinite(loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in system.model.parameters())
    system.model.zero_grad()


def test_extract_batch_pc(system):
    batch = make_batch(lengths=(1999, 1201))
    est, info = system.extract_batch(batch, N=2, corrector_steps=1, seed=3)
    assert est.shape == (2, 1999) and torch.isfinite(est).all()
    assert info["nfe"] == 4 and info["sampler"] == "pc"
    assert torch.all(est[1, 1201:] == 0)
    again, _ = system.extract_batch(batch, N=2, corrector_steps=1, seed=3)
    assert torch.equal(est, again)
    _, info = system.extract_batch(batch, N=3, corrector_steps=0)
    assert info["nfe"] == 3
    with pytest.raises(DdtseError, match=r"unknown option 'K' for system 'sgmse' \(valid options: N, corrector_steps, seed, snr\)"):
        system.extract_batch(batch, N=3, K=10)  # each system takes only its own options (issue 14)
    with pytest.raises(DdtseError, match="'N' of system 'sgmse' must lie in"):
        system.extract_batch(batch, N=0)
    assert system.extract_batch(make_batch(lengths=(700,)))[1]["nfe"] == 4  # N from the sampler section
    with pytest.raises(DdtseError):
        system.extract_batch(batch, initial_estimate=batch["target"])
    with pytest.raises(DdtseError):
        system.extract_batch(batch, steps=2)
