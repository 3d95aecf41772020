"""The schema of ``dataset.json``, the manifest of a nurec dataset directory, in one place.

Written by ``nurec.io.parquet.DatasetWriter`` last, after every chunk file::

    {
      "format": "nurec-events",
      "format_version": 2,
      "nurec_version": "0.1.0",                  optional: the writer's version
      "n_events": 20000,                         the sum of the chunks' events
      "chunks": [{"file": "part-00000.parquet", "events": 10000,
                  "sha256": "<64 hex digits>", "bytes": 51234567}, ...],
      "files": {"event_keys.parquet": {"sha256": "...", "bytes": 1234}},   optional: other files kept
      "metadata": {...}                          detector, simulator config, seed, ...
    }

Format version 1 (datasets written before checksums were recorded) has no ``sha256``,
``bytes`` or ``files``; it is still read, without verification. Unknown keys are
ignored, so a later minor addition does not break this reader; a newer
``format_version`` is refused. Every problem is one ``ManifestError`` line naming the key.
File names are checked to stay inside the dataset directory (``confined_path``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nurec.io.integrity import SHA256_PATTERN, FileDigest, confined_path
from nurec.version import __version__

MANIFEST = "dataset.json"
FORMAT = "nurec-events"
FORMAT_VERSION = 2
"""The version this nurec writes: 2 added per-file ``sha256`` and ``bytes``."""
OLDEST_FORMAT_VERSION = 1
CHECKSUM_FORMAT_VERSION = 2
"""The first format version whose manifest records checksums."""


class ManifestError(ValueError):
    """A manifest is malformed; the one-line message names the file and the key."""


@dataclass(frozen=True)
class ChunkEntry:
    """One chunk file of a dataset: its name inside the directory, its events and (v2) its digest."""

    file: str
    events: int
    digest: FileDigest | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "events": self.events, **(self.digest.to_dict() if self.digest else {})}


@dataclass(frozen=True)
class DatasetManifest:
    """A validated ``dataset.json``."""

    chunks: tuple[ChunkEntry, ...]
    metadata: dict[str, Any]
    files: dict[str, FileDigest] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    nurec_version: str | None = __version__

    @property
    def n_events(self) -> int:
        return sum(chunk.events for chunk in self.chunks)

    @property
    def has_checksums(self) -> bool:
        return self.format_version >= CHECKSUM_FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON object this manifest is written as (the shape ``read_manifest`` returns)."""
        data: dict[str, Any] = {
            "format": FORMAT, "format_version": self.format_version, "n_events": self.n_events,
            "chunks": [chunk.to_dict() for chunk in self.chunks], "metadata": self.metadata,
        }
        if self.nurec_version is not None:
            data["nurec_version"] = self.nurec_version
        if self.files:
            data["files"] = {name: digest.to_dict() for name, digest in sorted(self.files.items())}
        return data


def load_manifest_file(directory: str | os.PathLike, name: str = MANIFEST) -> Any:
    """Return the parsed JSON of ``directory/name``; ManifestError (one line) if it is not JSON."""
    path = Path(directory) / name
    try:
        text = path.read_bytes().decode("utf-8")
        return json.loads(text)
    except UnicodeDecodeError as err:
        raise ManifestError(f"{path}: not valid JSON (not UTF-8 text at byte {err.start})") from err
    except json.JSONDecodeError as err:
        raise ManifestError(f"{path}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno})") from err
    except RecursionError as err:
        raise ManifestError(f"{path}: not valid JSON (nested too deeply)") from err


def parse_dataset_manifest(data: Any, directory: str | os.PathLike) -> DatasetManifest:
    """Return ``data`` (the parsed ``dataset.json`` of ``directory``) validated as a DatasetManifest."""
    where = Path(directory) / MANIFEST
    check = _Checker(where, directory)
    top = check.object(data, "")
    fmt = check.key(top, "format", str, "")
    if fmt != FORMAT:
        check.fail("format", f"is {fmt!r}, not {FORMAT!r}")
    version = check.key(top, "format_version", int, "")
    if version > FORMAT_VERSION:
        check.fail("format_version", f"is {version}: written by a newer nurec (this one reads "
                                     f"{OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})")
    if version < OLDEST_FORMAT_VERSION:
        check.fail("format_version", f"is {version}, not a known version ({OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})")
    n_events = check.count(top, "n_events", "")
    chunk_list = check.key(top, "chunks", list, "")
    chunks, seen = [], set()
    for i, item in enumerate(chunk_list):
        prefix = f"chunks[{i}]."
        entry = check.object(item, f"chunks[{i}]")
        name = check.file_name(entry, "file", prefix)
        if name in seen:
            check.fail(f"{prefix}file", f"'{name}' is listed twice")
        seen.add(name)
        events = check.count(entry, "events", prefix)
        digest = check.digest(entry, prefix) if version >= CHECKSUM_FORMAT_VERSION else None
        chunks.append(ChunkEntry(name, events, digest))
    total = sum(chunk.events for chunk in chunks)
    if n_events != total:
        check.fail("n_events", f"is {n_events} but the chunks hold {total} events")
    metadata = check.key(top, "metadata", dict, "")
    files: dict[str, FileDigest] = {}
    if "files" in top and version >= CHECKSUM_FORMAT_VERSION:
        for name, item in check.key(top, "files", dict, "").items():
            prefix = f"files[{name!r}]."
            check.confined(name, f"files[{name!r}]")
            files[name] = check.digest(check.object(item, f"files[{name!r}]"), prefix)
    nurec_version = top.get("nurec_version")
    if nurec_version is not None and not isinstance(nurec_version, str):
        check.fail("nurec_version", f"must be a string, got {_type_name(nurec_version)}")
    return DatasetManifest(tuple(chunks), metadata, files, version, nurec_version)


def parse_chunk_manifest(data: Any, directory: str | os.PathLike, name: str,
                         count_key: str = "n_events") -> tuple[dict[str, Any], list[ChunkEntry]]:
    """Return (the object, its chunk entries) of another chunk-directory manifest (``predictions.json``).

    Checks what readers rely on: a JSON object whose ``chunks`` is a list of objects with a
    confined ``file``, a ``count_key`` count, and optionally ``sha256`` and ``bytes``.
    """
    check = _Checker(Path(directory) / name, directory)
    top = check.object(data, "")
    entries = []
    for i, item in enumerate(check.key(top, "chunks", list, "")):
        prefix = f"chunks[{i}]."
        entry = check.object(item, f"chunks[{i}]")
        file = check.file_name(entry, "file", prefix)
        count = check.count(entry, count_key, prefix)
        entries.append(ChunkEntry(file, count, check.digest(entry, prefix) if "sha256" in entry else None))
    return top, entries


class _Checker:
    """Typed look-ups into parsed JSON that raise ManifestError naming the manifest and the key."""

    def __init__(self, where: Path, directory: str | os.PathLike):
        self.where = where
        self.directory = directory

    def fail(self, key: str, problem: str) -> None:
        raise ManifestError(f"{self.where}: '{key}' {problem}")

    def object(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            if not key:
                raise ManifestError(f"{self.where}: must be a JSON object, got {_type_name(value)}")
            self.fail(key, f"must be an object, got {_type_name(value)}")
        return value

    def key(self, data: dict[str, Any], key: str, kind: type, prefix: str) -> Any:
        if key not in data:
            raise ManifestError(f"{self.where}: missing key '{prefix}{key}'")
        value = data[key]
        # bool is an int in Python, never in this schema.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(prefix + key, f"must be {_KIND_NAMES[kind]}, got {_type_name(value)}")
        return value

    def count(self, data: dict[str, Any], key: str, prefix: str) -> int:
        value = self.key(data, key, int, prefix)
        if value < 0:
            self.fail(prefix + key, f"must be 0 or more, got {value}")
        return value

    def file_name(self, data: dict[str, Any], key: str, prefix: str) -> str:
        name = self.key(data, key, str, prefix)
        self.confined(name, prefix + key)
        return name

    def confined(self, name: str, key: str) -> None:
        try:
            confined_path(self.directory, name)
        except ValueError as err:
            self.fail(key, str(err))

    def digest(self, data: dict[str, Any], prefix: str) -> FileDigest:
        sha256 = self.key(data, "sha256", str, prefix)
        if not SHA256_PATTERN.fullmatch(sha256):
            self.fail(prefix + "sha256", "must be 64 lower-case hex digits")
        return FileDigest(sha256, self.count(data, "bytes", prefix))


_KIND_NAMES = {str: "a string", int: "an integer", list: "a list", dict: "an object"}


def _type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


__all__ = [
    "CHECKSUM_FORMAT_VERSION",
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "ChunkEntry",
    "DatasetManifest",
    "ManifestError",
    "load_manifest_file",
    "parse_chunk_manifest",
    "parse_dataset_manifest",
]
