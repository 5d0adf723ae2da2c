"""Run any extractor over items (``ddtse.data.items``: a Libri2Mix split, a list, a folder or one
file); write audio, NFE and RTF.

Batches survive bad items: an item whose id, files or audio are unusable is reported (one line,
``failed.txt`` and ``inference.json`` in the output folder) and the others are still written;
``run_inference`` returns the failures and the CLI exits 2 at the end if there were any.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import torch
from tqdm import tqdm

from ddtse.audio.io import audio_info, load_audio, save_audio, write_text_atomic
from ddtse.data.items import Item
from ddtse.errors import DdtseError

# an enrollment whose RMS is below this (-100 dBFS; less than one 16-bit step) counts as silent
SILENT_RMS = 1e-5


def id_problem(item_id) -> str | None:
    """Why ``item_id`` cannot name an output inside the output folder (None when it can).

    An id is a relative path without extension: not empty, not absolute (``/x``, ``C:/x``,
    ``\\host``), no ``..`` component, no empty component, no control characters.
    """
    if not isinstance(item_id, str) or not item_id.strip():
        return "empty id"
    if any(ord(c) < 32 or c == "\x7f" for c in item_id):
        return f"id {item_id!r} contains control characters"
    parts = item_id.replace("\\", "/").split("/")
    if item_id.startswith(("/", "\\")) or PurePosixPath(item_id).is_absolute() or PureWindowsPath(item_id).drive:
        return f"id {item_id!r} is an absolute path (ids are relative to the output folder)"
    if ".." in parts:
        return f"id {item_id!r} has a '..' component (outputs must stay inside the output folder)"
    if any(part in ("", ".") for part in parts):
        return f"id {item_id!r} has an empty or '.' path component"
    return None


def output_path(out_dir: Path, item_id: str) -> Path:
    """``<out_dir>/<id>.wav`` for a valid id (see ``id_problem``)."""
    return Path(out_dir) / f"{item_id}.wav"


@dataclass
class Failure:
    """A bad item: its id, its mixture file and why it was not extracted."""

    id: str
    mixture: str
    reason: str

    def line(self) -> str:
        return f"{self.id or '<no id>'}: {self.reason}"


def output_complete(path: Path) -> bool:
    """A finished output: the file exists and its header reads (writes are atomic, so no partial file)."""
    try:
        return path.is_file() and audio_info(path).frames >= 0
    except DdtseError:
        return False


def _report_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def check_run_options(batch_size: int, min_enrollment_seconds: float, chunk_seconds: float | None,
                      overlap_seconds: float, min_seconds: float = 0.0) -> None:
    """The run's numbers, checked in one place (the CLI calls it before loading a checkpoint, with
    ``min_seconds`` 0; ``run_inference`` again with the model's shortest input)."""
    from ddtse.extract import check_chunking

    if int(batch_size) < 1:
        raise DdtseError(f"--batch_size must be >= 1, got {batch_size}")
    if not float(min_enrollment_seconds) >= 0:
        raise DdtseError(f"--min_enrollment_seconds must be >= 0, got {min_enrollment_seconds}")
    check_chunking(chunk_seconds, overlap_seconds, min_seconds)


def run_inference(extractor, items: list[Item], out_dir: str | Path, *, overwrite: bool = False,
                  resume: bool = False, subtype: str = "FLOAT", chunk_seconds: float | None = None,
                  overlap_seconds: float = 1.0, progress: bool = True, channel: int | None = None,
                  batch_size: int = 1, min_enrollment_seconds: float = 1.0, strict: bool = False,
                  report=None, **opts) -> dict:
    """Extract every item to ``<out_dir>/<id>.wav`` at the input's rate; returns a summary dict.

    Every output has its input's length (inputs shorter than the model's minimum are padded and
    the output cropped back). A bad item (bad id, missing/unreadable/empty/non-finite audio, wrong
    channels, an enrollment shorter than ``min_enrollment_seconds`` or silent) is reported through
    ``report`` (one line; default stderr) and skipped; the summary's ``failed`` lists them, and
    ``failed.txt`` and ``inference.json`` in ``out_dir`` record them. With ``strict`` the first bad
    item raises DdtseError instead (one-file mode). Existing outputs are refused unless
    ``overwrite``; ``resume`` skips items whose complete output exists and does the rest.
    """
    from ddtse.audio.io import ensure_writable_dir

    if not items:
        raise DdtseError("nothing to extract: the input list is empty")
    check_run_options(batch_size, min_enrollment_seconds, chunk_seconds, overlap_seconds,
                      extractor.min_samples / extractor.sample_rate)
    extractor.validate_options(opts)  # one clear error up front, not one failure per item
    report = report or _report_to_stderr
    out_dir = Path(out_dir)
    if extractor.needs_enrollment and all(i.enrollment is None for i in items if i.problem is None):
        raise DdtseError(f"the '{extractor.name}' model needs an enrollment for every input (--enrollment)")
    failures: list[Failure] = []

    def fail(item: Item, reason: str) -> None:
        failure = Failure(item.id, "" if item.mixture is None else str(item.mixture), reason)
        if strict:
            raise DdtseError(reason)
        failures.append(failure)
        report(f"failed: {failure.line()}")

    # 1. ids and outputs (nothing is read yet)
    todo, seen = [], set()
    for item in items:
        problem = item.problem or id_problem(item.id)
        if problem is None and item.mixture is None and item.snrs is None:
            problem = "the item has no mixture file"
        if problem is None and item.id in seen:
            problem = f"duplicate id {item.id!r} (an earlier item writes the same output)"
        if problem is not None:
            fail(item, problem)
            continue
        seen.add(item.id)
        todo.append(item)
    skipped = 0
    existing = [i for i in todo if output_path(out_dir, i.id).exists()]
    if existing and not overwrite:
        if not resume:
            raise DdtseError(f"{len(existing)} output(s) already exist in {out_dir} (e.g. {existing[0].id}.wav); "
                             "pass --overwrite to replace them or --resume to do only the missing ones")
        done = {i.id for i in existing if output_complete(output_path(out_dir, i.id))}
        skipped = len(done)
        todo = [i for i in todo if i.id not in done]
    for item in todo:
        if output_path(out_dir, item.id).is_dir():
            raise DdtseError(f"output path is a folder, not a file: {output_path(out_dir, item.id)}")
    ensure_writable_dir(out_dir)

    # 2. headers of every input before any extraction
    channels = int(extractor.in_channels)
    ready = []
    for item in todo:
        try:
            _check_headers(item, extractor, channels, channel)
        except DdtseError as exc:
            fail(item, str(exc))
            continue
        ready.append(item)

    # 3. extraction, a group at a time
    nfe, seconds, audio_seconds, written = [], 0.0, 0.0, 0
    start = time.perf_counter()
    step = int(batch_size)
    bar = tqdm(total=len(ready), desc="extracting", unit="utt", disable=not progress)
    if progress:
        report = _via_bar(bar, report)
    try:
        for g0 in range(0, len(ready), step):
            group = []
            for item in ready[g0 : g0 + step]:
                try:
                    group.append((item, _load_item(item, channels, channel, min_enrollment_seconds)))
                except DdtseError as exc:
                    fail(item, str(exc))
            results = _run_group(extractor, group, step, chunk_seconds, overlap_seconds, opts, fail)
            for (item, loaded), (estimate, run_info) in results:
                length, sr = loaded.mixture.shape[-1], loaded.sample_rate
                if estimate.shape[-1] != length:  # a bug, not a user mistake
                    raise RuntimeError(f"{item.id}: estimate has {estimate.shape[-1]} samples, input {length}")
                try:
                    save_audio(output_path(out_dir, item.id), estimate, sr, subtype=subtype, overwrite=True)
                except DdtseError as exc:
                    fail(item, str(exc))
                    continue
                written += 1
                audio_seconds += length / sr
                nfe.append(run_info.get("nfe", 1))
                seconds += run_info["seconds"]
            bar.update(len(ready[g0 : g0 + step]))
    finally:
        bar.close()
    summary = {
        "model": extractor.name, "items": len(items), "written": written, "skipped_existing": skipped,
        "failed": [vars(f) for f in failures],
        "nfe_per_item": float(np.mean(nfe)) if nfe else 0.0,
        "rtf": seconds / max(audio_seconds, 1e-9), "seconds": seconds, "audio_seconds": audio_seconds,
        "wall_seconds": time.perf_counter() - start, "opts": {k: v for k, v in opts.items()},
        "chunk_seconds": chunk_seconds, "min_enrollment_seconds": float(min_enrollment_seconds),
        "device": str(extractor.device), "torch_threads": torch.get_num_threads(),
    }
    write_text_atomic(out_dir / "inference.json", json.dumps(summary, indent=2, default=str))
    failed_txt = out_dir / "failed.txt"
    if failures:
        write_text_atomic(failed_txt, "".join(f"{f.id}\t{f.mixture}\t{f.reason}\n" for f in failures))
    elif failed_txt.is_file():
        failed_txt.unlink()  # stale list from an earlier run
    return summary


def _via_bar(bar, report):
    """Print report lines above a live progress bar (tqdm.write) instead of through it."""
    if report is not _report_to_stderr:
        return report
    return lambda line: bar.write(line, file=sys.stderr)


def _check_headers(item: Item, extractor, channels: int, channel: int | None) -> None:
    """Refuse (DdtseError) an item whose files are missing, unreadable, empty or of the wrong channel count."""
    if extractor.needs_enrollment and item.enrollment is None:
        raise DdtseError(f"the '{extractor.name}' model needs an enrollment for every input")
    if item.mixture is None:  # an extraction-list item: mixed from its sources (mono)
        for path in (item.reference, item.interferer):
            if audio_info(path).frames == 0:
                raise DdtseError(f"audio file is empty: {path}")
        if channels > 1:
            raise DdtseError(f"item {item.id} is mixed from mono sources; the model needs {channels}-channel mixtures")
        return
    info = audio_info(item.mixture)
    if info.frames == 0:
        raise DdtseError(f"audio file is empty: {item.mixture}")
    if info.channels > channels and channel is None:
        raise DdtseError(f"{item.mixture} has {info.channels} channels, the model takes {channels}: "
                         "pass --channel N to pick one")
    if channel is not None and not 0 <= channel < info.channels:
        raise DdtseError(f"{item.mixture} has no channel {channel}")
    if info.channels < channels:
        raise DdtseError(f"{item.mixture}: the model needs {channels}-channel mixtures, the file has {info.channels}")
    if item.enrollment is not None and audio_info(item.enrollment).frames == 0:
        raise DdtseError(f"enrollment file is empty: {item.enrollment}")


def _load_item(item: Item, channels: int, channel: int | None, min_enrollment_seconds: float = 0.0):
    """The item's audio as the extractor's input (``ExtractionInput``: mixture (C, T), enrollment
    (Te,) | None, at the mixture file's rate, the item's id).

    The enrollment must last at least ``min_enrollment_seconds`` and not be silent."""
    from ddtse.extract import ExtractionInput

    if item.mixture is None:  # an extraction-list item: WSJ0-2mix-style mixture of its sources
        from ddtse.data.lists import render_item

        rendered, _, _, sr = render_item(item)
        mixture = rendered[None]
    else:
        sr = audio_info(item.mixture).sample_rate
        pick = channel if (channel is not None and channels == 1) else None  # only the channel used must be finite
        mixture = load_audio(item.mixture, channel=pick, multichannel=True)[:channels]
    enrollment = None
    if item.enrollment:
        enrollment = load_audio(item.enrollment, sr, channel=0)
        seconds = enrollment.shape[-1] / sr
        if seconds < min_enrollment_seconds:
            raise DdtseError(f"enrollment too short: {item.enrollment} ({seconds:.3f} s < "
                             f"{min_enrollment_seconds:g} s; see --min_enrollment_seconds)")
        rms = float(np.sqrt(np.mean(np.square(enrollment, dtype=np.float64)))) if enrollment.size else 0.0
        if rms < SILENT_RMS:
            raise DdtseError(f"enrollment is silent (all zeros or below -100 dBFS): {item.enrollment}")
    embedding = None
    if item.embedding is not None:
        from ddtse.data.base import load_embedding_file

        embedding = load_embedding_file(item.embedding)
    return ExtractionInput(mixture, enrollment, sr, item.id, embedding=embedding)


def _run_group(extractor, group, batch_size: int, chunk_seconds, overlap_seconds, opts, fail):
    """[(item, input), (estimate, info)] for the items of a group that extract; the others go to ``fail``.

    The group goes through ``extractor.extract_many`` (the one inference path) as batches of
    ``batch_size``; a call that fails as a whole is retried item by item, so that one bad item
    costs only itself."""
    def inputs(members):
        return [loaded for _, loaded in members]

    common = dict(batch_size=batch_size, chunk_seconds=chunk_seconds, overlap_seconds=overlap_seconds)
    if not group:
        return []
    if len(group) > 1:
        try:
            return list(zip(group, extractor.extract_many(inputs(group), **common, **opts)))
        except DdtseError:
            pass  # find the culprit below
    results = []
    for member in group:
        try:
            [result] = extractor.extract_many(inputs([member]), **common, **opts)
        except DdtseError as exc:
            fail(member[0], str(exc))
            continue
        results.append((member, result))
    return results
