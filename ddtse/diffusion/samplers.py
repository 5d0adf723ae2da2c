"""Samplers on complex spectrograms (B, 1, F, N): DDTSE (1 + K calls), X+DDTSE refinement, SGMSE+ PC.

Every sampler takes a plain callable so that tests can use closed-form fakes:
- a *denoiser* ``D(x_t) -> x0_hat`` (DDTSE; the speaker embedding is closed over by the caller);
- a *score function* ``s(x_t, t (B,)) -> score`` (SGMSE+; y and the embedding are closed over).
All randomness goes through an optional ``torch.Generator``; each returns ``(estimate, nfe)``
with nfe = network calls per item.
"""
from __future__ import annotations

from typing import Callable

import torch

from ddtse.diffusion.sde import OUVESDE, randn_like
from ddtse.errors import DdtseError

Denoiser = Callable[[torch.Tensor], torch.Tensor]
ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _batch_t(t: float, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), float(t), device=x.device, dtype=x.real.dtype)


def ddtse_schedule(K: int, sde: OUVESDE) -> list[float]:
    """The re-noising times of DDTSE inference: linspace(T, t_eps, K) (K = 0 -> none)."""
    if K < 0:
        raise DdtseError(f"K must be >= 0, got {K}")
    return torch.linspace(sde.T, sde.t_eps, K, dtype=torch.float64).tolist() if K else []


def refinement_schedule(K: int, t_start: float, sde: OUVESDE) -> list[float]:
    """Times for X+DDTSE refinement from ``t_start``.

    Rule: t_start = T (1.0) is the paper's full schedule linspace(T, t_eps, K). A smaller t_start
    keeps roughly the same step density: K' = max(1, round(K (t_start - t_eps) / (T - t_eps))) steps
    over linspace(t_start, t_eps, K'). K = 0 means no refinement (empty schedule, 0 NFE).
    """
    if K < 0:
        raise DdtseError(f"K must be >= 0, got {K}")
    t_start = float(t_start)
    if not (sde.t_eps <= t_start <= sde.T):
        raise DdtseError(f"t_start must lie in [{sde.t_eps}, {sde.T}], got {t_start}")
    if K == 0:
        return []
    if t_start >= sde.T:
        return ddtse_schedule(K, sde)
    steps = max(1, int(round(K * (t_start - sde.t_eps) / (sde.T - sde.t_eps))))
    return torch.linspace(t_start, sde.t_eps, steps, dtype=torch.float64).tolist()


def renoise_and_predict(denoiser: Denoiser, x0_hat: torch.Tensor, y: torch.Tensor, sde: OUVESDE,
                        times: list[float], generator: torch.Generator | None = None) -> torch.Tensor:
    """For t_i in times: x0_hat <- D(mu(x0_hat, y, t_i) + sigma(t_i) z), fresh z each step."""
    for t in times:
        tt = _batch_t(t, y)
        x_t, _ = sde.perturb(x0_hat, y, tt, generator)
        x0_hat = denoiser(x_t)
    return x0_hat


@torch.no_grad()
def ddtse_sample(denoiser: Denoiser, y: torch.Tensor, sde: OUVESDE, K: int = 10,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
    """DDTSE inference (spec §6): x0_hat = D(y + sigma(T) z), then K re-noise-and-predict steps
    over linspace(T, t_eps, K). Returns (x0_hat, nfe = 1 + K)."""
    times = ddtse_schedule(K, sde)
    x0_hat = denoiser(sde.prior_sample(y, generator))
    x0_hat = renoise_and_predict(denoiser, x0_hat, y, sde, times, generator)
    return x0_hat, 1 + len(times)


@torch.no_grad()
def ddtse_refine(denoiser: Denoiser, y: torch.Tensor, initial: torch.Tensor, sde: OUVESDE, K: int = 10,
                 t_start: float = 1.0, generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
    """X+DDTSE: the external estimate ``initial`` (same domain as y) is the first x0_hat; then the
    re-noise-and-predict steps of ``refinement_schedule(K, t_start)``. Returns (x0_hat, nfe = steps)."""
    if initial.shape != y.shape:
        raise DdtseError(f"initial estimate shape {tuple(initial.shape)} != mixture shape {tuple(y.shape)}")
    times = refinement_schedule(K, t_start, sde)
    return renoise_and_predict(denoiser, initial, y, sde, times, generator), len(times)


@torch.no_grad()
def pc_sample(score_fn: ScoreFn, y: torch.Tensor, sde: OUVESDE, N: int = 30, snr: float = 0.5,
              corrector_steps: int = 1, generator: torch.Generator | None = None,
              denoise: bool = True) -> tuple[torch.Tensor, int]:
    """SGMSE+ predictor-corrector (spec §5): x_T = y + sigma(T) z; for t_i in linspace(T, t_eps, N):
    ``corrector_steps`` annealed-Langevin steps (eps = 2 (snr sigma(t))^2; x += eps s + sqrt(2 eps) z),
    then one reverse-diffusion step x -= [theta(y - x) - g^2 s] dt, + g sqrt(dt) z, with
    dt = t_i - t_{i+1} and dt = t_eps for the last step. Returns (last noise-free mean, nfe = N (1 + corrector_steps))."""
    if N < 1:
        raise DdtseError(f"N must be >= 1, got {N}")
    if corrector_steps < 0:
        raise DdtseError(f"corrector_steps must be >= 0, got {corrector_steps}")
    times = torch.linspace(sde.T, sde.t_eps, N, dtype=torch.float64).tolist()
    x = sde.prior_sample(y, generator)
    x_mean = x
    nfe = 0
    for i, t in enumerate(times):
        tt = _batch_t(t, y)
        dt = times[i] - times[i + 1] if i < N - 1 else times[-1]
        # corrector: annealed Langevin dynamics
        std = sde.std(tt)
        for _ in range(corrector_steps):
            score = score_fn(x, tt)
            nfe += 1
            eps = 2 * (snr * std) ** 2
            eps = eps.reshape(-1, *([1] * (x.ndim - 1)))
            x = x + eps * score + torch.sqrt(2 * eps) * randn_like(x, generator)
        # predictor: reverse diffusion
        score = score_fn(x, tt)
        nfe += 1
        g = sde.g(tt).reshape(-1, *([1] * (x.ndim - 1)))
        x_mean = x - (sde.drift(x, y) - g ** 2 * score) * dt
        x = x_mean + g * (dt ** 0.5) * randn_like(x, generator)
    return (x_mean if denoise else x), nfe
