"""Flow-matching TSE building blocks (spec flow_tse.md §1-4), on real tensors (B, C, F, N).

Time runs forward: t = 0 is the path's source (the background B, or the mixture Y), t = 1 the
target S; x_t = (1 - t) x0 + t x1 and the conditional velocity is v = x1 - x0. A velocity network
``v_fn(z, t)`` (AD-FlowTSE) or an average-velocity network ``u_fn(z, t, r)`` (MeanFlow-TSE, with
z_r ~= z_t + (r - t) u) is called by the samplers below, which return ``(z, nfe)``.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable

import torch

from ddtse.errors import DdtseError

OBJECTIVES = ("alphaflow_self", "alphaflow_gt", "meanflow_jvp")
JVP_MODES = ("auto", "func", "finite_difference")


def _col(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1) broadcastable against ``like``."""
    return t.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def interpolate(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The straight conditional path x_t = (1 - t) x0 + t x1, t (B,)."""
    tc = _col(t, x0)
    return (1 - tc) * x0 + tc * x1


def masked_rms(wav: torch.Tensor, lengths: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """(B, T) -> (B,) root mean square over each item's valid samples (guarded against silence)."""
    if lengths is None:
        return wav.float().pow(2).mean(-1).sqrt().clamp_min(eps)
    keep = torch.arange(wav.shape[-1], device=wav.device)[None, :] < lengths.to(wav.device)[:, None]
    power = (wav.float().pow(2) * keep).sum(-1) / keep.sum(-1).clamp_min(1)
    return power.sqrt().clamp_min(eps)


def oracle_ratio(target: torch.Tensor, background: torch.Tensor, lengths=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Gain-free oracle mixing ratio of waveforms (B, T): tau* = rms(s) / (rms(s) + rms(b)), and the
    on-path scale rms(s) + rms(b): y / scale = tau* s/rms(s) + (1 - tau*) b/rms(b) exactly."""
    rs, rb = masked_rms(target, lengths), masked_rms(background, lengths)
    return rs / (rs + rb), rs + rb


def path_level(tau: torch.Tensor) -> torch.Tensor:
    """RMS of tau S + (1 - tau) B for uncorrelated unit-RMS endpoints: sqrt(tau^2 + (1 - tau)^2).
    Inference scales the mixture to this level at tau_hat, as training sees it."""
    return torch.sqrt(tau**2 + (1 - tau) ** 2)


def logit_normal(n: int, mean: float, std: float, generator=None, device=None) -> torch.Tensor:
    """(n,) samples of sigmoid(N(mean, std^2))."""
    z = torch.randn(n, generator=generator, device=device if generator is None else generator.device)
    return torch.sigmoid(mean + std * z).to(device)


def sample_times(n: int, fm: bool, generator=None, device=None, fm_mean: float = 0.0, mean: float = -0.4,
                 std: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """MeanFlow-TSE times: the FM branch t ~ logit-normal(0, 1), r = t; otherwise (t, r) a sorted pair
    of logit-normal(-0.4, 1) draws (t <= r)."""
    if fm:
        t = logit_normal(n, fm_mean, std, generator, device)
        return t, t.clone()
    pair = torch.stack([logit_normal(n, mean, std, generator, device) for _ in range(2)])
    lo, hi = pair.min(0).values, pair.max(0).values
    return lo, hi


def alpha_curriculum(step: float, total: float, gamma: float = 25.0, alpha_min: float = 0.005,
                     clip: float = 0.005) -> float:
    """alpha_k = 1 - sigmoid(gamma (k / K - 1/2)), 1 above 1 - clip, alpha_min below it; K is the run's
    length in optimiser steps (the reference fixes it to 2,000 epochs, so short runs never leave
    phase 1). alpha(0) = 1, alpha(K / 2) = 0.5, alpha(K) = alpha_min."""
    if total <= 0:
        raise DdtseError(f"the alpha curriculum needs a positive run length, got {total}")
    x = gamma * (float(step) / float(total) - 0.5)
    alpha = 1.0 - 1.0 / (1.0 + math.exp(-x))
    if alpha > 1.0 - clip:
        return 1.0
    return max(alpha, alpha_min)


def adaptive_loss(sq_err: torch.Tensor, scale: float = 1.0, p: float = 1.0, c: float = 1e-3) -> torch.Tensor:
    """mean_B sg(w_b) Delta_b^2 with w = scale / (Delta^2 + c)^p; ``sq_err`` (B,) per-item mean square
    errors. No gradient flows through w."""
    w = scale / (sq_err.detach() + c).pow(p)
    return (w * sq_err).mean()


@torch.no_grad()
def alphaflow_self_target(u_fn: Callable, z_t: torch.Tensor, t: torch.Tensor, r: torch.Tensor,
                          alpha: float) -> torch.Tensor:
    """MeanFlow-TSE's released target (alpha < 1): s = alpha r + (1 - alpha) t, u2 = u(z_t, t, s),
    z_s = z_t + (s - t) u2, target = alpha u2 + (1 - alpha) u(z_s, s, r) (the semigroup identity on the
    model's own predictions). Two network calls, without gradient."""
    s = alpha * r + (1 - alpha) * t
    u2 = u_fn(z_t, t, s)
    z_s = z_t + _col(s - t, z_t) * u2
    return alpha * u2 + (1 - alpha) * u_fn(z_s, s, r)


@torch.no_grad()
def alphaflow_gt_target(u_fn: Callable, z_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor, r: torch.Tensor,
                        alpha: float) -> torch.Tensor:
    """The AlphaFlow paper's target: the first sub-interval follows the conditional velocity v,
    target = alpha v + (1 - alpha) u(z_t + alpha (r - t) v, s, r), s = alpha r + (1 - alpha) t.
    One network call, without gradient."""
    s = alpha * r + (1 - alpha) * t
    z_s = z_t + _col(s - t, z_t) * v
    return alpha * v + (1 - alpha) * u_fn(z_s, s, r)


_FALLBACK_WARNED: set = set()


def meanflow_jvp(u_fn: Callable, z_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor, r: torch.Tensor,
                 mode: str = "auto", h: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor, str]:
    """u = u(z_t, t, r) (with gradient) and du/dt = v . d_z u + d_t u (tangents (v, 1, 0)), by
    ``torch.func.jvp`` ("func"), central finite differences of step h ("finite_difference"), or
    "auto": func, falling back to finite differences (with one warning naming the failing operator)
    where an operator lacks forward-mode AD. Returns (u, du/dt detached, the mode used)."""
    if mode not in JVP_MODES:
        raise DdtseError(f"unknown jvp mode {mode!r} (known: {', '.join(JVP_MODES)})")
    if mode in ("auto", "func"):
        try:
            u, dudt = torch.func.jvp(u_fn, (z_t, t, r), (v, torch.ones_like(t), torch.zeros_like(r)))
            return u, dudt.detach(), "func"
        except (RuntimeError, NotImplementedError) as exc:
            if mode == "func":
                raise
            reason = str(exc).splitlines()[0][:200]
            if reason not in _FALLBACK_WARNED:
                _FALLBACK_WARNED.add(reason)
                warnings.warn(f"torch.func.jvp failed on this network ({reason}); using central finite "
                              "differences for du/dt", RuntimeWarning, stacklevel=2)
    u = u_fn(z_t, t, r)
    with torch.no_grad():
        hz = h * v
        dudt = (u_fn(z_t + hz, t + h, r) - u_fn(z_t - hz, t - h, r)) / (2 * h)
    return u, dudt, "finite_difference"


def meanflow_target(u: torch.Tensor, dudt: torch.Tensor, v: torch.Tensor, t: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """The MeanFlow identity in forward time: target = v + (r - t) sg(du/dt)."""
    return v + _col(r - t, v) * dudt.detach()


def time_grid(start: torch.Tensor, steps: int) -> torch.Tensor:
    """(steps + 1, B): each item's own grid linspace(start_b, 1, steps + 1)."""
    frac = torch.linspace(0.0, 1.0, steps + 1, device=start.device, dtype=start.dtype)
    return start[None, :] + (1 - start[None, :]) * frac[:, None]


def sample_velocity(v_fn: Callable, z: torch.Tensor, start: torch.Tensor, steps: int = 1,
                    solver: str = "euler") -> tuple[torch.Tensor, int]:
    """Integrate dz/dt = v(z, t) from t = start (B,) to 1 in ``steps`` equal steps per item
    (euler: 1 call per step; midpoint: 2). Items already at t = 1 do not move; a batch that is
    entirely at t = 1 makes no call. Returns (z at t = 1, nfe)."""
    if solver not in ("euler", "midpoint"):
        raise DdtseError(f"unknown solver {solver!r} (euler, midpoint)")
    if bool((start >= 1).all()):
        return z, 0
    grid = time_grid(start.clamp(max=1.0), steps)
    nfe = 0
    for k in range(steps):
        t, dt = grid[k], grid[k + 1] - grid[k]
        if solver == "euler":
            z = z + _col(dt, z) * v_fn(z, t)
            nfe += 1
        else:
            mid = z + _col(dt / 2, z) * v_fn(z, t)
            z = z + _col(dt, z) * v_fn(mid, t + dt / 2)
            nfe += 2
    return z, nfe


def sample_average(u_fn: Callable, z: torch.Tensor, start: torch.Tensor, steps: int = 1) -> tuple[torch.Tensor, int]:
    """MeanFlow sampling: z <- z + (t_{k+1} - t_k) u(z, t_k, t_{k+1}) over each item's grid from
    ``start`` to 1 (one call per step; none when every item starts at 1). Returns (z, nfe)."""
    if bool((start >= 1).all()):
        return z, 0
    grid = time_grid(start.clamp(max=1.0), steps)
    for k in range(steps):
        z = z + _col(grid[k + 1] - grid[k], z) * u_fn(z, grid[k], grid[k + 1])
    return z, steps


def split_frames(x: torch.Tensor, chunk: int) -> torch.Tensor:
    """(B, C, F, N) -> (B * K, C, F, chunk): zero-pad the frames to K * chunk and cut them into K
    non-overlapping chunks (item-major), as the reference batches long inputs."""
    b, c, f, n = x.shape
    k = max(1, -(-n // chunk))
    x = torch.nn.functional.pad(x, (0, k * chunk - n))
    return x.reshape(b, c, f, k, chunk).permute(0, 3, 1, 2, 4).reshape(b * k, c, f, chunk)


def merge_frames(chunks: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
    """Inverse of :func:`split_frames`: (B * K, C, F, chunk) -> (B, C, F, frames)."""
    bk, c, f, chunk = chunks.shape
    k = bk // batch
    x = chunks.reshape(batch, k, c, f, chunk).permute(0, 2, 3, 1, 4).reshape(batch, c, f, k * chunk)
    return x[..., :frames]
