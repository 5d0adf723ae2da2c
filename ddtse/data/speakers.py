"""Speaker-labelled single-speaker utterances for training and scoring a speaker encoder.

``speaker_utterances`` items are ``{id: utterance id, mixture: (T,) waveform, speaker_index, speaker}``
(the waveform travels as ``mixture`` so that :func:`ddtse.data.batch.collate_batch` pads it).
Sources (``sources:``, one or a list), every utterance read once:

- a folder ``<root>/<speaker>/.../<utt>.wav`` or a ``speaker,path`` CSV (a path, or ``{type: folder|csv, path}``);
- Libri2Mix clean sources s1/s2 of a split: ``{type: librimix, path: <split dir>}`` or
  ``{type: librimix, root: <Libri2Mix root>, split: dev, mode: min}`` (enrollments of the split are
  sources of its other mixtures, so they are included);
- an extraction list: ``{type: extr_list, list: <file>, root: <folder>}``: targets, interferers and
  enrollments, speaker = the file's folder name.

Training (``train: true``): a random ``segment_seconds`` crop (shorter utterances are repeated),
random gain ``gain_db``, and with probability ``noise_prob`` coloured noise (white to brown) at an
SNR drawn from ``snr_range``, and with probability ``babble_prob`` another speaker's utterance at
an SNR from ``babble_snr_range``. Evaluation: the first ``max_seconds`` of each utterance, no
augmentation. ``min_seconds`` drops shorter utterances; ``max_items`` keeps the first N (quick runs).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from ddtse.data.base import ExtractionDataset, item_rng, read_segment
from ddtse.data.mixing import Utterance, UtterancePool, build_pool, colored_noise, power
from ddtse.errors import DdtseError
from ddtse.registry import DATASETS


def _extr_list_pool(list_path: str, root: str | None) -> UtterancePool:
    from ddtse.data.lists import items_from_extraction_list

    seen, utterances = set(), []
    for entry in items_from_extraction_list(list_path, root):
        for path in (str(entry.reference), str(entry.interferer), str(entry.enrollment)):
            if path in seen:
                continue
            seen.add(path)
            try:
                info = sf.info(path)
            except Exception as exc:
                raise DdtseError(f"cannot read audio file {path}: {str(exc).splitlines()[0]}") from exc
            utterances.append(Utterance(Path(path).parent.name, path, int(info.frames), int(info.samplerate),
                                        Path(path).stem))
    return UtterancePool(utterances, str(list_path))


def source_pool(source, sample_rate: int, allow_resample: bool = True) -> UtterancePool:
    """One speaker-labelled pool from a source spec (see the module docstring)."""
    if isinstance(source, dict) and source.get("type") == "extr_list":
        if not source.get("list"):
            raise DdtseError(f"an extr_list source needs 'list': {source!r}")
        return _extr_list_pool(source["list"], source.get("root"))
    if isinstance(source, dict) and source.get("type") == "librimix" and "path" not in source:
        from ddtse.data.librimix import locate_split_dir

        if not source.get("root") or not source.get("split"):
            raise DdtseError(f"a librimix source needs 'path' (split folder) or 'root' and 'split': {source!r}")
        split_dir = locate_split_dir(source["root"], source["split"], sample_rate, source.get("mode", "min"),
                                     allow_resample)
        source = {**source, "path": str(split_dir)}
    return build_pool(source)


@DATASETS.register("speaker_utterances")
class SpeakerUtteranceDataset(ExtractionDataset):
    """Single-speaker utterances with speaker labels (see the module docstring)."""

    def __init__(self, *, sample_rate: int, seed: int = 0, train: bool = False, sources=None,
                 root: str | None = None, split: str | None = None, mode: str = "min",
                 segment_seconds: float | None = 2.0, max_seconds: float | None = None,
                 min_seconds: float = 0.0, gain_db: list | tuple = (-6.0, 6.0), noise_prob: float = 0.0,
                 snr_range: list | tuple = (5.0, 20.0), babble_prob: float = 0.0,
                 babble_snr_range: list | tuple = (10.0, 20.0), max_items: int | None = None,
                 resample: bool = True):
        super().__init__(sample_rate=sample_rate, seed=seed, train=train, segment_seconds=segment_seconds,
                         resample=resample)
        if sources is None and root is not None and split is not None:
            sources = [{"type": "librimix", "root": root, "split": split, "mode": mode}]
        if not sources:
            raise DdtseError("speaker_utterances needs 'sources' (or 'root' and 'split' of a Libri2Mix tree)")
        if isinstance(sources, (str, dict)):
            sources = [sources]
        if train and not self.segment:
            raise DdtseError("speaker_utterances: training needs segment_seconds > 0")
        for name, pair in (("gain_db", gain_db), ("snr_range", snr_range), ("babble_snr_range", babble_snr_range)):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2 or float(pair[0]) > float(pair[1]):
                raise DdtseError(f"speaker_utterances: {name} must be [low, high], got {pair!r}")
        self.gain_db = tuple(float(v) for v in gain_db)
        self.snr_range = tuple(float(v) for v in snr_range)
        self.babble_snr_range = tuple(float(v) for v in babble_snr_range)
        self.noise_prob, self.babble_prob = float(noise_prob), float(babble_prob)
        self.max_frames = int(round(max_seconds * self.sample_rate)) if max_seconds else None
        utterances: list[Utterance] = []
        seen: set[str] = set()
        for source in sources:
            for utt in source_pool(source, self.sample_rate, self.allow_resample).utterances:
                if utt.path in seen or utt.frames < min_seconds * utt.sample_rate:
                    continue
                seen.add(utt.path)
                utterances.append(utt)
        if max_items:
            utterances = utterances[: int(max_items)]
        if not utterances:
            raise DdtseError("speaker_utterances: no utterance left (check sources and min_seconds)")
        rates = {u.sample_rate for u in utterances}
        if not self.allow_resample and rates != {self.sample_rate}:
            raise DdtseError(f"utterances at {sorted(rates)} Hz but {self.sample_rate} Hz is required (resample: false)")
        self.utterances = utterances
        self.speakers = sorted({u.speaker for u in utterances})
        self.speaker_index = {s: i for i, s in enumerate(self.speakers)}
        self.labels = np.array([self.speaker_index[u.speaker] for u in utterances])
        ids = [u.utterance_id for u in utterances]
        if len(set(ids)) != len(ids):  # e.g. folders of different speakers with the same file names
            ids = [f"{u.speaker}/{u.utterance_id}" for u in utterances]
        if len(set(ids)) != len(ids):
            ids = [f"{u.speaker}/{Path(u.path).stem}-{k}" for k, u in enumerate(utterances)]
        self.ids = ids

    def __len__(self) -> int:
        return len(self.utterances)

    def utterance_speakers(self) -> dict[str, str]:
        """``{utterance id: speaker}`` of every item (for trial lists)."""
        return {i: u.speaker for i, u in zip(self.ids, self.utterances)}

    def _read(self, utt: Utterance, frames: int | None, rng: np.random.Generator | None) -> np.ndarray:
        """``frames`` samples (at the dataset rate) from a random start (rng) or the start; a shorter
        utterance is repeated to fill a training crop."""
        file_frames = None if frames is None else int(np.ceil(frames * utt.sample_rate / self.sample_rate))
        start = 0
        if rng is not None and file_frames is not None and utt.frames > file_frames:
            start = int(rng.integers(0, utt.frames - file_frames + 1))
        wav = read_segment(utt.path, start, file_frames, sample_rate=self.sample_rate,
                           allow_resample=self.allow_resample)
        if frames is None:
            return wav
        if rng is not None and 0 < wav.shape[-1] < frames:
            wav = np.tile(wav, int(np.ceil(frames / wav.shape[-1])))
        return wav[:frames]

    def make_item(self, index: int, epoch: int) -> dict:
        utt = self.utterances[index]
        item = {"id": self.ids[index], "speaker_index": int(self.labels[index]), "speaker": utt.speaker}
        if not self.train:
            item["mixture"] = self._read(utt, self.max_frames, None)
            return item
        rng = item_rng(self.seed, index, epoch)
        wav = self._read(utt, self.segment, rng).astype(np.float64)
        if wav.shape[-1] < self.segment:
            wav = np.pad(wav, (0, self.segment - wav.shape[-1]))
        speech_power = power(wav) + 1e-12
        if self.babble_prob > 0 and rng.random() < self.babble_prob and len(self.speakers) > 1:
            others = np.flatnonzero(self.labels != self.labels[index])
            other = self._read(self.utterances[int(rng.choice(others))], self.segment, rng).astype(np.float64)
            other = np.pad(other, (0, self.segment - other.shape[-1]))
            snr = rng.uniform(*self.babble_snr_range)
            wav = wav + other * np.sqrt(speech_power / (power(other) + 1e-12) / 10 ** (snr / 10))
        if self.noise_prob > 0 and rng.random() < self.noise_prob:
            noise = colored_noise(self.segment, float(rng.uniform(0.0, 2.0)), rng)
            snr = rng.uniform(*self.snr_range)
            wav = wav + noise * np.sqrt(speech_power / 10 ** (snr / 10))
        wav = wav * 10 ** (rng.uniform(*self.gain_db) / 20)
        peak = float(np.max(np.abs(wav))) if wav.size else 0.0
        if peak > 0.99:
            wav = wav * (0.99 / peak)
        item["mixture"] = wav.astype(np.float32)
        return item
