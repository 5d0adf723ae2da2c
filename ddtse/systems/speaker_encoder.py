"""SpeakerEncoderSystem: trains a speaker-verification network (``model:``, e.g. ``ecapa_tdnn``) with an
additive angular margin (AAM) softmax on speaker labels; validation logs the EER of seeded trials.

``data.train`` / ``data.valid``: ``speaker_utterances`` datasets (ddtse/data/speakers.py). ``system:``
keys: ``num_speakers`` (counted from data.train when absent, stored in the checkpoint), ``margin``
(0.2), ``scale`` (30), ``margin_warmup_steps`` (margin ramps linearly from 0), ``spec_augment``
({freq_masks, freq_width, time_masks, time_width}, training only), ``val_trials`` (number of
validation trials, 2000), ``lr``, ``weight_decay``, ``scheduler`` ({name: cosine, warmup_steps}
per step, or plateau), ``ema_decay`` (the base's; 0 = off). Monitor ``val/eer`` (mode min). The
validation EER is computed per process from the items it validated (under DDP, a shard's trials).
"""
from __future__ import annotations

import copy
import math
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ddtse.config import get
from ddtse.errors import DdtseError
from ddtse.registry import SYSTEMS
from ddtse.systems.base import ExtractionSystem


class AAMSoftmax(nn.Module):
    """Additive angular margin softmax (ArcFace): logits ``scale * cos(theta + margin)`` on the
    target class, ``scale * cos(theta)`` elsewhere."""

    def __init__(self, emb_dim: int, num_classes: int, margin: float = 0.2, scale: float = 30.0):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, emb_dim))
        nn.init.xavier_normal_(self.weight)
        self.margin, self.scale = float(margin), float(scale)

    def forward(self, emb: torch.Tensor, labels: torch.Tensor, margin: float | None = None) -> torch.Tensor:
        m = self.margin if margin is None else float(margin)
        cos = F.linear(F.normalize(emb.float(), dim=-1), F.normalize(self.weight.float(), dim=-1))
        cos = cos.clamp(-1 + 1e-7, 1 - 1e-7)
        target = torch.cos(torch.acos(cos.gather(1, labels[:, None])) + m)
        # keep the target logit monotonic beyond theta = pi - m (ArcFace's "easy margin" alternative)
        fallback = cos.gather(1, labels[:, None]) - math.sin(math.pi - m) * m
        theta_ok = cos.gather(1, labels[:, None]) > math.cos(math.pi - m)
        logits = cos.scatter(1, labels[:, None], torch.where(theta_ok, target, fallback))
        return self.scale * logits


def _count_speakers(config: dict) -> int:
    from ddtse.data.datamodule import build_dataset

    train = get(config, "data.train")
    if not isinstance(train, dict):
        raise DdtseError("speaker_encoder: set system.num_speakers or configure data.train")
    dataset = build_dataset(train, int(get(config, "data.sample_rate", 16000)), train=True)
    if not hasattr(dataset, "speakers"):
        raise DdtseError(f"speaker_encoder: data.train '{train.get('name')}' has no speaker labels "
                         "(use speaker_utterances)")
    return len(dataset.speakers)


@SYSTEMS.register("speaker_encoder")
class SpeakerEncoderSystem(ExtractionSystem):
    """Speaker-verification training (see the module docstring); ``self.model`` is the encoder."""

    is_extractor = False  # the extractor protocol: it trains a speaker encoder, it extracts nothing
    needs_enrollment = False
    default_monitor = ("val/eer", "min")  # when system.monitor / monitor_mode are not set
    config_keys = {
        "num_speakers": int | None,
        "margin": float,
        "scale": float,
        "margin_warmup_steps": int,
        "spec_augment": {"freq_masks": int, "freq_width": int, "time_masks": int, "time_width": int},
        "val_trials": int,
        "scheduler": {"name": Literal["cosine", "plateau"], "warmup_steps": int, "min_lr": float,
                      "factor": float, "patience": int},
    }

    def __init__(self, config: dict):
        config = copy.deepcopy(config)
        system = config.setdefault("system", {})
        if not system.get("num_speakers"):
            system["num_speakers"] = _count_speakers(config)
        super().__init__(config)
        self.num_speakers = int(system["num_speakers"])
        if self.num_speakers < 2:
            raise DdtseError(f"speaker_encoder: training needs at least 2 speakers, got {self.num_speakers}")
        self.head = AAMSoftmax(int(self.model.output_dim), self.num_speakers,
                               float(system.get("margin", 0.2)), float(system.get("scale", 30.0)))
        self.margin_warmup = int(system.get("margin_warmup_steps", 0) or 0)
        self.spec_augment = dict(system.get("spec_augment") or {})
        self._val: list = []

    # -- training
    def current_margin(self) -> float:
        if self.margin_warmup <= 0:
            return self.head.margin
        return self.head.margin * min(1.0, self.global_step / self.margin_warmup)

    def augment_features(self, feats: torch.Tensor) -> torch.Tensor:
        """SpecAugment-style masks (zeros, i.e. the utterance mean) on (B, n_mels, N) features."""
        opts = self.spec_augment
        if not opts:
            return feats
        feats = feats.clone()
        b, n_freq, n_time = feats.shape
        for axis, count, width, size in ((1, "freq_masks", "freq_width", n_freq), (2, "time_masks", "time_width", n_time)):
            for _ in range(int(opts.get(count, 0))):
                w = torch.randint(0, int(opts.get(width, 8)) + 1, (b,), device=feats.device)
                start = (torch.rand(b, device=feats.device) * (size - w).clamp(min=1)).long()
                pos = torch.arange(size, device=feats.device)[None]
                hit = (pos >= start[:, None]) & (pos < (start + w)[:, None])
                feats = feats.masked_fill(hit[:, :, None] if axis == 1 else hit[:, None, :], 0.0)
        return feats

    def training_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        if batch.get("speaker_index") is None:
            raise DdtseError("speaker_encoder: the training batches carry no speaker_index (use speaker_utterances)")
        wav = batch["mixture"][:, 0]
        feats, mask = self.model.features(wav, batch.get("lengths"))
        emb = self.model.embed_features(self.augment_features(feats), mask)
        labels = batch["speaker_index"].long()
        logits = self.head(emb, labels, self.current_margin())
        loss = F.cross_entropy(logits, labels)
        accuracy = (self.head(emb.detach(), labels, 0.0).argmax(-1) == labels).float().mean()
        return loss, {"accuracy": accuracy}

    def configure_optimizers(self):
        lr = float(get(self.config, "system.lr", 1e-3))
        params = [p for p in self.model.parameters() if p.requires_grad] + list(self.head.parameters())
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=float(get(self.config, "system.weight_decay", 1e-4)))
        sched = get(self.config, "system.scheduler")
        if not sched:
            return optimizer
        if sched.get("name") == "cosine":
            total = max(1, int(self.trainer.estimated_stepping_batches))
            warmup = int(sched.get("warmup_steps", 0))
            floor = float(sched.get("min_lr", 0.0)) / lr

            def factor(step):
                if step < warmup:
                    return (step + 1) / warmup
                progress = min(1.0, (step - warmup) / max(1, total - warmup))
                return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        if sched.get("name") != "plateau":
            raise DdtseError(f"unknown system.scheduler.name '{sched.get('name')}' (cosine, plateau)")
        return super().configure_optimizers()

    # -- validation: embeddings of the dev utterances, EER of seeded trials at the epoch's end
    def on_validation_epoch_start(self):
        self._val = []

    def validation_step(self, batch, batch_idx):
        model = self.inference_model(True)
        emb = model(batch["mixture"][:, 0], batch.get("lengths")).float().cpu()
        labels = batch["speaker_index"].cpu() if batch.get("speaker_index") is not None else None
        if labels is None:
            raise DdtseError("speaker_encoder: the validation batches carry no speaker_index")
        self._val.extend(zip(batch["ids"], emb, labels.tolist()))

    def on_validation_epoch_end(self):
        from ddtse.speaker_verification import make_trials, score_trials

        speakers = {i: str(s) for i, _, s in self._val}
        embeddings = {i: e for i, e, _ in self._val}
        try:
            trials = make_trials(speakers, int(get(self.config, "system.val_trials", 2000)), seed=self.config.get("seed", 0))
            eer = score_trials(embeddings, trials)["eer"]
        except DdtseError as exc:  # e.g. a one-item validation set of a plumbing run
            if not getattr(self, "_warned_trials", False):
                print(f"warning: no validation EER ({exc}); val/eer is logged as 50 (chance)")
                self._warned_trials = True
            eer = 50.0
        self.log("val/eer", eer, prog_bar=True, batch_size=1)
        self._val = []

    # -- no extraction
    def extract_batch(self, batch: dict, use_ema: bool = True, **opts):
        raise DdtseError("a speaker_encoder checkpoint extracts no speech; use it as model.speaker: "
                         "{name: pretrained, ckpt: ...} of an extractor")
