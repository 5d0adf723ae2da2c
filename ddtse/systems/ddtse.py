"""DDTSE (spec §6): a speaker-conditioned NCSN++ that predicts x0 from x_t, trained with a
lambda(t)-weighted reconstruction loss in two stages; inference takes 1 + K network calls, and
"X+DDTSE" refines another extractor's output (``initial_estimate``) without retraining.

Config keys read here (besides the base's): ``system.spec`` (SpecConfig overrides),
``system.sde`` (OUVE options), ``system.stage`` (1 | 2), ``system.max_threshold`` (0.5),
``system.threshold_epochs`` (100), ``system.prior_branch_lambda`` ("t1" | "sampled"),
``sampler.{K, seed, t_start}`` (defaults of ``extract_batch``), top-level ``seed``.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from ddtse.audio.spectral import SpecConfig, SpectralTransform, channels_to_complex, complex_to_channels
from ddtse.config import get
from ddtse.diffusion.samplers import ItemNoise, ddtse_refine, ddtse_sample
from ddtse.diffusion.sde import build_sde, loss_weight
from ddtse.errors import DdtseError
from ddtse.registry import SYSTEMS
from ddtse.systems.base import ExtractionSystem

BRANCHES = ("stage1", "prior", "renoise")


def stage2_threshold(epoch: int, max_threshold: float = 0.5, ramp_epochs: float = 100.0) -> float:
    """tau = min(epoch / ramp_epochs, max_threshold), epoch counted from the start of stage 2."""
    return min(float(epoch) / float(ramp_epochs), float(max_threshold))


def stage2_branch(r: float, tau: float) -> str:
    """Stage-2 step for a draw r ~ U(0, 1): r < tau/2 -> "renoise" (x0_hat = D(x_T) without gradient,
    then D(mu(x0_hat, y, t) + sigma(t) z)); tau/2 <= r < tau -> "prior" (D(x_T) with gradient);
    otherwise "stage1" (D(x_t) built from the true x0)."""
    if r < tau / 2:
        return "renoise"
    if r < tau:
        return "prior"
    return "stage1"


def step_generator(seed: int, epoch: int, batch_idx: int) -> torch.Generator:
    """A CPU generator that is a function of (seed, epoch, batch index) only (reproducible, resumable)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(batch_idx)]).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class SpectralDiffusionSystem(ExtractionSystem):
    """Shared plumbing of the diffusion systems: peak normalisation, compressed STFT, frame
    padding and masks, the SDE, and the speaker embedding of a ``ddtse_net`` model."""

    expected_in_channels = 2
    expect_time_conditional = False
    config_keys = {
        "spec": {"n_fft": int, "hop_length": int, "transform": Literal["exponent", "log", "none"],
                 "alpha": float, "beta": float, "pad_multiple": int},
        "sde": {"name": str, "theta": float, "sigma_min": float, "sigma_max": float, "T": float,
                "t_eps": float, "N": int},
    }

    def __init__(self, config: dict):
        super().__init__(config)
        overrides = dict(get(config, "system.spec", {}) or {})
        try:
            spec_cfg = SpecConfig.for_rate(self.sample_rate, **overrides)
        except TypeError as exc:
            raise DdtseError(f"bad system.spec option: {exc}") from exc
        self.spec = SpectralTransform(spec_cfg)
        self.sde = build_sde(get(config, "system.sde"))
        backbone = self._backbone(self.model)
        multiple = int(getattr(backbone, "size_multiple", 1))
        if spec_cfg.n_bins % multiple:
            raise DdtseError(f"{spec_cfg.n_bins} frequency bins are not a multiple of {multiple} "
                             "(the U-Net's downsampling): change system.spec.n_fft or model ch_mult")
        self.pad_multiple = int(np.lcm(spec_cfg.pad_multiple, multiple))
        in_ch = getattr(backbone, "in_channels", self.expected_in_channels)
        if in_ch != self.expected_in_channels:
            raise DdtseError(f"system '{get(config, 'system.name')}' needs a backbone with in_channels="
                             f"{self.expected_in_channels}, got {in_ch}")
        if bool(getattr(backbone, "time_conditional", self.expect_time_conditional)) != self.expect_time_conditional:
            raise DdtseError(f"system '{get(config, 'system.name')}' needs a backbone with time_conditional="
                             f"{str(self.expect_time_conditional).lower()}")
        speaker = getattr(self.model, "speaker", None)
        self.needs_enrollment = speaker is not None and bool(getattr(speaker, "uses_enrollment", True))
        self.seed = int(config.get("seed", 0) or 0)
        self._batch_idx = 0

    @property
    def min_samples(self) -> int:
        """A centred STFT needs more than n_fft / 2 samples: n_fft is the shortest input."""
        return max(int(self.spec.config.n_fft), 2)

    def check_init_config(self, theirs: dict, path: str) -> None:
        super().check_init_config(theirs, path)
        rate = int(get(theirs, "data.sample_rate", 16000))
        try:
            their_spec = SpecConfig.for_rate(rate, **dict(get(theirs, "system.spec", {}) or {}))
        except TypeError:
            their_spec = None
        if their_spec != self.spec.config:
            raise DdtseError(f"{path} was trained on another spectrogram ({their_spec}); this run uses "
                             f"{self.spec.config}: set the same system.spec")

    # -- network plumbing ------------------------------------------------------------------
    @staticmethod
    def _backbone(net: torch.nn.Module) -> torch.nn.Module:
        return getattr(net, "backbone", net)

    def speaker_embedding(self, net: torch.nn.Module, batch: dict) -> torch.Tensor | None:
        """The speaker clue (B, D) of a batch (None for an unconditional network)."""
        speaker = getattr(net, "speaker", None)
        if speaker is not None and not getattr(speaker, "uses_enrollment", True) and batch.get("embedding") is None:
            raise DdtseError("this model reads a pre-computed speaker embedding per item (infer.py --embedding "
                             "E.npy, or an 'embedding' column of .npy paths in --list)")
        if hasattr(net, "speaker_embedding"):
            return net.speaker_embedding(batch.get("enrollment"), batch.get("enrollment_lengths"),
                                         batch.get("embedding"))
        return batch.get("embedding")

    def run_backbone(self, net, x: torch.Tensor, emb, t=None) -> torch.Tensor:
        """complex (B, C, F, N) -> complex (B, Cout/2, F, N) through the backbone."""
        out = self._backbone(net)(complex_to_channels(x), emb, t)
        return channels_to_complex(out.float())

    # -- signal plumbing -------------------------------------------------------------------
    @staticmethod
    def _mixture(batch: dict) -> torch.Tensor:
        mix = batch["mixture"]
        return mix[:, 0] if mix.dim() == 3 else mix  # reference channel

    @staticmethod
    def peak_scale(mixture: torch.Tensor) -> torch.Tensor:
        """Per-item max|mixture| (B,), guarded against silence."""
        return mixture.abs().amax(dim=-1).clamp_min(1e-8)

    def to_spec(self, wav: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """(B, T) waveform / scale -> padded compressed spectrogram (B, 1, F, N_pad)."""
        spec = self.spec(wav.float() / scale[:, None])[:, None]
        extra = (-spec.shape[-1]) % self.pad_multiple
        return torch.nn.functional.pad(spec, (0, extra)) if extra else spec

    def frame_mask(self, batch: dict, n_pad: int, device) -> torch.Tensor:
        """(B, 1, 1, N_pad) float mask of the frames that belong to each item (lengths-aware)."""
        mix = self._mixture(batch)
        lengths = batch.get("lengths")
        if lengths is None:
            lengths = torch.full((mix.shape[0],), mix.shape[-1], device=device)
        frames = lengths.to(device) // self.spec.config.hop_length + 1
        idx = torch.arange(n_pad, device=device)
        return (idx[None, :] < frames[:, None]).float()[:, None, None, :]

    def prepare(self, batch: dict, with_target: bool = True):
        """-> (y, x0 | None, mask, scale): normalised compressed spectrograms (B, 1, F, N_pad)."""
        mix = self._mixture(batch)
        scale = self.peak_scale(mix)
        y = self.to_spec(mix, scale)
        x0 = None
        if with_target:
            if "target" not in batch:
                raise DdtseError("training needs batch['target']")
            x0 = self.to_spec(batch["target"], scale)
        return y, x0, self.frame_mask(batch, y.shape[-1], y.device), scale

    def to_waveform(self, spec: torch.Tensor, batch: dict, scale: torch.Tensor) -> torch.Tensor:
        """Padded compressed spectrogram (B, 1, F, N_pad) -> (B, T) waveform, un-normalised, zero past lengths."""
        mix = self._mixture(batch)
        length = mix.shape[-1]
        frames = self.spec.n_frames(length)
        wav = self.spec.inverse(spec[:, 0, :, :frames], length) * scale[:, None]
        lengths = batch.get("lengths")
        if lengths is not None:
            keep = torch.arange(length, device=wav.device)[None, :] < lengths.to(wav.device)[:, None]
            wav = wav * keep
        return wav

    def training_step(self, batch, batch_idx):
        self._batch_idx = int(batch_idx)
        return super().training_step(batch, batch_idx)

    def _generator(self, device, seed: int) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(int(seed))

    def _noise_source(self, batch: dict, y: torch.Tensor, seed: int, ids=None):
        """Sampling noise: with item ``ids``, per-item streams seeded by (seed, id) over each item's
        own padded frames (independent of batch size and order); without, one generator."""
        if ids is None:
            return self._generator(y.device, seed)
        lengths = batch.get("lengths")
        frames = None
        if lengths is not None:
            m = self.pad_multiple
            own = lengths.detach().cpu().long() // self.spec.config.hop_length + 1
            frames = (((own + m - 1) // m) * m).clamp_max(y.shape[-1]).tolist()
        return ItemNoise(seed, list(ids), frames)


@SYSTEMS.register("ddtse")
class DDTSESystem(SpectralDiffusionSystem):
    """DDTSE: D(x_t, e) -> x0_hat; stage 1 and stage 2 (``system.stage``) reconstruction training."""

    config_keys = {"stage": Literal[1, 2], "max_threshold": float, "threshold_epochs": float,
                   "prior_branch_lambda": Literal["t1", "sampled"]}
    can_refine = True  # X+DDTSE: extract_batch(initial_estimate=...)
    sampler_option_specs = {
        "K": (int, 10, "re-noising steps after the first prediction (NFE = 1 + K; 0 = one call)"),
        "seed": (int, 100, "sampling-noise seed (with item ids: per-item streams)"),
        "t_start": (float, 1.0, "X+DDTSE refinement start time (1.0 = the full schedule)"),
    }
    sampler_option_bounds = {"K": (0, None), "t_start": (0.0, 1.0)}

    def __init__(self, config: dict):
        super().__init__(config)
        self.stage = int(get(config, "system.stage", 1))
        if self.stage not in (1, 2):
            raise DdtseError(f"system.stage must be 1 or 2, got {self.stage}")
        self.max_threshold = float(get(config, "system.max_threshold", 0.5))
        self.threshold_epochs = float(get(config, "system.threshold_epochs", 100))
        self.prior_branch_lambda = str(get(config, "system.prior_branch_lambda", "sampled"))
        if self.prior_branch_lambda not in ("t1", "sampled"):
            raise DdtseError(f"system.prior_branch_lambda must be 't1' or 'sampled', got {self.prior_branch_lambda!r}")

    # -- the network as a denoiser ---------------------------------------------------------
    def denoise(self, net, x_t: torch.Tensor, emb) -> torch.Tensor:
        """x_t complex (B, 1, F, N) -> x0_hat complex (B, 1, F, N)."""
        return self.run_backbone(net, x_t, emb)

    def weighted_loss(self, x0, estimate, t, mask) -> tuple[torch.Tensor, torch.Tensor]:
        """mean_B lambda(t_b) 0.5 sum_bins |x0 - estimate|^2 over valid frames; -> (loss, per-item sums)."""
        per_item = 0.5 * ((x0 - estimate).abs().pow(2) * mask).sum(dim=(1, 2, 3))
        return (loss_weight(t.to(per_item.dtype)) * per_item).mean(), per_item

    def branch_loss(self, batch: dict, branch: str) -> tuple[torch.Tensor, dict]:
        """The loss of one training step of the given branch ("stage1", "prior", "renoise")."""
        if branch not in BRANCHES:
            raise ValueError(f"unknown branch {branch!r}")
        net = self.model
        y, x0, mask, _ = self.prepare(batch)
        emb = self.speaker_embedding(net, batch)
        t = self.sde.sample_t(y.shape[0], device=y.device)
        if branch == "stage1":
            x_t, _ = self.sde.perturb(x0, y, t)
            lam_t = t
        elif branch == "prior":
            x_t = self.sde.prior_sample(y)
            lam_t = torch.ones_like(t) * self.sde.T if self.prior_branch_lambda == "t1" else t
        else:  # renoise: first inference step without gradient, then the re-noised input
            with torch.no_grad():
                x0_hat = self.denoise(net, self.sde.prior_sample(y), emb.detach() if emb is not None else None)
            x_t, _ = self.sde.perturb(x0_hat.detach(), y, t)
            lam_t = t
        estimate = self.denoise(net, x_t, emb)
        loss, per_item = self.weighted_loss(x0, estimate, lam_t, mask)
        return loss, {"recon": per_item.mean().detach()}

    def training_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        if self.stage == 1:
            return self.branch_loss(batch, "stage1")
        tau = stage2_threshold(self.current_epoch, self.max_threshold, self.threshold_epochs)
        r = torch.rand((), generator=step_generator(self.seed, self.current_epoch, self._batch_idx)).item()
        branch = stage2_branch(r, tau)
        loss, logs = self.branch_loss(batch, branch)
        device = loss.device
        logs["tau"] = torch.tensor(tau, device=device)
        for name in BRANCHES:
            logs[f"branch_{name}"] = torch.tensor(float(branch == name), device=device)
        return loss, logs

    @torch.no_grad()
    def validation_loss(self, batch: dict, estimate=None) -> tuple[torch.Tensor, dict]:
        """Stage-1 loss of the EMA network with fixed noise, comparable across epochs (the sampled
        estimate is not used)."""
        net = self.inference_model(True)
        y, x0, mask, _ = self.prepare(batch)
        gen = self._generator(y.device, 0)
        t = self.sde.sample_t(y.shape[0], generator=gen, device=y.device)
        x_t, _ = self.sde.perturb(x0, y, t, gen)
        loss, per_item = self.weighted_loss(x0, self.denoise(net, x_t, self.speaker_embedding(net, batch)), t, mask)
        return loss, {"recon": per_item.mean()}

    # -- inference ---------------------------------------------------------------------------
    @torch.no_grad()
    def extract_batch(self, batch: dict, use_ema: bool = True, **opts) -> tuple[torch.Tensor, dict]:
        """DDTSE (1 + K calls) or, with ``initial_estimate`` (B, T) waveforms, X+DDTSE refinement
        from ``t_start``. Opts: K (10), seed (100), t_start (1.0), initial_estimate (None);
        defaults come from the ``sampler:`` config section. Returns ((B, T), info)."""
        initial = opts.pop("initial_estimate", None)
        ids = opts.pop("ids", None)
        o = self.resolve_options(opts)
        K, seed, t_start = int(o["K"]), int(o["seed"]), float(o["t_start"])
        net = self.inference_model(use_ema)
        y, _, _, scale = self.prepare(batch, with_target=False)
        emb = self.speaker_embedding(net, batch)  # once per call
        gen = self._noise_source(batch, y, seed, ids)

        def denoiser(x_t):
            return self.denoise(net, x_t, emb)

        info = {"K": K, "seed": seed}
        if initial is None:
            x0_hat, nfe = ddtse_sample(denoiser, y, self.sde, K=K, generator=gen)
            info["sampler"] = "ddtse"
        else:
            est = torch.as_tensor(initial, device=y.device, dtype=torch.float32)
            if est.dim() == 3:
                est = est[:, 0]
            mix = self._mixture(batch)
            if est.dim() != 2 or est.shape[0] != mix.shape[0]:
                raise DdtseError(f"initial_estimate must be (B, T) with B={mix.shape[0]}, got {tuple(est.shape)}")
            length = mix.shape[-1]
            est = est[:, :length] if est.shape[-1] >= length else torch.nn.functional.pad(est, (0, length - est.shape[-1]))
            x0_init = self.to_spec(est, scale)
            x0_hat, nfe = ddtse_refine(denoiser, y, x0_init, self.sde, K=K, t_start=t_start, generator=gen)
            info.update(sampler="ddtse_refine", t_start=t_start)
        info["nfe"] = nfe
        return self.to_waveform(x0_hat, batch, scale), info
