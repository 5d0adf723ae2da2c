"""Samplers on complex spectrograms (B, 1, F, N): DDTSE (1 + K calls), X+DDTSE refinement, SGMSE+ PC.

Every sampler takes a plain callable so that tests can use closed-form fakes:
- a *denoiser* ``D(x_t) -> x0_hat`` (DDTSE; the speaker embedding is closed over by the caller);
- a *score function* ``s(x_t, t (B,)) -> score`` (SGMSE+; y and the embedding are closed over).
All randomness goes through an optional ``torch.Generator``, an ``ItemNoise`` (one stream per
item, seeded from (seed, item id): an item's samples then do not depend on the batch it is in,
its size or its order) or a ``NoiseTape`` (injected noise, replayed in order: the fidelity tests
drive our samplers with a reference sampler's recorded noise); each returns ``(estimate, nfe)``
with nfe = network calls per item.
"""
from __future__ import annotations

import hashlib
from typing import Callable, Sequence, Union

import torch

from ddtse.diffusion.sde import OUVESDE, randn_like
from ddtse.errors import DdtseError

Denoiser = Callable[[torch.Tensor], torch.Tensor]
ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def item_seed(seed: int, item_id: str) -> int:
    """A stable 63-bit seed from (seed, item id): SHA-256, not Python's per-process randomised hash()."""
    digest = hashlib.sha256(f"{int(seed)}\0{item_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class ItemNoise:
    """Per-item sampling noise for (B, ..., N) tensors (N = frames, the padded axis).

    Item b draws from its own CPU generator seeded by ``item_seed(seed, ids[b])``, frame-major
    (shape (n_b, ...) then moved to the last axis) over its own ``frames[b]`` frames; frames past
    that (padding of a batch of unequal items) get zero noise. So an item's noise is the same
    whatever batch it is in (size, order, neighbours) and on any device.
    """

    def __init__(self, seed: int, ids: Sequence[str], frames: Sequence[int] | None = None):
        self.ids = [str(i) for i in ids]
        if frames is not None and len(frames) != len(self.ids):
            raise DdtseError(f"ItemNoise: {len(self.ids)} ids but {len(frames)} frame counts")
        self.frames = None if frames is None else [int(f) for f in frames]
        self.generators = [torch.Generator().manual_seed(item_seed(seed, i)) for i in self.ids]

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != len(self.generators):
            raise DdtseError(f"ItemNoise for {len(self.generators)} items used on a batch of {x.shape[0]}")
        out = torch.zeros(x.shape, dtype=x.dtype)
        n_all = x.shape[-1]
        for b, gen in enumerate(self.generators):
            n = n_all if self.frames is None else max(0, min(self.frames[b], n_all))
            z = torch.randn((n, *x.shape[1:-1]), dtype=x.dtype, generator=gen)
            out[b, ..., :n] = z.movedim(0, -1)
        return out.to(x.device)


class NoiseTape:
    """Injected sampling noise: pre-drawn tensors returned in order by ``randn_like`` (each must
    have the shape of the tensor it stands for). Drives a sampler with another implementation's
    noise, e.g. the noise recorded from a reference sampler (tests/assets/reference)."""

    def __init__(self, draws):
        self.draws = list(draws)
        self.used = 0

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        if self.used >= len(self.draws):
            raise DdtseError(f"NoiseTape: the sampler asked for more than the {len(self.draws)} recorded draws")
        z = torch.as_tensor(self.draws[self.used])
        if tuple(z.shape) != tuple(x.shape):
            raise DdtseError(f"NoiseTape: draw {self.used} has shape {tuple(z.shape)}, the sampler needs {tuple(x.shape)}")
        self.used += 1
        return z.to(device=x.device, dtype=x.dtype)


#: a sampler's noise source: a torch.Generator (or None: the global one), or any object with
#: ``randn_like(x)`` (ItemNoise: per-item streams; NoiseTape: injected noise)
Noise = Union[torch.Generator, ItemNoise, NoiseTape, None]


def _injected(generator) -> bool:
    return generator is not None and not isinstance(generator, torch.Generator)


def _noise(x: torch.Tensor, generator: Noise) -> torch.Tensor:
    return generator.randn_like(x) if _injected(generator) else randn_like(x, generator)


def _perturb(sde: OUVESDE, x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor, generator: Noise) -> torch.Tensor:
    """x_t = mu(x0, y, t) + sigma(t) z (``sde.perturb``, with per-item or injected noise when given)."""
    if not _injected(generator):
        return sde.perturb(x0, y, t, generator)[0]
    std = sde.std(t).to(device=x0.device, dtype=x0.real.dtype).reshape(-1, *([1] * (x0.ndim - 1)))
    return sde.mean(x0, y, t) + std * _noise(x0, generator)


def _prior(sde: OUVESDE, y: torch.Tensor, generator: Noise) -> torch.Tensor:
    """x_T = y + sigma(T) z (``sde.prior_sample``, with per-item or injected noise when given)."""
    if not _injected(generator):
        return sde.prior_sample(y, generator)
    return y + sde.std(torch.tensor(sde.T)).to(y.device) * _noise(y, generator)


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
                        times: list[float], generator: Noise = None) -> torch.Tensor:
    """For t_i in times: x0_hat <- D(mu(x0_hat, y, t_i) + sigma(t_i) z), fresh z each step."""
    for t in times:
        tt = _batch_t(t, y)
        x_t = _perturb(sde, x0_hat, y, tt, generator)
        x0_hat = denoiser(x_t)
    return x0_hat


@torch.no_grad()
def ddtse_sample(denoiser: Denoiser, y: torch.Tensor, sde: OUVESDE, K: int = 10,
                 generator: Noise = None) -> tuple[torch.Tensor, int]:
    """DDTSE inference (spec §6): x0_hat = D(y + sigma(T) z), then K re-noise-and-predict steps
    over linspace(T, t_eps, K). Returns (x0_hat, nfe = 1 + K)."""
    times = ddtse_schedule(K, sde)
    x0_hat = denoiser(_prior(sde, y, generator))
    x0_hat = renoise_and_predict(denoiser, x0_hat, y, sde, times, generator)
    return x0_hat, 1 + len(times)


@torch.no_grad()
def ddtse_refine(denoiser: Denoiser, y: torch.Tensor, initial: torch.Tensor, sde: OUVESDE, K: int = 10,
                 t_start: float = 1.0, generator: Noise = None) -> tuple[torch.Tensor, int]:
    """X+DDTSE: the external estimate ``initial`` (same domain as y) is the first x0_hat; then the
    re-noise-and-predict steps of ``refinement_schedule(K, t_start)``. Returns (x0_hat, nfe = steps)."""
    if initial.shape != y.shape:
        raise DdtseError(f"initial estimate shape {tuple(initial.shape)} != mixture shape {tuple(y.shape)}")
    times = refinement_schedule(K, t_start, sde)
    return renoise_and_predict(denoiser, initial, y, sde, times, generator), len(times)


@torch.no_grad()
def pc_sample(score_fn: ScoreFn, y: torch.Tensor, sde: OUVESDE, N: int = 30, snr: float = 0.5,
              corrector_steps: int = 1, generator: Noise = None,
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
    x = _prior(sde, y, generator)
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
            x = x + eps * score + torch.sqrt(2 * eps) * _noise(x, generator)
        # predictor: reverse diffusion
        score = score_fn(x, tt)
        nfe += 1
        g = sde.g(tt).reshape(-1, *([1] * (x.ndim - 1)))
        x_mean = x - (sde.drift(x, y) - g ** 2 * score) * dt
        x = x_mean + g * (dt ** 0.5) * _noise(x, generator)
    return (x_mean if denoise else x), nfe
