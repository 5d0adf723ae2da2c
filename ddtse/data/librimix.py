"""Libri2Mix for target speech extraction: one item per (mixture, target speaker).

Reads a tree as the official LibriMix generator writes it::

    <root>/wav{8k,16k}/{min,max}/<split>/{mix_clean,mix_both,mix_single,s1,s2,noise}/<mixture_ID>.wav
    <root>/wav{8k,16k}/{min,max}/metadata/mixture_<split>_<type>.csv

Item ids are ``s<k>/<mixture_ID>`` (k = 1, 2); the reference of an item is
``<split_dir>/s<k>/<mixture_ID>.wav``. Enrollment: dev/test (``train=False``) from a SpeakerBeam
map ``mixture_ID target_utt_ID s<j>/<other_mixture_ID>`` (default ``<split_dir>/map_mixture2enrollment``)
or WeSep ``spk{1,2}.enroll``; training draws, per access, another utterance of the same speaker
from the split's sources.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ddtse.data.base import (
    ExtractionDataset,
    file_rate,
    fit_length,
    item_rng,
    random_window,
    read_csv_rows,
    read_segment,
    sex_group,
    speaker_of,
)
from ddtse.data.items import Item
from ddtse.errors import DdtseError
from ddtse.registry import DATASETS, SOURCES

MIXTURE_TYPES = ("mix_clean", "mix_both", "mix_single")
SOURCE_COLUMNS = {"mix_clean": 2, "mix_both": 2, "mix_single": 1}
MAP_NAME = "map_mixture2enrollment"


@dataclass
class LibriMixRecord:
    """One Libri2Mix mixture with resolved paths; ``length`` in samples at the tree's rate."""

    mixture_id: str
    mixture_path: str
    source_paths: list[str]
    noise_path: str | None
    length: int

    @property
    def utterances(self) -> list[str]:
        return self.mixture_id.split("_")


def rate_dir_name(sample_rate: int) -> str:
    """``wav16k`` for 16000 Hz."""
    return f"wav{int(sample_rate) // 1000}k"


def locate_split_dir(root: str | Path, split: str, sample_rate: int, mode: str = "min",
                     allow_resample: bool = True) -> Path:
    """``<root>/wav<rate>k/<mode>/<split>``; another rate's folder is used when resampling is allowed.

    ``root`` may also be the rate folder's parent's parent already pointing at ``<mode>``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DdtseError(f"Libri2Mix root not found: {root}")
    wanted = root / rate_dir_name(sample_rate) / mode / split
    if wanted.is_dir():
        return wanted
    if (root / split).is_dir():  # root already is <rate>/<mode>
        return root / split
    others = sorted(p for p in root.glob(f"wav*k/{mode}/{split}") if p.is_dir())
    if others and allow_resample:
        return others[0]
    if others:
        raise DdtseError(
            f"{wanted} does not exist; {others[0]} does but is at another rate (set resample: true to use it)"
        )
    raise DdtseError(f"Libri2Mix split folder not found: {wanted}")


def metadata_csv_path(split_dir: str | Path, mixture_type: str) -> Path:
    """The generator's metadata CSV of a split: ``<split_dir>/../metadata/mixture_<split>_<type>.csv``."""
    split_dir = Path(split_dir)
    return split_dir.parent / "metadata" / f"mixture_{split_dir.name}_{mixture_type}.csv"


def _inside_tree(value: str, split_dir: Path) -> Path:
    """Where a metadata path lives inside this tree: the part after ``<split>/`` (else the parent
    folder and file name, ``mix_both/<mixture_ID>.wav``) below ``split_dir``."""
    parts = [p for p in value.replace("\\", "/").split("/") if p]
    head = parts[:-1]
    if split_dir.name in head:
        rest = parts[len(head) - head[::-1].index(split_dir.name):]
    else:
        rest = parts[-2:]
    return split_dir.joinpath(*rest)


def _resolve_column(values: list[str], split_dir: Path, csv_dir: Path, column: str) -> list[str]:
    """Resolve a metadata column inside the tree, as the README promises: each path's part after
    ``<split>/`` (or its folder and file name) below ``split_dir``, so a moved or copied tree reads
    its own files even while the original (named in the CSV) still exists. Only when the tree has no
    such file is the path used as written (absolute, or relative to the CSV's folder). Decided on the
    first row; single missing files are not checked here (reading names them; the prepare script
    lists them)."""
    if not values:
        return values
    first = values[0]
    if _inside_tree(first, split_dir).is_file():
        return [str(_inside_tree(v, split_dir)) for v in values]
    if not os.path.isabs(first):
        if (csv_dir / first).exists():
            return [str(csv_dir / v) for v in values]
    elif os.path.exists(first):
        return values
    folder = _inside_tree(first, split_dir).parent
    if not folder.is_dir():
        raise DdtseError(f"{column} '{first}' exists neither as written nor inside the tree ({folder} is missing)")
    return [str(_inside_tree(v, split_dir)) for v in values]


def librimix_split_paths(split_dir: str | Path, mixture_type: str = "mix_both",
                         metadata_csv: str | Path | None = None) -> list[LibriMixRecord]:
    """The mixtures of a split with paths resolved inside ``split_dir`` (``<root>/wav16k/min/dev``).

    Reads ``metadata_csv`` (default: the generator's CSV of the split); without any CSV, lists
    ``<split_dir>/<mixture_type>/*.wav`` and reads lengths from the headers.
    """
    split_dir = Path(split_dir)
    if mixture_type not in MIXTURE_TYPES:
        raise DdtseError(f"mixture_type must be one of {', '.join(MIXTURE_TYPES)}, got '{mixture_type}'")
    n_sources = SOURCE_COLUMNS[mixture_type]
    source_cols = [f"source_{k}_path" for k in range(1, n_sources + 1)]
    csv_path = Path(metadata_csv) if metadata_csv else metadata_csv_path(split_dir, mixture_type)
    if not csv_path.is_file():
        if metadata_csv:
            raise DdtseError(f"metadata CSV not found: {csv_path}")
        return _scan_split(split_dir, mixture_type, n_sources, csv_path)
    required = ["mixture_ID", "mixture_path", *source_cols, "length"]
    if mixture_type != "mix_clean":
        required.insert(-1, "noise_path")
    rows = read_csv_rows(csv_path, required, what="metadata CSV")
    if not rows:
        raise DdtseError(f"metadata CSV has no rows: {csv_path}")
    columns = {c: [r[c] for r in rows] for c in ["mixture_path", *source_cols]
               + (["noise_path"] if "noise_path" in required else [])}
    for column, values in columns.items():
        columns[column] = _resolve_column(values, split_dir, csv_path.parent, column)
    records = []
    for i, row in enumerate(rows):
        try:
            length = int(float(row["length"]))
        except ValueError as exc:
            raise DdtseError(f"{csv_path}: bad length {row['length']!r} for {row['mixture_ID']}") from exc
        records.append(LibriMixRecord(
            mixture_id=row["mixture_ID"],
            mixture_path=columns["mixture_path"][i],
            source_paths=[columns[c][i] for c in source_cols],
            noise_path=columns["noise_path"][i] if "noise_path" in columns else None,
            length=length,
        ))
    return records


def _scan_split(split_dir: Path, mixture_type: str, n_sources: int, csv_path: Path) -> list[LibriMixRecord]:
    import soundfile as sf

    mix_dir = split_dir / mixture_type
    files = sorted(glob.glob(str(mix_dir / "*.wav")))
    if not files:
        raise DdtseError(f"no metadata CSV ({csv_path}) and no mixtures in {mix_dir}")
    records = []
    for path in files:
        mixture_id = Path(path).stem
        records.append(LibriMixRecord(
            mixture_id=mixture_id,
            mixture_path=path,
            source_paths=[str(split_dir / f"s{k}" / f"{mixture_id}.wav") for k in range(1, n_sources + 1)],
            noise_path=str(split_dir / "noise" / f"{mixture_id}.wav") if mixture_type != "mix_clean" else None,
            length=int(sf.info(path).frames),
        ))
    return records


# ----------------------------------------------------------------------------- enrollment maps
def read_enrollment_map(source: str | Path | list) -> dict[tuple[str, int], tuple[int, str]]:
    """Parse enrollment maps: ``(mixture_ID, k) -> (j, other_mixture_ID)``.

    Accepts a SpeakerBeam ``map_mixture2enrollment`` (``mixID targetUttID s<j>/<otherMixID>``), a
    WeSep ``spk<k>.enroll`` file (``mixID s<j>/<otherMixID>.wav``), a folder holding either, or a
    list of such files.
    """
    if isinstance(source, (list, tuple)):
        out: dict = {}
        for item in source:
            out.update(read_enrollment_map(item))
        return out
    source = Path(source)
    if source.is_dir():
        if (source / MAP_NAME).is_file():
            return read_enrollment_map(source / MAP_NAME)
        wesep = sorted(source.glob("spk*.enroll"))
        if not wesep:
            raise DdtseError(f"no {MAP_NAME} or spk1.enroll/spk2.enroll in {source}")
        return read_enrollment_map(wesep)
    if not source.is_file():
        raise DdtseError(f"enrollment map not found: {source}")
    wesep_k = None
    if source.suffix == ".enroll":
        stem = source.stem
        if not (stem.startswith("spk") and stem[3:].isdigit()):
            raise DdtseError(f"WeSep enrollment file must be named spk1.enroll or spk2.enroll: {source}")
        wesep_k = int(stem[3:])
    entries: dict[tuple[str, int], tuple[int, str]] = {}
    for lineno, line in enumerate(source.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        where = f"{source}:{lineno}"
        if wesep_k is not None:
            if len(parts) != 2:
                raise DdtseError(f"{where}: expected 'mixID s<j>/<mixID>.wav', got {line!r}")
            mixture_id, enrollment = parts
            k = wesep_k
        else:
            if len(parts) != 3:
                raise DdtseError(f"{where}: expected 'mixture_ID target_utt_ID s<j>/<mixture_ID>', got {line!r}")
            mixture_id, target_utt, enrollment = parts
            utts = mixture_id.split("_")
            if target_utt not in utts:
                raise DdtseError(f"{where}: target {target_utt} is not part of mixture {mixture_id}")
            k = utts.index(target_utt) + 1
        j, other = _parse_enrollment_ref(enrollment, where)
        entries[(mixture_id, k)] = (j, other)
    if not entries:
        raise DdtseError(f"enrollment map is empty: {source}")
    return entries


def _parse_enrollment_ref(text: str, where: str) -> tuple[int, str]:
    head, _, tail = text.partition("/")
    if not (head.startswith("s") and head[1:].isdigit() and tail):
        raise DdtseError(f"{where}: enrollment must look like s<j>/<mixture_ID>, got {text!r}")
    if tail.endswith(".wav"):
        tail = tail[:-4]
    return int(head[1:]), tail


def enrollment_problem(mixture_id: str, k: int, j: int, other: str) -> str | None:
    """Why an enrollment entry is wrong (different speaker, same utterance, bad index), or None."""
    utts, other_utts = mixture_id.split("_"), other.split("_")
    if not 1 <= k <= len(utts) or not 1 <= j <= len(other_utts):
        return f"{mixture_id} s{k} -> s{j}/{other}: source index out of range"
    target, enrol = utts[k - 1], other_utts[j - 1]
    if target == enrol:
        return f"{mixture_id} s{k}: enrollment s{j}/{other} is the target utterance itself"
    if speaker_of(target) != speaker_of(enrol):
        return f"{mixture_id} s{k}: enrollment s{j}/{other} is speaker {speaker_of(enrol)}, not {speaker_of(target)}"
    return None


def make_enrollment_map(records: list[LibriMixRecord], seed: int = 0) -> tuple[list[str], list[str]]:
    """SpeakerBeam-format map lines for every (mixture, target): another mixture of the split, same
    speaker, different utterance, drawn with ``seed``. Returns (lines, problems)."""
    occurrences: dict[str, list[tuple[str, int, str]]] = {}
    for record in records:
        for j, utt in enumerate(record.utterances[: len(record.source_paths)], 1):
            occurrences.setdefault(speaker_of(utt), []).append((record.mixture_id, j, utt))
    rng = np.random.default_rng(seed)
    lines, problems = [], []
    for record in records:
        for k, utt in enumerate(record.utterances[: len(record.source_paths)], 1):
            candidates = [(m, j) for m, j, u in occurrences[speaker_of(utt)]
                          if u != utt and m != record.mixture_id]
            if not candidates:
                problems.append(f"{record.mixture_id} s{k}: speaker {speaker_of(utt)} has no other utterance in the split")
                continue
            other, j = candidates[int(rng.integers(len(candidates)))]
            lines.append(f"{record.mixture_id} {utt} s{j}/{other}")
    return lines, problems


def find_info_csv(split_dir: str | Path) -> Path | None:
    """The generator's speaker info CSV of a split in ``<split_dir>/../metadata`` (or None)."""
    split_dir = Path(split_dir)
    meta = split_dir.parent / "metadata"
    split = split_dir.name
    names = [f"libri2mix_{split}-clean_info.csv", f"libri2mix_{split}_info.csv"]
    if split.startswith("train-"):
        names.insert(0, f"libri2mix_train-clean-{split.split('-', 1)[1]}_info.csv")
    for name in names:
        if (meta / name).is_file():
            return meta / name
    return None


def read_groups(info_csv: str | Path) -> dict[str, str]:
    """mixture_ID -> FF/MM/FM from an info CSV (speaker_1_sex, speaker_2_sex)."""
    rows = read_csv_rows(info_csv, ["mixture_ID", "speaker_1_sex", "speaker_2_sex"], what="info CSV")
    return {r["mixture_ID"]: sex_group(r["speaker_1_sex"], r["speaker_2_sex"]) for r in rows}


# ----------------------------------------------------------------------------- dataset
@DATASETS.register("libri2mix")
class Libri2MixDataset(ExtractionDataset):
    """Libri2Mix TSE items ``s<k>/<mixture_ID>`` (see module docstring).

    Options: ``root`` + ``split`` (+ ``mode``) or ``split_dir``; ``mixture_type`` (mix_both,
    mix_clean, mix_single); ``metadata_csv``, ``enrollment_map``, ``info_csv`` (defaults inside the
    tree, or in ``lists_dir/<split>/`` written by data/prepare_libri2mix.py); ``segment_seconds``
    (training crop, zero-padded), ``enrollment_seconds`` (None = full), ``min_enrollment_seconds``,
    ``resample``, ``embedding_map``, ``max_items`` (first N items, for quick runs).
    """

    supports_absent_target = True  # the mixture is the sum of its (scaled) sources

    def __init__(
        self,
        *,
        sample_rate: int,
        seed: int = 0,
        train: bool = False,
        root: str | None = None,
        split: str | None = None,
        mode: str = "min",
        split_dir: str | None = None,
        mixture_type: str = "mix_both",
        metadata_csv: str | None = None,
        enrollment_map: str | list | None = None,
        info_csv: str | None = None,
        lists_dir: str | None = None,
        max_items: int | None = None,
        **common,
    ):
        super().__init__(sample_rate=sample_rate, seed=seed, train=train, **common)
        if split_dir is None:
            if root is None or split is None:
                raise DdtseError("libri2mix needs 'split_dir', or 'root' and 'split'")
            split_dir = locate_split_dir(root, split, sample_rate, mode, self.allow_resample)
        self.split_dir = Path(split_dir)
        if not self.split_dir.is_dir():
            raise DdtseError(f"Libri2Mix split folder not found: {self.split_dir}")
        split = self.split_dir.name
        if lists_dir is not None:
            lists = Path(lists_dir) / split
            metadata_csv = metadata_csv or str(lists / f"mixture_{split}_{mixture_type}.csv")
            if enrollment_map is None and (lists / MAP_NAME).is_file():
                enrollment_map = str(lists / MAP_NAME)
        self.mixture_type = mixture_type
        self.records = librimix_split_paths(self.split_dir, mixture_type, metadata_csv)
        self.file_sr = file_rate(self.records[0].mixture_path)
        if self.file_sr != self.sample_rate and not self.allow_resample:
            raise DdtseError(
                f"{self.records[0].mixture_path} is at {self.file_sr} Hz but {self.sample_rate} Hz is required (resample: false)"
            )
        # the listing inference and scoring use; evaluation items carry their enrollment from the map
        self.items = items_from_librimix(self.split_dir, mixture_type, enrollment_map, enrollments=not train,
                                         records=self.records, info_csv=info_csv)
        if max_items:
            self.items = self.items[: int(max_items)]
        self._source = {f"s{k}/{r.mixture_id}": (r, k) for r in self.records for k in range(1, len(r.source_paths) + 1)}
        self.min_enrol_file_frames = int(np.ceil(self.min_enrollment_seconds * self.file_sr))
        self._build_speaker_table()

    # -- init helpers
    def _build_speaker_table(self) -> None:
        """speaker -> arrays of (utterance, source path, length) over the split's sources."""
        table: dict[str, list[tuple[str, str, int]]] = {}
        for record in self.records:
            for utt, path in zip(record.utterances, record.source_paths):
                table.setdefault(speaker_of(utt), []).append((utt, path, record.length))
        self.speakers = sorted(table)
        self.speaker_index = {s: i for i, s in enumerate(self.speakers)}
        self.speaker_table = {
            s: (np.array([e[0] for e in entries]), [e[1] for e in entries], np.array([e[2] for e in entries]))
            for s, entries in table.items()
        }
        if self.train:
            usable = [it for it in self.items if len(self._train_candidates(*self._source[it.id])) > 0]
            if not usable:
                raise DdtseError(f"no training item of {self.split_dir} has another utterance of its speaker to enrol with")
            self.items = usable

    def _train_candidates(self, record: LibriMixRecord, k: int) -> np.ndarray:
        utt = record.utterances[k - 1]
        utts, _, lengths = self.speaker_table[speaker_of(utt)]
        return np.flatnonzero((utts != utt) & (lengths >= self.min_enrol_file_frames))

    # -- access
    def __len__(self) -> int:
        return len(self.items)

    def item_id(self, index: int) -> str:
        return self.items[index].id

    def _to_file_frames(self, frames: int | None) -> int | None:
        return None if frames is None else int(round(frames * self.file_sr / self.sample_rate))

    def _read(self, path: str, start: int = 0, frames: int | None = None) -> np.ndarray:
        return read_segment(path, start, frames, sample_rate=self.sample_rate, allow_resample=self.allow_resample)

    def make_item(self, index: int, epoch: int) -> dict:
        entry = self.items[index]
        record, k = self._source[entry.id]
        rng = item_rng(self.seed, index, epoch) if self.train else None
        start, frames = random_window(record.length, self._to_file_frames(self.segment), rng)
        mixture = self._read(str(entry.mixture), start, frames)
        target = self._read(str(entry.reference), start, frames)
        length = self.segment if self.segment else mixture.shape[-1]
        mixture, target = fit_length(mixture, length), fit_length(target, length)

        if self.train:
            utt = record.utterances[k - 1]
            utts, paths, lengths = self.speaker_table[speaker_of(utt)]
            choice = int(rng.choice(self._train_candidates(record, k)))
            enrol_path = paths[choice]
            e_start, e_frames = random_window(int(lengths[choice]), self._to_file_frames(self.enrollment_frames), rng)
            enrollment = self._read(enrol_path, e_start, e_frames)
        else:
            enrol_path = str(entry.enrollment)
            enrollment = self.crop_enrollment(self._read(enrol_path), None)
        self.check_enrollment(enrollment, enrol_path, entry.id)
        item = {"id": entry.id, "mixture": mixture, "target": target, "enrollment": enrollment,
                "enrollment_path": enrol_path}
        if not self.train and entry.interferer is not None:  # validation sees wrong-speaker outputs
            item["interferer"] = fit_length(self._read(str(entry.interferer), start, frames), length)
        if entry.group is not None:
            item["group"] = entry.group
        if self.train:
            item["speaker_index"] = self.speaker_index[speaker_of(record.utterances[k - 1])]
        return item


@SOURCES.register("librimix")
def items_from_librimix(split_dir: str | Path, mixture_type: str = "mix_both",
                        enrollment_map: str | Path | list | None = None, *, enrollments: bool = True,
                        metadata_csv: str | Path | None = None, info_csv: str | Path | None = None,
                        records: list | None = None) -> list[Item]:
    """One item per (mixture, target) of a Libri2Mix split, read from its metadata.

    Ids ``s<k>/<mixture_ID>`` in metadata order (mixture by mixture); ``reference`` is source k,
    ``interferer`` the other source (two-speaker mixtures), ``group`` FF/MM/FM from the
    speaker-sex info CSV when the tree has one. With ``enrollments``, each item's enrollment comes
    from a SpeakerBeam-style map (default: ``<split_dir>/map_mixture2enrollment``), as
    ``<split_dir>/s<j>/<other_mixture_ID>.wav``; a missing map or entry is a DdtseError.
    ``records``: the split's metadata rows when the caller has read them already.
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise DdtseError(f"Libri2Mix split folder not found: {split_dir}")
    if records is None:
        records = librimix_split_paths(split_dir, mixture_type, metadata_csv)
    info = Path(info_csv) if info_csv else find_info_csv(split_dir)
    groups = read_groups(info) if info else {}
    entries, source = None, None
    if enrollments:
        source = enrollment_map or split_dir / MAP_NAME
        if not enrollment_map and not Path(source).exists():
            raise DdtseError(f"no enrollment map for {split_dir} (looked for {source}); pass enrollment_map "
                             "(--enrollment_map) or write one with data/prepare_libri2mix.py")
        entries = read_enrollment_map(source)
    items = []
    for record in records:
        n = len(record.source_paths)
        for k in range(1, n + 1):
            item = Item(f"s{k}/{record.mixture_id}", Path(record.mixture_path),
                        reference=Path(record.source_paths[k - 1]),
                        interferer=Path(record.source_paths[2 - k]) if n == 2 else None,
                        group=groups.get(record.mixture_id))
            if entries is not None:
                entry = entries.get((record.mixture_id, k))
                if entry is None:
                    raise DdtseError(f"enrollment map {source} has no entry for {item.id}")
                j, other = entry
                problem = enrollment_problem(record.mixture_id, k, j, other)
                if problem:
                    raise DdtseError(f"enrollment map {source}: {problem}")
                item.enrollment = split_dir / f"s{j}" / f"{other}.wav"
            items.append(item)
    return items
