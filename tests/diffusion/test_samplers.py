import pytest
import torch

from ddtse.diffusion import OUVESDE, ddtse_refine, ddtse_sample, pc_sample, refinement_schedule
from ddtse.errors import DdtseError

SDE = OUVESDE()


def toy(seed=0, shape=(2, 1, 16, 32)):
    g = torch.Generator().manual_seed(seed)
    x0 = 0.3 * torch.randn(shape, dtype=torch.complex64, generator=g)
    y = x0 + 0.3 * torch.randn(shape, dtype=torch.complex64, generator=g)
    return x0, y


class Counting:
    """A fake denoiser: records its inputs and returns a fixed function of them."""

    def __init__(self, fn):
        self.fn, self.calls, self.inputs = fn, 0, []

    def __call__(self, x):
        self.calls += 1
        self.inputs.append(x.clone())
        return self.fn(x)


@pytest.mark.parametrize("K", [0, 1, 3, 10])
def test_ddtse_perfect_denoiser_and_nfe(K):
    x0, y = toy()
    D = Counting(lambda x: x0.clone())
    out, nfe = ddtse_sample(D, y, SDE, K=K, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, x0)
    assert nfe == 1 + K == D.calls


def test_ddtse_first_input_is_prior_and_renoising_uses_mean():
    x0, y = toy()
    D = Counting(lambda x: x0.clone())
    ddtse_sample(D, y, SDE, K=3, generator=torch.Generator().manual_seed(0))
    # first call: x_T = y + sigma(1) z
    r = D.inputs[0] - y
    assert r.abs().pow(2).mean().item() == pytest.approx(SDE.std(1.0).item() ** 2, rel=0.25)
    # steps at t = 1, 0.515, 0.03: input - mu(x0, y, t) has std sigma(t), fresh noise each time
    for inp, t in zip(D.inputs[1:], [1.0, 0.515, 0.03]):
        resid = inp - SDE.mean(x0, y, torch.tensor([t, t]))
        assert resid.abs().pow(2).mean().sqrt().item() == pytest.approx(SDE.std(t).item(), rel=0.25)
    assert not torch.allclose(D.inputs[1] - y, D.inputs[2] - y)


def test_ddtse_deterministic_with_seed():
    x0, y = toy()
    D = lambda x: 0.5 * x + 0.1  # noqa: E731
    a, _ = ddtse_sample(D, y, SDE, K=4, generator=torch.Generator().manual_seed(100))
    b, _ = ddtse_sample(D, y, SDE, K=4, generator=torch.Generator().manual_seed(100))
    c, _ = ddtse_sample(D, y, SDE, K=4, generator=torch.Generator().manual_seed(101))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_refinement_schedule_rule():
    assert refinement_schedule(10, 1.0, SDE) == pytest.approx(torch.linspace(1, 0.03, 10).tolist())
    # K' = max(1, round(K (t_start - t_eps) / (1 - t_eps)))
    s = refinement_schedule(10, 0.515, SDE)
    assert len(s) == 5 and s[0] == pytest.approx(0.515) and s[-1] == pytest.approx(0.03)
    assert len(refinement_schedule(10, 0.05, SDE)) == 1
    assert refinement_schedule(0, 0.5, SDE) == []
    with pytest.raises(DdtseError):
        refinement_schedule(10, 1.5, SDE)
    with pytest.raises(DdtseError):
        refinement_schedule(10, 0.01, SDE)


def test_refine_starts_from_estimate_and_counts_steps():
    x0, y = toy()
    est = x0 + 0.05
    D = Counting(lambda x: x0.clone())
    out, nfe = ddtse_refine(D, y, est, SDE, K=10, t_start=1.0, generator=torch.Generator().manual_seed(0))
    assert nfe == 10 == D.calls and torch.equal(out, x0)
    # the first input is built around mu(estimate, y, 1), not the prior
    resid = D.inputs[0] - SDE.mean(est, y, torch.tensor([1.0, 1.0]))
    assert resid.abs().pow(2).mean().sqrt().item() == pytest.approx(SDE.std(1.0).item(), rel=0.25)
    D2 = Counting(lambda x: x0.clone())
    _, nfe2 = ddtse_refine(D2, y, est, SDE, K=10, t_start=0.5, generator=torch.Generator().manual_seed(0))
    assert nfe2 == D2.calls == 5
    out0, nfe0 = ddtse_refine(D2, y, est, SDE, K=0)
    assert nfe0 == 0 and torch.equal(out0, est)


def exact_score(x0, y):
    def score(x, t):
        return -(x - SDE.mean(x0, y, t)) / SDE.std(t).reshape(-1, 1, 1, 1) ** 2
    return score


def test_pc_exact_score_lands_on_x0():
    x0, y = toy(shape=(2, 1, 16, 32))
    x0, y = x0.to(torch.complex128), y.to(torch.complex128)
    calls = []
    score = exact_score(x0, y)

    def counted(x, t):
        calls.append(t[0].item())
        return score(x, t)

    out, nfe = pc_sample(counted, y, SDE, N=30, snr=0.5, corrector_steps=1, generator=torch.Generator().manual_seed(1))
    assert nfe == 60 == len(calls)
    assert calls[0] == pytest.approx(1.0) and calls[-1] == pytest.approx(0.03)
    err = (out - x0).abs().pow(2).mean() / x0.abs().pow(2).mean()
    assert err.item() < 1e-3  # the mixture itself is at ~1.0


def test_pc_nfe_and_determinism():
    x0, y = toy()
    score = exact_score(x0, y)
    _, n0 = pc_sample(score, y, SDE, N=5, corrector_steps=0)
    _, n2 = pc_sample(score, y, SDE, N=5, corrector_steps=2)
    assert (n0, n2) == (5, 15)
    a, _ = pc_sample(score, y, SDE, N=5, generator=torch.Generator().manual_seed(7))
    b, _ = pc_sample(score, y, SDE, N=5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_pc_last_step_uses_t_eps():
    # with a zero score and no corrector, the mean follows x <- x - theta (y - x) dt; total dt = 1 (0.97 + 0.03)
    y = torch.zeros(1, 1, 2, 2, dtype=torch.complex128)
    sde = OUVESDE()
    out, _ = pc_sample(lambda x, t: torch.zeros_like(x), y, sde, N=2, corrector_steps=0,
                       generator=torch.Generator().manual_seed(0))
    # x_T = z1; x1 = (1 + 0.97 theta) x_T + g(1) sqrt(.97) z2; mean = (1 + 0.03 theta) x1
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(y.shape, dtype=y.dtype, generator=g) * sde.std(1.0).item()
    z2 = torch.randn(y.shape, dtype=y.dtype, generator=g)
    x1 = (1 + 0.97 * 1.5) * z1 + sde.g(1.0).item() * 0.97 ** 0.5 * z2
    assert torch.allclose(out, (1 + 0.03 * 1.5) * x1, atol=1e-5)
