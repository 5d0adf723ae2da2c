"""Cut long clean recordings of a target speaker into training clips at silences.

Two modes, both on an RMS envelope (frames of ``hop_size``; window = min(min_interval, 4 hops),
centred; a frame is silent when its RMS < 10^(threshold/20)):

``openvpi`` (default): the algorithm of openvpi/audio-slicer ``slicer2.py``. Scanning left to
right, a silence of at least ``min_interval`` that ends at least ``min_length`` after the last
cut triggers a cut. In a silence no longer than ``max_sil_kept`` the cut falls at its
lowest-RMS frame; in a longer one the silence is removed except ``max_sil_kept`` on each side
(each edge at the lowest-RMS frame there). Leading silence longer than ``max_sil_kept`` and a
trailing silence of at least ``min_interval`` are trimmed the same way.

``target``: clips whose lengths fall in [``target_min``, ``target_max``] seconds (5-15 s by
default, what a per-speaker DPTNet trains on without running out of memory). Candidate cut
points are the silences of at least ``min_interval`` plus the start and end of the file. A
clip between candidates i < j runs from ``max(cut_i, silence_end_i - max_sil_kept)`` to
``min(cut_j, silence_start_j + max_sil_kept)`` (``cut`` = the silence's lowest-RMS frame), so
at most ``max_sil_kept`` of silence is kept at each edge and consecutive clips never overlap.
A dynamic programme over the candidates, ``best[j] = max(best[j-1], max_i best[i] +
speech(i, j))`` over clips with a legal length, chooses the set of non-overlapping clips that
covers the most speech frames (ties: fewer, longer clips come first from the scan order).
Speech that no legal clip can hold (a run longer than ``target_max`` without a usable silence,
or an island shorter than ``target_min``) is dropped and reported.

Both modes drop clips shorter than ``min_keep`` seconds ("too short") and clips without a
single non-silent frame ("all silence"), and report every drop with its time span.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ddtse.audio.io import (AUDIO_EXTENSIONS, ensure_writable_dir, find_audio_files, load_audio, save_audio,
                            write_text_atomic)
from ddtse.errors import DdtseError

import soundfile as sf


def rms_frames(samples: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """Centred RMS of (T,) every ``hop_length`` samples over ``frame_length`` (zero padding); (ceil(T/hop),)."""
    samples = np.asarray(samples, dtype=np.float64)
    pad = frame_length // 2
    padded = np.pad(samples, (pad, pad))
    csum = np.concatenate([[0.0], np.cumsum(padded**2)])
    n_frames = 1 + (padded.shape[0] - frame_length) // hop_length if padded.shape[0] >= frame_length else 1
    starts = np.arange(n_frames) * hop_length
    ends = np.minimum(starts + frame_length, padded.shape[0])
    power = (csum[ends] - csum[starts]) / frame_length
    return np.sqrt(np.maximum(power, 0.0))


@dataclass
class Clip:
    start: int  # samples
    end: int  # samples (exclusive)


@dataclass
class Dropped:
    start: int
    end: int
    reason: str


@dataclass
class SliceResult:
    clips: list[Clip] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)


class Slicer:
    """Silence-based slicer; times in milliseconds (openvpi defaults), ``threshold`` in dB.

    ``slice(wav (T,) or (C, T)) -> SliceResult`` with sample spans; ``mode`` "openvpi" or
    "target" (see the module docstring).
    """

    def __init__(
        self,
        sr: int,
        threshold: float = -40.0,
        min_length: float = 5000,
        min_interval: float = 300,
        hop_size: float = 20,
        max_sil_kept: float = 5000,
        *,
        mode: str = "openvpi",
        target_min: float = 5.0,
        target_max: float = 15.0,
        min_keep: float = 0.0,
    ):
        if not min_length >= min_interval >= hop_size:
            raise DdtseError(
                "slicer: need min_length >= min_interval >= hop_size "
                f"(got {min_length} ms, {min_interval} ms, {hop_size} ms)"
            )
        if hop_size <= 0:
            raise DdtseError(f"slicer: hop_size must be positive, got {hop_size} ms")
        if not max_sil_kept >= hop_size:
            raise DdtseError(f"slicer: need max_sil_kept >= hop_size (got {max_sil_kept} ms, {hop_size} ms)")
        if mode not in ("openvpi", "target"):
            raise DdtseError(f"slicer: mode must be 'openvpi' or 'target', got {mode!r}")
        if mode == "target" and not 0 < target_min <= target_max:
            raise DdtseError(f"slicer: need 0 < target_min <= target_max (got {target_min} s, {target_max} s)")
        self.sr = int(sr)
        self.mode = mode
        self.threshold = 10 ** (threshold / 20.0)
        interval = sr * min_interval / 1000
        self.hop = max(1, round(sr * hop_size / 1000))
        self.win = max(1, min(round(interval), 4 * self.hop))
        self.min_length = round(sr * min_length / 1000 / self.hop)
        self.min_interval = max(1, round(interval / self.hop))
        self.max_sil_kept = round(sr * max_sil_kept / 1000 / self.hop)
        self.target_min = round(target_min * sr / self.hop)
        self.target_max = round(target_max * sr / self.hop)
        self.min_keep = int(round(min_keep * sr))

    # --- public ---
    def slice(self, wav: np.ndarray) -> SliceResult:
        """Clips (sample spans) of ``wav`` and what was dropped, with reasons."""
        samples = wav.mean(axis=0) if wav.ndim > 1 else wav
        total = samples.shape[-1]
        rms = rms_frames(samples, self.win, self.hop)
        if not np.any(rms >= self.threshold):
            return SliceResult(dropped=[Dropped(0, total, "all silence")])
        if self.mode == "target":
            spans, dropped = self._target_spans(rms)
        else:
            spans, dropped = self._openvpi_spans(rms, total)
        result = SliceResult(dropped=[Dropped(*self._to_samples(a, b, total), r) for a, b, r in dropped])
        for a, b in spans:
            s, e = self._to_samples(a, b, total)
            if e <= s:
                continue
            if not np.any(rms[a:b] >= self.threshold):
                result.dropped.append(Dropped(s, e, "all silence"))
            elif e - s < self.min_keep:
                result.dropped.append(Dropped(s, e, f"too short (< {self.min_keep / self.sr:g} s)"))
            else:
                result.clips.append(Clip(s, e))
        result.dropped.sort(key=lambda d: d.start)
        return result

    def _to_samples(self, a: int, b: int, total: int) -> tuple[int, int]:
        return min(total, a * self.hop), min(total, b * self.hop)

    # --- openvpi/audio-slicer slicer2.py ---
    def _openvpi_spans(self, rms: np.ndarray, total: int):
        if (total + self.hop - 1) // self.hop <= self.min_length:
            return [(0, rms.shape[0])], []
        sil_tags: list[tuple[int, int]] = []
        silence_start = None
        clip_start = 0
        keep = self.max_sil_kept
        for i, value in enumerate(rms):
            if value < self.threshold:
                if silence_start is None:
                    silence_start = i
                continue
            if silence_start is None:
                continue
            is_leading_silence = silence_start == 0 and i > keep
            need_slice_middle = i - silence_start >= self.min_interval and i - clip_start >= self.min_length
            if not is_leading_silence and not need_slice_middle:
                silence_start = None
                continue
            if i - silence_start <= keep:
                pos = int(rms[silence_start : i + 1].argmin()) + silence_start
                sil_tags.append((0, pos) if silence_start == 0 else (pos, pos))
                clip_start = pos
            elif i - silence_start <= keep * 2:
                pos = int(rms[i - keep : silence_start + keep + 1].argmin()) + i - keep
                pos_l = int(rms[silence_start : silence_start + keep + 1].argmin()) + silence_start
                pos_r = int(rms[i - keep : i + 1].argmin()) + i - keep
                if silence_start == 0:
                    sil_tags.append((0, pos_r))
                    clip_start = pos_r
                else:
                    sil_tags.append((min(pos_l, pos), max(pos_r, pos)))
                    clip_start = max(pos_r, pos)
            else:
                pos_l = int(rms[silence_start : silence_start + keep + 1].argmin()) + silence_start
                pos_r = int(rms[i - keep : i + 1].argmin()) + i - keep
                sil_tags.append((0, pos_r) if silence_start == 0 else (pos_l, pos_r))
                clip_start = pos_r
            silence_start = None
        n = rms.shape[0]
        if silence_start is not None and n - silence_start >= self.min_interval:
            silence_end = min(n, silence_start + keep)
            pos = int(rms[silence_start : silence_end + 1].argmin()) + silence_start
            sil_tags.append((pos, n + 1))
        if not sil_tags:
            return [(0, n)], []
        spans, dropped = [], []
        if sil_tags[0][0] > 0:
            spans.append((0, sil_tags[0][0]))
        for (_, a), (b, _) in zip(sil_tags[:-1], sil_tags[1:]):
            spans.append((a, b))
        if sil_tags[-1][1] < n:
            spans.append((sil_tags[-1][1], n))
        # removed silence is reported too (so every sample is accounted for)
        for a, b in sil_tags:
            if b > a:
                dropped.append((a, min(b, n), "silence"))
        return spans, dropped

    # --- target-length mode ---
    def silences(self, rms: np.ndarray) -> list[tuple[int, int, int]]:
        """(start, end, lowest-RMS frame) of silent runs of at least ``min_interval`` frames."""
        silent = rms < self.threshold
        runs = []
        i, n = 0, len(silent)
        while i < n:
            if not silent[i]:
                i += 1
                continue
            j = i
            while j < n and silent[j]:
                j += 1
            if j - i >= self.min_interval or i == 0 or j == n:
                runs.append((i, j, int(rms[i:j].argmin()) + i))
            i = j
        return runs

    def _target_spans(self, rms: np.ndarray):
        n = rms.shape[0]
        speech = np.concatenate([[0], np.cumsum(rms >= self.threshold)])
        runs = self.silences(rms)
        # boundaries (silence start, silence end, cut frame): file start, inner silences, file end
        head = [(0, e, 0) for s, e, _ in runs if s == 0]
        tail = [(s, n, n) for s, e, _ in runs if e == n and s > 0]
        inner = [r for r in runs if r[0] > 0 and r[1] < n]
        cands = (head or [(0, 0, 0)]) + inner + (tail or [(n, n, n)])
        keep = self.max_sil_kept

        def start_of(i):  # a clip starting at boundary i keeps <= keep frames of its silence
            s, e, c = cands[i]
            return max(c, e - keep)

        def end_of(j):  # a clip ending at boundary j keeps <= keep frames of its silence
            s, e, c = cands[j]
            return min(c, s + keep)

        m = len(cands)
        best = [0] * m
        choice: list[tuple[int, int] | None] = [None] * m  # (i, j) clip ending at j, or None = skip
        for j in range(1, m):
            best[j], choice[j] = best[j - 1], None
            end = end_of(j)
            for i in range(j - 1, -1, -1):
                start = start_of(i)
                length = end - start
                if length > self.target_max:
                    break
                if length < self.target_min:
                    continue
                score = best[i] + int(speech[end] - speech[start])
                if score > best[j]:
                    best[j], choice[j] = score, (i, j)
        spans = []
        j = m - 1
        while j > 0:
            if choice[j] is None:
                j -= 1
            else:
                i, _ = choice[j]
                spans.append((start_of(i), end_of(j)))
                j = i
        spans.reverse()
        # report speech not covered by any clip
        covered = np.zeros(n, dtype=bool)
        for a, b in spans:
            covered[a:b] = True
        voiced = (rms >= self.threshold) & ~covered
        dropped = []
        for a, b in _runs(voiced):
            reason = (
                f"no clip of {self.target_min * self.hop / self.sr:g}-{self.target_max * self.hop / self.sr:g} s "
                "fits this speech between silences"
            )
            dropped.append((a, b, reason))
        return spans, dropped


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of the True runs of a boolean array."""
    if not mask.any():
        return []
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


_NUMBERED = re.compile(r"_\d{4,}$")


def slice_files(
    inputs: list[str | Path],
    out_dir: str | Path,
    slicer_kwargs: dict,
    *,
    overwrite: bool = False,
    subtype: str | None = None,
    log=print,
) -> dict:
    """Slice every audio file of ``inputs`` (files or folders) into ``out_dir/<rel>/<stem>_0001.wav``...

    Folders are searched recursively and their tree is mirrored. Existing numbered outputs of a
    stem are refused unless ``overwrite`` (then stale ones are removed). A bad input (missing,
    unreadable, empty, non-finite) is reported in one line and in ``<out_dir>/failed.txt`` and
    the others are still sliced; the summary's ``failed`` lists them. Returns a summary dict.
    """
    out_dir = Path(out_dir)
    jobs: list[tuple[Path, Path]] = []  # (file, output folder)
    failed: list[dict] = []

    def fail(path, reason: str) -> None:
        failed.append({"file": str(path), "reason": reason})
        log(f"failed: {reason}")

    for item in inputs:
        item = Path(item)
        if item.is_dir():
            files = find_audio_files(item)
            if not files:
                raise DdtseError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in {item}")
            jobs += [(f, out_dir / f.parent.relative_to(item)) for f in files]
        elif item.is_file():
            jobs.append((item, out_dir))
        elif len(inputs) > 1:
            fail(item, f"input not found: {item}")
        else:
            raise DdtseError(f"input not found: {item}")
    if not jobs:
        raise DdtseError("no input files to slice" + (f" ({len(failed)} not found)" if failed else ""))
    existing = []
    for path, folder in jobs:
        existing += _outputs_of(folder, path.stem)
    if existing and not overwrite:
        raise DdtseError(
            f"{len(existing)} output file(s) already exist, e.g. {existing[0]} (pass --overwrite to replace them)"
        )
    ensure_writable_dir(out_dir)
    summary = {"files": 0, "clips": 0, "clip_seconds": 0.0, "dropped": [], "failed": failed}
    for path, folder in jobs:
        try:
            wav = load_audio(path, multichannel=True)
        except DdtseError as exc:
            fail(path, str(exc))
            continue
        sr = sf.info(str(path)).samplerate
        kind = subtype or sf.info(str(path)).subtype
        if kind not in ("PCM_16", "FLOAT", "PCM_24"):
            kind = "PCM_16"
        result = Slicer(sr, **slicer_kwargs).slice(wav)
        for stale in _outputs_of(folder, path.stem):
            stale.unlink()
        for k, clip in enumerate(result.clips, 1):
            out = folder / f"{path.stem}_{k:04d}.wav"
            piece = wav[:, clip.start : clip.end]
            save_audio(out, piece[0] if piece.shape[0] == 1 else piece, sr, subtype=kind, overwrite=True)
        seconds = sum(c.end - c.start for c in result.clips) / sr
        log(f"{path}: {len(result.clips)} clip(s), {seconds:.1f} s kept of {wav.shape[-1] / sr:.1f} s")
        for d in result.dropped:
            if d.reason == "silence":
                continue
            log(f"  dropped {d.start / sr:8.2f}-{d.end / sr:8.2f} s: {d.reason}")
            summary["dropped"].append({"file": str(path), "start": d.start / sr, "end": d.end / sr, "reason": d.reason})
        summary["files"] += 1
        summary["clips"] += len(result.clips)
        summary["clip_seconds"] += seconds
    log(
        f"sliced {summary['files']} file(s) into {summary['clips']} clip(s) ({summary['clip_seconds']:.1f} s); "
        f"{len(summary['dropped'])} piece(s) dropped"
        + (f"; {len(failed)} input(s) failed (listed in {out_dir / 'failed.txt'})" if failed else "")
    )
    failed_txt = out_dir / "failed.txt"
    if failed:
        write_text_atomic(failed_txt, "".join(f"{f['file']}\t{f['reason']}\n" for f in failed))
    elif failed_txt.is_file():
        failed_txt.unlink()  # stale list from an earlier run
    return summary


def _outputs_of(folder: Path, stem: str) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.glob(f"{glob_escape(stem)}_*.wav") if _NUMBERED.search(p.stem) and p.stem.rsplit("_", 1)[0] == stem
    )


def glob_escape(text: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", text)
