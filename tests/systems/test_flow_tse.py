"""The flow systems (issue 23, spec flow_tse.md "CPU unit checks"): path endpoints, the oracle one
step, NFE counted by a wrapper, the linear toy (MeanFlow and alpha-target identities, losses ~ 0 on
the analytic model), the curriculum, the adaptive loss, chunking, and the one-line refusals."""
from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_ckpt import tiny_config  # noqa: E402

from ddtse.errors import DdtseError  # noqa: E402
from ddtse.flow import core  # noqa: E402
from ddtse.registry import SYSTEMS  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
SR = 8000


def _system(kind: str, **system):
    cfg = tiny_config(kind, SR)
    cfg["system"].update(system)
    torch.manual_seed(0)
    return SYSTEMS.get(kind)(cfg).eval()


def _batch(t: int = 2000, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    target = 0.3 * torch.randn(2, t, generator=g)
    background = 0.1 * torch.randn(2, t, generator=g) * torch.tensor([[1.0], [3.0]])
    return {"mixture": (target + background)[:, None], "target": target, "lengths": torch.tensor([t, t - 300]),
            "enrollment": 0.3 * torch.randn(2, SR, generator=g), "enrollment_lengths": torch.tensor([SR, SR])}


class OracleNet(torch.nn.Module):
    """Stands in for the backbone: returns the true conditional velocity x1 - x0 (the analytic v and,
    on a straight conditional path, the analytic u for every (t, r)) and counts its calls."""

    def __init__(self, velocity: torch.Tensor):
        super().__init__()
        self.velocity, self.calls = velocity, 0

    def forward(self, x, emb=None, t=None, dt=None):
        self.calls += 1
        v = self.velocity
        if v.shape[-1] != x.shape[-1]:  # chunked extraction: the chunks of the same velocity
            v = core.split_frames(v, x.shape[-1])
        return v.expand_as(x) + 0 * x


def _with_oracle(system, batch):
    x0, x1, _ = system.endpoints(batch)
    system.model.backbone = OracleNet(x1 - x0)
    return system.model.backbone


# -- paths --------------------------------------------------------------------------------------
def test_path_endpoints_velocity_and_the_mixture_on_the_path():
    g = torch.Generator().manual_seed(1)
    x0, x1 = torch.randn(3, 2, 4, 5, generator=g), torch.randn(3, 2, 4, 5, generator=g)
    assert torch.equal(core.interpolate(x0, x1, torch.zeros(3)), x0)
    assert torch.allclose(core.interpolate(x0, x1, torch.ones(3)), x1)
    t, h = torch.tensor([0.2, 0.5, 0.7]), 1e-3
    fd = (core.interpolate(x0, x1, t + h) - core.interpolate(x0, x1, t)) / h
    assert torch.allclose(fd, x1 - x0, atol=1e-3)
    # synthetic gains: y / (rms(s) + rms(b)) is the path point at tau* of the RMS-normalised endpoints
    s, b = 0.5 * torch.randn(2, 800, generator=g), 2.0 * torch.randn(2, 800, generator=g)
    tau, level = core.oracle_ratio(s, b)
    rs, rb = s.pow(2).mean(-1).sqrt(), b.pow(2).mean(-1).sqrt()
    assert torch.allclose(tau, rs / (rs + rb)) and 0.15 < float(tau[0]) < 0.25
    on_path = core.interpolate(b / rb[:, None], s / rs[:, None], tau)
    assert torch.allclose((s + b) / level[:, None], on_path, atol=1e-6)


def test_straight_path_holds_in_the_linear_stft_only_and_compression_is_refused():
    sysm = _system("adflow_tse")
    batch = _batch()
    s, b, tau = batch["target"], batch["mixture"][:, 0] - batch["target"], torch.tensor([0.3, 0.6])
    mixed = sysm.spec_channels(tau[:, None] * s + (1 - tau[:, None]) * b)
    assert torch.allclose(mixed, core.interpolate(sysm.spec_channels(b), sysm.spec_channels(s), tau), atol=1e-5)
    comp = _system("meanflow_tse")  # the mixture path on the compressed spectrogram
    mixed_c = comp.spec_channels(tau[:, None] * s + (1 - tau[:, None]) * b)
    assert not torch.allclose(mixed_c, core.interpolate(comp.spec_channels(b), comp.spec_channels(s), tau), atol=1e-2)
    with pytest.raises(DdtseError, match="straight background->target path needs a linear STFT") as err:
        _system("meanflow_tse", path="background")
    assert "\n" not in str(err.value)


# -- the oracle one step and NFE ------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["adflow_tse", "meanflow_tse"])
@pytest.mark.parametrize("path", ["background", "mixture"])
def test_oracle_velocity_recovers_the_target_in_one_call_and_n_calls(kind, path):
    spec = {"transform": "exponent", "alpha": 1.0, "beta": 0.1} if path == "background" else {"beta": 1.0}
    sysm = _system(kind, path=path, spec=spec)
    batch = _batch()
    net = _with_oracle(sysm, batch)
    for nfe in (1, 3):
        net.calls = 0
        est, info = sysm.extract_batch(dict(batch), use_ema=False, nfe=nfe, mr_source="oracle")
        assert net.calls == nfe and info["nfe"] == nfe
        for b, n in enumerate(batch["lengths"].tolist()):
            err = (est[b, :n] - batch["target"][b, :n]).abs().max()
            assert err < 1e-4 * batch["target"].abs().max(), (kind, path, nfe, float(err))
            assert torch.all(est[b, n:] == 0)
    if path == "background":  # tau* lies strictly inside (0, 1): the step is 1 - tau*
        assert all(0.1 < v < 0.9 for v in info["tau_hat"])


def test_start_at_one_makes_no_call_and_returns_the_mixture():
    sysm = _system("adflow_tse")
    batch = _batch()
    net = _with_oracle(sysm, batch)
    est, info = sysm.extract_batch(dict(batch), use_ema=False, nfe=2, mr_source="fixed:1.0")
    assert net.calls == 0 and info["nfe"] == 0
    n = int(batch["lengths"][0])
    assert torch.allclose(est[0, :n], batch["mixture"][0, 0, :n], atol=1e-5)


def test_midpoint_counts_two_calls_per_step_and_chunking_keeps_the_oracle_exact():
    sysm = _system("adflow_tse")
    batch = _batch(t=6000)
    net = _with_oracle(sysm, batch)
    est, info = sysm.extract_batch(dict(batch), use_ema=False, nfe=4, solver="midpoint", mr_source="oracle",
                                   chunk_frames=16)
    assert info["nfe"] == 4 and net.calls == 4
    n = int(batch["lengths"][1])
    assert (est[1, :n] - batch["target"][1, :n]).abs().max() < 1e-4


def test_chunking_round_trip_is_the_identity():
    x = torch.randn(3, 2, 8, 1000)
    for chunk in (376, 1000, 64):
        parts = core.split_frames(x, chunk)
        assert parts.shape[-1] == chunk and parts.shape[0] == 3 * math.ceil(1000 / chunk)
        assert torch.equal(core.merge_frames(parts, 3, 1000), x)


# -- the linear toy -------------------------------------------------------------------------------
A = -1.3


def toy_u(z, t, r):
    """The exact average velocity of dz/dt = A z: z expm1(A (r - t)) / (r - t) (A z at r = t)."""
    d = (r - t).reshape(-1, *([1] * (z.dim() - 1)))
    safe = torch.where(d.abs() < 1e-12, torch.ones_like(d), d)
    return torch.where(d.abs() < 1e-12, A * z, z * torch.expm1(A * d) / safe)


def test_linear_toy_meanflow_and_alpha_identities_give_zero_loss():
    torch.manual_seed(0)
    z = torch.randn(4, 2, 3, 5, dtype=torch.float64)
    t = torch.tensor([0.1, 0.3, 0.5, 0.05], dtype=torch.float64)
    r = torch.tensor([0.4, 0.9, 0.6, 1.0], dtype=torch.float64)
    v = A * z  # the marginal velocity at z_t
    u = toy_u(z, t, r)
    for mode in ("func", "finite_difference"):
        u_out, dudt, used = core.meanflow_jvp(toy_u, z, v, t, r, mode, h=1e-5)
        assert used == mode
        target = core.meanflow_target(u_out, dudt, v, t, r)
        assert torch.allclose(target, u, atol=1e-7), mode
        assert float(core.adaptive_loss(((u - target) ** 2).mean(dim=(1, 2, 3)))) < 1e-9
    for alpha in (0.05, 0.5, 0.9):  # the semigroup identity on the exact u
        target = core.alphaflow_self_target(toy_u, z, t, r, alpha)
        assert torch.allclose(target, u, atol=1e-12), alpha
    # the AlphaFlow paper's form is exact on a straight (constant-velocity) path
    c = torch.randn_like(z)
    assert torch.allclose(core.alphaflow_gt_target(lambda zz, tt, rr: c.expand_as(zz), z, c, t, r, 0.3), c)
    # and a wrong model is not: the identities can fail
    wrong = lambda zz, tt, rr: 0.9 * toy_u(zz, tt, rr)  # noqa: E731
    assert not torch.allclose(core.alphaflow_self_target(wrong, z, t, r, 0.5), u, atol=1e-3)


@pytest.mark.parametrize("objective", ["alphaflow_self", "alphaflow_gt", "meanflow_jvp"])
def test_every_objective_is_zero_on_the_analytic_model(objective, monkeypatch):
    sysm = _system("meanflow_tse", objective=objective, flow_ratio=0.0)
    sysm.train()
    batch = _batch()
    net = _with_oracle(sysm, batch)
    monkeypatch.setattr(type(sysm), "current_alpha", lambda self: 0.4)  # inside the consistency phase
    loss, logs = sysm.training_loss(batch)
    assert float(logs["fm_branch"]) == 0.0 and float(loss) < 1e-10
    assert net.calls == {"alphaflow_self": 3, "alphaflow_gt": 2, "meanflow_jvp": 1}[objective]
    # a model off by 10 %: the data-anchored targets see it; the released self-consistency target
    # does not (no data anchor, spec 2.2), only its flow-matching branch does
    net.velocity = 1.1 * net.velocity
    off = float(sysm.training_loss(batch)[0])
    if objective == "alphaflow_self":
        assert off < 1e-10
        sysm.flow_ratio = 1.0
        off = float(sysm.training_loss(batch)[0])
    assert off > 1e-3


# -- curriculum, times, adaptive loss ------------------------------------------------------------
def test_alpha_curriculum_values_and_phase_boundaries():
    K = 10_000
    assert core.alpha_curriculum(0, K) == 1.0
    assert core.alpha_curriculum(K / 2, K) == pytest.approx(0.5)
    assert core.alpha_curriculum(K, K) == 0.005
    values = [core.alpha_curriculum(k, K) for k in range(0, K + 1, 50)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    first_below_one = next(k for k in range(K) if core.alpha_curriculum(k, K) < 1.0)
    first_at_min = next(k for k in range(K) if core.alpha_curriculum(k, K) == 0.005)
    assert abs(first_below_one / K - 0.288) < 0.002 and abs(first_at_min / K - 0.712) < 0.002


def test_meanflow_curriculum_follows_the_runs_length():
    sysm = _system("meanflow_tse", alpha_schedule={"total_steps": 200})
    assert sysm.current_alpha() == 1.0
    sysm2 = _system("meanflow_tse", alpha_schedule={"total_steps": 200, "span": 0.5})
    assert sysm2.run_length() == 200 and sysm2.span == 0.5


def test_time_sampling_orders_t_and_r():
    g = torch.Generator().manual_seed(0)
    t, r = core.sample_times(1000, False, g)
    assert bool((t <= r).all()) and bool((t > 0).all()) and bool((r < 1).all())
    assert float(t.mean()) < 0.4 < float(r.mean())
    t, r = core.sample_times(100, True, g)
    assert torch.equal(t, r)  # FM branch: the interval embedding sees r - t = 0


def test_adaptive_loss_gradient_is_the_stopped_weight_times_the_error_gradient():
    pred = torch.tensor([1.0, 2.0, -0.5], requires_grad=True)
    target = torch.tensor([0.0, 1.5, 0.5])
    sq = (pred - target) ** 2
    core.adaptive_loss(sq, scale=0.5, p=1.0, c=1e-3).backward()
    w = 0.5 / ((pred.detach() - target) ** 2 + 1e-3)
    assert torch.allclose(pred.grad, w * 2 * (pred.detach() - target) / 3)


# -- refusals -------------------------------------------------------------------------------------
def test_bad_options_are_one_line_each(tmp_path):
    with pytest.raises(DdtseError, match="unknown system.objective 'meanflow'"):
        _system("meanflow_tse", objective="meanflow")
    sysm = _system("adflow_tse")
    with pytest.raises(DdtseError, match="mr_source predictor needs a predictor checkpoint") as err:
        sysm.validate_options({"mr_source": "predictor"})
    assert "\n" not in str(err.value)
    with pytest.raises(DdtseError, match="does not exist"):
        sysm.validate_options({"mr_source": "predictor", "mr_predictor": str(tmp_path / "none.ckpt")})
    with pytest.raises(DdtseError, match="mr_source must be oracle, predictor or fixed:V"):
        type(sysm).validate_options({"mr_source": "fixed:2"})
    with pytest.raises(DdtseError, match="nfe must be even"):
        sysm.validate_options({"solver": "midpoint", "nfe": 3})
    with pytest.raises(DdtseError, match="mr_source oracle needs each item's reference"):
        batch = _batch()
        batch.pop("target")
        sysm.extract_batch(batch, use_ema=False, mr_source="oracle")
    # listing the defaults never fails; the mixture path needs no mixing ratio at all
    assert sysm.resolve_options({})["mr_source"] == "fixed:0.5"
    _system("meanflow_tse").validate_options({"mr_source": "predictor"})


def test_schema_refuses_an_unknown_objective():
    from ddtse.schema import validate_config

    cfg = tiny_config("meanflow_tse", SR)
    validate_config(copy.deepcopy(cfg))
    cfg["system"]["objective"] = "jvp"
    with pytest.raises(DdtseError, match="objective"):
        validate_config(cfg)
