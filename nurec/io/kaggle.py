"""The IceCube Kaggle layout ("IceCube - Neutrinos in Deep Ice") as nurec events.

Layout of the competition data::

    sensor_geometry.csv          sensor_id, x, y, z [m]
    train_meta.parquet           batch_id, event_id, first_pulse_index, last_pulse_index,
                                 azimuth, zenith   (test_meta.parquet has no angles)
    train/batch_<n>.parquet      one row per pulse: sensor_id, time [ns], charge [pe],
                                 auxiliary (bool); the index is event_id; pulses of an event
                                 are the rows first_pulse_index..last_pulse_index (inclusive)

Mapping: hits take x, y, z from the geometry by ``sensor_id``, PMT direction (0, 0, -1)
(IceCube DOMs face down), ``time`` -> t, ``charge``; with ``drop_auxiliary=True`` only
pulses with ``auxiliary == False`` are kept. ``zenith``/``azimuth`` (IceCube convention,
where the neutrino comes FROM) become truth with the direction of travel
dir = -(sin z cos a, sin z sin a, cos z); the other truth fields are unknown (NaN, pdg 0).
event_id = Kaggle ``event_id``; ``source`` = {batch_id}.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import awkward as ak
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from nurec.geometry import Geometry, GeometryError, load_geometry
from nurec.io.reader import SourceError, zip_columns
from nurec.io.schema import HIT_FIELDS, angles_to_direction

GEOMETRY_FILE = "sensor_geometry.csv"
META_COLUMNS = ("batch_id", "event_id", "first_pulse_index", "last_pulse_index")
PULSE_COLUMNS = ("sensor_id", "time", "charge", "auxiliary")
DEFAULT_CHUNK_EVENTS = 10_000
_BATCH_NUMBER = re.compile(r"batch_(\d+)$")


def _layout(path: Path, split: str | None) -> tuple[Path, str, list[Path]]:
    """Return (root directory, split name, batch files) for a Kaggle root or one batch file."""
    if path.is_file():
        return path.parent.parent, split or path.parent.name, [path]
    root = path
    if split is None:
        metas = sorted(p.name[: -len("_meta.parquet")] for p in root.glob("*_meta.parquet"))
        if not metas:
            raise SourceError(f"{root}: no *_meta.parquet file (Kaggle layout needs train_meta.parquet or test_meta.parquet)")
        split = "train" if "train" in metas else metas[0]
    folder = root / split
    batches = sorted(folder.glob("batch_*.parquet"), key=_batch_number)
    if not batches:
        raise SourceError(f"{folder}: no batch_<n>.parquet files")
    return root, split, batches


def _batch_number(path: Path) -> int:
    match = _BATCH_NUMBER.match(path.stem)
    if not match:
        raise SourceError(f"{path}: batch file name is not batch_<n>.parquet")
    return int(match.group(1))


def _load_geometry(path: Path) -> Geometry:
    if not path.exists():
        raise SourceError(f"{path}: no such sensor geometry file")
    try:
        return load_geometry(path, family="icecube", name="kaggle-icecube")
    except GeometryError as err:
        raise SourceError(str(err)) from err


def iter_kaggle(
    path: str | os.PathLike,
    split: str | None = None,
    meta: str | os.PathLike | None = None,
    geometry: str | os.PathLike | None = None,
    drop_auxiliary: bool = False,
    chunk_events: int = DEFAULT_CHUNK_EVENTS,
) -> Iterator[ak.Array]:
    """Yield chunks of nurec events from the Kaggle layout (a root directory or one batch file)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    root, split, batches = _layout(path, split)
    meta_path = Path(meta) if meta is not None else root / f"{split}_meta.parquet"
    if not meta_path.exists():
        raise SourceError(f"{meta_path}: no such meta file")
    try:
        meta_columns = set(pq.read_schema(meta_path).names)
    except Exception as err:
        raise SourceError(f"{meta_path}: cannot read Parquet ({err})") from err
    for name in META_COLUMNS:
        if name not in meta_columns:
            raise SourceError(f"{meta_path}: no column '{name}'")
    has_truth = {"zenith", "azimuth"} <= meta_columns
    sensors = _load_geometry(Path(geometry) if geometry is not None else root / GEOMETRY_FILE)
    for batch_path in batches:
        batch_id = _batch_number(batch_path)
        try:
            batch_meta = pd.read_parquet(meta_path, filters=[("batch_id", "==", batch_id)])
        except Exception as err:
            raise SourceError(f"{meta_path}: cannot read Parquet ({err})") from err
        batch_meta = batch_meta.sort_values("first_pulse_index", kind="stable")
        yield from _iter_batch(batch_path, batch_id, batch_meta, sensors, has_truth, drop_auxiliary, chunk_events)


def _iter_batch(batch_path: Path, batch_id: int, meta: pd.DataFrame, sensors: Geometry, has_truth: bool,
                drop_auxiliary: bool, chunk_events: int) -> Iterator[ak.Array]:
    try:
        parquet = pq.ParquetFile(batch_path)
    except Exception as err:
        raise SourceError(f"{batch_path}: cannot read Parquet ({err})") from err
    names = parquet.schema_arrow.names
    for name in PULSE_COLUMNS:
        if name not in names:
            raise SourceError(f"{batch_path}: no column '{name}'")
    n_rows = parquet.metadata.num_rows
    if len(meta) and int(meta["last_pulse_index"].max()) >= n_rows:
        raise SourceError(f"{batch_path}: meta points at pulse {int(meta['last_pulse_index'].max())}, "
                          f"file has {n_rows} pulses")
    rows = parquet.iter_batches(batch_size=65_536, columns=list(PULSE_COLUMNS))
    buffer = pa.table({c: pa.array([], type=parquet.schema_arrow.field(c).type) for c in PULSE_COLUMNS})
    buffer_start = 0  # file row number of buffer's first row
    for start in range(0, len(meta), chunk_events):
        chunk = meta.iloc[start:start + chunk_events]
        first = chunk["first_pulse_index"].to_numpy().astype(np.int64)
        last = chunk["last_pulse_index"].to_numpy().astype(np.int64)
        while buffer_start + buffer.num_rows <= last.max():
            buffer = pa.concat_tables([buffer, pa.Table.from_batches([next(rows)])])
        # drop rows before this chunk, keep the rest for the next one
        buffer = buffer.slice(first.min() - buffer_start)
        buffer_start = int(first.min())
        pulses = buffer.slice(0, int(last.max()) + 1 - buffer_start).to_pandas()
        yield _chunk_events(pulses, buffer_start, chunk, first, last, batch_path, batch_id, sensors,
                            has_truth, drop_auxiliary)


def _chunk_events(pulses: pd.DataFrame, offset: int, meta: pd.DataFrame, first: np.ndarray, last: np.ndarray,
                  batch_path: Path, batch_id: int, sensors: Geometry, has_truth: bool,
                  drop_auxiliary: bool) -> ak.Array:
    counts = last - first + 1
    if np.any(counts < 0):
        raise SourceError(f"{batch_path}: meta has last_pulse_index < first_pulse_index")
    starts = np.cumsum(counts) - counts
    take = np.repeat(first - offset, counts) + np.arange(counts.sum()) - np.repeat(starts, counts)
    sensor_id = pulses["sensor_id"].to_numpy()[take].astype(np.int64)
    try:
        rows = sensors.sensor_lookup(sensor_id)
    except GeometryError as err:
        raise SourceError(f"{batch_path}: {err}") from err
    keep = np.ones(len(take), bool)
    if drop_auxiliary:
        keep = ~pulses["auxiliary"].to_numpy()[take].astype(bool)
        counts = np.bincount(np.repeat(np.arange(len(counts)), counts)[keep], minlength=len(counts))
    columns = {
        "sensor_id": sensor_id,
        "x": sensors.position[rows, 0], "y": sensors.position[rows, 1], "z": sensors.position[rows, 2],
        "t": pulses["time"].to_numpy()[take], "charge": pulses["charge"].to_numpy()[take],
        "dir_x": sensors.direction[rows, 0], "dir_y": sensors.direction[rows, 1],
        "dir_z": sensors.direction[rows, 2],
    }
    columns = {k: np.asarray(v)[keep].astype(HIT_FIELDS[k]) for k, v in columns.items()}
    event_ids = meta["event_id"].to_numpy().astype(np.int64)
    record = {
        "event_id": event_ids,
        "run_id": np.zeros(len(event_ids), np.int64),
        "hits": ak.unflatten(ak.zip(columns, depth_limit=1), counts),
    }
    if has_truth:
        record["truth"] = _kaggle_truth(meta)
    record["source"] = ak.zip({"batch_id": np.full(len(event_ids), batch_id, np.int64)}, depth_limit=1)
    return ak.zip(record, depth_limit=1)


def _kaggle_truth(meta: pd.DataFrame) -> ak.Array:
    n = len(meta)
    zenith = meta["zenith"].to_numpy().astype(np.float64)
    azimuth = meta["azimuth"].to_numpy().astype(np.float64)
    direction = angles_to_direction(zenith, azimuth)  # direction of travel
    nan = np.full(n, np.nan)
    return zip_columns({
        "pdg": np.zeros(n, np.int32),
        "interaction": ak.Array(np.full(n, "", dtype="U2")),
        "energy": nan,
        "dir_x": direction[:, 0], "dir_y": direction[:, 1], "dir_z": direction[:, 2],
        "zenith": zenith, "azimuth": azimuth,
        "vertex_x": nan, "vertex_y": nan, "vertex_z": nan, "t0": nan,
        "inelasticity": nan, "track_length": nan, "is_track": np.zeros(n, bool), "visible_energy": nan,
    })



__all__ = ["iter_kaggle"]
