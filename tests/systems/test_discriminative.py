"""DiscriminativeSystem (ddtse/systems/discriminative.py): masked loss, speaker CE, extraction, training."""
import pytest
import torch
from torch import nn

from ddtse.errors import DdtseError
from ddtse.metrics import si_sdr
from ddtse.registry import SYSTEMS
from ddtse.systems.discriminative import DiscriminativeSystem

TINY_MODEL = dict(name="td_speakerbeam", N=16, L=8, B=16, H=24, X=2, R=1, adapt_layer=0)


pytestmark = pytest.mark.usefixtures("one_thread")


def config(model=None, **system):
    return {"data": {"sample_rate": 8000}, "model": {**TINY_MODEL, **(model or {})},
            "system": {"name": "discriminative", "lr": 1e-3, "ema_decay": 0.0, **system}}


def make_batch(b=2, t=2000, te=1600, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(b, t, generator=g) * 0.3
    mixture = (target + 0.5 * torch.randn(b, t, generator=g))[:, None]
    return {"mixture": mixture, "target": target, "enrollment": torch.randn(b, te, generator=g),
            "lengths": torch.full((b,), t), "enrollment_lengths": torch.full((b,), te)}


class ScaleOnly(nn.Module):
    """An enrollment-free stand-in extractor: estimate = gain * reference channel."""

    needs_enrollment = False

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(2.0))

    def forward(self, mixture):
        return self.gain * mixture[:, 0]


class ScaleSystem(DiscriminativeSystem):
    def build_model(self):
        return ScaleOnly()


def test_registered():
    assert SYSTEMS.get("discriminative") is DiscriminativeSystem
    assert DiscriminativeSystem(config()).needs_enrollment is True


def test_enrollment_free_model_and_masked_loss_ignores_padding():
    system = ScaleSystem(config())
    assert system.needs_enrollment is False
    g = torch.Generator().manual_seed(3)
    target = torch.randn(2, 1000, generator=g)
    mixture = (target + 0.3 * torch.randn(2, 1000, generator=g))[:, None].clone()
    mixture[1, 0, 600:] = 50 * torch.randn(400, generator=g)  # garbage in the padded tail
    target[1, 600:] = 0.0
    batch = {"mixture": mixture, "target": target, "lengths": torch.tensor([1000, 600])}
    loss, logs = system.training_loss(batch)
    expected = -(si_sdr(mixture[0, 0], target[0]) + si_sdr(mixture[1, 0, :600], target[1, :600])) / 2
    assert loss.item() == pytest.approx(expected.item(), abs=1e-3)
    unmasked, _ = system.training_loss({**batch, "lengths": None})
    assert unmasked.item() > loss.item() + 5  # the tail would have counted
    estimate, info = system.extract_batch(batch)
    assert estimate.shape == (2, 1000) and info == {"nfe": 1}


def test_speaker_loss():
    system = DiscriminativeSystem(config(model={"num_speakers": 4}, speaker_loss_weight=0.5))
    batch = make_batch()
    with torch.no_grad():
        loss_plain = -si_sdr(system.run_model(system.model, batch), batch["target"]).mean()
    loss, logs = system.training_loss({**batch, "speaker_index": torch.tensor([1, 3])})
    assert "speaker_ce" in logs
    assert loss.item() == pytest.approx(loss_plain.item() + 0.5 * logs["speaker_ce"].item(), abs=1e-4)
    with pytest.raises(DdtseError, match="speaker_index"):
        system.training_loss(batch)
    with pytest.raises(DdtseError, match="num_speakers"):
        DiscriminativeSystem(config(speaker_loss_weight=0.5))


def test_extract_batch_uses_ema():
    system = DiscriminativeSystem(config(model={"adaptation": "asa_mp", "mp_kernel": 4}, ema_decay=0.9))
    with torch.no_grad():
        for p in system.model.parameters():
            p.add_(0.01)
    batch = make_batch(t=1999)
    est_ema, info = system.extract_batch(batch)
    est_raw, _ = system.extract_batch(batch, use_ema=False)
    assert est_ema.shape == (2, 1999) and info["nfe"] == 1
    with torch.no_grad():
        ref = system.ema_model(batch["mixture"], batch["enrollment"], batch["enrollment_lengths"],
                               lengths=batch["lengths"])
    assert torch.allclose(est_ema, ref) and not torch.allclose(est_ema, est_raw)


def test_few_steps_lower_the_loss():
    torch.manual_seed(0)
    system = DiscriminativeSystem(config(model={"adaptation": "asa"}))
    optimizer = system.configure_optimizers()
    batch = make_batch(t=1200, te=800)
    losses = []
    for _ in range(6):
        loss, _ = system.training_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(system.model.parameters(), 5.0)
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5
