"""The one item record of the toolkit, and the listers that make it.

Every way of naming work (a Libri2Mix split, a CSV/TSV list, a folder, one mixture/enrollment
pair, a WSJ0-2mix-style extraction list) becomes a list of ``Item``; the datasets, inference
(``ddtse.inference``), scoring (``ddtse.scoring``) and the report read the same fields. Listing
a split reads its metadata (CSV or folder scan, enrollment map, speaker-sex info), never a
training dataset.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ddtse.errors import DdtseError


@dataclass
class Item:
    """One target-speaker extraction item.

    ``id``: relative path without extension (``s1/<mixture_ID>`` for Libri2Mix); it names the
    output ``<out_dir>/<id>.wav``. ``mixture`` is None for an extraction-list item, whose mixture
    is rendered from ``reference`` and ``interferer`` at ``snrs`` (dB). ``reference`` is the
    target's clean source and ``interferer`` the other speaker's, where known; ``group`` a
    category such as FF/MM/FM; ``estimate`` the extracted file (scoring); ``problem`` why the item
    is unusable before any file is read (a list row without a mixture), reported, not fatal.
    """

    id: str
    mixture: Path | None = None
    enrollment: Path | None = None
    reference: Path | None = None
    interferer: Path | None = None
    group: str | None = None
    estimate: Path | None = None
    snrs: tuple[float, float] | None = None
    problem: str | None = None


def item_from_pair(mixture: str | Path, enrollment: str | Path | None = None, item_id: str | None = None) -> Item:
    """One mixture (and its enrollment); the id defaults to the mixture's file name without extension."""
    mixture = Path(mixture)
    return Item(item_id or mixture.with_suffix("").name, mixture, Path(enrollment) if enrollment else None)


def items_from_folder(input_dir: str | Path, enrollment: str | Path | None = None) -> list[Item]:
    """Every audio file below ``input_dir`` (ids mirror the tree). One enrollment for all, or none."""
    from ddtse.audio.io import find_audio_files

    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise DdtseError(f"input folder not found: {input_dir}")
    files = find_audio_files(input_dir)
    if not files:
        raise DdtseError(f"no audio files (.wav/.flac/.ogg) under {input_dir}")
    enr = Path(enrollment) if enrollment else None
    return [Item(p.relative_to(input_dir).with_suffix("").as_posix(), p, enr) for p in files]


LIST_COLUMNS = ("id", "mixture", "enrollment", "reference", "interferer", "group")


def items_from_list(path: str | Path) -> list[Item]:
    """A CSV/TSV list with a header holding ``id`` and ``mixture`` and optionally ``enrollment``,
    ``reference``, ``interferer``, ``group`` columns.

    A UTF-8 byte-order mark is ignored, fields and column names are stripped of surrounding
    whitespace, blank (or whitespace-only) lines are skipped. A row without a mixture or id comes
    back as an item with a ``problem`` (reported, not fatal); relative paths are relative to the list.
    """
    path = Path(path)
    if not path.is_file():
        raise DdtseError(f"list file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DdtseError(f"list file is not UTF-8 text: {path} (byte {exc.start})") from exc
    except OSError as exc:
        raise DdtseError(f"cannot read list file {path}: {exc.strerror or exc}") from exc
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise DdtseError(f"list file is empty: {path}")
    dialect = "excel-tab" if "\t" in lines[0][1] else "excel"
    try:
        parsed = [(n, [f.strip() for f in next(csv.reader([line], dialect=dialect), [])]) for n, line in lines]
    except csv.Error as exc:
        raise DdtseError(f"cannot parse list file {path}: {exc}") from exc
    header, rows = parsed[0][1], parsed[1:]
    missing = [c for c in ("id", "mixture") if c not in header]
    if missing:
        raise DdtseError(f"{path} lacks column(s) {', '.join(missing)} (needs id, mixture[, enrollment])")
    rows = [(n, r) for n, r in rows if any(r)]
    if not rows:
        raise DdtseError(f"list file is empty: {path}")
    base = path.parent

    def resolve(p: str) -> Path | None:
        return (Path(p) if Path(p).is_absolute() else base / p) if p else None

    col = {name: header.index(name) for name in LIST_COLUMNS if name in header}
    items = []
    for n, row in rows:  # n: the line number in the file
        get = {name: row[i] if i < len(row) else "" for name, i in col.items()}.get
        item_id, mixture = get("id", ""), get("mixture", "")
        problem = None if mixture else f"list line {n} has no mixture"
        if not item_id:
            problem = f"list line {n} has an empty id"
        items.append(Item(item_id, resolve(mixture), resolve(get("enrollment", "")),
                          resolve(get("reference", "")), resolve(get("interferer", "")),
                          get("group", "") or None, problem=problem))
    return items


def items_from_librimix(split_dir: str | Path, mixture_type: str = "mix_both",
                        enroll_map: str | Path | list | None = None, *, enrollments: bool = True,
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
    from ddtse.data.librimix import (MAP_NAME, enrollment_problem, find_info_csv, librimix_split_paths,
                                     read_enrollment_map, read_groups)

    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise DdtseError(f"Libri2Mix split folder not found: {split_dir}")
    if records is None:
        records = librimix_split_paths(split_dir, mixture_type, metadata_csv)
    info = Path(info_csv) if info_csv else find_info_csv(split_dir)
    groups = read_groups(info) if info else {}
    entries, source = None, None
    if enrollments:
        source = enroll_map or split_dir / MAP_NAME
        if not enroll_map and not Path(source).exists():
            raise DdtseError(f"no enrollment map for {split_dir} (looked for {source}); pass enrollment_map "
                             "(--enroll_map) or write one with data/prepare_libri2mix.py")
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


def items_from_extraction_list(list_path: str | Path, root: str | Path | None = None) -> list[Item]:
    """A WSJ0-2mix-extr list (``target SNR interferer -SNR enrollment`` per line, see
    ddtse/data/lists.py): items with no mixture file, rendered from ``reference`` and
    ``interferer`` at ``snrs``. Relative paths are joined to ``root`` (default: the list's folder).
    Id: ``<target>_<SNR1>_<interferer>_<SNR2>`` (file stems)."""
    import os

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
