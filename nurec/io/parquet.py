"""Datasets on disk: directories of Parquet chunk files plus a manifest.

Layout of a dataset directory::

    part-00000.parquet   one chunk of events (about 10k), nurec event schema
    part-00001.parquet
    ...
    dataset.json         manifest: chunk files, event counts, metadata

The manifest is written last, so a directory without it is an incomplete dataset
(a crashed or interrupted writer) and readers refuse it. Every chunk file also
carries the dataset metadata in its Parquet key-value metadata under ``nurec``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from nurec.io.files import read_chunk_manifest, write_json_atomic
from nurec.io.schema import HIT_FIELDS, OPTIONAL_HIT_FIELDS, SchemaError, validate_events

MANIFEST = "dataset.json"
METADATA_KEY = b"nurec"
FORMAT_VERSION = 1
DEFAULT_CHUNK_EVENTS = 10_000


class DatasetError(RuntimeError):
    """A dataset directory cannot be read or written; the message names the path."""


def chunk_filename(index: int) -> str:
    """Return the file name of chunk number ``index``."""
    return f"part-{index:05d}.parquet"


def write_chunk(path: str | os.PathLike, events: ak.Array, metadata: dict[str, Any]) -> int:
    """Write one chunk of events to a Parquet file atomically; return the number of events."""
    validate_events(events)
    table = ak.to_arrow_table(events, extensionarray=False)
    meta = dict(table.schema.metadata or {})
    meta[METADATA_KEY] = json.dumps(metadata, sort_keys=True, default=_json_default).encode()
    table = table.replace_schema_metadata(meta)
    path = Path(path)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)
    return len(events)


class DatasetWriter:
    """Write a dataset chunk by chunk; the manifest appears only when all chunks are written.

    Use as a context manager. If the block raises, the files this writer created are
    removed (and the directory too, if the writer created it), so no partial dataset
    is left behind looking complete.
    """

    def __init__(self, out_dir: str | os.PathLike, metadata: dict[str, Any], overwrite: bool = False):
        self.out_dir = Path(out_dir)
        self.metadata = dict(metadata)
        self.overwrite = overwrite
        self._chunks: dict[int, int] = {}
        self._created_dir = False

    def __enter__(self) -> DatasetWriter:
        prepare_output_dir(self.out_dir, self.overwrite)
        self._created_dir = not any(self.out_dir.iterdir()) if self.out_dir.exists() else True
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            probe = self.out_dir / ".nurec-write-test.tmp"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            if self._created_dir:
                shutil.rmtree(self.out_dir, ignore_errors=True)
            raise DatasetError(f"{self.out_dir}: cannot write there ({err.strerror or err})") from err
        return self

    def write(self, events: ak.Array, index: int | None = None) -> None:
        """Write one chunk; ``index`` defaults to the next free chunk number."""
        if index is None:
            index = max(self._chunks, default=-1) + 1
        self._chunks[index] = write_chunk(self.out_dir / chunk_filename(index), events, self.metadata)

    def record_chunk(self, index: int, n_events: int) -> None:
        """Register a chunk file that another process already wrote into the directory."""
        self._chunks[index] = n_events

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self._write_manifest()
            return
        for index in self._chunks:
            (self.out_dir / chunk_filename(index)).unlink(missing_ok=True)
        for leftover in self.out_dir.glob("*.tmp"):
            leftover.unlink(missing_ok=True)
        if self._created_dir:
            shutil.rmtree(self.out_dir, ignore_errors=True)

    def _write_manifest(self) -> None:
        chunks = [
            {"file": chunk_filename(i), "events": n} for i, n in sorted(self._chunks.items())
        ]
        manifest = {
            "format": "nurec-events",
            "format_version": FORMAT_VERSION,
            "n_events": int(sum(n for n in self._chunks.values())),
            "chunks": chunks,
            "metadata": self.metadata,
        }
        write_json_atomic(self.out_dir / MANIFEST, manifest, default=_json_default)


def prepare_output_dir(out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Check that ``out_dir`` can receive a dataset; raise DatasetError saying why not."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DatasetError(f"{out_dir}: exists and is not a directory")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise DatasetError(f"{out_dir}: directory is not empty (use --overwrite to replace it)")
        if not (out_dir / MANIFEST).exists() and not any(out_dir.glob("part-*.parquet")):
            raise DatasetError(f"{out_dir}: not a nurec dataset, refusing to overwrite it")
        shutil.rmtree(out_dir)
    parent = out_dir if out_dir.exists() else _existing_parent(out_dir)
    if not os.access(parent, os.W_OK):
        raise DatasetError(f"{out_dir}: not writable ({parent} denies write access)")
    return out_dir


def _existing_parent(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def write_dataset(
    out_dir: str | os.PathLike,
    chunks: Iterable[ak.Array] | ak.Array,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
    chunk_events: int = DEFAULT_CHUNK_EVENTS,
) -> Path:
    """Write events (one array, or an iterable of arrays) as a dataset directory; return it."""
    if isinstance(chunks, ak.Array):
        array = chunks
        chunks = (array[i : i + chunk_events] for i in range(0, max(len(array), 1), chunk_events))
    with DatasetWriter(out_dir, metadata or {}, overwrite=overwrite) as writer:
        for chunk in chunks:
            writer.write(chunk)
    return Path(out_dir)


def read_manifest(data_dir: str | os.PathLike) -> dict[str, Any]:
    """Return the manifest of a dataset directory, or raise DatasetError naming the problem."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DatasetError(f"{data_dir}: no such dataset directory")
    return read_chunk_manifest(data_dir, MANIFEST, DatasetError, "the dataset is incomplete or not a nurec dataset")


def read_metadata(data_dir: str | os.PathLike) -> dict[str, Any]:
    """Return the dataset-level metadata (detector, simulator config, seed, counts).

    A geometry file kept inside the dataset is recorded by a name relative to the directory,
    so the dataset can be moved; it is returned as an absolute path, so every consumer
    hands ``metadata["detector"]["name"]`` to ``get_geometry`` as it is.
    """
    return _with_detector_path(read_manifest(data_dir)["metadata"], data_dir)


def _with_detector_path(metadata: dict[str, Any], data_dir: str | os.PathLike) -> dict[str, Any]:
    """Return ``metadata`` with a relative geometry-file detector name resolved against ``data_dir``.

    Built-in detector names (no file suffix) and absolute paths are left as they are.
    """
    from nurec.geometry import GEOMETRY_FILE_SUFFIXES  # nurec.geometry imports nurec.io

    detector = metadata.get("detector")
    name = detector.get("name") if isinstance(detector, dict) else None
    if not isinstance(name, str) or Path(name).is_absolute():
        return metadata
    if Path(name).suffix.lower() not in GEOMETRY_FILE_SUFFIXES:
        return metadata
    return {**metadata, "detector": {**detector, "name": str((Path(data_dir) / name).resolve())}}


def iter_dataset(
    data_dir: str | os.PathLike, columns: list[str] | None = None
) -> Iterator[ak.Array]:
    """Yield the dataset chunk by chunk, so memory stays bounded by one chunk."""
    data_dir = Path(data_dir)
    for chunk in read_manifest(data_dir)["chunks"]:
        path = data_dir / chunk["file"]
        try:
            events = ak.from_parquet(path, columns=columns)
        except Exception as err:  # pyarrow raises several types for corrupt files
            raise DatasetError(f"{path}: cannot read Parquet ({err})") from err
        if columns is None:
            validate_events(events)
        yield events


def read_dataset(data_dir: str | os.PathLike, columns: list[str] | None = None) -> ak.Array:
    """Return a whole dataset as one awkward array (use iter_dataset for large ones)."""
    chunks = list(iter_dataset(data_dir, columns=columns))
    if not chunks:
        raise DatasetError(f"{data_dir}: dataset has no chunks")
    return chunks[0] if len(chunks) == 1 else ak.concatenate(chunks)


def read_file_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Return the nurec metadata stored inside one Parquet chunk file."""
    meta = pq.read_schema(path).metadata or {}
    if METADATA_KEY not in meta:
        raise DatasetError(f"{path}: no nurec metadata in the Parquet file")
    return json.loads(meta[METADATA_KEY])


def events_from_hits_dataframe(
    hits: pd.DataFrame,
    event_column: str = "event_id",
    truth: pd.DataFrame | None = None,
    run_id: int = 0,
) -> ak.Array:
    """Build nurec events from a flat table of hits (one row per hit) and optional truth.

    ``hits`` needs ``event_column`` and the hit fields ``sensor_id, x, y, z, t, charge``;
    ``dir_x/y/z`` default to 0 (unknown PMT pointing). ``truth``, if given, is indexed by
    event id and must hold the truth fields. Events keep the order of first appearance.
    """
    for name in ["sensor_id", "x", "y", "z", "t", "charge", event_column]:
        if name not in hits.columns:
            raise SchemaError(f"hits table: missing column '{name}'")
    codes, event_ids = pd.factorize(hits[event_column], sort=False)
    order = np.argsort(codes, kind="stable")  # events in order of first appearance
    counts = np.bincount(codes, minlength=len(event_ids))
    columns = {}
    for name, dtype in {**HIT_FIELDS, **OPTIONAL_HIT_FIELDS}.items():
        if name in hits.columns:
            columns[name] = hits[name].to_numpy()[order].astype(dtype)
        elif name.startswith("dir_"):
            columns[name] = np.zeros(len(hits), dtype=dtype)
    event_ids = np.asarray(event_ids)
    hits_array = ak.unflatten(ak.zip(columns, depth_limit=1), counts)
    record = {
        "event_id": event_ids.astype(np.int64),
        "run_id": np.full(len(event_ids), run_id, dtype=np.int64),
        "hits": hits_array,
    }
    if truth is not None:
        missing = [f for f in ("energy", "dir_x", "dir_y", "dir_z") if f not in truth.columns]
        if missing:
            raise SchemaError(f"truth table: missing column '{missing[0]}'")
        aligned = truth.reindex(event_ids)
        if aligned.isna().all(axis=1).any():
            absent = event_ids[aligned.isna().all(axis=1).to_numpy()][0]
            raise SchemaError(f"truth table: no row for event_id {absent}")
        record["truth"] = ak.zip(
            {c: aligned[c].to_numpy() for c in aligned.columns}, depth_limit=1
        )
    return ak.zip(record, depth_limit=1)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in dataset metadata")


__all__ = [
    "DatasetError",
    "DatasetWriter",
    "events_from_hits_dataframe",
    "iter_dataset",
    "prepare_output_dir",
    "read_dataset",
    "read_file_metadata",
    "read_manifest",
    "read_metadata",
    "write_chunk",
    "write_dataset",
]
