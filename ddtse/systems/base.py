"""ExtractionSystem: the one LightningModule base for every extractor (EMA, optimiser, validation)."""
from __future__ import annotations

import copy
import math
from typing import Any, Literal

import lightning as L
import numpy as np
import torch

from ddtse.checkpoint import CHECKPOINT_KEY, checkpoint_config, load_checkpoint
from ddtse.config import get
from ddtse.errors import DdtseError
from ddtse.metrics import absent_energy_db, estoi_score, masked_si_sdr, pesq_score
from ddtse.registry import MODELS



class ExtractionSystem(L.LightningModule):
    """Generic training/inference shell; subclasses define the loss and the extraction.

    Subclasses implement ``training_loss(batch) -> (loss, logs)`` and
    ``extract_batch(batch, use_ema=True, **opts) -> (estimate (B, T), info)``; optionally
    ``validation_loss(batch, estimate)``. The resolved config travels inside every checkpoint.

    **The extractor protocol** (docs/design.md, "Extractor contract"): what inference, the CLI
    and the recipes may read of a system, and nothing else. ``is_extractor`` (False for systems
    that train something other than an extractor, e.g. a speaker encoder), ``sample_rate``,
    ``in_channels`` (mixture channels the network reads), ``min_samples`` (shortest input),
    ``needs_enrollment``, ``can_refine`` (``extract_batch`` takes an ``initial_estimate``),
    ``sampler_options()`` ({name: (type, default, help)}) and ``validate_options(opts)``.
    Subclasses override the class attributes (or the properties, when the value depends on
    the model built from the config).
    """

    #: the extractor protocol (see the class docstring); subclasses override
    is_extractor: bool = True
    needs_enrollment: bool = True
    can_refine: bool = False
    #: options of ``extract_batch``: {name: (type, default, help)}, merged along the class
    #: hierarchy by :meth:`sampler_options`; they are also the ``sampler:`` config keys.
    sampler_option_specs: dict = {}
    #: inclusive (low, high) bounds of numeric sampler options (None: unbounded)
    sampler_option_bounds: dict = {}
    #: ``system:`` keys this class reads (key -> type hint, or a dict for a nested section), merged
    #: along the class hierarchy by :meth:`declared_keys`; ddtse/schema.py refuses any other key.
    #: A subclass declares only the keys it adds.
    config_keys: dict = {
        "name": str,
        "lr": float,
        "weight_decay": float,
        "betas": list[float],
        "ema_decay": float,
        "scheduler": {"name": Literal["plateau"], "factor": float, "patience": int, "min_lr": float},
        "monitor": str,
        "monitor_mode": Literal["min", "max"],
        "init_from": str | None,
        "val_metric_items": int,
        "val_opts": dict,  # checked against sampler_keys
        "save_top_k": int,
        "early_stop_patience": int | None,
        "checkpoint_every_n_steps": int | None,
    }

    @classmethod
    def declared_keys(cls, attr: str = "config_keys") -> dict:
        """``config_keys`` of this class and its bases, merged; ``"sampler_keys"``: the ``sampler:``
        config keys, i.e. the names and types of :meth:`sampler_options`."""
        if attr == "sampler_keys":
            return {name: spec[0] for name, spec in cls.sampler_options().items()}
        merged: dict = {}
        for klass in reversed(cls.__mro__):
            merged.update(vars(klass).get(attr) or {})
        return merged

    # -- the extractor protocol ------------------------------------------------------------
    def export_module(self) -> torch.nn.Module:
        """The (EMA) network as one module ``forward(mixture (B, C, T), lengths (B,)[, enrollment
        (B, Te), enrollment_lengths (B,)]) -> estimate (B, T)`` for ONNX/TorchScript export
        (ddtse/export.py); systems whose extraction is a Python loop (a sampler) cannot."""
        from ddtse.errors import DdtseError

        raise DdtseError(f"a '{self.registry_name}' checkpoint cannot be exported: its extraction is a "
                         "sampler loop in Python, not one network call (export a discriminative extractor)")

    @classmethod
    def sampler_options(cls) -> dict:
        """{name: (type, built-in default, help)} of the options ``extract_batch`` takes."""
        merged: dict = {}
        for klass in reversed(cls.__mro__):
            merged.update(vars(klass).get("sampler_option_specs") or {})
        return merged

    @classmethod
    def validate_options(cls, opts: dict) -> dict:
        """``opts`` checked against :meth:`sampler_options` (names, types, bounds); returns them
        normalised (an int given for a float option becomes a float). DdtseError names an
        unknown option and lists the valid ones, or names a wrong type or value."""
        specs = cls.sampler_options()
        name = getattr(cls, "registry_name", cls.__name__)
        out = {}
        for key, value in dict(opts or {}).items():
            if key not in specs:
                known = ", ".join(sorted(specs)) or "none"
                raise DdtseError(f"unknown option {key!r} for system '{name}' (valid options: {known})")
            if value is None:
                continue
            kind = specs[key][0]
            if kind is int:
                ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            elif kind is float:
                ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            else:
                ok = isinstance(value, kind)
            if not ok:
                raise DdtseError(f"option {key!r} of system '{name}' must be {kind.__name__}, "
                                 f"got {value!r} ({type(value).__name__})")
            value = kind(value)
            low, high = cls.sampler_option_bounds.get(key, (None, None))
            if (low is not None and value < low) or (high is not None and value > high):
                span = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
                raise DdtseError(f"option {key!r} of system '{name}' must lie in {span}, got {value!r}")
            out[key] = value
        return out

    def resolve_options(self, opts: dict) -> dict:
        """Every sampler option's value for one call: ``opts`` (validated) over the checkpoint's
        ``sampler:`` config section over the built-in defaults."""
        specs = self.sampler_options()
        given = self.validate_options(opts)
        section = dict(get(self.config, "sampler", {}) or {})  # schema-checked at training time
        cfg = self.validate_options({k: v for k, v in section.items() if k in specs})
        return {key: given.get(key, cfg.get(key, spec[1])) for key, spec in specs.items()}

    @property
    def in_channels(self) -> int:
        """Mixture channels the network reads (channel 0 of more is the reference)."""
        return 1

    @property
    def min_samples(self) -> int:
        """Shortest input in samples the network takes (shorter inputs are zero-padded by the caller)."""
        return 2

    def __init__(self, config: dict):
        super().__init__()
        if isinstance(config.get("model"), dict):  # record pretrained speaker encoders' configs
            from ddtse.models.speaker import resolve_pretrained_speakers

            config = {**config, "model": resolve_pretrained_speakers(config["model"], get(config, "data.sample_rate"))}
        self.config = config
        self.save_hyperparameters({"config": config})
        self.sample_rate = int(get(config, "data.sample_rate", 16000))
        self.model = self.build_model()
        decay = float(get(config, "system.ema_decay", 0.999))
        if not 0.0 <= decay < 1.0:
            raise DdtseError(f"system.ema_decay must be in [0, 1), got {decay}")
        self.ema_decay = decay
        self.ema_model = copy.deepcopy(self.model).requires_grad_(False) if decay > 0 else None

    # -- construction ----------------------------------------------------------------------
    def build_model(self) -> torch.nn.Module:
        return MODELS.build(self.config["model"])

    def inference_model(self, use_ema: bool = True) -> torch.nn.Module:
        """The EMA copy of the network when there is one (and ``use_ema``), else the trained one."""
        return self.ema_model if (use_ema and self.ema_model is not None) else self.model

    def load_init_weights(self, path: str) -> None:
        """Start from another checkpoint's weights and EMA (stage 2): not its optimiser or epoch."""
        ckpt = load_checkpoint(path, what="system.init_from checkpoint")
        theirs = checkpoint_config(ckpt)
        if isinstance(theirs, dict):
            self.check_init_config(theirs, path)
        state = ckpt["state_dict"]
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        if any(not k.startswith("ema_model.") for k in missing):
            raise DdtseError(f"{path} does not match this model (missing e.g. {missing[0]})")
        shape_bad = [k for k in own if k in state and state[k].shape != own[k].shape]
        if shape_bad:
            raise DdtseError(f"{path} does not match this model: {shape_bad[0]} has another shape")
        self.load_state_dict({k: state[k] for k in own if k in state}, strict=False)
        if self.ema_model is not None and any(k.startswith("ema_model.") for k in missing):
            self.ema_model.load_state_dict(self.model.state_dict())

    def check_init_config(self, theirs: dict, path: str) -> None:
        """Refuse to start from a checkpoint whose input representation differs from ours."""
        rate = int(get(theirs, "data.sample_rate", 16000))
        if rate != self.sample_rate:
            raise DdtseError(f"{path} was trained at {rate} Hz, this run is at {self.sample_rate} Hz")

    # -- to implement ----------------------------------------------------------------------
    def training_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def extract_batch(self, batch: dict, use_ema: bool = True, **opts) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def validation_loss(self, batch: dict, estimate: torch.Tensor | None = None) -> tuple[torch.Tensor, dict] | None:
        """``val/loss`` and its logs, or None. ``estimate`` is the EMA extraction ``validation_step``
        has already run on this batch (None when the batch has no target), for systems whose loss
        is a function of it."""
        return None

    # -- training --------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        loss, logs = self.training_loss(batch)
        if not torch.isfinite(loss):
            raise DdtseError(f"training loss is {loss.item()} at step {self.global_step}; "
                             "lower system.lr or check the data")
        bs = batch["mixture"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs, sync_dist=False)
        for k, v in logs.items():
            self.log(f"train/{k}", v, batch_size=bs)
        return loss

    def optimizer_step(self, *args, **kwargs):
        super().optimizer_step(*args, **kwargs)
        self.update_ema()

    @torch.no_grad()
    def update_ema(self) -> None:
        if self.ema_model is None:
            return
        for ema_p, p in zip(self.ema_model.parameters(), self.model.parameters()):
            ema_p.lerp_(p.detach(), 1.0 - self.ema_decay)
        for ema_b, b in zip(self.ema_model.buffers(), self.model.buffers()):
            ema_b.copy_(b)

    def configure_optimizers(self):
        lr = float(get(self.config, "system.lr", 1e-4))
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(
            params, lr=lr, betas=tuple(get(self.config, "system.betas", (0.9, 0.999))),
            weight_decay=float(get(self.config, "system.weight_decay", 0.0)),
        )
        sched = get(self.config, "system.scheduler")
        if not sched:
            return optimizer
        if sched.get("name") != "plateau":
            raise DdtseError(f"unknown system.scheduler.name '{sched.get('name')}' (plateau)")
        mode = get(self.config, "system.monitor_mode", "max")
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=mode, factor=float(sched.get("factor", 0.5)),
            patience=int(sched.get("patience", 2)), min_lr=float(sched.get("min_lr", 1e-8)),
        )
        monitor = get(self.config, "system.monitor", "val/si_sdr")
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": monitor}}

    # -- validation ------------------------------------------------------------------------
    def on_validation_epoch_start(self):
        self._val_items_scored = 0

    def validation_step(self, batch, batch_idx):
        bs = batch["mixture"].shape[0]
        estimate = info = None
        if "target" in batch:
            opts = dict(get(self.config, "system.val_opts", {}) or {})
            estimate, info = self.extract_batch(batch, use_ema=True, **opts)
        out = self.validation_loss(batch, estimate)
        if out is not None:
            loss, logs = out
            self.log("val/loss", loss, batch_size=bs, sync_dist=True)
            for k, v in logs.items():
                self.log(f"val/{k}", v, batch_size=bs, sync_dist=True)
        if estimate is None:
            return
        target, lengths = batch["target"], batch.get("lengths")
        n = min(estimate.shape[-1], target.shape[-1])
        valid = None if lengths is None else lengths.clamp_max(n)
        self.log("val/nfe", float(info.get("nfe", 1)), batch_size=bs, sync_dist=True)
        absent = batch.get("absent")
        absent = torch.zeros(bs, dtype=torch.bool) if absent is None else absent.bool().cpu()
        if bool(absent.any()):  # target absent: how far below the mixture the output stays (dB)
            energy = absent_energy_db(estimate[..., :n], batch["mixture"][:, 0, :n], valid, 0.0)
            self.log("val/absent_energy_db", energy[absent.to(energy.device)].mean(),
                     batch_size=int(absent.sum()), sync_dist=True)
        keep = (~absent).to(estimate.device)
        present = int(keep.sum())
        if present:
            pick = lambda x: None if x is None else x[keep]  # noqa: E731  (present-target items only)
            est, tgt, mix, vl = pick(estimate[..., :n].float()), pick(target[..., :n].float()), \
                pick(batch["mixture"][:, 0, :n].float()), pick(valid)
            sdr = masked_si_sdr(est, tgt, vl)
            mix_sdr = masked_si_sdr(mix, tgt, vl)
            self.log("val/si_sdr", sdr.mean(), prog_bar=True, batch_size=present, sync_dist=True)
            self.log("val/si_sdri", (sdr - mix_sdr).mean(), batch_size=present, sync_dist=True)
            if batch.get("interferer") is not None:  # does the estimate follow the enrolled speaker?
                wrong = masked_si_sdr(est, pick(batch["interferer"][..., :n].float()), vl)
                self.log("val/selection", (sdr > wrong + 1.0).float().mean(), batch_size=present, sync_dist=True)
                self.log("val/confusion", (wrong > sdr).float().mean(), batch_size=present, sync_dist=True)
        budget = int(get(self.config, "system.val_metric_items", 4))
        for b in range(bs):
            if self._val_items_scored >= budget:
                break
            if bool(absent[b]):
                continue
            length = int(lengths[b]) if lengths is not None else n
            ref = target[b, :length].float().cpu().numpy()
            est = estimate[b, :length].float().cpu().numpy()
            for name, fn in (("pesq", pesq_score), ("estoi", estoi_score)):
                value = fn(ref, est, self.sample_rate)
                if not math.isnan(value):
                    self.log(f"val/{name}", value, batch_size=1, sync_dist=True)
            self._val_items_scored += 1

    # -- checkpoints -----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = type(self).registry_name

    @staticmethod
    def to_numpy(x: torch.Tensor) -> np.ndarray:
        return x.detach().float().cpu().numpy()
