"""Reconstruct whole datasets: in this process into one prediction file, or chunk by chunk on Dask.

``reconstruct_source`` streams any event source (nurec dataset or an experiment's file)
through one method with the run loop (``nurec.methods.run``). ``reconstruct_chunks`` maps
the chunks of a nurec dataset through the same Dask runner the simulator uses
(``nurec.parallel.map_chunks``: in-process, a local cluster of N workers, or an existing
scheduler), writing one prediction part file per event chunk and the manifest
``predictions.json`` last, so an interrupted run never looks complete. The part files do
not depend on how many workers ran them; ``nurec.io.predictions.read_predictions`` reads
such a directory as one table.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awkward as ak

from nurec.geometry import Geometry
from nurec.io.files import write_json_atomic
from nurec.io.integrity import file_digest
from nurec.io.manifest import ChunkEntry
from nurec.io.parquet import load_manifest, verify_chunk
from nurec.io.predictions import PREDICTIONS_FORMAT, PREDICTIONS_MANIFEST, write_predictions
from nurec.io.sources import iter_events, source_metadata
from nurec.methods.contract import DetectorRef, Method
from nurec.methods.registry import build_method, resolve_detector
from nurec.methods.run import Provenance, provenance_for, reconstruct_events
from nurec.parallel import ParallelOptions, map_chunks


def dataset_detector_name(data: str | os.PathLike, fmt: str | None = None, override: str | None = None) -> str | None:
    """Return the name or path that get_geometry resolves to a source's detector (None: none recorded).

    ``override`` if given, else the name its metadata records; workers rebuild the detector from it.
    """
    if override:
        return override
    detector = source_metadata(data, fmt).get("detector")
    return detector.get("name") if isinstance(detector, dict) else detector


def dataset_detector(data: str | os.PathLike, fmt: str | None = None, override: str | None = None) -> Geometry:
    """Return the detector of a source: ``override`` if given, else the one its metadata names."""
    return resolve_detector(dataset_detector_name(data, fmt, override))


def build_timed(name: str, detector: Geometry, options: dict[str, Any]) -> tuple[Method, float]:
    """Return (method built for ``detector``, seconds it took to build)."""
    start = time.perf_counter()
    method = build_method(name, detector, **options)
    return method, time.perf_counter() - start


def reconstruct_source(
    name: str,
    data: str | os.PathLike,
    options: dict[str, Any] | None = None,
    detector: str | None = None,
    fmt: str | None = None,
    batch_size: int = 256,
    max_events: int | None = None,
    progress: bool = True,
) -> tuple[Any, Provenance]:
    """Return (predictions of the events of ``data``, their provenance), computed in this process."""
    options = dict(options or {})
    geometry = dataset_detector(data, fmt, detector)
    method, load_s = build_timed(name, geometry, options)
    provenance = provenance_for(method, DetectorRef.of(geometry), options, str(data), load_s)
    total = source_metadata(data, fmt).get("n_events")
    return reconstruct_events(method, iter_events(data, fmt), provenance, batch_size, max_events, progress,
                              int(total) if total else None)


@dataclass(frozen=True)
class ChunkTask:
    """One event chunk to reconstruct into one prediction part file (picklable, sent to Dask workers)."""

    name: str
    options: tuple[tuple[str, Any], ...]
    detector: str
    chunk_path: str
    out_path: str
    batch_size: int
    chunk: ChunkEntry | None = None  # its manifest entry: the worker checks the file against it


_WORKER_METHODS: dict[tuple, tuple[Method, float]] = {}
"""Methods built in this (worker) process, by (name, options, detector): built once, reused per chunk."""


def reconstruct_chunk(task: ChunkTask) -> dict[str, Any]:
    """Return the manifest entry of one reconstructed chunk after writing its prediction part file."""
    key = (task.name, task.options, task.detector)
    if key not in _WORKER_METHODS:
        _WORKER_METHODS[key] = build_timed(task.name, resolve_detector(task.detector), dict(task.options))
    method, load_s = _WORKER_METHODS[key]
    if task.chunk is not None:
        verify_chunk(Path(task.chunk_path).parent, task.chunk)  # on the worker, which reads the file anyway
    events = ak.from_parquet(task.chunk_path)
    provenance = provenance_for(method, DetectorRef.of(resolve_detector(task.detector)), dict(task.options))
    table, provenance = reconstruct_events(method, [events], provenance, task.batch_size)
    digest = file_digest(write_predictions(table, task.out_path, provenance.to_dict()))
    return {"file": Path(task.out_path).name, "n_events": len(table), **digest.to_dict(), "wall_s": provenance.wall_s,
            "cpu_s": provenance.cpu_s, "load_s": load_s, "version": provenance.version}


def reconstruct_chunks(
    name: str,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    options: dict[str, Any] | None = None,
    detector: str | None = None,
    parallel: ParallelOptions | None = None,
    batch_size: int = 256,
) -> Provenance:
    """Return the provenance of reconstructing every chunk of a nurec dataset into ``out_dir``.

    Writes ``part-NNNNN.parquet`` per event chunk and ``predictions.json`` (the manifest,
    with the provenance) last. Chunks run where ``parallel`` says (see nurec.parallel).
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if (out_dir / PREDICTIONS_MANIFEST).exists() or (out_dir.exists() and any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir}: output directory is not empty")
    chunks = load_manifest(data_dir).chunks
    geometry = dataset_detector(data_dir, "nurec", detector)
    options = dict(options or {})
    # Build once here: a method that refuses this detector (or cannot load) fails before any worker starts.
    method, load_s = build_timed(name, geometry, options)
    # The recorded name, not geometry.name: a geometry file's name is its stem, which workers cannot resolve.
    detector_name = dataset_detector_name(data_dir, "nurec", detector) or geometry.name
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = [ChunkTask(name, tuple(sorted(options.items())), detector_name, str(data_dir / chunk.file),
                       str(out_dir / f"part-{index:05d}.parquet"), batch_size, chunk)
             for index, chunk in enumerate(chunks)]
    entries = map_chunks(reconstruct_chunk, tasks, parallel, units=[chunk.events for chunk in chunks],
                         unit="event", description=f"reconstruct {name}")
    provenance = provenance_for(method, DetectorRef.of(geometry), options, str(data_dir), load_s)
    provenance.n_events = sum(e["n_events"] for e in entries)
    provenance.wall_s = sum(e["wall_s"] for e in entries)
    provenance.cpu_s = sum(e["cpu_s"] for e in entries)
    manifest = {"format": PREDICTIONS_FORMAT, "provenance": provenance.to_dict(),
                "chunks": [{"file": e["file"], "n_events": e["n_events"], "sha256": e["sha256"], "bytes": e["bytes"]}
                           for e in entries]}
    write_json_atomic(out_dir / PREDICTIONS_MANIFEST, manifest)
    return provenance
