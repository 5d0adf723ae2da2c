"""A data format added from outside the package, in this one module: a JSON-lines manifest
(one object per line: id, mixture, enrollment and optionally reference, interferer; relative paths
are relative to the manifest), registered as the item source ``jsonl``.

Importing this module is all it takes: infer, score, report and evaluate then accept
``--source jsonl --source_opt path=items.jsonl`` (tests/data/test_sources.py)."""
from __future__ import annotations

import json
from pathlib import Path

from ddtse.data.items import Item
from ddtse.errors import DdtseError
from ddtse.registry import SOURCES


@SOURCES.register("jsonl")
def items_from_jsonl(path: str | Path) -> list[Item]:
    """The items of a JSON-lines manifest."""
    path = Path(path)
    if not path.is_file():
        raise DdtseError(f"manifest not found: {path}")
    items = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise DdtseError(f"{path}:{n}: not a JSON object ({exc})") from exc

        def file(key):
            return path.parent / row[key] if row.get(key) else None

        items.append(Item(str(row["id"]), file("mixture"), file("enrollment"), file("reference"), file("interferer")))
    return items
