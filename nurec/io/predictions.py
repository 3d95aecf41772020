"""Prediction tables on disk (Parquet or CSV), with provenance metadata.

A prediction table is one file, or a directory of part files (one per event chunk, written
by ``nurec reconstruct --workers/--scheduler``) with the manifest ``predictions.json``
written last; both read back as one table. The manifest records each part's SHA-256 and
size, checked before the part is read (``nurec.io.integrity``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from nurec.io.files import read_chunk_manifest
from nurec.io.integrity import FileDigest, file_problem, warn_unverified_once
from nurec.io.parquet import verify_dataset_file
from nurec.io.schema import validate_predictions

PREDICTIONS_METADATA_KEY = b"nurec.predictions"
PREDICTIONS_MANIFEST = "predictions.json"
PREDICTIONS_FORMAT = "nurec-predictions"
PREDICTION_SUFFIXES: dict[str, str] = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
"""File suffixes of prediction tables and the format each one means."""


def prediction_file_format(path: str | os.PathLike) -> str:
    """Return "parquet" or "csv": the format of prediction file ``path``, by its suffix (any case).

    Raises ValueError (one line naming the accepted suffixes) for any other suffix, so a
    command can refuse an output path before doing any work.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in PREDICTION_SUFFIXES:
        accepted = ", ".join(PREDICTION_SUFFIXES)
        raise ValueError(f"{path}: unknown predictions file type '{suffix or '(no suffix)'}' "
                         f"(accepted: {accepted})")
    return PREDICTION_SUFFIXES[suffix]


def write_predictions(
    table: pd.DataFrame, path: str | os.PathLike, metadata: dict[str, Any] | None = None
) -> Path:
    """Write a prediction table atomically (Parquet for .parquet/.pq, CSV for .csv); return the path.

    Raises ValueError for any other suffix (see ``prediction_file_format``).
    """
    fmt = prediction_file_format(path)
    validate_predictions(table)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if fmt == "csv":
        table.to_csv(tmp, index=False)
    else:
        arrow = pa.Table.from_pandas(table, preserve_index=False)
        meta = dict(arrow.schema.metadata or {})
        meta[PREDICTIONS_METADATA_KEY] = json.dumps(metadata or {}, default=str).encode()
        pq.write_table(arrow.replace_schema_metadata(meta), tmp)
    os.replace(tmp, path)
    return path


def check_predictions_path(path: str | os.PathLike) -> str:
    """Return "directory", "parquet" or "csv" for an existing prediction table at ``path``, without reading it.

    Raises FileNotFoundError if there is none, ValueError for a file of another type.
    """
    path = Path(path)
    if path.is_dir():
        return "directory"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such predictions file")
    return prediction_file_format(path)


def read_predictions(path: str | os.PathLike) -> pd.DataFrame:
    """Read a prediction table written by write_predictions (or any table with its columns)."""
    path = Path(path)
    kind = check_predictions_path(path)
    if kind == "directory":
        manifest = read_predictions_manifest(path)
        parts = [pd.read_parquet(_verified_part(path, chunk)) for chunk in manifest["chunks"]]
        table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    else:
        verify_dataset_file(path)  # a file kept in a dataset directory (a source's own reconstruction)
        table = pd.read_csv(path) if kind == "csv" else pd.read_parquet(path)
    validate_predictions(table)
    return table


def _verified_part(directory: Path, chunk: dict[str, Any]) -> Path:
    """Return the path of one part file after checking it against the digest ``predictions.json`` records."""
    path = directory / chunk["file"]
    if "sha256" not in chunk:  # written before checksums were recorded
        warn_unverified_once(directory, f"{directory}: no checksums in {PREDICTIONS_MANIFEST} (written before "
                                        "nurec recorded them); its part files are read without verification")
        return path
    problem = file_problem(path, FileDigest(chunk["sha256"], chunk["bytes"]))
    if problem is not None:
        raise ValueError(f"{directory}: part file {chunk['file']} is {problem}; reconstruct again")
    return path


def read_predictions_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """Return the manifest of a prediction directory (its part files and provenance)."""
    manifest = read_chunk_manifest(directory, PREDICTIONS_MANIFEST, ValueError, "the predictions are incomplete")
    if manifest.get("format") != PREDICTIONS_FORMAT:
        raise ValueError(f"{Path(directory) / PREDICTIONS_MANIFEST}: format {manifest.get('format')!r} "
                         f"is not {PREDICTIONS_FORMAT}")
    return manifest


def read_predictions_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Return the provenance metadata stored with a Parquet prediction table or directory ({} for CSV)."""
    if Path(path).is_dir():
        return dict(read_predictions_manifest(path).get("provenance", {}))
    if prediction_file_format(path) == "csv":
        return {}
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(PREDICTIONS_METADATA_KEY, b"{}"))
