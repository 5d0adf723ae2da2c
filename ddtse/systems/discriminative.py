"""DiscriminativeSystem: trains a one-pass extractor (TD-SpeakerBeam, ASA, DPTNet, ...) with -SI-SDR.

``system:`` keys read here (besides the base's): ``speaker_loss_weight`` (0 = off; needs the
model's ``num_speakers`` > 0 and ``speaker_index`` in the batch, -1 = unknown speaker, ignored).
Adam, ReduceLROnPlateau (``system.scheduler``), EMA and validation come from ExtractionSystem;
gradient clipping is ``trainer.gradient_clip_val``; early stopping ``system.early_stop_patience``
(handled by ddtse/training.py); activation checkpointing is the model's ``gradient_checkpointing``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ddtse.config import get
from ddtse.errors import DdtseError
from ddtse.metrics import absent_energy_db, level_error_db, masked_si_sdr
from ddtse.registry import MODELS, SYSTEMS
from ddtse.systems.base import ExtractionSystem


#: What a one-pass extractor model declares (class attributes or properties) and the value assumed
#: when it does not: ``needs_enrollment`` (forward(mixture, enrollment, enrollment_lengths) rather
#: than forward(mixture)), ``accepts_lengths`` (forward takes ``lengths=`` (B,) valid samples),
#: ``returns_aux`` (forward takes ``return_aux=True`` and then returns a dict with ``estimate``),
#: ``in_audio_channels`` (mixture channels read), ``min_input_samples`` (shortest input).
MODEL_CONTRACT = {"needs_enrollment": True, "accepts_lengths": False, "returns_aux": False,
                  "in_audio_channels": 1, "min_input_samples": 2}


def model_declares(model_or_class, name: str):
    """The value a model (module or class) declares for a MODEL_CONTRACT attribute, else its default."""
    return getattr(model_or_class, name, MODEL_CONTRACT[name])


def model_needs_enrollment(model_or_config) -> bool:
    """Whether an extractor (module, class, or ``model:`` config dict) takes an enrollment."""
    if isinstance(model_or_config, dict):
        model_or_config = MODELS.get(model_or_config["name"])
    return bool(model_declares(model_or_config, "needs_enrollment"))


def call_extractor_model(model: torch.nn.Module, batch: dict, return_aux: bool = False):
    """Call the extractor on a batch: ``model(mixture, enrollment, enrollment_lengths)`` or ``model(mixture)``.

    Returns the estimate (B, T), or with ``return_aux`` a dict with at least ``estimate``."""
    mixture = batch["mixture"]
    kwargs = {}
    if return_aux and model_declares(model, "returns_aux"):
        kwargs["return_aux"] = True
    if batch.get("lengths") is not None and model_declares(model, "accepts_lengths"):
        kwargs["lengths"] = batch["lengths"]
    if model_needs_enrollment(model):
        if batch.get("enrollment") is None:
            raise DdtseError("this extractor needs an enrollment, but the batch has none")
        out = model(mixture, batch["enrollment"], batch.get("enrollment_lengths"), **kwargs)
    else:
        out = model(mixture, **kwargs)
    if return_aux:
        return out if isinstance(out, dict) else {"estimate": out}
    return out["estimate"] if isinstance(out, dict) else out


@SYSTEMS.register("discriminative")
class DiscriminativeSystem(ExtractionSystem):
    """Negative SI-SDR (length-masked) + optional speaker cross-entropy; one network call per item.

    Trained with absent-target items (``data.train.absent_target_prob``), an absent item's loss is
    its output energy re the mixture (``absent_energy_db``, floor ``system.absent_threshold_db``)
    and a present item's is -SI-SDR + |level error| (``level_error_db``)."""

    config_keys = {"speaker_loss_weight": float, "rms_loss_weight": float, "absent_threshold_db": float}

    def __init__(self, config: dict):
        super().__init__(config)
        # instance value, derived from the model (class value stays True for TD-SpeakerBeam)
        self.needs_enrollment = model_needs_enrollment(self.model)
        self.speaker_loss_weight = float(get(config, "system.speaker_loss_weight", 0.0) or 0.0)
        # absent-target items: the loss stops rewarding silence this far below the mixture (dB)
        self.absent_tau = 10.0 ** (-float(get(config, "system.absent_threshold_db", 25.0)) / 10.0)
        if self.speaker_loss_weight > 0 and getattr(self.model, "speaker_head", None) is None:
            raise DdtseError("system.speaker_loss_weight > 0 needs a model with a speaker head "
                             "(model.num_speakers > 0)")

    @property
    def in_channels(self) -> int:
        return int(model_declares(self.model, "in_audio_channels"))

    @property
    def min_samples(self) -> int:
        return max(int(model_declares(self.model, "min_input_samples")), 2)

    def run_model(self, model: torch.nn.Module, batch: dict, return_aux: bool = False):
        """Call the extractor on a batch (``call_extractor_model``)."""
        return call_extractor_model(model, batch, return_aux)

    def _loss(self, model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        out = self.run_model(model, batch, return_aux=True)
        loss, logs = self._extraction_loss(out["estimate"], batch)
        if self.speaker_loss_weight > 0:
            if batch.get("speaker_index") is None:
                raise DdtseError("system.speaker_loss_weight > 0 needs 'speaker_index' in the batch")
            logits = out.get("speaker_logits")
            if logits is None:
                raise DdtseError("system.speaker_loss_weight > 0 but the model returns no speaker logits")
            index = batch["speaker_index"].long()
            if (index >= 0).any():
                ce = F.cross_entropy(logits.float(), index, ignore_index=-1)
                loss = loss + self.speaker_loss_weight * ce
                logs["speaker_ce"] = ce.detach()
        return loss, logs

    def _extraction_loss(self, estimate: torch.Tensor, batch: dict) -> tuple[torch.Tensor, dict]:
        """The loss on the estimate (B, T): -SI-SDR, or with absent items the energy/level terms."""
        target = batch["target"]
        n = min(estimate.shape[-1], target.shape[-1])
        lengths = batch.get("lengths")
        valid = None if lengths is None else lengths.clamp_max(n)
        sdr = masked_si_sdr(estimate[..., :n].float(), target[..., :n].float(), valid)
        absent = batch.get("absent")
        if absent is not None:  # trained with absent-target items (every item carries the flag)
            # SI-SDR is undefined for a silent target: output energy re the mixture instead. A
            # scale-invariant loss on present items would then let the model pass the absent term
            # by shrinking every output, so present items also learn the target's level.
            absent = absent.to(sdr.device)
            energy = absent_energy_db(estimate[..., :n], batch["mixture"][:, 0, :n], valid, self.absent_tau)
            level = level_error_db(estimate[..., :n], target[..., :n], valid)
            per_item = torch.where(absent, energy, level - sdr)
            loss = per_item.mean()
            present = ~absent
            nan = sdr.new_tensor(float("nan"))
            logs = {"si_sdr": sdr[present].mean().detach() if bool(present.any()) else nan,
                    "level_error_db": level[present].mean().detach() if bool(present.any()) else nan,
                    "absent_energy_loss": energy[absent].mean().detach() if bool(absent.any()) else nan}
        else:
            loss = -sdr.mean()
            logs = {"si_sdr": sdr.mean().detach()}
        loss = loss + self._loudness_term(estimate[..., :n], target[..., :n], lengths, logs)
        return loss, logs

    def training_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """-SI-SDR over the valid samples of each item (+ weight * speaker CE)."""
        return self._loss(self.model, batch)

    @torch.no_grad()
    def validation_loss(self, batch: dict, estimate: torch.Tensor | None = None) -> tuple[torch.Tensor, dict] | None:
        """The training objective of the EMA extractor's ``estimate``, without the speaker term
        (``val/loss``): the monitor to pick a checkpoint by when absent and present items trade off."""
        if estimate is None:
            return None
        return self._extraction_loss(estimate, batch)[0], {}

    @torch.no_grad()
    def extract_batch(self, batch: dict, use_ema: bool = True, **opts) -> tuple[torch.Tensor, dict]:
        """One pass of the (EMA) extractor: estimate (B, T), info {"nfe": 1}; it takes no sampler options."""
        opts.pop("ids", None)  # item ids only seed samplers; this one is deterministic
        if opts.pop("initial_estimate", None) is not None:
            raise DdtseError(f"system '{self.registry_name}' cannot refine an initial estimate")
        self.validate_options(opts)
        model = self.inference_model(use_ema)
        estimate = self.run_model(model, batch)
        return estimate, {"nfe": 1}

    def export_module(self) -> torch.nn.Module:
        """The EMA extractor behind the batch interface of ``run_model``, for export (one network call)."""
        return _ExportedExtractor(self, self.inference_model(use_ema=True)).eval()

    # --- optional loudness term (focused extractor; spec frontends.md section 4, f0291d5) ---------
    # ``system.rms_loss_weight`` w (0 = off): adds w * mean_b |RMS(estimate_b) - RMS(target_b)| over
    # the valid samples, so a scale-invariant model also learns the target's level (128 upstream).
    def _loudness_term(self, estimate: torch.Tensor, target: torch.Tensor, lengths, logs: dict) -> torch.Tensor:
        weight = float(get(self.config, "system.rms_loss_weight", 0.0) or 0.0)
        if weight <= 0:
            return estimate.new_zeros(())
        n = estimate.shape[-1]
        valid = torch.full((estimate.shape[0],), n, device=estimate.device) if lengths is None else lengths.clamp(1, n)
        mask = (torch.arange(n, device=estimate.device)[None] < valid[:, None]).to(estimate.dtype)
        rms = lambda x: torch.sqrt((x.float() * mask).pow(2).sum(-1) / valid + 1e-12)  # noqa: E731
        term = (rms(estimate) - rms(target)).abs().mean()
        logs["rms_loss"] = term.detach()
        return weight * term


class _ExportedExtractor(torch.nn.Module):
    """``forward(mixture, lengths[, enrollment, enrollment_lengths]) -> estimate`` of a one-pass model."""

    def __init__(self, system: DiscriminativeSystem, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.needs_enrollment = bool(system.needs_enrollment)

    def forward(self, mixture, lengths, enrollment=None, enrollment_lengths=None):
        batch = {"mixture": mixture, "lengths": lengths}
        if self.needs_enrollment:
            batch.update(enrollment=enrollment, enrollment_lengths=enrollment_lengths)
        return call_extractor_model(self.model, batch)
