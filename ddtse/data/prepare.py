"""Check a Libri2Mix tree and write the lists the loaders read (used by data/prepare_libri2mix.py).

Output per split, in ``<out>/<split>/``: ``mixture_<split>_<type>.csv`` (the generator's columns,
paths resolved to this machine) and, for non-training splits, ``map_mixture2enrollment``
(SpeakerBeam format: the user's map, SpeakerBeam or WeSep, validated and copied; else drawn
with the seed). Point a ``libri2mix`` dataset at them with ``lists_dir: <out>``.
"""
from __future__ import annotations

import glob
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from ddtse.data.base import write_csv_rows
from ddtse.data.librimix import (
    MAP_NAME,
    LibriMixRecord,
    enrollment_problem,
    librimix_split_paths,
    locate_split_dir,
    make_enrollment_map,
    metadata_csv_path,
    read_enrollment_map,
)
from ddtse.errors import DdtseError

MAX_LISTED = 20


@dataclass
class SplitReport:
    """What was found in one split (``problems`` empty = good)."""

    split_dir: Path
    mixture_type: str
    mixtures: int = 0
    problems: list[str] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)

    def lines(self) -> list[str]:
        head = f"{self.split_dir} [{self.mixture_type}]: {self.mixtures} mixtures, {len(self.problems)} problem(s)"
        shown = [f"  - {p}" for p in self.problems[:MAX_LISTED]]
        if len(self.problems) > MAX_LISTED:
            shown.append(f"  ... and {len(self.problems) - MAX_LISTED} more")
        return [head, *shown]


def expected_rate(split_dir: Path) -> int | None:
    """16000 for a split under ``wav16k/``; None if the folder name does not say."""
    name = split_dir.parent.parent.name
    if name.startswith("wav") and name.endswith("k") and name[3:-1].isdigit():
        return int(name[3:-1]) * 1000
    return None


def validate_split(split_dir: str | Path, mixture_type: str, check_audio: bool = True,
                   expect_count: int | None = None) -> tuple[list[LibriMixRecord], SplitReport]:
    """Missing files, wrong rates/channels, lengths and counts of one split (reported, not raised)."""
    split_dir = Path(split_dir)
    report = SplitReport(split_dir, mixture_type)
    if not metadata_csv_path(split_dir, mixture_type).is_file():
        report.problems.append(f"metadata CSV missing: {metadata_csv_path(split_dir, mixture_type)} (listing files instead)")
    try:
        records = librimix_split_paths(split_dir, mixture_type)
    except DdtseError as exc:
        report.problems.append(str(exc))
        return [], report
    report.mixtures = len(records)
    if expect_count is not None and len(records) != expect_count:
        report.problems.append(f"{len(records)} mixtures listed, {expect_count} expected")
    rate = expected_rate(split_dir)
    folders = {mixture_type: [r.mixture_path for r in records]}
    for k in range(len(records[0].source_paths) if records else 0):
        folders[f"s{k + 1}"] = [r.source_paths[k] for r in records]
    if records and records[0].noise_path:
        folders["noise"] = [r.noise_path for r in records]
    for sub, paths in folders.items():
        on_disk = len(glob.glob(str(split_dir / sub / "*.wav")))
        if on_disk != len(paths):
            report.problems.append(f"{split_dir / sub}: {on_disk} files on disk, {len(paths)} in the metadata")
        for record, path in zip(records, paths):
            try:
                info = sf.info(path) if check_audio else None
            except Exception:
                exists = Path(path).is_file()
                report.problems.append(f"{'unreadable' if exists else 'missing'} file: {path}")
                continue
            if info is None:
                if not Path(path).is_file():
                    report.problems.append(f"missing file: {path}")
                continue
            if rate is not None and info.samplerate != rate:
                report.problems.append(f"{path}: {info.samplerate} Hz, expected {rate} Hz")
            if info.channels != 1:
                report.problems.append(f"{path}: {info.channels} channels, expected mono")
            if info.frames != record.length:
                report.problems.append(f"{path}: {info.frames} samples, metadata says {record.length}")
            if info.subtype in FLOAT_SUBTYPES and not _all_finite(path):
                report.problems.append(f"{path}: non-finite samples (NaN or inf)")
    return records, report


FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")  # integer PCM cannot hold NaN/inf, so only these are read


def _all_finite(path: str, block: int = 1 << 20) -> bool:
    """Whether a float audio file holds only finite samples (read in blocks; unreadable = not finite)."""
    try:
        for data in sf.blocks(path, blocksize=block, dtype="float32"):
            if not np.isfinite(data).all():
                return False
    except Exception:
        return False
    return True


def ensure_writable_dir(folder: str | Path) -> Path:
    """Create ``folder`` (and parents); one clear error when it cannot be written."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise DdtseError(f"cannot write to the output folder {folder} ({exc.strerror or exc})") from exc
    return folder


def split_outputs(out_dir: str | Path, split: str, mixture_types) -> list[Path]:
    """The files prepare_split writes for a split (lists; the enrollment map for non-training splits)."""
    out = Path(out_dir) / split
    paths = [out / f"mixture_{split}_{t}.csv" for t in mixture_types]
    return paths if split.startswith("train") else paths + [out / MAP_NAME]


def check_enrollment_map(records: list[LibriMixRecord], entries: dict, split_dir: Path) -> list[str]:
    """Problems of a parsed map against a split: uncovered items, wrong speaker, target reuse, missing files."""
    problems = []
    for record in records:
        for k in range(1, len(record.source_paths) + 1):
            entry = entries.get((record.mixture_id, k))
            if entry is None:
                problems.append(f"no enrollment for s{k}/{record.mixture_id}")
                continue
            j, other = entry
            problem = enrollment_problem(record.mixture_id, k, j, other)
            if problem:
                problems.append(problem)
            elif not (split_dir / f"s{j}" / f"{other}.wav").is_file():
                problems.append(f"enrollment file missing: {split_dir / f's{j}' / f'{other}.wav'}")
    return problems


def map_lines(records: list[LibriMixRecord], entries: dict) -> list[str]:
    """SpeakerBeam lines for parsed entries, in metadata order."""
    lines = []
    for record in records:
        for k, utt in enumerate(record.utterances[: len(record.source_paths)], 1):
            j, other = entries[(record.mixture_id, k)]
            lines.append(f"{record.mixture_id} {utt} s{j}/{other}")
    return lines


def prepare_split(split_dir: str | Path, out_dir: str | Path, mixture_types=("mix_both",), seed: int = 0,
                  enrollment_map: str | Path | None = None, check_audio: bool = True,
                  expect_count: int | None = None, overwrite: bool = False) -> list[SplitReport]:
    """Validate one split and write its lists into ``<out_dir>/<split>/`` (existing ones only with
    ``overwrite``)."""
    split_dir = Path(split_dir)
    out = Path(out_dir) / split_dir.name
    _refuse_existing(split_outputs(out_dir, split_dir.name, mixture_types), overwrite)
    ensure_writable_dir(out)
    reports = []
    records_any = None
    for mixture_type in mixture_types:
        records, report = validate_split(split_dir, mixture_type, check_audio, expect_count)
        if records:
            columns = ["mixture_ID", "mixture_path", "source_1_path"]
            columns += ["source_2_path"] if len(records[0].source_paths) > 1 else []
            columns += ["noise_path"] if records[0].noise_path else []
            rows = [{"mixture_ID": r.mixture_id, "mixture_path": r.mixture_path,
                     **{f"source_{k}_path": p for k, p in enumerate(r.source_paths, 1)},
                     "noise_path": r.noise_path, "length": r.length} for r in records]
            report.outputs.append(write_csv_rows(out / f"mixture_{split_dir.name}_{mixture_type}.csv", rows,
                                                 columns + ["length"]))
            if mixture_type != "mix_single":
                records_any = records
        reports.append(report)
    if records_any and not split_dir.name.startswith("train"):
        report = reports[0]
        source = enrollment_map or (split_dir / MAP_NAME if (split_dir / MAP_NAME).is_file() else None)
        if source is not None:
            entries = read_enrollment_map(source)
            report.problems.extend(f"enrollment map {source}: {p}" for p in
                                   check_enrollment_map(records_any, entries, split_dir))
            lines = map_lines(records_any, entries) if not report.problems else []
        else:
            lines, problems = make_enrollment_map(records_any, seed)
            report.problems.extend(problems)
        if lines:
            tmp = out / (MAP_NAME + ".tmp")
            tmp.write_text("\n".join(lines) + "\n")
            tmp.replace(out / MAP_NAME)
            report.outputs.append(out / MAP_NAME)
    return reports


def _refuse_existing(paths: list[Path], overwrite: bool) -> None:
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise DdtseError(f"{existing[0]} exists{more}; pass --overwrite to replace the lists")


def prepare_libri2mix(root: str | Path, out_dir: str | Path, splits=("dev", "test"), sample_rate: int = 16000,
                      mode: str = "min", mixture_types=("mix_both",), seed: int = 0,
                      enrollment_maps: dict[str, str] | None = None, check_audio: bool = True,
                      overwrite: bool = False) -> list[SplitReport]:
    """Validate the given splits of a Libri2Mix root and write their lists; returns the reports.

    Earlier lists in ``out_dir`` are refused before anything is written unless ``overwrite``."""
    split_dirs = [locate_split_dir(root, split, sample_rate, mode, allow_resample=False) for split in splits]
    _refuse_existing([p for d in split_dirs for p in split_outputs(out_dir, d.name, mixture_types)], overwrite)
    ensure_writable_dir(out_dir)
    reports = []
    for split, split_dir in zip(splits, split_dirs):
        reports.extend(prepare_split(split_dir, out_dir, mixture_types, seed,
                                     (enrollment_maps or {}).get(split), check_audio, overwrite=True))
    return reports
