"""Files written whole or not at all, and the JSON manifests that list chunk files.

Everything nurec writes goes to ``NAME.tmp`` first and is renamed into place, so a killed
run leaves either the old file or the new one. A directory of chunks (a dataset, a
prediction directory) is complete only once its manifest exists: it is written last and
checked when read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nurec.io.manifest import ManifestError, load_manifest_file, parse_chunk_manifest


def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename; return the path."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def write_json_atomic(path: str | os.PathLike, data: Any, default: Callable[[Any], Any] = str) -> Path:
    """Write ``data`` as indented JSON with sorted keys, atomically; return the path."""
    return write_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=default).encode())


def read_chunk_manifest(directory: str | os.PathLike, name: str, error: type[Exception] = ValueError,
                        missing_hint: str = "it is incomplete") -> dict[str, Any]:
    """Return the JSON manifest ``name`` of a chunk directory after checking its listed files.

    Each listed file must be named inside the directory and exist (the schema is
    ``nurec.io.manifest.parse_chunk_manifest``). Raises ``error`` with one line naming the
    directory or manifest and the problem.
    """
    directory = Path(directory)
    if not (directory / name).exists():
        raise error(f"{directory}: no {name}; {missing_hint}")
    try:
        manifest, entries = parse_chunk_manifest(load_manifest_file(directory, name), directory, name)
    except ManifestError as err:
        raise error(str(err)) from err
    for entry in entries:
        if not (directory / entry.file).exists():
            raise error(f"{directory}: chunk file {entry.file} listed in {name} is missing")
    return manifest
