"""Load any trained extractor from its checkpoint and run it on waveforms.

``Extractor.load(ckpt).extract(mixture, enrollment)`` works the same for DDTSE, the SGMSE+
baseline, TD-SpeakerBeam/ASA and DPTNet; ``ChainExtractor`` refines a front-end's output with
a system that can refine (DDTSE: X+DDTSE).

Both (and ``ddtse.export.OnnxExtractor``) share ``ExtractorProtocol``, the extractor protocol
written once (docs/design.md "Extractor contract"), the only thing inference, the CLI and the
recipes read: ``name``, ``sample_rate``, ``in_channels``, ``min_samples``, ``needs_enrollment``,
``can_refine``, ``sampler_options()`` and ``validate_options(opts)``; ``extract_many`` is the one
inference path (resample, batch, chunk, extract, resample back) and ``extract`` its one-input form.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ddtse.audio.io import resample
from ddtse.errors import DdtseError
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


@dataclass
class ExtractionInput:
    """One input of ``extract_many``: a mixture (T,) or (C, T) at ``sample_rate`` (None: the model's),
    its enrollment (Te,) or None, an id (names the item for the samplers' per-item noise) and an
    initial estimate (T,) to refine (systems that ``can_refine``)."""

    mixture: np.ndarray
    enrollment: np.ndarray | None = None
    sample_rate: int | None = None
    id: str | None = None
    initial_estimate: np.ndarray | None = None
    embedding: np.ndarray | None = None  # (D,) pre-computed speaker embedding (models with a precomputed clue)


class ExtractorProtocol:
    """The extractor protocol, written once (docs/design.md "Extractor contract"): what inference,
    the CLI and the recipes read, whatever runs behind it (``Extractor``: a checkpoint;
    ``ChainExtractor``: a front-end refined by DDTSE; ``ddtse.export.OnnxExtractor``: an exported
    file). Each kind answers the members below; ``extract`` (one input) and the batch check are
    shared."""

    name: str
    device: str
    is_extractor = True

    @property
    def sample_rate(self) -> int:
        """The rate the network runs at; inputs are resampled to it and back."""
        raise NotImplementedError

    @property
    def in_channels(self) -> int:
        """Mixture channels read (2 for two-microphone models)."""
        raise NotImplementedError

    @property
    def min_samples(self) -> int:
        """Shortest input (samples at the model's rate); shorter ones are zero-padded and cropped back."""
        raise NotImplementedError

    @property
    def needs_enrollment(self) -> bool:
        raise NotImplementedError

    @property
    def can_refine(self) -> bool:
        """Takes ``initial_estimate`` (X+DDTSE refinement)."""
        raise NotImplementedError

    def sampler_options(self) -> dict:
        """{name: (type, default, help)} of the options ``extract_many`` takes."""
        raise NotImplementedError

    def validate_options(self, opts: dict) -> dict:
        """``opts`` checked (unknown names, types, bounds) and normalised; DdtseError otherwise."""
        raise NotImplementedError

    def extract_many(self, inputs: list[ExtractionInput], *, batch_size: int = 1,
                     chunk_seconds: float | None = None, overlap_seconds: float = 1.0,
                     progress: bool = False, **opts) -> list[tuple[np.ndarray, dict]]:
        """[(estimate (T,) at the input's rate and length, info)] per input: the one inference path."""
        raise NotImplementedError

    def extract(self, mixture, enrollment=None, sample_rate: int | None = None, *,
                chunk_seconds: float | None = None, overlap_seconds: float = 1.0,
                initial_estimate=None, progress: bool = False, item_id: str | None = None,
                **opts) -> tuple[np.ndarray, dict]:
        """Extract the target from one mixture: (T,) or (C, T) at ``sample_rate`` (default: the model's).

        ``extract_many`` with one input: resampled to the model's rate and back, chunked with
        ``chunk_seconds``, padded when shorter than ``min_samples`` (the estimate always has the
        input's length). ``item_id`` names the item for the diffusion samplers' per-item noise.
        Returns (estimate (T,), info with nfe, seconds, rtf).
        """
        if initial_estimate is not None and not self.can_refine:
            raise DdtseError(f"the '{self.name}' model cannot refine an initial estimate")
        [result] = self.extract_many(
            [ExtractionInput(mixture, enrollment, sample_rate, item_id, initial_estimate)],
            chunk_seconds=chunk_seconds, overlap_seconds=overlap_seconds, progress=progress, **opts)
        return result

    def check_batch(self, batch: dict, opts: dict, clues=("enrollment", "embedding")) -> None:
        """A collated batch this extractor can run: a speaker clue (one of ``clues``) when it
        ``needs_enrollment``, an ``initial_estimate`` only when it ``can_refine``."""
        if self.needs_enrollment and not any(c in batch for c in clues):
            raise DdtseError(f"the '{self.name}' model needs an enrollment recording of the target speaker")
        if opts.get("initial_estimate") is not None and not self.can_refine:
            raise DdtseError(f"the '{self.name}' model cannot refine an initial estimate")


class Extractor(ExtractorProtocol):
    """Any trained extractor behind one call: ``extract(mixture, enrollment=None, **opts)``.

    ``opts`` are the system's sampler options (``sampler_options()``); ``seed`` is accepted by
    every extractor, and deterministic ones (no ``seed`` option) ignore it, so that one command
    line can seed any checkpoint. Anything else unknown is refused (``validate_options``).
    """

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
        self.check_batch(batch, opts)
        batch = {k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in batch.items()}
        estimate, info = self.system.extract_batch(batch, use_ema=True, **self._own(opts))
        return estimate.float().cpu(), dict(info)

    def extract_many(self, inputs: list[ExtractionInput], *, batch_size: int = 1,
                     chunk_seconds: float | None = None, overlap_seconds: float = 1.0,
                     progress: bool = False, **opts) -> list[tuple[np.ndarray, dict]]:
        """The one inference path: [(estimate (T,) at the input's rate and length, info)] per input.

        Each input is resampled to the model's rate (here, once), zero-padded to ``min_samples``
        when shorter, collated with up to ``batch_size`` others (``collate_batch``), extracted,
        cropped to its own length and resampled back. An input longer than ``chunk_seconds`` is
        cut into overlapping chunks (``batch_size`` chunks per call) and overlap-added. Info per
        item: the system's (nfe, ...), ``seconds`` (its share of the batch's time) and ``rtf``.
        """
        if int(batch_size) < 1:
            raise DdtseError(f"batch_size must be >= 1, got {batch_size}")
        check_chunking(chunk_seconds, overlap_seconds, self.min_samples / self.sample_rate)
        if len({x.initial_estimate is None for x in inputs}) > 1:
            raise DdtseError("either every input of one call has an initial estimate or none has")
        prepared = [self._to_model_rate(x) for x in inputs]
        chunk = int(chunk_seconds * self.sample_rate) if chunk_seconds else 0
        estimates: list = [None] * len(inputs)
        infos: list = [None] * len(inputs)
        whole = [i for i, p in enumerate(prepared) if not (chunk and p["wav"].shape[-1] > chunk)]
        for g0 in range(0, len(whole), int(batch_size)):
            group = whole[g0 : g0 + int(batch_size)]
            start = time.perf_counter()
            outs, info = self._run([prepared[i] for i in group], [prepared[i]["id"] for i in group], opts)
            seconds = time.perf_counter() - start
            # a share by length; an input that resamples to no samples (one frame) still counts one
            weights = {i: max(1, prepared[i]["wav"].shape[-1]) for i in group}
            for i, est in zip(group, outs):
                estimates[i] = est
                infos[i] = dict(info, seconds=seconds * weights[i] / sum(weights.values()))
        for i, p in enumerate(prepared):
            if estimates[i] is None:
                start = time.perf_counter()
                estimates[i], infos[i] = self._run_chunked(p, chunk, int(overlap_seconds * self.sample_rate),
                                                           int(batch_size), progress, opts)
                infos[i]["seconds"] = time.perf_counter() - start
        return [self._from_model_rate(p, est, info) for p, est, info in zip(prepared, estimates, infos)]

    # -- the steps of extract_many
    def _to_model_rate(self, x: ExtractionInput) -> dict:
        """One input at the model's rate: ``wav`` (C[+1], T) with the initial estimate as a last row."""
        sr_in = int(x.sample_rate or self.sample_rate)
        mix = _as_2d(x.mixture, self.in_channels)
        length_in = mix.shape[-1]
        mix = resample(mix, sr_in, self.sample_rate)
        enr = None
        if x.enrollment is not None:
            if np.asarray(x.enrollment).size == 0:
                raise DdtseError("the enrollment recording is empty")
            enr = resample(np.asarray(x.enrollment, np.float32).reshape(-1), sr_in, self.sample_rate)
        wav = mix
        if x.initial_estimate is not None:
            init = resample(np.asarray(x.initial_estimate, np.float32).reshape(-1), sr_in, self.sample_rate)
            if init.shape[-1] < mix.shape[-1]:
                init = np.pad(init, (0, mix.shape[-1] - init.shape[-1]))
            wav = np.concatenate([mix, init[None, : mix.shape[-1]]], axis=0)
        emb = None if x.embedding is None else np.asarray(x.embedding, np.float32).reshape(-1)
        return {"wav": np.ascontiguousarray(wav, dtype=np.float32), "enrollment": enr, "id": x.id, "embedding": emb,
                "channels": mix.shape[0], "refine": x.initial_estimate is not None,
                "sr_in": sr_in, "length_in": length_in}

    def _run(self, prepared: list[dict], ids: list, opts: dict,
             wavs: list[np.ndarray] | None = None) -> tuple[list[torch.Tensor], dict]:
        """Collate (zero padding, each padded to ``min_samples`` at least), extract, crop per item."""
        from ddtse.data.batch import collate_batch

        wavs = [p["wav"] for p in prepared] if wavs is None else wavs
        items = []
        for k, (p, wav) in enumerate(zip(prepared, wavs)):
            if wav.shape[-1] < self.min_samples:  # too short for the network: zero-pad, crop below
                wav = np.pad(wav, ((0, 0), (0, self.min_samples - wav.shape[-1])))
            item = {"id": k, "mixture": wav}
            if p["enrollment"] is not None:
                item["enrollment"] = p["enrollment"]
            if p["embedding"] is not None:
                item["embedding"] = p["embedding"]
            items.append(item)
        batch = collate_batch(items)
        batch.pop("ids")
        channels = prepared[0]["channels"]
        run_opts = dict(opts)
        if prepared[0]["refine"]:
            run_opts["initial_estimate"] = batch["mixture"][:, channels]
            batch["mixture"] = batch["mixture"][:, :channels].contiguous()
        if all(i is not None for i in ids):
            run_opts["ids"] = list(ids)
        estimate, info = self.extract_batch(batch, **run_opts)
        return [estimate[k, : wav.shape[-1]] for k, wav in enumerate(wavs)], info

    def _run_chunked(self, p: dict, chunk: int, overlap: int, batch_size: int, progress: bool,
                     opts: dict) -> tuple[torch.Tensor, dict]:
        """Overlap-add over chunks of one long input; chunk k of item X is item ``X#chunk<k>``."""
        from ddtse.audio.chunking import overlap_add

        info: dict = {}
        calls = 0

        def run(chunks: torch.Tensor) -> torch.Tensor:  # (B, C[+1], L) -> (B, L)
            nonlocal info, calls
            n = chunks.shape[0]
            ids = [None if p["id"] is None else f"{p['id']}#chunk{calls + k}" for k in range(n)]
            calls += n
            outs, info = self._run([p] * n, ids, opts, wavs=[c.numpy() for c in chunks])
            return torch.stack(outs)

        estimate = overlap_add(run, torch.from_numpy(p["wav"]), chunk, overlap, batch_size=batch_size,
                               progress=progress, pad_last=False)
        return estimate, dict(info)

    def _from_model_rate(self, p: dict, estimate: torch.Tensor, info: dict) -> tuple[np.ndarray, dict]:
        """The estimate at the input's rate and exact length; ``rtf`` of the item."""
        out = np.zeros(0, np.float32)
        if estimate.shape[-1]:
            out = resample(estimate.numpy(), self.sample_rate, p["sr_in"])[: p["length_in"]]
        if out.shape[-1] < p["length_in"]:
            out = np.pad(out, (0, p["length_in"] - out.shape[-1]))
        info = dict(info)
        info["rtf"] = info["seconds"] / (p["length_in"] / p["sr_in"])
        return out.astype(np.float32), info


class ChainExtractor(ExtractorProtocol):
    """X+DDTSE: a front-end's estimate refined by a model that ``can_refine`` (DDTSE) from ``t_start``.

    The sampler options are the refiner's (the front-end runs with its own defaults); unknown
    ones are refused. ``t_start`` is the default of the refiner's ``t_start`` option. It runs the
    same path as ``Extractor``: the front-end over the inputs, then the refiner over its estimates
    (both batched and chunked alike)."""

    can_refine = False

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

    def extract_many(self, inputs: list[ExtractionInput], *, batch_size: int = 1,
                     chunk_seconds: float | None = None, overlap_seconds: float = 1.0,
                     progress: bool = False, **opts) -> list[tuple[np.ndarray, dict]]:
        """``Extractor.extract_many`` of the chain: NFE, seconds and RTF are the two stages' sums."""
        common = dict(batch_size=batch_size, chunk_seconds=chunk_seconds, overlap_seconds=overlap_seconds,
                      progress=progress)
        firsts = self.front.extract_many(inputs, **common)
        second = [ExtractionInput(_as_2d(x.mixture, 1)[:1], x.enrollment, x.sample_rate or self.sample_rate, x.id,
                                  first, x.embedding) for x, (first, _) in zip(inputs, firsts)]
        refined = self.refiner.extract_many(second, **common, **{"t_start": self.t_start, **opts})
        out = []
        for (_, info_front), (estimate, info) in zip(firsts, refined):
            info = dict(info)
            info["nfe"] = info_front.get("nfe", 1) + info.get("nfe", 0)
            info["seconds"] += info_front["seconds"]
            info["rtf"] += info_front["rtf"]
            out.append((estimate, info))
        return out


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
