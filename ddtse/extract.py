"""Load any trained extractor from its checkpoint and run it on waveforms.

``Extractor.load(ckpt).extract(mixture, enrollment)`` works the same for DDTSE, the SGMSE+
baseline, TD-SpeakerBeam/ASA and DPTNet; ``ChainExtractor`` refines a front-end's output with
a system that can refine (DDTSE: X+DDTSE).

Both expose the extractor protocol (ddtse/systems/base.py, docs/design.md "Extractor
contract"), the only thing inference, the CLI and the recipes read: ``name``, ``sample_rate``,
``in_channels``, ``min_samples``, ``needs_enrollment``, ``can_refine``, ``can_batch``
(``extract_batch`` exists), ``sampler_options()`` and ``validate_options(opts)``.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ddtse.audio.io import resample
from ddtse.errors import DdtseError
from ddtse.registry import SYSTEMS
from ddtse.checkpoint import CHECKPOINT_KEY, load_checkpoint, load_system  # noqa: F401  (re-exported; the loaders live in ddtse/checkpoint.py)


def _auto_device(device: str | None) -> str:
    """"auto" -> cuda when available, else cpu; a device this machine lacks is one clear error."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DdtseError(f"unknown device {device!r} (use auto, cpu, cuda or cuda:N)") from exc
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DdtseError(f"--device {device}: CUDA is not available on this machine (use --device cpu or auto)")
        if dev.index is not None and dev.index >= count:
            raise DdtseError(f"--device {device}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DdtseError(f"--device {device}: MPS is not available on this machine")
    return str(device)


def check_chunking(chunk_seconds: float | None, overlap_seconds: float, min_seconds: float = 0.0) -> None:
    """Chunk options must be usable: chunk > 0, 0 <= overlap < chunk, chunk >= the model's minimum input."""
    if chunk_seconds is None:
        return
    chunk_seconds, overlap_seconds = float(chunk_seconds), float(overlap_seconds)
    if not chunk_seconds > 0:
        raise DdtseError(f"--chunk_seconds must be > 0 (leave it out for no chunking), got {chunk_seconds:g}")
    if not overlap_seconds >= 0:
        raise DdtseError(f"--overlap_seconds must be >= 0, got {overlap_seconds:g}")
    if chunk_seconds < min_seconds:
        raise DdtseError(f"--chunk_seconds {chunk_seconds:g} is shorter than the model's minimum input "
                         f"({min_seconds:.3f} s)")
    if overlap_seconds >= chunk_seconds:
        raise DdtseError(f"--overlap_seconds ({overlap_seconds:g}) must be shorter than --chunk_seconds "
                         f"({chunk_seconds:g})")


class Extractor:
    """Any trained extractor behind one call: ``extract(mixture, enrollment=None, **opts)``.

    ``opts`` are the system's sampler options (``sampler_options()``); ``seed`` is accepted by
    every extractor, and deterministic ones (no ``seed`` option) ignore it, so that one command
    line can seed any checkpoint. Anything else unknown is refused (``validate_options``).
    """

    can_batch = True

    def __init__(self, system, device: str | None = None):
        self.name = type(system).registry_name
        if not system.is_extractor:
            raise DdtseError(f"a '{self.name}' checkpoint extracts no speech (it is not an extractor)")
        self.device = _auto_device(device)
        self.system = system.to(self.device).eval()

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
    def can_refine(self) -> bool:
        return bool(self.system.can_refine)

    @property
    def in_channels(self) -> int:
        return int(self.system.in_channels)

    @property
    def min_samples(self) -> int:
        """Shortest input (samples at the model's rate) the network takes; shorter ones are zero-padded
        to this and the output cropped back (a centred STFT needs more than n_fft / 2 samples)."""
        return int(self.system.min_samples)

    def sampler_options(self) -> dict:
        """{name: (type, default, help)}: the system's options, defaults as this checkpoint resolves them."""
        resolved = self.system.resolve_options({})
        return {k: (kind, resolved[k], text) for k, (kind, _, text) in self.system.sampler_options().items()}

    def _own(self, opts: dict) -> dict:
        opts = dict(opts)
        if "seed" in opts and "seed" not in self.system.sampler_options():
            opts.pop("seed")  # a deterministic extractor: nothing to seed
        return opts

    def validate_options(self, opts: dict) -> dict:
        """``opts`` checked (unknown names, types, bounds) and normalised; DdtseError otherwise."""
        return self.system.validate_options(self._own(opts))

    @torch.no_grad()
    def extract_batch(self, batch: dict, **opts) -> tuple[torch.Tensor, dict]:
        """Run the system on a collated batch (moved to the device); returns (B, T) on the CPU.

        ``opts``: sampler options, plus ``ids`` (item ids) and ``initial_estimate`` (``can_refine``)."""
        if self.needs_enrollment and "enrollment" not in batch and "embedding" not in batch:
            raise DdtseError(f"the '{self.name}' model needs an enrollment recording of the target speaker")
        if opts.get("initial_estimate") is not None and not self.can_refine:
            raise DdtseError(f"the '{self.name}' model cannot refine an initial estimate")
        batch = {k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in batch.items()}
        estimate, info = self.system.extract_batch(batch, use_ema=True, **self._own(opts))
        return estimate.float().cpu(), dict(info)

    def extract(self, mixture, enrollment=None, sample_rate: int | None = None, *,
                chunk_seconds: float | None = None, overlap_seconds: float = 1.0,
                initial_estimate=None, progress: bool = False, item_id: str | None = None,
                **opts) -> tuple[np.ndarray, dict]:
        """Extract the target from one mixture: (T,) or (C, T) at ``sample_rate`` (default: the model's).

        Resamples to the model's rate and back; with ``chunk_seconds`` long inputs are processed
        in overlapping chunks (bounded memory). An input (or chunk) shorter than ``min_samples``
        is zero-padded and the output cropped back: the estimate always has the input's length.
        ``item_id`` names the item for the diffusion samplers' per-item noise (seed, id).
        Returns (estimate (T,), info with nfe, seconds, rtf).
        """
        sr_in = int(sample_rate or self.sample_rate)
        check_chunking(chunk_seconds, overlap_seconds, self.min_samples / self.sample_rate)
        mix = _as_2d(mixture, self.in_channels)
        length_in = mix.shape[-1]
        mix = resample(mix, sr_in, self.sample_rate)
        if enrollment is not None and np.asarray(enrollment).size == 0:
            raise DdtseError("the enrollment recording is empty")
        enr = None if enrollment is None else resample(np.asarray(enrollment, np.float32).reshape(-1), sr_in, self.sample_rate)
        init = None if initial_estimate is None else resample(np.asarray(initial_estimate, np.float32).reshape(-1), sr_in, self.sample_rate)
        start = time.perf_counter()
        info: dict = {}
        calls = 0
        min_len = self.min_samples

        def run(chunk: torch.Tensor) -> torch.Tensor:  # chunk: (B, C[+1], L)
            nonlocal info, calls
            b, length = chunk.shape[0], chunk.shape[-1]
            if length < min_len:  # too short for the network: zero-pad, crop the estimate below
                chunk = torch.nn.functional.pad(chunk, (0, min_len - length))
            padded = chunk.shape[-1]
            batch = {"mixture": chunk[:, : mix.shape[0]], "lengths": torch.full((b,), padded, dtype=torch.long)}
            if enr is not None:
                e = torch.from_numpy(enr)
                batch["enrollment"] = e.expand(b, -1).contiguous()
                batch["enrollment_lengths"] = torch.full((b,), e.shape[-1], dtype=torch.long)
            run_opts = dict(opts)
            if init is not None:
                run_opts["initial_estimate"] = chunk[:, -1]
            if item_id is not None:  # chunks are numbered in call order (one per call by default)
                run_opts["ids"] = [f"{item_id}#chunk{calls + k}" if chunked else item_id for k in range(b)]
            calls += b
            est, info = self.extract_batch(batch, **run_opts)
            return est[..., :length]

        if init is not None and init.shape[-1] < mix.shape[-1]:
            init = np.pad(init, (0, mix.shape[-1] - init.shape[-1]))
        stacked = mix if init is None else np.concatenate([mix, init[None, : mix.shape[-1]]], axis=0)
        wav = torch.from_numpy(np.ascontiguousarray(stacked))
        chunk = int(chunk_seconds * self.sample_rate) if chunk_seconds else 0
        chunked = bool(chunk and wav.shape[-1] > chunk)
        if chunked:
            from ddtse.audio.chunking import overlap_add

            estimate = overlap_add(run, wav, chunk, int(overlap_seconds * self.sample_rate), progress=progress,
                                   pad_last=False)
        else:
            estimate = run(wav[None])[0]
        seconds = time.perf_counter() - start
        out = np.zeros(0, np.float32)
        if estimate.shape[-1]:
            out = resample(estimate.numpy(), self.sample_rate, sr_in)[:length_in]
        if out.shape[-1] < length_in:
            out = np.pad(out, (0, length_in - out.shape[-1]))
        info.update(seconds=seconds, rtf=seconds / (length_in / sr_in))
        return out.astype(np.float32), info


class ChainExtractor:
    """X+DDTSE: a front-end's estimate refined by a model that ``can_refine`` (DDTSE) from ``t_start``.

    The sampler options are the refiner's (the front-end runs with its own defaults); unknown
    ones are refused. ``t_start`` is the default of the refiner's ``t_start`` option."""

    can_refine = False
    can_batch = False

    def __init__(self, front: Extractor, refiner: Extractor, t_start: float = 1.0):
        if not refiner.can_refine:
            raise DdtseError(f"the refiner must be a checkpoint of a system that can refine an initial "
                             f"estimate (e.g. ddtse), got a '{refiner.name}' model")
        self.front, self.refiner, self.t_start = front, refiner, float(t_start)
        self.name = f"{front.name}+{refiner.name}"

    @property
    def sample_rate(self) -> int:
        return self.refiner.sample_rate

    @property
    def in_channels(self) -> int:
        return self.front.in_channels

    @property
    def device(self):
        return self.refiner.device

    @property
    def needs_enrollment(self) -> bool:
        return self.front.needs_enrollment or self.refiner.needs_enrollment

    @property
    def min_samples(self) -> int:
        return max(self.front.min_samples, self.refiner.min_samples)

    def sampler_options(self) -> dict:
        return self.refiner.sampler_options()

    def validate_options(self, opts: dict) -> dict:
        return self.refiner.validate_options(opts)

    def extract(self, mixture, enrollment=None, sample_rate: int | None = None, **opts):
        sr = int(sample_rate or self.sample_rate)
        front_opts = {k: v for k, v in opts.items() if k in ("chunk_seconds", "overlap_seconds", "progress", "item_id")}
        first, info_front = self.front.extract(mixture, enrollment, sr, **front_opts)
        mono = _as_2d(mixture, 1)[:1]
        refined, info = self.refiner.extract(mono, enrollment, sr, initial_estimate=first,
                                             **{"t_start": self.t_start, **opts})
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
