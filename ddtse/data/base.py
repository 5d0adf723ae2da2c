"""Shared pieces of the TSE datasets: frame-exact reads, crops, CSV/map parsing, per-item RNG.

Every dataset registered in ``DATASETS`` follows one contract (see ddtse/data/datamodule.py):
``cls(*, sample_rate, seed, train, **options)``; ``__getitem__(key)`` with ``key`` an int index
or an ``(index, epoch)`` tuple (what :class:`EpochSampler` yields); items are dicts of numpy
arrays that :func:`ddtse.data.batch.collate_batch` turns into the batch of docs/design.md.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import soundfile as sf
import torch

from ddtse.audio.io import resample
from ddtse.errors import DdtseError

PEAK_GUARD = 0.9


def split_key(key) -> tuple[int, int]:
    """``index`` or ``(index, epoch)`` -> ``(index, epoch)``."""
    if isinstance(key, (tuple, list)):
        return int(key[0]), int(key[1])
    return int(key), 0


def item_rng(seed: int, index: int, epoch: int) -> np.random.Generator:
    """The random generator of one item: a function of (seed, index, epoch) only, so items do not
    depend on the worker that builds them."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index), int(epoch)])


def speaker_of(utterance_id: str) -> str:
    """LibriSpeech speaker of an utterance id ``<spk>-<chapter>-<utt>``."""
    return utterance_id.split("-", 1)[0]


def sex_group(sex_1: str, sex_2: str) -> str:
    """FF, MM or FM (MF counts as FM) from two one-letter sexes."""
    pair = (sex_1.strip().upper()[:1], sex_2.strip().upper()[:1])
    if pair == ("F", "F"):
        return "FF"
    if pair == ("M", "M"):
        return "MM"
    return "FM"


def read_csv_rows(path: str | Path, required: Sequence[str], what: str = "CSV") -> list[dict]:
    """Rows of a CSV with a header as dicts; DdtseError if missing, unreadable or missing columns."""
    path = Path(path)
    if not path.is_file():
        raise DdtseError(f"{what} not found: {path}")
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            missing = [c for c in required if c not in columns]
            if missing:
                raise DdtseError(
                    f"{path} lacks column(s) {', '.join(missing)} (has: {', '.join(columns) or 'no header'})"
                )
            return list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DdtseError(f"cannot parse {what} {path}: {exc}") from exc


def write_csv_rows(path: str | Path, rows: Iterable[dict], columns: Sequence[str]) -> Path:
    """Write dict rows with the given column order (atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    os.replace(tmp, path)
    return path


def read_segment(
    path: str | Path,
    start: int = 0,
    frames: int | None = None,
    *,
    sample_rate: int | None = None,
    allow_resample: bool = True,
    multichannel: bool = False,
) -> np.ndarray:
    """Read ``frames`` samples from ``start`` (both at the file's rate) with one file open.

    Returns float32 (T,) (or (C, T) with ``multichannel``) resampled to ``sample_rate``. Missing
    or unreadable files, stereo files and refused resampling raise DdtseError naming the file.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise DdtseError(f"audio file not found: {path}")
    try:
        with sf.SoundFile(path) as handle:
            file_sr = handle.samplerate
            if handle.channels > 1 and not multichannel:
                raise DdtseError(f"{path} has {handle.channels} channels; a mono file is required")
            if start:
                handle.seek(min(int(start), handle.frames))
            data = handle.read(-1 if frames is None else int(frames), dtype="float32", always_2d=True)
    except DdtseError:
        raise
    except Exception as exc:
        raise DdtseError(f"cannot read audio file {path}: {str(exc).splitlines()[0]}") from exc
    data = data.T
    if sample_rate is not None and file_sr != sample_rate:
        if not allow_resample:
            raise DdtseError(f"{path} is at {file_sr} Hz but {sample_rate} Hz is required (resample: false)")
        data = resample(data, file_sr, sample_rate)
    return data if multichannel else data[0]


def file_rate(path: str | Path) -> int:
    """Sample rate of an audio file (header only)."""
    try:
        return int(sf.info(str(path)).samplerate)
    except Exception as exc:
        raise DdtseError(f"cannot read audio file {path}: {str(exc).splitlines()[0]}") from exc


def fit_length(wav: np.ndarray, length: int) -> np.ndarray:
    """Zero-pad or truncate the last axis to ``length`` samples."""
    n = wav.shape[-1]
    if n == length:
        return wav
    if n > length:
        return wav[..., :length]
    pad = [(0, 0)] * (wav.ndim - 1) + [(0, length - n)]
    return np.pad(wav, pad)


def random_window(total: int, length: int | None, rng: np.random.Generator | None) -> tuple[int, int]:
    """(start, frames) of a crop of ``length`` out of ``total`` samples; random start if ``rng``,
    else the beginning; the whole signal when ``length`` is None or longer than ``total``."""
    if length is None or length >= total:
        return 0, total
    start = int(rng.integers(0, total - length + 1)) if rng is not None else 0
    return start, length


def peak_guard(signals: dict[str, np.ndarray], key: str = "mixture", peak: float = PEAK_GUARD) -> float:
    """Scale all ``signals`` together if ``signals[key]`` peaks above ``peak``; returns the gain."""
    top = float(np.max(np.abs(signals[key]))) if signals[key].size else 0.0
    gain = peak / top if top > peak else 1.0
    if gain != 1.0:
        for name in signals:
            signals[name] = signals[name] * gain
    return gain


def rms_db(wav: np.ndarray) -> float:
    """RMS level in dB (full scale = 0 dB)."""
    return float(10 * np.log10(np.mean(np.square(wav, dtype=np.float64)) + 1e-12))


def set_rms_db(wav: np.ndarray, level_db: float) -> np.ndarray:
    """Scale ``wav`` to an RMS level of ``level_db`` dB."""
    return (wav * 10 ** ((level_db - rms_db(wav)) / 20)).astype(np.float32)


def load_embedding_file(path: str | Path) -> np.ndarray:
    """A pre-computed speaker embedding file (.npy, no pickles) as a (D,) float32 vector."""
    path = Path(path)
    if not path.is_file():
        raise DdtseError(f"embedding file not found: {path}")
    try:
        emb = np.asarray(np.load(path, allow_pickle=False), dtype=np.float32).reshape(-1)
    except Exception as exc:
        raise DdtseError(f"cannot read embedding {path}: a .npy array of numbers is needed ({exc})") from exc
    if emb.size == 0 or not np.all(np.isfinite(emb)):
        raise DdtseError(f"embedding {path} is empty or not finite")
    return emb


class EmbeddingMap:
    """Pre-computed speaker embeddings per item id: a folder ``<dir>/<id>.npy`` or a file of
    ``<id> <path.npy>`` lines (whitespace or comma separated; relative paths from the file's folder)."""

    def __init__(self, source: str | Path):
        source = Path(source)
        self.folder: Path | None = None
        self.paths: dict[str, Path] = {}
        if source.is_dir():
            self.folder = source
        elif source.is_file():
            for lineno, line in enumerate(source.read_text().splitlines(), 1):
                parts = line.replace(",", " ").split()
                if not parts or parts[0] in ("id", "item_id"):
                    continue
                if len(parts) != 2:
                    raise DdtseError(f"{source}:{lineno}: expected '<item id> <path.npy>', got {line!r}")
                path = Path(parts[1])
                self.paths[parts[0]] = path if path.is_absolute() else source.parent / path
        else:
            raise DdtseError(f"embedding_map not found: {source}")
        self.source = source

    def load(self, item_id: str) -> np.ndarray:
        """The (D,) float32 embedding of ``item_id``."""
        path = self.folder / f"{item_id}.npy" if self.folder else self.paths.get(item_id)
        if path is None:
            raise DdtseError(f"embedding_map {self.source} has no entry for item {item_id}")
        if not Path(path).is_file():
            raise DdtseError(f"embedding file not found: {path} (item {item_id})")
        try:
            emb = np.load(path)
        except Exception as exc:
            raise DdtseError(f"cannot read embedding {path}: {exc}") from exc
        return np.asarray(emb, dtype=np.float32).reshape(-1)


class ExtractionDataset(torch.utils.data.Dataset):
    """Base for TSE datasets: keeps rate/seed/train flags, enrollment options and an optional
    embedding map. Subclasses implement ``__len__`` and ``make_item(index, epoch)``.

    ``absent_target_prob`` (0 = off): that share of items, drawn per item (and per epoch in
    training) from the seed, has its target speaker removed: mixture - target as the mixture, a
    silent target, ``absent: True`` (the enrollment stays the target's). Only datasets whose
    mixture is exactly target + rest (``supports_absent_target``) offer it.
    """

    #: the mixture is target + the rest, sample for sample (so mixture - target lacks the target)
    supports_absent_target = False

    def __init__(
        self,
        *,
        sample_rate: int,
        seed: int = 0,
        train: bool = False,
        segment_seconds: float | None = None,
        enrollment_seconds: float | None = None,
        min_enrollment_seconds: float = 0.0,
        resample: bool = True,
        embedding_map: str | None = None,
        absent_target_prob: float = 0.0,
    ):
        if not sample_rate or int(sample_rate) <= 0:
            raise DdtseError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        self.sample_rate = int(sample_rate)
        self.seed = int(seed)
        self.train = bool(train)
        self.segment = None if not segment_seconds or not train else int(round(segment_seconds * self.sample_rate))
        self.enrollment_frames = None if not enrollment_seconds else int(round(enrollment_seconds * self.sample_rate))
        self.min_enrollment_seconds = float(min_enrollment_seconds or 0.0)
        self.allow_resample = bool(resample)
        self.embeddings = EmbeddingMap(embedding_map) if embedding_map else None
        self.absent_target_prob = float(absent_target_prob or 0.0)
        if not 0.0 <= self.absent_target_prob <= 1.0:
            raise DdtseError(f"absent_target_prob must be in [0, 1], got {absent_target_prob!r}")
        if self.absent_target_prob and not self.supports_absent_target:
            raise DdtseError(f"absent_target_prob: the {type(self).__name__} dataset cannot remove the target "
                             "from its mixtures (use libri2mix or extr_list)")

    def __getitem__(self, key) -> dict:
        index, epoch = split_key(key)
        if not 0 <= index < len(self):
            raise IndexError(index)
        item = self.make_item(index, epoch if self.train else 0)
        if self.absent_target_prob:
            item = self._maybe_remove_target(item, index, epoch if self.train else 0)
        if self.embeddings is not None:
            item["embedding"] = self.embeddings.load(item["id"])
        return item

    def _maybe_remove_target(self, item: dict, index: int, epoch: int) -> dict:
        """With probability ``absent_target_prob`` (from seed, index, epoch): the item without its target."""
        rng = np.random.default_rng([self.seed, index, epoch, 0xAB5E])
        item["absent"] = bool(rng.random() < self.absent_target_prob)
        if item["absent"]:
            mixture = np.asarray(item["mixture"], dtype=np.float32)
            item["mixture"] = (mixture - item["target"]).astype(np.float32)  # (T,), or (C, T): every channel
            item["target"] = np.zeros_like(item["target"])
        return item

    def make_item(self, index: int, epoch: int) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_enrollment(self, enrollment: np.ndarray, path, item_id: str) -> None:
        """Refuse an enrollment shorter than ``min_enrollment_seconds``."""
        seconds = enrollment.shape[-1] / self.sample_rate
        if seconds < self.min_enrollment_seconds:
            raise DdtseError(
                f"enrollment too short for item {item_id}: {path} ({seconds:.2f} s < "
                f"min_enrollment_seconds {self.min_enrollment_seconds:.2f} s)"
            )

    def crop_enrollment(self, wav: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        """Crop an enrollment to ``enrollment_seconds`` (random start in training, start 0 otherwise)."""
        start, frames = random_window(wav.shape[-1], self.enrollment_frames, rng if self.train else None)
        return wav[start : start + frames]
