"""Open any supported event source as a stream of nurec event chunks.

Every reader of a foreign format (KM3NeT offline ROOT, GraphNeT SQLite/Parquet, Kaggle)
plugs in here, so ``nurec reconstruct``, ``nurec convert`` and the evaluation accept all
of them the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import awkward as ak

from nurec.io.parquet import MANIFEST, iter_dataset, read_metadata


def detect_format(path: str | os.PathLike) -> str:
    """Return the source format name of ``path`` ("nurec" for nurec datasets)."""
    path = Path(path)
    if path.is_dir() and (path / MANIFEST).exists():
        return "nurec"
    raise ValueError(f"{path}: cannot tell the data format; pass it explicitly (known: {', '.join(SOURCE_FORMATS)})")


def iter_events(path: str | os.PathLike, fmt: str | None = None, **options: Any) -> Iterator[ak.Array]:
    """Yield chunks of events in the nurec schema from a source of format ``fmt``."""
    fmt = fmt or detect_format(path)
    if fmt not in SOURCE_FORMATS:
        raise ValueError(f"unknown source format '{fmt}' (known: {', '.join(SOURCE_FORMATS)})")
    return SOURCE_FORMATS[fmt](path, **options)


def source_metadata(path: str | os.PathLike, fmt: str | None = None) -> dict[str, Any]:
    """Return dataset metadata of a source (detector, counts, ...), empty if it has none."""
    fmt = fmt or detect_format(path)
    return read_metadata(path) if fmt == "nurec" else {"source": fmt, "path": str(path)}


SOURCE_FORMATS = {
    "nurec": lambda path, **options: iter_dataset(path, **options),
}
