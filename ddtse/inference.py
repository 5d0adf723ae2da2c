"""Run any extractor over a Libri2Mix split, a list, a folder or one file; write audio, NFE and RTF."""
from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ddtse.audio.io import audio_info, find_audio_files, load_audio, save_audio
from ddtse.errors import DdtseError


@dataclass
class InferenceItem:
    """One extraction job: output id (relative path, no extension), mixture and enrollment files."""

    id: str
    mixture: Path
    enrollment: Path | None = None


def items_from_list(path: str | Path) -> list[InferenceItem]:
    """A CSV/TSV list with a header holding ``id``, ``mixture`` and optionally ``enrollment`` columns."""
    path = Path(path)
    if not path.is_file():
        raise DdtseError(f"list file not found: {path}")
    text = path.read_text()
    if not text.strip():
        raise DdtseError(f"list file is empty: {path}")
    dialect = "excel-tab" if "\t" in text.splitlines()[0] else "excel"
    rows = list(csv.DictReader(text.splitlines(), dialect=dialect))
    if not rows:
        raise DdtseError(f"list file is empty: {path}")
    missing = [c for c in ("id", "mixture") if c not in rows[0]]
    if missing:
        raise DdtseError(f"{path} lacks column(s) {', '.join(missing)} (needs id, mixture[, enrollment])")
    base = path.parent
    resolve = lambda p: Path(p) if Path(p).is_absolute() else base / p  # noqa: E731
    return [InferenceItem(r["id"], resolve(r["mixture"]), resolve(r["enrollment"]) if r.get("enrollment") else None)
            for r in rows]


def items_from_folder(input_dir: str | Path, enrollment: str | Path | None = None) -> list[InferenceItem]:
    """Every audio file below ``input_dir``; outputs mirror the tree. One enrollment for all, or none."""
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise DdtseError(f"input folder not found: {input_dir}")
    files = find_audio_files(input_dir)
    if not files:
        raise DdtseError(f"no audio files (.wav/.flac/.ogg) under {input_dir}")
    enr = Path(enrollment) if enrollment else None
    return [InferenceItem(p.relative_to(input_dir).with_suffix("").as_posix(), p, enr) for p in files]


def items_from_librimix(split_dir: str | Path, mixture_type: str = "mix_both",
                        enroll_map: str | Path | None = None) -> list[InferenceItem]:
    """One item per (mixture, target) of a Libri2Mix split, enrollments from a SpeakerBeam-style map."""
    from ddtse.data.librimix import librimix_inference_items

    return [InferenceItem(i["id"], Path(i["mixture"]), Path(i["enrollment"]))
            for i in librimix_inference_items(split_dir, mixture_type, enroll_map)]


def _check_outputs(items: list[InferenceItem], out_dir: Path, overwrite: bool) -> None:
    ids = [i.id for i in items]
    if len(set(ids)) != len(ids):
        raise DdtseError("two inputs map to the same output id; give unique ids")
    if not overwrite:
        existing = [i.id for i in items if (out_dir / f"{i.id}.wav").exists()]
        if existing:
            raise DdtseError(f"{len(existing)} output(s) already exist in {out_dir} (e.g. {existing[0]}.wav); "
                             "pass --overwrite to replace them")


def run_inference(extractor, items: list[InferenceItem], out_dir: str | Path, *, overwrite: bool = False,
                  subtype: str = "FLOAT", chunk_seconds: float | None = None, overlap_seconds: float = 1.0,
                  progress: bool = True, channel: int | None = None, batch_size: int = 1, **opts) -> dict:
    """Extract every item to ``<out_dir>/<id>.wav`` at the input's rate; returns a summary dict.

    All inputs are checked (exist, readable, mono/stereo as the model needs) before any output
    is written, so a bad input stops the run with nothing half-written.
    """
    if not items:
        raise DdtseError("nothing to extract: the input list is empty")
    out_dir = Path(out_dir)
    _check_outputs(items, out_dir, overwrite)
    if extractor.needs_enrollment and any(i.enrollment is None for i in items):
        raise DdtseError(f"the '{extractor.name}' model needs an enrollment for every input (--enrollment)")
    channels = int(getattr(extractor, "in_channels", 1))
    for item in items:  # validate headers before writing anything
        info = audio_info(item.mixture)
        if info.channels > channels and channel is None:
            raise DdtseError(f"{item.mixture} has {info.channels} channels, the model takes {channels}: "
                             "pass --channel N to pick one")
        if channel is not None and not 0 <= channel < info.channels:
            raise DdtseError(f"{item.mixture} has no channel {channel}")
        if info.channels < channels:
            raise DdtseError(f"{item.mixture}: the model needs {channels}-channel mixtures, the file has {info.channels}")
        if info.frames == 0:
            raise DdtseError(f"audio file is empty: {item.mixture}")
        if item.enrollment is not None:
            audio_info(item.enrollment)
    nfe, seconds, audio_seconds = [], 0.0, 0.0
    start = time.perf_counter()
    batched = batch_size > 1 and not chunk_seconds and hasattr(extractor, "extract_batch")
    step = batch_size if batched else 1
    groups = [items[i : i + step] for i in range(0, len(items), step)]
    bar = tqdm(total=len(items), desc="extracting", unit="utt", disable=not progress)
    for group in groups:
        loaded = [_load_item(item, channels, channel) for item in group]
        if batched:
            estimates, run_info = _extract_group(extractor, loaded, **opts)
        else:
            mixture, enrollment, sr = loaded[0]
            estimate, run_info = extractor.extract(mixture, enrollment, sr, chunk_seconds=chunk_seconds,
                                                   overlap_seconds=overlap_seconds, **opts)
            estimates = [estimate]
        for item, (mixture, _, sr), estimate in zip(group, loaded, estimates):
            save_audio(out_dir / f"{item.id}.wav", estimate, sr, subtype=subtype, overwrite=True)
            audio_seconds += mixture.shape[-1] / sr
        nfe += [run_info.get("nfe", 1)] * len(group)
        seconds += run_info["seconds"]
        bar.update(len(group))
    bar.close()
    summary = {
        "model": extractor.name, "items": len(items), "nfe_per_item": float(np.mean(nfe)),
        "rtf": seconds / max(audio_seconds, 1e-9), "seconds": seconds, "audio_seconds": audio_seconds,
        "wall_seconds": time.perf_counter() - start, "opts": {k: v for k, v in opts.items()},
        "chunk_seconds": chunk_seconds, "device": str(getattr(extractor, "device", "cpu")),
        "torch_threads": torch.get_num_threads(),
    }
    (out_dir / "inference.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _load_item(item: InferenceItem, channels: int, channel: int | None):
    """(mixture (C, T), enrollment (Te,) | None, sample rate) of one item, at the file's rate."""
    sr = audio_info(item.mixture).sample_rate
    mixture = load_audio(item.mixture, multichannel=True)
    mixture = mixture[channel : channel + 1] if (channel is not None and channels == 1) else mixture[:channels]
    enrollment = load_audio(item.enrollment, sr, channel=0) if item.enrollment else None
    return mixture, enrollment, sr


def _extract_group(extractor, loaded, **opts) -> tuple[list[np.ndarray], dict]:
    """Extract several items in one padded batch at the model's rate; each output back at its own rate."""
    from ddtse.audio.io import resample
    from ddtse.data.datamodule import collate_batch

    sr_model = extractor.sample_rate
    items = []
    for i, (mixture, enrollment, sr) in enumerate(loaded):
        item = {"id": str(i), "mixture": resample(mixture, sr, sr_model)}
        if enrollment is not None:
            item["enrollment"] = resample(enrollment, sr, sr_model)
        items.append(item)
    batch = collate_batch(items)
    batch.pop("ids")
    start = time.perf_counter()
    estimate, info = extractor.extract_batch(batch, **opts)
    info["seconds"] = time.perf_counter() - start
    outs = []
    for b, (mixture, _, sr) in enumerate(loaded):
        est = estimate[b, : int(batch["lengths"][b])].numpy()
        outs.append(resample(est, sr_model, sr)[: mixture.shape[-1]])
    return outs, info
