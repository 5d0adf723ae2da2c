"""The OUVE SDE of SGMSE+/DDTSE (spec §2): dx = theta(y - x)dt + g(t)dw on complex spectrograms.

    mean    mu(x0, y, t) = e^{-theta t} x0 + (1 - e^{-theta t}) y
    std     sigma(t)^2   = sigma_min^2 (e^{2(theta+L)t} - 1) e^{-2 theta t} L / (theta + L),  L = ln(sigma_max/sigma_min)
    g(t)               = sigma_min (sigma_max/sigma_min)^t sqrt(2L)

With the defaults sigma(1) = 0.389 (not sigma_max), sigma(0.03) = 0.0188, sigma(0.5) = 0.1217.
Complex noise is ``torch.randn`` of a complex dtype: variance 1/2 per real/imaginary part
(checklist item 4), so that |z|^2 has mean 1 and x_t - mu has total variance sigma(t)^2.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from ddtse.errors import DdtseError


def _as_tensor(t, like: torch.Tensor | None = None) -> torch.Tensor:
    """A time given as float / tensor -> tensor (real dtype and device of ``like`` when given)."""
    if isinstance(t, torch.Tensor):
        return t
    if like is None:
        return torch.as_tensor(t, dtype=torch.float32)
    dtype = like.real.dtype if like.is_complex() else (like.dtype if like.is_floating_point() else torch.float32)
    return torch.as_tensor(t, dtype=dtype, device=like.device)


def _expand(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-item time (B,) (or scalar) against x (B, ...)."""
    t = t.to(device=x.device, dtype=x.real.dtype if x.is_complex() else x.dtype)
    if t.ndim == 0:
        return t
    return t.reshape(t.shape[0], *([1] * (x.ndim - 1)))


def randn_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal noise shaped like x; complex x gets complex noise, variance 1/2 per component.

    With a generator the noise is drawn on the generator's device and moved to x's device.
    """
    device = generator.device if generator is not None else x.device
    z = torch.randn(x.shape, dtype=x.dtype, device=device, generator=generator)
    return z.to(x.device)


def loss_weight(t: torch.Tensor) -> torch.Tensor:
    """DDTSE's lambda(t) = 1 / (e^t - 1): lambda(0.03) = 32.8, lambda(1) = 0.58."""
    return 1.0 / torch.expm1(t)


class OUVESDE:
    """Ornstein-Uhlenbeck SDE with variance-exploding diffusion, on (B, ...) complex tensors.

    Times are per item: ``t`` is a (B,) tensor (or a Python float / 0-d tensor for all items).
    """

    name = "ouve"

    def __init__(self, theta: float = 1.5, sigma_min: float = 0.05, sigma_max: float = 0.5,
                 T: float = 1.0, t_eps: float = 0.03, N: int = 30):
        if not (0 < sigma_min < sigma_max):
            raise DdtseError(f"OUVE SDE needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        if not (0 < t_eps < T):
            raise DdtseError(f"OUVE SDE needs 0 < t_eps < T, got t_eps={t_eps}, T={T}")
        self.theta = float(theta)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.T = float(T)
        self.t_eps = float(t_eps)
        self.N = int(N)
        self.logsig = math.log(self.sigma_max / self.sigma_min)

    def config(self) -> dict:
        return dict(name=self.name, theta=self.theta, sigma_min=self.sigma_min, sigma_max=self.sigma_max,
                    T=self.T, t_eps=self.t_eps, N=self.N)

    # -- marginals -----------------------------------------------------------------------
    def mean(self, x0: torch.Tensor, y: torch.Tensor, t) -> torch.Tensor:
        """mu(x0, y, t) = e^{-theta t} x0 + (1 - e^{-theta t}) y; t (B,) or scalar."""
        t = _expand(_as_tensor(t, x0), x0)
        a = torch.exp(-self.theta * t)
        return a * x0 + (1 - a) * y

    def std(self, t) -> torch.Tensor:
        """Marginal std sigma(t) (same shape as t)."""
        t = _as_tensor(t)
        th, L = self.theta, self.logsig
        var = self.sigma_min ** 2 * torch.expm1(2 * (th + L) * t) * torch.exp(-2 * th * t) * L / (th + L)
        return torch.sqrt(var)

    def g(self, t) -> torch.Tensor:
        """Diffusion coefficient g(t) = sigma_min (sigma_max/sigma_min)^t sqrt(2 ln(sigma_max/sigma_min))."""
        t = _as_tensor(t)
        return self.sigma_min * torch.exp(t * self.logsig) * math.sqrt(2 * self.logsig)

    def drift(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """f(x, y) = theta (y - x)."""
        return self.theta * (y - x)

    # -- sampling ------------------------------------------------------------------------
    def sample_t(self, batch: int, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
        """t ~ U(t_eps, T), shape (batch,)."""
        gdev = generator.device if generator is not None else device
        u = torch.rand(batch, generator=generator, device=gdev)
        return (u * (self.T - self.t_eps) + self.t_eps).to(device if device is not None else u.device)

    def perturb(self, x0: torch.Tensor, y: torch.Tensor, t, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """x_t = mu(x0, y, t) + sigma(t) z; returns (x_t, z), z complex with variance 1/2 per component."""
        t = _as_tensor(t, x0)
        z = randn_like(x0, generator)
        return self.mean(x0, y, t) + _expand(self.std(t), x0) * z, z

    def prior_sample(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x_T = y + sigma(T) z (the mean mismatch of OUVE: the prior's mean is y, not mu(x0, y, T))."""
        return y + self.std(torch.tensor(self.T)).to(y.device) * randn_like(y, generator)


SDES: dict[str, Callable[..., OUVESDE]] = {"ouve": OUVESDE}


def build_sde(cfg: dict | None = None) -> OUVESDE:
    """Build an SDE from ``{name: ouve, theta: ..., ...}`` (None -> OUVE defaults)."""
    cfg = dict(cfg or {})
    name = cfg.pop("name", "ouve")
    if name not in SDES:
        raise DdtseError(f"unknown SDE '{name}' (known: {', '.join(sorted(SDES))})")
    try:
        return SDES[name](**cfg)
    except TypeError as exc:
        raise DdtseError(f"bad options for SDE '{name}': {exc}") from exc
