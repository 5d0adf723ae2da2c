"""The one way the project reads checkpoints: ``torch.load(weights_only=True)``, whatever the environment says.

Every checkpoint read goes through :func:`read_checkpoint` (any torch file) or
:func:`load_checkpoint` (a ddtse checkpoint: ``state_dict``, the system name under
``CHECKPOINT_KEY`` and the resolved config under ``hyper_parameters.config``). Resuming a run
(``ddtse.training``) checks ``last.ckpt`` here first and lets Lightning load it with
``weights_only=True`` inside :func:`safe_load_environment`.

A file that holds Python objects other than tensors and plain containers is refused (unpickling
it could execute code); an empty, truncated or corrupt file is one clear error naming it.
"""
from __future__ import annotations

import copy
import os
import re
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch

from ddtse.errors import DdtseError

CHECKPOINT_KEY = "ddtse_system"
# torch.load honours these variables; the first turns weights_only=True off in some torch versions.
_UNSAFE_ENV = ("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD",)


@contextmanager
def safe_load_environment():
    """Hide the variables that could make ``torch.load`` unpickle arbitrary objects (restored after)."""
    saved = {name: os.environ.pop(name) for name in _UNSAFE_ENV if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _unsafe_global(message: str) -> str | None:
    match = re.search(r"GLOBAL (\S+)", message)
    return match.group(1) if match else None


def read_checkpoint(path: str | Path, map_location="cpu", what: str = "checkpoint") -> dict:
    """Read any torch checkpoint file with ``weights_only=True``; DdtseError naming the file otherwise."""
    path = Path(path)
    if not path.exists():
        raise DdtseError(f"{what} not found: {path}")
    if not path.is_file():
        raise DdtseError(f"{what} {path} is not a file")
    if path.stat().st_size == 0:
        raise DdtseError(f"{what} {path} is empty (0 bytes): it was not written completely")
    try:
        with safe_load_environment(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ckpt = torch.load(str(path), map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, KeyError, ...
        message = str(exc)
        if "Weights only load failed" in message:
            found = _unsafe_global(message)
            detail = f" ({found})" if found else ""
            raise DdtseError(
                f"refused to load {what} {path}: it holds Python objects other than weights{detail}, "
                "and unpickling it could execute code; it was not loaded"
            ) from exc
        first = next((line.strip() for line in message.splitlines() if line.strip()), type(exc).__name__)
        raise DdtseError(f"cannot read {what} {path}: the file is truncated or corrupt, or not a torch "
                         f"checkpoint ({type(exc).__name__}: {first[:100]})") from exc
    if not isinstance(ckpt, dict):
        raise DdtseError(f"{what} {path} does not hold a checkpoint dictionary")
    return ckpt


def load_checkpoint(path: str | Path, map_location="cpu", what: str = "checkpoint") -> dict:
    """Read a ddtse checkpoint (weights_only=True); refuses files not written by this project's train.py."""
    ckpt = read_checkpoint(path, map_location, what)
    if CHECKPOINT_KEY not in ckpt or "state_dict" not in ckpt:
        raise DdtseError(f"{path} is not a ddtse checkpoint (trained with this project's train.py)")
    return ckpt


def checkpoint_config(ckpt: dict) -> dict | None:
    """The resolved config stored in a ddtse checkpoint (``hyper_parameters.config``), or None."""
    config = (ckpt.get("hyper_parameters") or {}).get("config")
    return config if isinstance(config, dict) else None


def best_checkpoint(exp_dir: str | Path) -> Path:
    """The checkpoint of a training run that scored best on its monitored validation metric
    (``system.monitor``), as the run's ``last.ckpt`` records it; ``last.ckpt`` itself when the run
    recorded none (no monitor, or the file was removed). Found by name inside ``exp_dir/checkpoints``,
    so a moved or copied run still resolves."""
    ckpt_dir = Path(exp_dir) / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    state = read_checkpoint(last, what="last checkpoint")
    for key, value in (state.get("callbacks") or {}).items():
        if str(key).startswith("ModelCheckpoint") and isinstance(value, dict) and value.get("monitor"):
            best = value.get("best_model_path")
            if best and (ckpt_dir / Path(best).name).is_file():
                return ckpt_dir / Path(best).name
    return last


def checkpoint_step(ckpt: dict) -> int:
    """The optimiser step a Lightning checkpoint was written at (0 if it does not say)."""
    return int(ckpt.get("global_step", 0) or 0)


def load_system(path: str | Path, device="cpu", expect: str | tuple[str, ...] | None = None):
    """Rebuild the system stored in a checkpoint (its own config), with EMA weights, in eval mode.

    ``expect`` names the system type(s) the caller needs; another type is refused clearly.
    """
    from ddtse.registry import SYSTEMS

    ckpt = load_checkpoint(path)
    name = ckpt[CHECKPOINT_KEY]
    if expect is not None:
        wanted = (expect,) if isinstance(expect, str) else tuple(expect)
        if name not in wanted:
            raise DdtseError(f"{path} holds a '{name}' model, but a {' or '.join(wanted)} model is needed here")
    config = checkpoint_config(ckpt)
    if config is None:
        raise DdtseError(f"{path} has no stored config (hyper_parameters.config)")
    config.setdefault("system", {}).pop("init_from", None)
    system = SYSTEMS.get(name)(config)
    try:
        system.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise DdtseError(f"{path}: weights do not match the stored config ({str(exc).splitlines()[0]})") from exc
    return system.to(device).eval()


# -- speaker encoders: their checkpoints, and the encoder inside an extractor's ---------------------
SPEAKER_ENCODER_SYSTEM = "speaker_encoder"


def _encoder_state(ckpt: dict, path) -> dict:
    """The verification network's weights of a speaker_encoder checkpoint (EMA copy if it has one)."""
    state = ckpt["state_dict"]
    prefix = "ema_model." if any(k.startswith("ema_model.") for k in state) else "model."
    out = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not out:
        raise DdtseError(f"{path}: no speaker-encoder weights in the checkpoint")
    return out


def read_speaker_encoder_checkpoint(path) -> tuple[dict, dict]:
    """(model config, weights) of a speaker_encoder checkpoint; another checkpoint type is one clear error."""
    ckpt = load_checkpoint(path)
    kind = ckpt[CHECKPOINT_KEY]
    if kind != SPEAKER_ENCODER_SYSTEM:
        raise DdtseError(f"{path} holds a '{kind}' model, not a speaker encoder (train one with "
                         f"system.name: {SPEAKER_ENCODER_SYSTEM})")
    config = (ckpt.get("hyper_parameters") or {}).get("config") or {}
    if not isinstance(config.get("model"), dict):
        raise DdtseError(f"{path}: the checkpoint has no model config")
    return copy.deepcopy(config["model"]), _encoder_state(ckpt, path)


def build_encoder(model_cfg: dict, state: dict | None = None, path=None):
    """Build a speaker-verification network from its config (and load ``state`` if given)."""
    from ddtse.registry import MODELS

    net = MODELS.build(model_cfg)
    if state is not None:
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise DdtseError(f"{path}: weights do not match the stored config ({str(exc).splitlines()[0]})") from exc
    return net


def load_speaker_encoder(path):
    """A speaker encoder in eval mode: ``forward(wav (B, T), lengths (B,)) -> (B, D)``, with
    ``sample_rate`` and ``output_dim``.

    ``path``: a speaker_encoder checkpoint, or any extractor checkpoint whose network has a speaker
    module that reads the enrollment (its verification network when it is ``pretrained``).
    """
    import torch.nn as nn

    from ddtse.registry import MODELS

    ckpt = load_checkpoint(path)
    if ckpt[CHECKPOINT_KEY] == SPEAKER_ENCODER_SYSTEM:
        model_cfg, state = read_speaker_encoder_checkpoint(path)
        net = build_encoder(model_cfg, state, path)
        return net.eval()
    del ckpt
    system = load_system(path)
    speaker = getattr(system.inference_model(), "speaker", None)
    if not isinstance(speaker, nn.Module) or not getattr(speaker, "uses_enrollment", False):
        raise DdtseError(f"{path} holds a '{type(system).registry_name}' model without a speaker encoder "
                         "(it has no speaker module that reads an enrollment)")
    if isinstance(speaker, MODELS.get("pretrained")):  # a trained encoder inside: its verification network
        speaker = speaker.net
    if not hasattr(speaker, "sample_rate"):
        speaker.sample_rate = system.sample_rate
    return speaker.eval()
