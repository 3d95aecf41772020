"""Datasets on disk: directories of Parquet chunk files plus a manifest.

Layout of a dataset directory::

    part-00000.parquet   one chunk of events (about 10k), nurec event schema
    part-00001.parquet
    ...
    dataset.json         manifest: chunk files, event counts, metadata

The manifest is written last, so a directory without it is an incomplete dataset
(a crashed or interrupted writer) and readers refuse it. Every chunk file also
carries the dataset metadata in its Parquet key-value metadata under ``nurec``.

The manifest's schema is ``nurec.io.manifest``. It records each chunk's SHA-256 and size,
computed from the bytes as they are written; every read compares them before the chunk
is parsed, so a damaged chunk is a one-line DatasetError naming it, never changed events
(``nurec.io.integrity``). Other files kept in the directory (event keys, a geometry
table, a file's own reconstruction) are recorded under ``files`` and checked where read.
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
import pyarrow as pa
import pyarrow.parquet as pq

from nurec.io.files import write_atomic, write_json_atomic
from nurec.io.integrity import (
    FileDigest,
    confined_path,
    file_digest,
    file_problem,
    warn_unverified_once,
)
from nurec.io.manifest import (
    FORMAT_VERSION,
    MANIFEST,
    ChunkEntry,
    DatasetManifest,
    ManifestError,
    load_manifest_file,
    parse_dataset_manifest,
)
from nurec.io.schema import HIT_FIELDS, OPTIONAL_HIT_FIELDS, SchemaError, validate_events

METADATA_KEY = b"nurec"
DEFAULT_CHUNK_EVENTS = 10_000


class DatasetError(RuntimeError):
    """A dataset directory cannot be read or written; the message names the path."""


def chunk_filename(index: int) -> str:
    """Return the file name of chunk number ``index``."""
    return f"part-{index:05d}.parquet"


def write_chunk(path: str | os.PathLike, events: ak.Array, metadata: dict[str, Any]) -> ChunkEntry:
    """Write one chunk of events to a Parquet file atomically; return its manifest entry.

    The file is built in memory and hashed there, so the recorded digest is of exactly the
    bytes handed to the filesystem (and the file is not read back to hash it).
    """
    validate_events(events)
    table = ak.to_arrow_table(events, extensionarray=False)
    meta = dict(table.schema.metadata or {})
    meta[METADATA_KEY] = json.dumps(metadata, sort_keys=True, default=_json_default).encode()
    table = table.replace_schema_metadata(meta)
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer, compression="zstd")
    data = buffer.getvalue()
    path = write_atomic(path, data)
    return ChunkEntry(path.name, len(events), FileDigest.of_bytes(data))


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
        self._chunks: dict[int, ChunkEntry] = {}
        self._files: dict[str, FileDigest] = {}
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

    def record_chunk(self, index: int, n_events: int, digest: FileDigest | None = None) -> None:
        """Register a chunk file that another process already wrote into the directory.

        ``digest``: what the writing process computed from the bytes it wrote (``write_chunk``);
        without it the file is hashed here, which trusts the file as it is now.
        """
        name = chunk_filename(index)
        self._chunks[index] = ChunkEntry(name, n_events, digest or file_digest(self.out_dir / name))

    def add_file(self, name: str) -> None:
        """Record another finished file of the directory (e.g. event keys) with its digest in the manifest."""
        self._files[name] = file_digest(confined_path(self.out_dir, name))

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
        manifest = DatasetManifest(tuple(entry for _, entry in sorted(self._chunks.items())), self.metadata,
                                   dict(self._files))
        write_json_atomic(self.out_dir / MANIFEST, manifest.to_dict(), default=_json_default)


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


UNVERIFIED = f"format_version 1, written before nurec recorded checksums in {MANIFEST}"
"""Why a dataset's files cannot be verified, for warnings and ``nurec inspect``."""


def load_manifest(data_dir: str | os.PathLike, check_files: bool = True) -> DatasetManifest:
    """Return the validated manifest of a dataset directory, or raise DatasetError (one line).

    ``check_files``: also refuse a manifest whose chunk files are missing. A dataset written
    before checksums were recorded gets one ChecksumWarning per process, naming it.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DatasetError(f"{data_dir}: no such dataset directory")
    if not (data_dir / MANIFEST).exists():
        raise DatasetError(f"{data_dir}: no {MANIFEST}; the dataset is incomplete or not a nurec dataset")
    try:
        manifest = parse_dataset_manifest(load_manifest_file(data_dir, MANIFEST), data_dir)
    except ManifestError as err:
        raise DatasetError(str(err)) from err
    if check_files:
        for chunk in manifest.chunks:
            if not (data_dir / chunk.file).exists():
                raise DatasetError(f"{data_dir}: chunk file {chunk.file} listed in {MANIFEST} is missing")
    if not manifest.has_checksums:
        warn_unverified_once(data_dir, f"{data_dir}: no checksums ({UNVERIFIED}); its chunks are read "
                                       "without verification")
    return manifest


def read_manifest(data_dir: str | os.PathLike) -> dict[str, Any]:
    """Return the manifest of a dataset directory as a dict (see ``nurec.io.manifest``), validated."""
    return load_manifest(data_dir).to_dict()


def chunk_problem(data_dir: str | os.PathLike, chunk: ChunkEntry) -> str | None:
    """Return what is wrong with one chunk file (see ``file_problem``), None if it is as recorded."""
    path = Path(data_dir) / chunk.file
    if chunk.digest is None:  # format 1: only its presence can be checked
        return None if path.exists() else "missing"
    return file_problem(path, chunk.digest)


def verify_chunk(data_dir: str | os.PathLike, chunk: ChunkEntry) -> Path:
    """Return the path of a chunk after checking its size and SHA-256; DatasetError naming it otherwise."""
    problem = chunk_problem(data_dir, chunk)
    if problem is not None:
        raise DatasetError(f"{data_dir}: chunk {chunk.file} is {problem}; restore or re-create the dataset")
    return Path(data_dir) / chunk.file


def verify_dataset(data_dir: str | os.PathLike) -> list[tuple[str, str]]:
    """Return (file name, status) for every chunk and recorded file of a dataset, checking each one.

    Status is "ok", "unverified" (a format 1 dataset: no checksum to compare) or the problem
    (``file_problem``). Raises DatasetError only for a missing or malformed manifest.
    """
    data_dir = Path(data_dir)
    manifest = load_manifest(data_dir, check_files=False)
    statuses = []
    for chunk in manifest.chunks:
        problem = chunk_problem(data_dir, chunk)
        statuses.append((chunk.file, problem or ("ok" if chunk.digest else "unverified")))
    for name, digest in sorted(manifest.files.items()):
        statuses.append((name, file_problem(data_dir / name, digest) or "ok"))
    return statuses


def verify_dataset_file(path: str | os.PathLike) -> None:
    """Check a file kept in a dataset directory against the digest its ``dataset.json`` records.

    Files not recorded there (or not in a dataset directory) pass unchecked. Raises DatasetError.
    """
    path = Path(path)
    if not (path.parent / MANIFEST).is_file():
        return
    digest = load_manifest(path.parent, check_files=False).files.get(path.name)
    problem = file_problem(path, digest) if digest is not None else None
    if problem is not None:
        raise DatasetError(f"{path.parent}: {path.name} is {problem}; restore or re-create the dataset")


def read_metadata(data_dir: str | os.PathLike) -> dict[str, Any]:
    """Return the dataset-level metadata (detector, simulator config, seed, counts).

    A geometry file kept inside the dataset is recorded by a name relative to the directory,
    so the dataset can be moved; it is returned as an absolute path, so every consumer
    hands ``metadata["detector"]["name"]`` to ``get_geometry`` as it is. That file is
    checked against its recorded digest here, before anything loads it.
    """
    manifest = load_manifest(data_dir)
    return _with_detector_path(manifest.metadata, data_dir, manifest)


def _with_detector_path(metadata: dict[str, Any], data_dir: str | os.PathLike,
                        manifest: DatasetManifest | None = None) -> dict[str, Any]:
    """Return ``metadata`` with a relative geometry-file detector name resolved against ``data_dir``.

    Built-in detector names (no file suffix) and absolute paths are left as they are. A
    relative name must stay inside ``data_dir``.
    """
    from nurec.geometry import GEOMETRY_FILE_SUFFIXES  # nurec.geometry imports nurec.io

    detector = metadata.get("detector")
    name = detector.get("name") if isinstance(detector, dict) else None
    if not isinstance(name, str) or Path(name).is_absolute():
        return metadata
    if Path(name).suffix.lower() not in GEOMETRY_FILE_SUFFIXES:
        return metadata
    try:
        path = confined_path(data_dir, name)
    except ValueError as err:
        raise DatasetError(f"{Path(data_dir) / MANIFEST}: 'metadata.detector.name' {err}") from err
    digest = manifest.files.get(name) if manifest is not None else None
    problem = file_problem(path, digest) if digest is not None else None
    if problem is not None:
        raise DatasetError(f"{data_dir}: geometry file {name} is {problem}; restore or re-create the dataset")
    return {**metadata, "detector": {**detector, "name": str(path.resolve())}}


def iter_dataset(
    data_dir: str | os.PathLike, columns: list[str] | None = None
) -> Iterator[ak.Array]:
    """Yield the dataset chunk by chunk, so memory stays bounded by one chunk.

    Each chunk is checked against its recorded size and SHA-256 before it is parsed.
    """
    data_dir = Path(data_dir)
    for chunk in load_manifest(data_dir).chunks:
        path = verify_chunk(data_dir, chunk)
        try:
            events = ak.from_parquet(path, columns=columns)
        except Exception as err:  # pyarrow raises several types for corrupt files
            raise DatasetError(f"{path}: cannot read Parquet ({' '.join(str(err).split())})") from err
        if len(events) != chunk.events:
            raise DatasetError(f"{data_dir}: chunk {chunk.file} holds {len(events)} events, "
                               f"{MANIFEST} records {chunk.events}")
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
    "FORMAT_VERSION",
    "MANIFEST",
    "DatasetError",
    "DatasetWriter",
    "chunk_problem",
    "events_from_hits_dataframe",
    "iter_dataset",
    "load_manifest",
    "prepare_output_dir",
    "read_dataset",
    "read_file_metadata",
    "read_manifest",
    "read_metadata",
    "verify_chunk",
    "verify_dataset",
    "verify_dataset_file",
    "write_chunk",
    "write_dataset",
]
