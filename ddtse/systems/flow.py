"""One-step flow-matching TSE on the DDTSE backbone (spec flow_tse.md): ``adflow_tse`` (AD-FlowTSE,
velocity v(z, t)) and ``meanflow_tse`` (MeanFlow-TSE, average velocity u(z, t, r)). Both share with
DDTSE the NCSN++ backbone (``ddtse_net`` with ``time_conditional: true``, ``time_embedding: linear``;
MeanFlow also ``interval_conditional: true``), the speaker clue, the datasets and the extractor
protocol; the flow math lives in ddtse/flow/core.py.

``system.path`` chooses the representation:
- ``background`` (AD-FlowTSE): the straight path from the background B to the target S, straight
  only in the **linear** STFT (``system.spec.transform: none``; compression is refused). Level:
  the endpoints are s / rms(s) and b / rms(b), so the mixture lies on the path at
  tau* = rms(s) / (rms(s) + rms(b)) after dividing it by rms(s) + rms(b). At inference that sum is
  estimated as rms(y) / sqrt(tau_hat^2 + (1 - tau_hat)^2) (the path's level at tau_hat, for
  uncorrelated endpoints), the same normalisation training sees; the output is scaled back by the
  estimated rms(s) = tau_hat * (rms(s) + rms(b)). Inference starts at tau_hat (``mr_source``:
  ``oracle`` (tau* and the exact level, from the reference), ``predictor`` (an ``mr_predictor``
  checkpoint, ``mr_predictor=PATH``) or ``fixed:V``).
- ``mixture`` (AlphaFlowTSE's mixture->target path): z_t = (1 - t) Y + t S on the peak-normalised
  compressed spectrogram DDTSE uses (any compression); inference starts at t = 0, no mixing ratio.

Sampler options: ``nfe`` (network calls, default 1: one Euler step), ``mr_source``,
``mr_predictor``, ``chunk_frames`` (cut long inputs into chunks of this many frames, batched;
0 = whole), and for ``adflow_tse`` ``solver`` (euler | midpoint: 2 calls a step).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

import torch

from ddtse.audio.spectral import channels_to_complex, complex_to_channels
from ddtse.config import get
from ddtse.errors import DdtseError
from ddtse.flow import core
from ddtse.registry import SYSTEMS
from ddtse.systems.ddtse import SpectralDiffusionSystem, step_generator

PATHS = ("background", "mixture")


class _EitherMethod:
    """A method that receives (cls, instance or None, ...): ``validate_options`` checks option
    names and types on the class, and their combination with the checkpoint's defaults on an instance."""

    def __init__(self, func):
        self.func = func

    def __get__(self, obj, cls):
        return functools.partial(self.func, cls, obj)


def parse_mr_source(value: str) -> tuple[str, float | None]:
    """"oracle" | "predictor" | "fixed:V" (0 <= V <= 1) -> (kind, V or None); DdtseError otherwise."""
    text = str(value).strip().lower()
    if text in ("oracle", "predictor"):
        return text, None
    if text.startswith("fixed:"):
        try:
            v = float(text[len("fixed:"):])
        except ValueError:
            v = float("nan")
        if 0.0 <= v <= 1.0:
            return "fixed", v
    raise DdtseError(f"mr_source must be oracle, predictor or fixed:V with 0 <= V <= 1, got {value!r}")


class FlowTSESystem(SpectralDiffusionSystem):
    """Shared plumbing of the flow systems: endpoints on either path, the network as v or u, the
    mixing ratio at inference, chunking, option checks."""

    expect_time_conditional = True
    uses_interval = False
    config_keys = {"path": Literal["background", "mixture"]}
    sampler_option_specs = {
        "nfe": (int, 1, "network calls: steps from the start time to 1 (1 = one step)"),
        "mr_source": (str, "predictor", "background path: start time tau_hat from oracle | predictor | fixed:V"),
        "mr_predictor": (str, "", "mr_predictor checkpoint read when mr_source=predictor"),
        "chunk_frames": (int, 0, "cut the spectrogram into chunks of this many frames (0 = whole input)"),
    }
    sampler_option_bounds = {"nfe": (1, None), "chunk_frames": (0, None)}

    def __init__(self, config: dict):
        super().__init__(config)
        name = get(config, "system.name")
        self.path = str(get(config, "system.path", "background"))
        if self.path not in PATHS:
            raise DdtseError(f"system.path must be background or mixture, got {self.path!r}")
        spec = self.spec.config
        linear = spec.transform == "none" or (spec.transform == "exponent" and spec.alpha == 1.0)
        if self.path == "background" and not linear:
            raise DdtseError(f"system '{name}': the straight background->target path needs a linear STFT "
                             f"(system.spec.transform: none), not '{spec.transform}' compression; "
                             "or use system.path: mixture")
        backbone = self._backbone(self.model)
        if getattr(backbone, "time_embedding", "log") != "linear":
            raise DdtseError(f"system '{name}' needs a backbone with time_embedding: linear (t in [0, 1])")
        if bool(getattr(backbone, "interval_conditional", False)) != self.uses_interval:
            raise DdtseError(f"system '{name}' needs a backbone with interval_conditional: "
                             f"{str(self.uses_interval).lower()}")
        self._predictors: dict = {}
        type(self).validate_options(dict(get(config, "sampler", {}) or {}))  # names, types, bounds

    # -- options ------------------------------------------------------------------------
    def _validate(cls, self, opts: dict) -> dict:
        out = SpectralDiffusionSystem.validate_options.__func__(cls, opts)
        if "mr_source" in out:
            parse_mr_source(out["mr_source"])
        if self is not None:
            section = dict(get(self.config, "sampler", {}) or {})
            specs = cls.sampler_options()
            merged = {k: spec[1] for k, spec in specs.items()}
            merged.update({k: v for k, v in section.items() if k in specs and v is not None})
            merged.update(out)
            self.check_options(merged)
        return out

    validate_options = _EitherMethod(_validate)

    def resolve_options(self, opts: dict) -> dict:
        """As the base's (opts over the ``sampler:`` section over built-ins), checked option by option;
        the combination is checked where the options are used (``validate_options`` on the
        extractor, ``extract_batch``), so listing the defaults never fails."""
        specs = self.sampler_options()
        given = type(self).validate_options(opts)
        section = dict(get(self.config, "sampler", {}) or {})
        cfg = type(self).validate_options({k: v for k, v in section.items() if k in specs})
        return {key: given.get(key, cfg.get(key, spec[1])) for key, spec in specs.items()}

    def check_options(self, o: dict) -> None:
        """Refuse an inconsistent combination of (resolved) sampler options in one line."""
        if self.path != "background" or "mr_source" not in o:
            return
        kind, _ = parse_mr_source(o["mr_source"])
        if kind == "predictor":
            path = str(o.get("mr_predictor") or "")
            if not path:
                raise DdtseError("mr_source predictor needs a predictor checkpoint: --opt mr_predictor=PATH "
                                 "(train one with system.name: mr_predictor), or mr_source oracle | fixed:V")
            if not Path(path).is_file():
                raise DdtseError(f"mr_predictor checkpoint {path} does not exist")

    # -- endpoints ----------------------------------------------------------------------
    def spec_channels(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, T) waveform -> padded real channels (B, 2, F, N_pad) of its spectrogram (no scaling)."""
        return complex_to_channels(self.to_spec(wav, torch.ones(wav.shape[0], device=wav.device)))

    def endpoints(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training endpoints (x0, x1) as real channels (B, 2, F, N_pad) and the frame mask (B, 1, 1, N_pad):
        (B, S) of RMS-normalised background and target (background path) or (Y, S) (mixture path)."""
        if "target" not in batch:
            raise DdtseError("training needs batch['target']")
        if self.path == "mixture":
            y, x1, mask, _ = self.prepare(batch)
            return complex_to_channels(y), complex_to_channels(x1), mask
        mix, target, lengths = self._mixture(batch).float(), batch["target"].float(), batch.get("lengths")
        background = mix - target
        s = target / core.masked_rms(target, lengths)[:, None]
        b = background / core.masked_rms(background, lengths)[:, None]
        x0, x1 = self.spec_channels(b), self.spec_channels(s)
        return x0, x1, self.frame_mask(batch, x0.shape[-1], x0.device)

    @staticmethod
    def per_item_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B,) mean square error over each item's valid frames."""
        count = (mask.expand_as(a)).sum(dim=(1, 2, 3)).clamp_min(1)
        return ((a - b).pow(2) * mask).sum(dim=(1, 2, 3)) / count

    # -- the network --------------------------------------------------------------------
    def call_net(self, net, z: torch.Tensor, emb, t: torch.Tensor, r: torch.Tensor | None = None,
                 chunk_frames: int = 0) -> torch.Tensor:
        """z (B, 2, F, N) real, t (B,) [, r (B,)] -> (B, 2, F, N): v(z, t), or u(z, t, r) when the
        backbone embeds r - t. With ``chunk_frames``, the frames go through in batched chunks."""
        backbone = self._backbone(net)
        dt = None if r is None else r - t
        if not chunk_frames or z.shape[-1] <= chunk_frames:
            return backbone(z, emb, t, dt) if dt is not None else backbone(z, emb, t)
        b, n = z.shape[0], z.shape[-1]
        chunks = core.split_frames(z, chunk_frames)
        k = chunks.shape[0] // b
        rep = lambda x: None if x is None else x.repeat_interleave(k, dim=0)  # noqa: E731
        out = backbone(chunks, rep(emb), rep(t), rep(dt)) if dt is not None else backbone(chunks, rep(emb), rep(t))
        return core.merge_frames(out, b, n)

    def validation_loss(self, batch: dict, estimate=None):
        """The flow-matching loss of the EMA network at seeded times (r = t), comparable across epochs."""
        if "target" not in batch:
            return None
        net = self.inference_model(True)
        x0, x1, mask = self.endpoints(batch)
        t = torch.rand(x0.shape[0], generator=torch.Generator().manual_seed(0)).to(x0.device)
        emb = self.speaker_embedding(net, batch)
        pred = self.call_net(net, core.interpolate(x0, x1, t), emb, t, t if self.uses_interval else None)
        return self.per_item_mse(pred, x1 - x0, mask).mean(), {}

    # -- inference ----------------------------------------------------------------------
    def predictor(self, path: str) -> torch.nn.Module:
        """The MR predictor of an ``mr_predictor`` checkpoint, loaded once per path."""
        if path not in self._predictors:
            from ddtse.systems.mr_predictor import load_mr_predictor

            self._predictors[path] = load_mr_predictor(path)
        return self._predictors[path].to(self.device)

    def start_point(self, batch: dict, o: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """-> (z at the start time (B, 2, F, N_pad), start time (B,), output scale (B,), info)."""
        mix = self._mixture(batch).float()
        n = mix.shape[0]
        if self.path == "mixture":
            scale = self.peak_scale(mix)
            return complex_to_channels(self.to_spec(mix, scale)), torch.zeros(n, device=mix.device), scale, \
                {"mr_source": "none (mixture path)"}
        kind, value = parse_mr_source(o["mr_source"])
        lengths = batch.get("lengths")
        info = {"mr_source": o["mr_source"]}
        if kind == "oracle":
            if "target" not in batch:
                raise DdtseError("mr_source oracle needs each item's reference (target); use predictor or fixed:V")
            target = batch["target"].float()
            tau, level = core.oracle_ratio(target, mix - target, lengths)
            out_scale = core.masked_rms(target, lengths)
        else:
            if kind == "fixed":
                tau = torch.full((n,), float(value), device=mix.device)
            else:
                if "enrollment" not in batch:
                    raise DdtseError("mr_source predictor needs the enrollment recording")
                tau = self.predictor(str(o["mr_predictor"]))(mix, batch["enrollment"].float(), lengths,
                                                             batch.get("enrollment_lengths")).float()
                info["predictor_calls"] = 1
            tau = tau.clamp(0.0, 1.0)
            level = core.masked_rms(mix, lengths) / core.path_level(tau)
            out_scale = tau * level
        info["tau_hat"] = [round(float(v), 4) for v in tau]
        return self.spec_channels(mix / level[:, None]), tau, out_scale, info

    def finish(self, z: torch.Tensor, batch: dict, out_scale: torch.Tensor) -> torch.Tensor:
        """Real channels at t = 1 -> (B, T) waveform at the output scale, zero past lengths."""
        return self.to_waveform(channels_to_complex(z), batch, out_scale)

    def sample(self, net, emb, z, start, o) -> tuple[torch.Tensor, int]:
        raise NotImplementedError

    @torch.no_grad()
    def extract_batch(self, batch: dict, use_ema: bool = True, **opts) -> tuple[torch.Tensor, dict]:
        """One step (``nfe=1``) or ``nfe`` steps from the start time to 1. Returns ((B, T), info) with
        ``nfe`` = network calls per item (0 when every item starts at t = 1) and the start times."""
        if opts.pop("initial_estimate", None) is not None:
            raise DdtseError(f"system '{self.registry_name}' cannot refine an initial estimate")
        opts.pop("ids", None)  # deterministic: no sampling noise
        o = self.resolve_options(opts)
        self.check_options(o)
        net = self.inference_model(use_ema)
        emb = self.speaker_embedding(net, batch)
        z, start, out_scale, info = self.start_point(batch, o)
        z, nfe = self.sample(net, emb, z, start, o)
        info.update(nfe=nfe, sampler=self.registry_name, path=self.path)
        return self.finish(z, batch, out_scale), info


@SYSTEMS.register("adflow_tse")
class AdFlowSystem(FlowTSESystem):
    """AD-FlowTSE: v(x_t, t, e) regressed onto x1 - x0 with plain MSE, t ~ U(0, 1); Euler (or midpoint)
    steps from the start time (tau_hat, or 0 on the mixture path) to 1."""

    sampler_option_specs = {"solver": (str, "euler", "euler (1 call a step) | midpoint (2 calls a step)")}

    def check_options(self, o: dict) -> None:
        super().check_options(o)
        solver = o.get("solver", "euler")
        if solver not in ("euler", "midpoint"):
            raise DdtseError(f"solver must be euler or midpoint, got {solver!r}")
        if solver == "midpoint" and int(o.get("nfe", 1)) % 2:
            raise DdtseError(f"the midpoint solver makes 2 calls a step: nfe must be even, got {o.get('nfe')}")

    def training_step(self, batch, batch_idx):
        self._batch_idx = int(batch_idx)
        return super().training_step(batch, batch_idx)

    def training_loss(self, batch: dict):
        x0, x1, mask = self.endpoints(batch)
        gen = step_generator(self.seed, self.current_epoch, self._batch_idx)
        t = torch.rand(x0.shape[0], generator=gen).to(x0.device)
        pred = self.call_net(self.model, core.interpolate(x0, x1, t), self.speaker_embedding(self.model, batch), t)
        per_item = self.per_item_mse(pred, x1 - x0, mask)
        return per_item.mean(), {}

    def sample(self, net, emb, z, start, o):
        chunk = int(o["chunk_frames"])
        solver = o["solver"]
        steps = int(o["nfe"]) // (2 if solver == "midpoint" else 1)
        return core.sample_velocity(lambda x, t: self.call_net(net, x, emb, t, chunk_frames=chunk), z, start,
                                    steps, solver)


@SYSTEMS.register("meanflow_tse")
class MeanFlowSystem(FlowTSESystem):
    """MeanFlow-TSE: the average velocity u(z_t, t, r, e). Each training step is one branch for the
    batch: flow matching (probability ``flow_ratio``; r = t, target x1 - x0) or interval consistency
    with the ``objective``:
    - ``alphaflow_self`` (the released code): alpha = 1 -> target x1 - x0; alpha < 1 -> the semigroup
      target from the model's own u(z_t, t, s) and u(z_s, s, r) (no_grad);
    - ``alphaflow_gt`` (the AlphaFlow paper): alpha v + (1 - alpha) u(z_t + alpha (r - t) v, s, r);
    - ``meanflow_jvp``: v + (r - t) sg(du/dt) with du/dt from ``torch.func.jvp`` (``jvp: auto``
      falls back to finite differences where an operator lacks forward-mode AD, with a warning).
    alpha follows the curriculum 1 - sigmoid(gamma (k / K - 1/2)) with K = ``alpha_schedule.span``
    x the run's optimiser steps (not 2,000 epochs). Loss: mean sg(w) Delta^2, w = a / (Delta^2 + c)^p,
    a = alpha on the alphaflow consistency branches, else 1."""

    uses_interval = True
    config_keys = {
        "objective": Literal["alphaflow_self", "alphaflow_gt", "meanflow_jvp"],
        "flow_ratio": float,
        "alpha_schedule": {"gamma": float, "alpha_min": float, "span": float, "total_steps": int},
        "adaptive_loss": {"p": float, "c": float},
        "jvp": Literal["auto", "func", "finite_difference"],
    }

    def __init__(self, config: dict):
        super().__init__(config)
        self.objective = str(get(config, "system.objective", "alphaflow_self"))
        if self.objective not in core.OBJECTIVES:
            raise DdtseError(f"unknown system.objective {self.objective!r} (known: {', '.join(core.OBJECTIVES)})")
        self.flow_ratio = float(get(config, "system.flow_ratio", 0.5))
        if not 0.0 <= self.flow_ratio <= 1.0:
            raise DdtseError(f"system.flow_ratio must lie in [0, 1], got {self.flow_ratio}")
        sched = dict(get(config, "system.alpha_schedule", {}) or {})
        self.gamma, self.alpha_min = float(sched.get("gamma", 25.0)), float(sched.get("alpha_min", 0.005))
        self.span, self.total_steps = float(sched.get("span", 1.0)), sched.get("total_steps")
        if not self.span > 0:
            raise DdtseError(f"system.alpha_schedule.span must be > 0, got {self.span}")
        loss = dict(get(config, "system.adaptive_loss", {}) or {})
        self.loss_p, self.loss_c = float(loss.get("p", 1.0)), float(loss.get("c", 1e-3))
        self.jvp_mode = str(get(config, "system.jvp", "auto"))
        if self.jvp_mode not in core.JVP_MODES:
            raise DdtseError(f"system.jvp must be one of {', '.join(core.JVP_MODES)}, got {self.jvp_mode!r}")

    def run_length(self) -> int:
        """The run's optimiser steps K (``alpha_schedule.total_steps``, else the trainer's estimate)."""
        if self.total_steps:
            return int(self.total_steps)
        trainer = getattr(self, "_trainer", None)
        steps = getattr(trainer, "estimated_stepping_batches", None) if trainer is not None else None
        if steps is None or not (float(steps) < float("inf")):
            raise DdtseError("meanflow_tse: the alpha curriculum needs the run's length: set trainer.max_steps "
                             "or trainer.max_epochs, or system.alpha_schedule.total_steps")
        return int(steps)

    def current_alpha(self) -> float:
        return core.alpha_curriculum(self.global_step, self.span * self.run_length(), self.gamma, self.alpha_min)

    def training_step(self, batch, batch_idx):
        self._batch_idx = int(batch_idx)
        return super().training_step(batch, batch_idx)

    def training_loss(self, batch: dict):
        net = self.model
        x0, x1, mask = self.endpoints(batch)
        v = x1 - x0
        gen = step_generator(self.seed, self.current_epoch, self._batch_idx)
        fm = bool(torch.rand((), generator=gen) < self.flow_ratio)
        t, r = core.sample_times(x0.shape[0], fm, gen)
        t, r = t.to(x0.device), r.to(x0.device)
        z_t = core.interpolate(x0, x1, t)
        emb = self.speaker_embedding(net, batch)

        def u_fn(z, tt, rr):
            return self.call_net(net, z, emb, tt, rr)

        alpha = self.current_alpha() if self.objective != "meanflow_jvp" else 1.0
        weight, logs = 1.0, {"alpha": torch.tensor(alpha), "fm_branch": torch.tensor(float(fm))}
        if fm:
            u, target = u_fn(z_t, t, r), v
        elif self.objective == "meanflow_jvp":
            u, dudt, mode = core.meanflow_jvp(u_fn, z_t, v, t, r, self.jvp_mode)
            target = core.meanflow_target(u, dudt, v, t, r)
            logs["jvp_fallback"] = torch.tensor(float(mode != "func"))
        elif alpha >= 1.0:
            u, target = u_fn(z_t, t, r), v
        else:
            if self.objective == "alphaflow_self":
                target = core.alphaflow_self_target(u_fn, z_t, t, r, alpha)
            else:
                target = core.alphaflow_gt_target(u_fn, z_t, v, t, r, alpha)
            u, weight = u_fn(z_t, t, r), alpha
        sq_err = self.per_item_mse(u, target.detach(), mask)
        logs["mse"] = sq_err.mean().detach()
        return core.adaptive_loss(sq_err, weight, self.loss_p, self.loss_c), logs

    def sample(self, net, emb, z, start, o):
        chunk = int(o["chunk_frames"])
        return core.sample_average(lambda x, t, r: self.call_net(net, x, emb, t, r, chunk_frames=chunk), z, start,
                                   int(o["nfe"]))
