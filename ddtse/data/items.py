"""The one item record of the toolkit, and the generic listers that make it.

Every way of naming work becomes a list of ``Item``: a CSV/TSV list, a folder, folders of
references with side folders, or one mixture/enrollment pair (here), a Libri2Mix split
(``ddtse.data.librimix.items_from_librimix``, from its metadata, never a training dataset) and a
WSJ0-2mix-style extraction list (``ddtse.data.lists.items_from_extraction_list``). Each lister
registers itself in ``ddtse.registry.SOURCES`` (``pair``, ``folder``, ``list``, ``folders`` here),
which ``ddtse.data.sources`` (``--source NAME --source_opt KEY=VALUE``) reads for infer, score,
report and evaluate. The datasets, inference (``ddtse.inference``), scoring (``ddtse.scoring``) and
the report read the same fields.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ddtse.errors import DdtseError
from ddtse.registry import SOURCES


@dataclass
class Item:
    """One target-speaker extraction item.

    ``id``: relative path without extension (``s1/<mixture_ID>`` for Libri2Mix); it names the
    output ``<out_dir>/<id>.wav``. ``mixture`` is None for an extraction-list item, whose mixture
    is rendered from ``reference`` and ``interferer`` at ``snrs`` (dB). ``reference`` is the
    target's clean source and ``interferer`` the other speaker's, where known; ``group`` a
    category such as FF/MM/FM; ``estimate`` the extracted file (scoring); ``embedding`` a file of
    a pre-computed speaker embedding (optional); ``problem`` why the item is unusable before any
    file is read (a list row without a mixture), reported, not fatal.
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
    embedding: Path | None = None  # a pre-computed speaker embedding (.npy) for models that read one


@SOURCES.register("pair")
def items_from_pair(mixture: str | Path, enrollment: str | Path | None = None,
                   item_id: str | None = None) -> list[Item]:
    """One mixture (and its enrollment) as a one-item list; the id defaults to the mixture's file
    name without extension."""
    mixture = Path(mixture)
    return [Item(item_id or mixture.with_suffix("").name, mixture, Path(enrollment) if enrollment else None)]


@SOURCES.register("folder")
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


LIST_COLUMNS = ("id", "mixture", "enrollment", "reference", "interferer", "group", "embedding")


@SOURCES.register("list")
def items_from_list(path: str | Path) -> list[Item]:
    """A CSV/TSV list with a header holding ``id`` and ``mixture`` and optionally ``enrollment``,
    ``reference``, ``interferer``, ``group``, ``embedding`` (a speaker embedding .npy) columns.

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
                          get("group", "") or None, problem=problem, embedding=resolve(get("embedding", ""))))
    return items


def audio_index(root: str | Path) -> dict[str, Path]:
    """{relative path without extension: file} of every audio file below ``root``."""
    from ddtse.audio.io import find_audio_files

    root = Path(root)
    return {p.relative_to(root).with_suffix("").as_posix(): p for p in find_audio_files(root)}


def unique_by_name(index: dict[str, Path]) -> dict[str, Path]:
    """The entries of ``index`` whose file name (last id component) occurs once, keyed by that name."""
    counts: dict[str, int] = {}
    for key in index:
        counts[Path(key).name] = counts.get(Path(key).name, 0) + 1
    return {Path(k).name: p for k, p in index.items() if counts[Path(k).name] == 1}


def require_dir(path: str | Path, what: str) -> Path:
    """``path`` as a Path; DdtseError when it is not a folder."""
    path = Path(path)
    if not path.is_dir():
        raise DdtseError(f"{what} directory not found: {path}")
    return path


class FolderMatcher:
    """Files of a folder found by an item id: by relative path, then by unique file name."""

    def __init__(self, root, what: str):
        self.root, self.what = require_dir(root, what), what
        self.index = audio_index(self.root)
        self.by_name = unique_by_name(self.index)

    def find(self, key: str) -> Path:
        path = self.index.get(key) or self.by_name.get(Path(key).name)
        if path is None:
            raise DdtseError(f"no {self.what} file for '{key}' under {self.root}")
        return path


@SOURCES.register("folders")
def items_from_folders(gt_dir: str | Path, mix_dir: str | Path | None = None,
                       interferer_dir: str | Path | None = None, enroll_dir: str | Path | None = None) -> list[Item]:
    """One item per reference file below ``gt_dir`` (ids mirror its tree), with the mixture,
    interferer and enrollment of the same relative path (or unique file name) in the side folders."""
    gt_dir = require_dir(gt_dir, "reference")
    refs = audio_index(gt_dir)
    if not refs:
        raise DdtseError(f"no audio files (.wav/.flac/.ogg) under the reference directory {gt_dir}")
    side = {name: FolderMatcher(root, name) for name, root in
            (("mixture", mix_dir), ("interferer", interferer_dir), ("enrollment", enroll_dir)) if root is not None}
    return [Item(key, reference=ref, **{name: m.find(key) for name, m in side.items()}) for key, ref in refs.items()]
