import math

import pytest
import torch

from ddtse.diffusion import OUVESDE, build_sde, loss_weight
from ddtse.errors import DdtseError

THETA, SMIN, SMAX = 1.5, 0.05, 0.5
L = math.log(SMAX / SMIN)


def hand_std(t):
    return math.sqrt(SMIN ** 2 * (math.exp(2 * (THETA + L) * t) - 1) * math.exp(-2 * THETA * t) * L / (THETA + L))


def test_std_quoted_values():
    sde = OUVESDE()
    assert sde.std(1.0).item() == pytest.approx(0.389, abs=5e-4)
    assert sde.std(0.03).item() == pytest.approx(0.0188, abs=5e-5)
    assert sde.std(0.5).item() == pytest.approx(0.1217, abs=5e-5)
    assert sde.std(1.0).item() < SMAX  # not sigma_max


@pytest.mark.parametrize("t", [0.03, 0.2, 0.5, 0.77, 1.0])
def test_std_and_g_match_formula(t):
    sde = OUVESDE()
    assert sde.std(torch.tensor([t], dtype=torch.float64)).item() == pytest.approx(hand_std(t), rel=1e-9)
    assert sde.g(t).item() == pytest.approx(SMIN * (SMAX / SMIN) ** t * math.sqrt(2 * L), rel=1e-5)


def test_mean_per_item():
    sde = OUVESDE()
    x0 = torch.tensor([[1 + 2j, -1j], [0.5, 3 - 1j]], dtype=torch.complex128)
    y = torch.tensor([[0.2j, 1.0], [-1 + 1j, 2j]], dtype=torch.complex128)
    t = torch.tensor([0.3, 1.0], dtype=torch.float64)
    out = sde.mean(x0, y, t)
    for b in range(2):
        a = math.exp(-THETA * t[b].item())
        assert torch.allclose(out[b], a * x0[b] + (1 - a) * y[b])
    assert math.exp(-THETA) == pytest.approx(0.223, abs=1e-3)


def test_complex_noise_variance_and_perturb():
    sde = OUVESDE()
    gen = torch.Generator().manual_seed(0)
    x0 = torch.zeros(4, 1, 64, 256, dtype=torch.complex64)
    y = torch.ones_like(x0)
    t = torch.tensor([0.03, 0.5, 1.0, 0.7])
    x_t, z = sde.perturb(x0, y, t, gen)
    assert z.is_complex()
    assert z.real.var().item() == pytest.approx(0.5, abs=0.02)
    assert z.imag.var().item() == pytest.approx(0.5, abs=0.02)
    # x_t - mu = sigma(t) z, total variance sigma(t)^2 per item
    mu = sde.mean(x0, y, t)
    assert torch.allclose(x_t - mu, sde.std(t).reshape(-1, 1, 1, 1) * z, atol=1e-6)
    for b in range(4):
        var = (x_t[b] - mu[b]).abs().pow(2).mean().item()
        assert var == pytest.approx(hand_std(t[b].item()) ** 2, rel=0.05)


def test_prior_and_sample_t_and_determinism():
    sde = OUVESDE()
    y = torch.full((2, 1, 32, 64), 0.3 + 0.1j, dtype=torch.complex64)
    a = sde.prior_sample(y, torch.Generator().manual_seed(3))
    b = sde.prior_sample(y, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert (a - y).abs().pow(2).mean().item() == pytest.approx(hand_std(1.0) ** 2, rel=0.1)
    t = sde.sample_t(10000, torch.Generator().manual_seed(1))
    assert t.shape == (10000,) and t.min() >= 0.03 and t.max() <= 1.0
    assert t.mean().item() == pytest.approx((1 + 0.03) / 2, abs=0.01)


def test_loss_weight_values():
    assert loss_weight(torch.tensor(0.03)).item() == pytest.approx(32.8, abs=0.05)
    assert loss_weight(torch.tensor(1.0)).item() == pytest.approx(0.58, abs=0.005)
    assert loss_weight(torch.tensor(0.5)).item() == pytest.approx(1 / (math.exp(0.5) - 1), rel=1e-6)


def test_build_sde():
    assert isinstance(build_sde(None), OUVESDE)
    assert build_sde({"name": "ouve", "theta": 2.0}).theta == 2.0
    with pytest.raises(DdtseError):
        build_sde({"name": "vesde"})
    with pytest.raises(DdtseError):
        build_sde({"name": "ouve", "sigma_min": 1.0, "sigma_max": 0.5})
