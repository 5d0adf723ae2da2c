"""Load any trained extractor from its checkpoint and run it on waveforms.

``Extractor.load(ckpt).extract(mixture, enrollment)`` works the same for DDTSE, the SGMSE+
baseline, TD-SpeakerBeam/ASA and DPTNet; ``ChainExtractor`` refines a front-end's output with
DDTSE (X+DDTSE).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ddtse.audio.io import resample
from ddtse.errors import DdtseError
from ddtse.registry import SYSTEMS
from ddtse.systems.base import CHECKPOINT_KEY


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read a ddtse checkpoint with ``weights_only=True`` (no code from the file is executed)."""
    path = Path(path)
    if not path.is_file():
        raise DdtseError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(str(path), map_location=map_location, weights_only=True)
    except Exception as exc:
        raise DdtseError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0][:200]}") from exc
    if not isinstance(ckpt, dict) or CHECKPOINT_KEY not in ckpt or "state_dict" not in ckpt:
        raise DdtseError(f"{path} is not a ddtse checkpoint (trained with this project's train.py)")
    return ckpt


def load_system(path: str | Path, device="cpu", expect: str | tuple[str, ...] | None = None):
    """Rebuild the system stored in a checkpoint (its own config), with EMA weights, in eval mode.

    ``expect`` names the system type(s) the caller needs; another type is refused clearly.
    """
    ckpt = load_checkpoint(path)
    name = ckpt[CHECKPOINT_KEY]
    if expect is not None:
        wanted = (expect,) if isinstance(expect, str) else tuple(expect)
        if name not in wanted:
            raise DdtseError(f"{path} holds a '{name}' model, but a {' or '.join(wanted)} model is needed here")
    config = ckpt["hyper_parameters"]["config"]
    config.setdefault("system", {}).pop("init_from", None)
    system = SYSTEMS.get(name)(config)
    try:
        system.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise DdtseError(f"{path}: weights do not match the stored config ({str(exc).splitlines()[0]})") from exc
    return system.to(device).eval()


def _auto_device(device: str | None) -> str:
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class Extractor:
    """Any trained extractor behind one call: ``extract(mixture, enrollment=None, **opts)``."""

    def __init__(self, system, device: str | None = None):
        self.device = _auto_device(device)
        self.system = system.to(self.device).eval()
        self.name = type(system).registry_name

    @classmethod
    def load(cls, ckpt: str | Path, device: str | None = None, expect=None) -> "Extractor":
        return cls(load_system(ckpt, "cpu", expect), device)

    @property
    def sample_rate(self) -> int:
        return self.system.sample_rate

    @property
    def needs_enrollment(self) -> bool:
        return bool(self.system.needs_enrollment)

    @property
    def in_channels(self) -> int:
        return int(getattr(self.system.model, "in_audio_channels", 1))

    @torch.no_grad()
    def extract_batch(self, batch: dict, **opts) -> tuple[torch.Tensor, dict]:
        """Run the system on a collated batch (moved to the device); returns (B, T) on the CPU."""
        if self.needs_enrollment and "enrollment" not in batch and "embedding" not in batch:
            raise DdtseError(f"the '{self.name}' model needs an enrollment recording of the target speaker")
        batch = {k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in batch.items()}
        estimate, info = self.system.extract_batch(batch, use_ema=True, **opts)
        return estimate.float().cpu(), dict(info)

    def extract(self, mixture, enrollment=None, sample_rate: int | None = None, *,
                chunk_seconds: float | None = None, overlap_seconds: float = 1.0,
                initial_estimate=None, progress: bool = False, **opts) -> tuple[np.ndarray, dict]:
        """Extract the target from one mixture: (T,) or (C, T) at ``sample_rate`` (default: the model's).

        Resamples to the model's rate and back; with ``chunk_seconds`` long inputs are processed
        in overlapping chunks (bounded memory). Returns (estimate (T,), info with nfe, seconds, rtf).
        """
        sr_in = int(sample_rate or self.sample_rate)
        mix = _as_2d(mixture, self.in_channels)
        length_in = mix.shape[-1]
        mix = resample(mix, sr_in, self.sample_rate)
        enr = None if enrollment is None else resample(np.asarray(enrollment, np.float32).reshape(-1), sr_in, self.sample_rate)
        init = None if initial_estimate is None else resample(np.asarray(initial_estimate, np.float32).reshape(-1), sr_in, self.sample_rate)
        start = time.perf_counter()
        info: dict = {}

        def run(chunk: torch.Tensor) -> torch.Tensor:  # chunk: (B, C[+1], L)
            nonlocal info
            b, length = chunk.shape[0], chunk.shape[-1]
            batch = {"mixture": chunk[:, : mix.shape[0]], "lengths": torch.full((b,), length, dtype=torch.long)}
            if enr is not None:
                e = torch.from_numpy(enr)
                batch["enrollment"] = e.expand(b, -1).contiguous()
                batch["enrollment_lengths"] = torch.full((b,), e.shape[-1], dtype=torch.long)
            run_opts = dict(opts)
            if init is not None:
                run_opts["initial_estimate"] = chunk[:, -1]
            est, info = self.extract_batch(batch, **run_opts)
            return est[..., :length]

        stacked = mix if init is None else np.concatenate([mix, init[None, : mix.shape[-1]]], axis=0)
        wav = torch.from_numpy(np.ascontiguousarray(stacked))
        chunk = int(chunk_seconds * self.sample_rate) if chunk_seconds else 0
        if chunk and wav.shape[-1] > chunk:
            from ddtse.audio.chunking import overlap_add

            estimate = overlap_add(run, wav, chunk, int(overlap_seconds * self.sample_rate), progress=progress,
                                   pad_last=False)
        else:
            estimate = run(wav[None])[0]
        seconds = time.perf_counter() - start
        out = resample(estimate.numpy(), self.sample_rate, sr_in)[:length_in]
        if out.shape[-1] < length_in:
            out = np.pad(out, (0, length_in - out.shape[-1]))
        info.update(seconds=seconds, rtf=seconds / (length_in / sr_in))
        return out.astype(np.float32), info


class ChainExtractor:
    """X+DDTSE: a front-end's estimate refined by a DDTSE model from ``t_start``."""

    def __init__(self, front: Extractor, refiner: Extractor, t_start: float = 1.0):
        if refiner.name != "ddtse":
            raise DdtseError(f"the refiner must be a DDTSE checkpoint, got a '{refiner.name}' model")
        self.front, self.refiner, self.t_start = front, refiner, float(t_start)
        self.name = f"{front.name}+ddtse"

    @property
    def sample_rate(self) -> int:
        return self.refiner.sample_rate

    @property
    def needs_enrollment(self) -> bool:
        return self.front.needs_enrollment or self.refiner.needs_enrollment

    def extract(self, mixture, enrollment=None, sample_rate: int | None = None, **opts):
        sr = int(sample_rate or self.sample_rate)
        front_opts = {k: v for k, v in opts.items() if k in ("chunk_seconds", "overlap_seconds", "progress")}
        first, info_front = self.front.extract(mixture, enrollment, sr, **front_opts)
        mono = _as_2d(mixture, 1)[:1]
        refined, info = self.refiner.extract(mono, enrollment, sr, initial_estimate=first,
                                             t_start=self.t_start, **opts)
        info = dict(info)
        info["nfe"] = info_front.get("nfe", 1) + info.get("nfe", 0)
        info["seconds"] += info_front["seconds"]
        info["rtf"] += info_front["rtf"]
        return refined, info


def _as_2d(wav, channels: int) -> np.ndarray:
    """(T,) or (C, T) -> (channels, T); a mono input to a two-channel model is refused."""
    wav = wav.detach().cpu().numpy() if torch.is_tensor(wav) else np.asarray(wav, np.float32)
    wav = wav.astype(np.float32)
    if wav.ndim == 1:
        wav = wav[None]
    if wav.ndim != 2 or wav.shape[-1] == 0:
        raise DdtseError(f"expected a (T,) or (C, T) waveform, got shape {tuple(wav.shape)}")
    if wav.shape[0] < channels:
        raise DdtseError(f"this model needs {channels}-channel mixtures, got {wav.shape[0]} channel(s)")
    return wav[:channels]
