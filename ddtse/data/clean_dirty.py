"""Clean/dirty mixing for per-speaker focused extractors (FocusedSpeakerExtractor workflow).

Layout (``root`` defaults to ``datasets``)::

    <root>/clean/<speaker>/<set>/*.wav        clean clips of the target speaker (5-15 s each)
    <root>/dirty/<group>/<set>/**/*.wav       "dirty" material: music, effects, other voices

``<set>`` is ``train_set`` ("train") for training and ``valid_set`` ("valid") otherwise (or
``subset`` if given). Every clean clip is one item (``repeat`` times per epoch in training).

Per item, with an RNG that depends only on (seed, index, epoch) (ddtse.data.base.item_rng):

1. **shift** (training, ``shift: true``): the clean clip c (length T) is shifted by an integer
   o ~ U[-T/2, T/2] with zero fill: target[t] = c[t - o]. The shifted clip is the target.
2. **crop** (training, ``segment_seconds``): clips longer than the segment are cropped to it at
   a random start chosen so that at least half of the crop overlaps the shifted clip's support
   (no all-zero targets); of up to 4 draws the first whose energy is at least -20 dB re the
   clip's is kept (else the most energetic), so crops of pauses are rare. Shorter clips keep
   their length (the collate pads).
3. **dirty**: a random dirty file; a random equal-length segment of it. A shorter file is
   looped (``short_dirty: loop``, default) or zero-padded at a random offset (``pad``).
4. **gain**: g ~ U(gain_range) (default [0.6, 1.2]); mixture = target + g * dirty.
5. **peak guard**: if |mixture| peaks above 0.9, mixture and target are scaled together.

Validation uses the ``valid_set`` clean files with the ``valid_set`` dirty files, no shift, no
crop and the fixed epoch 0, so it is the same every epoch. Decoded, resampled audio is cached
in memory per worker (fine for the small corpora of a per-speaker model). Stereo dirty files
are down-mixed; stereo clean files too.

Items: ``{"mixture": (1, T) float32, "target": (T,) float32, "id": "<speaker>/<stem>"}`` (the
collate derives ``lengths``); no enrollment.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ddtse.audio.io import audio_info, find_audio_files, load_audio
from ddtse.data.base import ExtractionDataset, item_rng, peak_guard
from ddtse.errors import DdtseError
from ddtse.registry import DATASETS


def shift_clip(wav: np.ndarray, offset: int) -> np.ndarray:
    """Shift (T,) by ``offset`` samples with zero fill, same length: out[t] = wav[t - offset]."""
    out = np.zeros_like(wav)
    n = wav.shape[-1]
    if offset >= 0:
        if offset < n:
            out[offset:] = wav[: n - offset]
    elif -offset < n:
        out[: n + offset] = wav[-offset:]
    return out


def dirty_segment(wav: np.ndarray, length: int, rng: np.random.Generator, short: str = "loop") -> np.ndarray:
    """A random ``length``-sample segment of (T,); a shorter signal is looped or zero-padded."""
    n = wav.shape[-1]
    if n >= length:
        start = int(rng.integers(0, n - length + 1))
        return wav[start : start + length]
    if short == "pad":
        out = np.zeros(length, dtype=wav.dtype)
        start = int(rng.integers(0, length - n + 1))
        out[start : start + n] = wav
        return out
    # loop from a random phase
    phase = int(rng.integers(0, n))
    reps = (length + phase) // n + 1
    return np.tile(wav, reps)[phase : phase + length]


@DATASETS.register("clean_dirty")
class CleanDirtyDataset(ExtractionDataset):
    """Target-speaker clips mixed on the fly with dirty material; see the module docstring."""

    def __init__(
        self,
        *,
        sample_rate: int = 44100,
        seed: int = 0,
        train: bool = False,
        speaker: str | None = None,
        root: str | list[str] = "datasets",
        clean_root: str | list[str] | None = None,
        dirty_root: str | list[str] | None = None,
        train_set: str = "train",
        valid_set: str = "valid",
        subset: str | None = None,
        dirty_groups: list[str] | None = None,
        segment_seconds: float | None = None,
        gain_range: tuple[float, float] | list[float] = (0.6, 1.2),
        shift: bool = True,
        short_dirty: str = "loop",
        repeat: int = 1,
        peak: float = 0.9,
        resample: bool = True,
        **unused,
    ):
        super().__init__(
            sample_rate=sample_rate, seed=seed, train=train, segment_seconds=segment_seconds, resample=resample
        )
        if not speaker:
            raise DdtseError("clean_dirty: data option 'speaker' (a folder under <root>/clean/) is required")
        if short_dirty not in ("loop", "pad"):
            raise DdtseError(f"clean_dirty: short_dirty must be 'loop' or 'pad', got {short_dirty!r}")
        gain_range = tuple(float(g) for g in gain_range)
        if len(gain_range) != 2 or gain_range[0] > gain_range[1] or gain_range[0] < 0:
            raise DdtseError(f"clean_dirty: gain_range must be [low, high] with 0 <= low <= high, got {gain_range}")
        self.speaker = str(speaker)
        self.set_name = subset or (train_set if train else valid_set)
        self.gain_range = gain_range
        self.shift = bool(shift) and self.train
        self.short_dirty = short_dirty
        self.repeat = max(1, int(repeat)) if self.train else 1
        self.peak = float(peak)

        roots = _as_list(root)
        clean_roots = _as_list(clean_root) or [Path(r) / "clean" for r in roots]
        dirty_roots = _as_list(dirty_root) or [Path(r) / "dirty" for r in roots]
        self.clean_files = self._find_clean(clean_roots)
        self.dirty_files = self._find_dirty(dirty_roots, dirty_groups)
        for path in self.clean_files + self.dirty_files:
            audio_info(path)  # unreadable files fail now, naming the file
        self._cache: dict[Path, np.ndarray] = {}

    # --- discovery ---
    def _find_clean(self, clean_roots: list[Path]) -> list[Path]:
        files: list[Path] = []
        found_speaker = False
        for croot in clean_roots:
            spk_dir = croot / self.speaker
            if not spk_dir.is_dir():
                continue
            found_speaker = True
            set_dir = spk_dir / self.set_name
            if set_dir.is_dir():
                files += find_audio_files(set_dir)
        if not found_speaker:
            known = sorted({p.name for r in clean_roots if r.is_dir() for p in r.iterdir() if p.is_dir()})
            where = ", ".join(str(r) for r in clean_roots)
            raise DdtseError(
                f"speaker '{self.speaker}' not found in {where} (available: {', '.join(known) or 'none'})"
            )
        if not files:
            where = ", ".join(str(r / self.speaker / self.set_name) for r in clean_roots)
            raise DdtseError(f"no clean audio files (.wav/.flac/.ogg) in {where}")
        return files

    def _find_dirty(self, dirty_roots: list[Path], groups: list[str] | None) -> list[Path]:
        files: list[Path] = []
        for droot in dirty_roots:
            if not droot.is_dir():
                continue
            for group_dir in sorted(p for p in droot.iterdir() if p.is_dir()):
                if groups and group_dir.name not in groups:
                    continue
                set_dir = group_dir / self.set_name
                if set_dir.is_dir():
                    files += find_audio_files(set_dir)
        if not files:
            where = ", ".join(str(r / "<group>" / self.set_name) for r in dirty_roots)
            raise DdtseError(f"no dirty audio files (.wav/.flac/.ogg) in {where}")
        return files

    # --- audio ---
    def _load(self, path: Path) -> np.ndarray:
        wav = self._cache.get(path)
        if wav is None:
            wav = load_audio(path, self.sample_rate, multichannel=True, allow_resample=self.allow_resample)
            wav = np.ascontiguousarray(wav.mean(axis=0), dtype=np.float32)
            if wav.size == 0:
                raise DdtseError(f"audio file is empty: {path}")
            self._cache[path] = wav
        return wav

    def __len__(self) -> int:
        return len(self.clean_files) * self.repeat

    def make_item(self, index: int, epoch: int) -> dict:
        rng = item_rng(self.seed, index, epoch)
        path = self.clean_files[index % len(self.clean_files)]
        clean = self._load(path)
        n = clean.shape[-1]
        lo, hi = 0, n  # support of the (shifted) clean clip
        if self.shift:
            offset = int(rng.integers(-(n // 2), n // 2 + 1))
            clean = shift_clip(clean, offset)
            lo, hi = max(0, offset), min(n, n + offset)
        if self.segment is not None and n > self.segment:
            seg = self.segment
            first = max(0, lo - seg // 2)
            last = max(first, min(n - seg, hi - (seg + 1) // 2))
            # up to 4 draws: keep the first crop whose RMS is at least -20 dB re the clip's
            # (speech, not a pause), else the most energetic one
            floor = 0.01 * float(np.mean(np.square(clean[lo:hi], dtype=np.float64)))
            best, best_energy = 0, -1.0
            for _ in range(4):
                start = int(rng.integers(first, last + 1))
                energy = float(np.mean(np.square(clean[start : start + seg], dtype=np.float64)))
                if energy > best_energy:
                    best, best_energy = start, energy
                if energy >= floor:
                    break
            clean = clean[best : best + seg]
        target = np.ascontiguousarray(clean, dtype=np.float32)
        dirty = self._load(self.dirty_files[int(rng.integers(0, len(self.dirty_files)))])
        dirty = dirty_segment(dirty, target.shape[-1], rng, self.short_dirty)
        gain = float(rng.uniform(*self.gain_range))
        signals = {"mixture": target + gain * dirty, "target": target}
        peak_guard(signals, "mixture", self.peak)
        stem = path.relative_to(path.parents[1]).with_suffix("").as_posix()  # <set>/<stem>
        rep = index // len(self.clean_files)
        item_id = f"{self.speaker}/{stem.split('/', 1)[1]}" + (f"_r{rep}" if rep else "")
        return {
            "mixture": signals["mixture"].astype(np.float32)[None],
            "target": signals["target"].astype(np.float32),
            "id": item_id,
        }


def _as_list(value) -> list[Path]:
    if value is None:
        return []
    if isinstance(value, (str, Path)):
        return [Path(value)]
    return [Path(v) for v in value]
