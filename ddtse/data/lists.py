"""Extraction lists in the WSJ0-2mix-extr format, read as a dataset, and generated from any pool.

One line per item: ``target SNR interferer -SNR enrollment`` with paths relative to a root
(e.g. ``wsj0/si_tr_s/40n/40na010x.wav 1.9857 wsj0/si_tr_s/01x/01xo031a.wav -1.9857 wsj0/.../40nc020o.wav``).
As in the WSJ0-2mix scripts, each source is normalised (here to unit RMS instead of the P.56
active level) and scaled by 10**(SNR/20), so the target-to-interferer ratio is SNR1 - SNR2 dB
(twice the listed SNR); ``mode: min`` truncates to the shorter source, ``max`` zero-pads; the
mixture is then scaled to a 0.9 peak. Item id: ``<target>_<SNR1>_<interferer>_<SNR2>`` (stems).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ddtse.data.items import Item
from ddtse.data.base import PEAK_GUARD, ExtractionDataset, fit_length, item_rng, random_window, read_segment
from ddtse.data.mixing import UtterancePool, build_pool
from ddtse.errors import DdtseError
from ddtse.registry import DATASETS, SOURCES


@SOURCES.register("extr_list")
def items_from_extraction_list(list_path: str | Path, root: str | Path | None = None) -> list[Item]:
    """A WSJ0-2mix-extr list (``target SNR interferer -SNR enrollment`` per line, see
    ddtse/data/lists.py): items with no mixture file, rendered from ``reference`` and
    ``interferer`` at ``snrs``. Relative paths are joined to ``root`` (default: the list's folder).
    Id: ``<target>_<SNR1>_<interferer>_<SNR2>`` (file stems)."""
    list_path = Path(list_path)
    if not list_path.is_file():
        raise DdtseError(f"extraction list not found: {list_path}")
    root = Path(root) if root is not None else list_path.parent
    items = []
    for lineno, line in enumerate(list_path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        where = f"{list_path}:{lineno}"
        if len(parts) != 5:
            raise DdtseError(f"{where}: expected 'target SNR interferer -SNR enrollment', got {len(parts)} fields")
        try:
            snr1, snr2 = float(parts[1]), float(parts[3])
        except ValueError as exc:
            raise DdtseError(f"{where}: SNR fields must be numbers, got {parts[1]!r} and {parts[3]!r}") from exc
        target, interferer, enrollment = (Path(p if os.path.isabs(p) else str(root / p))
                                          for p in (parts[0], parts[2], parts[4]))
        items.append(Item(f"{target.stem}_{snr1:g}_{interferer.stem}_{snr2:g}", None, enrollment,
                          reference=target, interferer=interferer, snrs=(snr1, snr2)))
    if not items:
        raise DdtseError(f"extraction list is empty: {list_path}")
    return items


def mix_at_snrs(target: np.ndarray, target_snr: float, interferer: np.ndarray, interferer_snr: float,
                mode: str = "min") -> tuple[np.ndarray, np.ndarray]:
    """WSJ0-2mix style: unit-RMS sources scaled by 10**(SNR/20), min/max length, 0.9 peak.
    Returns (mixture, target) of equal length."""
    def unit(x):
        return x / (np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12)

    t = unit(target) * 10 ** (target_snr / 20)
    i = unit(interferer) * 10 ** (interferer_snr / 20)
    length = min(len(t), len(i)) if mode == "min" else max(len(t), len(i))
    t, i = fit_length(t, length), fit_length(i, length)
    mixture = t + i
    gain = PEAK_GUARD / (np.max(np.abs(mixture)) + 1e-12)
    return (mixture * gain).astype(np.float32), (t * gain).astype(np.float32)


def is_rendered(item: Item) -> bool:
    """An extraction-list item: no mixture file, its mixture is made from reference and interferer."""
    return item.mixture is None and item.snrs is not None


def render_item(item: Item, mode: str = "min") -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(mixture, target, interferer) as ``mix_at_snrs`` mixes them (each (T,), scaled as in the
    mixture, so mixture = target + interferer), and the reference file's sample rate."""
    from ddtse.audio.io import audio_info, load_audio

    sr = audio_info(item.reference).sample_rate
    mixture, target = mix_at_snrs(load_audio(item.reference), item.snrs[0],
                                  load_audio(item.interferer, sr), item.snrs[1], mode)
    return mixture, target, (mixture - target).astype(np.float32), sr


@DATASETS.register("extr_list")
class ExtrListDataset(ExtractionDataset):
    """Items of a WSJ0-2mix-extr list mixed on the fly.

    Options: ``list`` (path), ``root`` (default: the list's folder), ``mode`` (min|max), plus the
    common ``segment_seconds``, ``enrollment_seconds``, ``min_enrollment_seconds``, ``resample``,
    ``embedding_map``. Training items carry ``speaker_index`` (speaker = the target's folder name,
    as in WSJ0 ``si_tr_s/<spk>/``).
    """

    supports_absent_target = True  # the mixture is the sum of its (scaled) sources

    def __init__(self, *, sample_rate: int, seed: int = 0, train: bool = False, list: str | None = None,
                 root: str | None = None, mode: str = "min", **common):
        super().__init__(sample_rate=sample_rate, seed=seed, train=train, **common)
        if list is None:
            raise DdtseError("extr_list needs 'list' (path to a target/SNR/interferer/-SNR/enrollment list)")
        if mode not in ("min", "max"):
            raise DdtseError(f"extr_list mode must be min or max, got '{mode}'")
        self.items = items_from_extraction_list(list, root)
        self.mode = mode
        self.speakers = sorted({e.reference.parent.name for e in self.items})
        self.speaker_index = {s: i for i, s in enumerate(self.speakers)}

    def __len__(self) -> int:
        return len(self.items)

    def _read(self, path: str) -> np.ndarray:
        return read_segment(path, sample_rate=self.sample_rate, allow_resample=self.allow_resample)

    def make_item(self, index: int, epoch: int) -> dict:
        entry = self.items[index]
        rng = item_rng(self.seed, index, epoch) if self.train else None
        (target_snr, interferer_snr) = entry.snrs
        mixture, target = mix_at_snrs(self._read(entry.reference), target_snr,
                                      self._read(entry.interferer), interferer_snr, self.mode)
        if self.segment:
            start, frames = random_window(len(mixture), self.segment, rng)
            mixture = fit_length(mixture[start:start + frames], self.segment)
            target = fit_length(target[start:start + frames], self.segment)
        enrollment = self._read(entry.enrollment)
        self.check_enrollment(enrollment, entry.enrollment, entry.id)
        item = {"id": entry.id, "mixture": mixture, "target": target,
                "enrollment": self.crop_enrollment(enrollment, rng)}
        if self.train:
            item["speaker_index"] = self.speaker_index[entry.reference.parent.name]
        return item


def make_extr_lines(pool: UtterancePool | dict | str, num_items: int, root: str | Path, seed: int = 0,
                    snr_max: float = 2.5) -> list[str]:
    """``num_items`` list lines from a speaker-labelled pool: random target, interferer of another
    speaker, SNR ~ U(0, snr_max) (written as +SNR / -SNR), enrollment = another utterance of the
    target speaker; paths relative to ``root``. Deterministic for a seed."""
    if int(num_items) < 1:
        raise DdtseError(f"the number of list lines must be at least 1, got {num_items} (--num)")
    pool = build_pool(pool)
    root = Path(root).resolve()
    rng = np.random.default_rng(seed)
    eligible = [s for s in pool.speakers if len(pool.by_speaker[s]) >= 2]
    if not eligible or len(pool.speakers) < 2:
        raise DdtseError(f"{pool.source}: need at least 2 speakers and one with 2 utterances")

    def rel(i: int) -> str:
        path = Path(pool.utterances[i].path).resolve()
        try:
            return str(path.relative_to(root))
        except ValueError as exc:
            raise DdtseError(f"{path} is not below the list root {root}") from exc

    lines = []
    for _ in range(int(num_items)):
        speaker = eligible[int(rng.integers(len(eligible)))]
        target, enrollment = rng.choice(pool.by_speaker[speaker], size=2, replace=False)
        others = [s for s in pool.speakers if s != speaker]
        other = pool.by_speaker[others[int(rng.integers(len(others)))]]
        interferer = other[int(rng.integers(len(other)))]
        snr = float(rng.uniform(0.0, snr_max))
        lines.append(f"{rel(target)} {snr:.4f} {rel(interferer)} {-snr:.4f} {rel(enrollment)}")
    return lines


def write_extr_list(path: str | Path, lines: list[str], overwrite: bool = True) -> Path:
    """Write list lines (one item per line), atomically; an existing file only with ``overwrite``."""
    path = Path(path)
    if path.is_dir():
        raise DdtseError(f"{path} is a folder; --output names the list file to write (e.g. {path / 'list.txt'})")
    if path.exists() and not overwrite:
        raise DdtseError(f"{path} exists; pass --overwrite to replace it")
    if not lines:
        raise DdtseError(f"no list lines to write to {path}")
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        if tmp.exists():
            tmp.unlink()
        raise DdtseError(f"cannot write {path} ({exc.strerror or exc})") from exc
    return path
