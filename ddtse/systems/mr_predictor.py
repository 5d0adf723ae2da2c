"""MixingRatioSystem (``mr_predictor``): trains AD-FlowTSE's mixing-ratio predictor (spec flow_tse.md
§1.4) separately from the flow model. Training synthesises x_tau = tau s' + (1 - tau) b' from
RMS-normalised target and background (b = mixture - target) with tau ~ U(0, 1) and regresses tau_hat
onto tau (MSE). Validation predicts on the real mixture against its gain-free oracle ratio
tau* = rms(s) / (rms(s) + rms(b)) and logs ``val/mae`` (the default monitor, mode min) and ``val/loss``.
The checkpoint is read by ``adflow_tse`` inference (``--opt mr_predictor=PATH``)."""
from __future__ import annotations

import torch

from ddtse.errors import DdtseError
from ddtse.flow.core import masked_rms, oracle_ratio
from ddtse.registry import MODELS, SYSTEMS
from ddtse.systems.base import ExtractionSystem
from ddtse.systems.ddtse import step_generator


@SYSTEMS.register("mr_predictor")
class MixingRatioSystem(ExtractionSystem):
    """The MR predictor's training (``model: {name: mr_predictor, encoder: {...}}``); extracts nothing."""

    is_extractor = False
    default_monitor = ("val/mae", "min")

    def build_model(self):
        cfg = dict(self.config["model"])
        if cfg.get("name") != "mr_predictor":
            raise DdtseError(f"system 'mr_predictor' trains an 'mr_predictor' model, got {cfg.get('name')!r}")
        return MODELS.build(cfg, sample_rate=self.sample_rate)

    def __init__(self, config: dict):
        super().__init__(config)
        self.seed = int(config.get("seed", 0) or 0)
        self._batch_idx = 0

    def training_step(self, batch, batch_idx):
        self._batch_idx = int(batch_idx)
        return super().training_step(batch, batch_idx)

    @staticmethod
    def _signals(batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if "target" not in batch or "enrollment" not in batch:
            raise DdtseError("mr_predictor training needs batches with a target and an enrollment")
        mix = batch["mixture"][:, 0] if batch["mixture"].dim() == 3 else batch["mixture"]
        return mix.float(), batch["target"].float(), batch.get("lengths")

    def training_loss(self, batch: dict):
        mix, target, lengths = self._signals(batch)
        background = mix - target
        s = target / masked_rms(target, lengths)[:, None]
        b = background / masked_rms(background, lengths)[:, None]
        gen = step_generator(self.seed, self.current_epoch, self._batch_idx)
        tau = torch.rand(mix.shape[0], generator=gen).to(mix.device)
        x = tau[:, None] * s + (1 - tau[:, None]) * b
        pred = self.model(x, batch["enrollment"], lengths, batch.get("enrollment_lengths"))
        loss = torch.nn.functional.mse_loss(pred, tau)
        return loss, {"mae": (pred - tau).abs().mean().detach()}

    @torch.no_grad()
    def validation_step(self, batch, batch_idx):
        mix, target, lengths = self._signals(batch)
        tau, _ = oracle_ratio(target, mix - target, lengths)
        pred = self.inference_model(True)(mix, batch["enrollment"], lengths, batch.get("enrollment_lengths"))
        bs = mix.shape[0]
        self.log("val/loss", torch.nn.functional.mse_loss(pred, tau), batch_size=bs, sync_dist=True)
        self.log("val/mae", (pred - tau).abs().mean(), prog_bar=True, batch_size=bs, sync_dist=True)

    def extract_batch(self, batch: dict, use_ema: bool = True, **opts):
        raise DdtseError("an mr_predictor checkpoint extracts no speech; give it to an adflow_tse model "
                         "(--opt mr_source=predictor --opt mr_predictor=PATH)")


def load_mr_predictor(path: str) -> torch.nn.Module:
    """The predictor network of an ``mr_predictor`` checkpoint (its EMA copy when there is one), all
    weights loaded strictly (the reference never loads them), in eval mode."""
    from ddtse.checkpoint import checkpoint_config, load_checkpoint

    ckpt = load_checkpoint(path, what="mr_predictor checkpoint")
    config = checkpoint_config(ckpt)
    model_cfg = config.get("model") if isinstance(config, dict) else None
    if ckpt.get("ddtse_system") != "mr_predictor" or not isinstance(model_cfg, dict):
        raise DdtseError(f"{path} is not an mr_predictor checkpoint (train one with system.name: mr_predictor)")
    model = MODELS.build(model_cfg, sample_rate=int(config.get("data", {}).get("sample_rate", 16000)))
    state = ckpt["state_dict"]
    prefix = "ema_model." if any(k.startswith("ema_model.") for k in state) else "model."
    own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    try:
        model.load_state_dict(own, strict=True)
    except RuntimeError as exc:
        raise DdtseError(f"{path}: the predictor's weights do not fit its model ({str(exc).splitlines()[0]})") from exc
    return model.eval().requires_grad_(False)
