"""GraphNeT SQLite databases and Parquet files (IceCube pulses + truth) as nurec events.

GraphNeT stores one table of pulses (one row per pulse, keyed by ``event_no``; the table
name varies: ``SRTInIcePulses``, ``SplitInIcePulses``, ...) and one ``truth`` table (one
row per event). Parquet comes in two layouts: ``merged/<table>/<table>_<i>.parquet`` flat
tables with ``event_no`` as the pandas index, or one file whose columns are the tables,
each event a record of lists (pulses) and scalars (truth).

Mapping to the nurec schema:

hits   ``dom_x, dom_y, dom_z`` -> x, y, z [m]; ``dom_time`` -> t [ns]; ``charge`` -> charge
       [pe]; ``pmt_dir_x/y/z`` -> dir_* where present, else (0, 0, -1) (IceCube DOMs have
       one PMT facing down); sensor_id = (string * 1000 + dom_number) * 100 + pmt_number;
       ``hlc`` -> hlc (hard local coincidence) where present.
truth  ``energy`` [GeV]; ``zenith``/``azimuth`` (IceCube convention: where the neutrino
       comes FROM) kept, and the direction of travel dir = -(sin z cos a, sin z sin a, cos z);
       ``position_x/y/z`` -> vertex; ``pid`` -> pdg; ``interaction_type`` (IceCube
       I3MCWeightDict: 1 CC, 2 NC) -> "CC"/"NC"; ``inelasticity``; ``track_length``;
       is_track = |pdg| == 14 and CC.
event  event_id = ``event_no``; run_id = ``RunID`` when the truth table has it;
       ``source`` = {event_no, and RunID/SubrunID/EventID/SubEventID where present}.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import awkward as ak
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from nurec.io.reader import SourceError, zip_columns
from nurec.io.schema import HIT_FIELDS, OPTIONAL_HIT_FIELDS, angles_to_direction

EVENT_KEY = "event_no"
DEFAULT_TRUTH_TABLE = "truth"
DEFAULT_CHUNK_EVENTS = 10_000
PULSE_COLUMNS = ("dom_x", "dom_y", "dom_z", "dom_time", "charge")
SOURCE_KEY_COLUMNS = ("RunID", "SubrunID", "EventID", "SubEventID")
# IceCube I3MCWeightDict InteractionType codes.
ICECUBE_INTERACTION = {1: "CC", 2: "NC"}


# --- building events from flat tables (shared by every GraphNeT-like layout) ---------------

def events_from_pulse_table(
    pulses: pd.DataFrame,
    truth: pd.DataFrame | None,
    event_nos: np.ndarray,
    where: str,
    event_key: str = EVENT_KEY,
    icecube_truth: bool = True,
) -> ak.Array:
    """Return nurec events for ``event_nos`` (in that order) from a flat pulse table and truth.

    ``where`` names the source (file and table) in error messages. Events without pulses get
    zero hits. ``truth`` has one row per event (column ``event_key``) with GraphNeT names.
    """
    for name in (event_key, *PULSE_COLUMNS):
        if name not in pulses.columns:
            raise SourceError(f"{where}: no column '{name}'")
    event_nos = np.asarray(event_nos, dtype=np.int64)
    keys = pulses[event_key].to_numpy().astype(np.int64)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    sorted_events = np.sort(event_nos)
    index = np.searchsorted(sorted_events, keys)
    known = (index < len(sorted_events)) & (sorted_events[np.minimum(index, len(sorted_events) - 1)] == keys) \
        if len(sorted_events) else np.zeros(len(keys), bool)
    if not np.all(known):
        raise SourceError(f"{where}: pulses of event_no {keys[~known][0]} belong to no event being read (no truth row?)")
    # hits grouped by the requested event order
    rank = np.empty(len(event_nos), dtype=np.int64)
    rank[np.argsort(event_nos, kind="stable")] = np.arange(len(event_nos))
    event_rank = rank[index] if len(keys) else np.zeros(0, np.int64)
    regroup = np.argsort(event_rank, kind="stable")
    rows = order[regroup]
    counts = np.bincount(event_rank, minlength=len(event_nos))

    def column(name: str) -> np.ndarray:
        return pulses[name].to_numpy()[rows]

    n = len(rows)
    if {"pmt_dir_x", "pmt_dir_y", "pmt_dir_z"} <= set(pulses.columns):
        direction = [column(f"pmt_dir_{c}") for c in "xyz"]
    else:
        direction = [np.zeros(n), np.zeros(n), np.full(n, -1.0)]
    if {"string", "dom_number"} <= set(pulses.columns):
        pmt = column("pmt_number") if "pmt_number" in pulses.columns else np.zeros(n)
        sensor_id = (column("string").astype(np.int64) * 1000 + column("dom_number").astype(np.int64)) * 100 \
            + pmt.astype(np.int64)
    else:
        sensor_id = np.full(n, -1, dtype=np.int64)
    hit_columns = {
        "sensor_id": sensor_id,
        "x": column("dom_x"), "y": column("dom_y"), "z": column("dom_z"),
        "t": column("dom_time"), "charge": column("charge"),
        "dir_x": direction[0], "dir_y": direction[1], "dir_z": direction[2],
    }
    if "hlc" in pulses.columns:
        hit_columns["hlc"] = column("hlc") != 0
    hit_columns = {k: np.asarray(v).astype({**HIT_FIELDS, **OPTIONAL_HIT_FIELDS}[k]) for k, v in hit_columns.items()}
    hits = ak.unflatten(ak.zip(hit_columns, depth_limit=1), counts)
    record = {"event_id": event_nos, "run_id": np.zeros(len(event_nos), np.int64), "hits": hits}
    source = {event_key: event_nos}
    if truth is not None:
        aligned = _align_truth(truth, event_nos, where, event_key)
        if "RunID" in aligned.columns:
            record["run_id"] = aligned["RunID"].to_numpy().astype(np.int64)
        if icecube_truth:
            record["truth"] = _icecube_truth(aligned, where)
        for name in SOURCE_KEY_COLUMNS:
            if name in aligned.columns:
                source[name] = aligned[name].to_numpy().astype(np.int64)
    record["source"] = ak.zip(source, depth_limit=1)
    return ak.zip(record, depth_limit=1)


def _align_truth(truth: pd.DataFrame, event_nos: np.ndarray, where: str, event_key: str) -> pd.DataFrame:
    if event_key not in truth.columns:
        raise SourceError(f"{where}: truth table has no column '{event_key}'")
    table = truth.drop_duplicates(event_key).set_index(event_key)
    missing = np.setdiff1d(event_nos, table.index.to_numpy())
    if len(missing):
        raise SourceError(f"{where}: truth table has no row for event_no {missing[0]}")
    return table.loc[event_nos].reset_index()


def _icecube_truth(truth: pd.DataFrame, where: str) -> ak.Array:
    for name in ("energy", "zenith", "azimuth"):
        if name not in truth.columns:
            raise SourceError(f"{where}: truth table has no column '{name}'")
    n = len(truth)

    def get(name: str, fill: float = np.nan) -> np.ndarray:
        return truth[name].to_numpy().astype(np.float64) if name in truth.columns else np.full(n, fill)

    zenith, azimuth = get("zenith"), get("azimuth")
    direction = angles_to_direction(zenith, azimuth)  # direction of travel
    pdg = get("pid", 0).astype(np.int32)
    code = get("interaction_type", 0)
    interaction = np.array([ICECUBE_INTERACTION.get(int(c), "") if np.isfinite(c) else "" for c in code], dtype=object)
    return zip_columns({
        "pdg": pdg,
        "interaction": ak.Array(interaction.astype(str)),
        "energy": get("energy"),
        "dir_x": direction[:, 0], "dir_y": direction[:, 1], "dir_z": direction[:, 2],
        "zenith": zenith, "azimuth": azimuth,
        "vertex_x": get("position_x"), "vertex_y": get("position_y"), "vertex_z": get("position_z"),
        "t0": np.full(n, np.nan),
        "inelasticity": get("inelasticity"),
        "track_length": get("track_length"),
        "is_track": (np.abs(pdg) == 14) & (interaction == "CC"),
        "visible_energy": np.full(n, np.nan),
    })


# --- SQLite -------------------------------------------------------------------------------

def _sqlite_tables(connection: sqlite3.Connection) -> dict[str, list[str]]:
    names = [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    return {name: [r[1] for r in connection.execute(f'PRAGMA table_info("{name}")')] for name in names}


def _pick_pulse_table(tables: dict[str, list[str]], truth: str | None, where: str) -> str:
    candidates = [name for name, cols in tables.items()
                  if name != truth and EVENT_KEY in cols and "dom_time" in cols]
    if len(candidates) != 1:
        found = ", ".join(candidates) or "none"
        raise SourceError(f"{where}: cannot tell the pulse table (candidates: {found}); name it with --pulses")
    return candidates[0]


def iter_graphnet_sqlite(
    path: str | os.PathLike,
    pulses: str | None = None,
    truth: str | None = DEFAULT_TRUTH_TABLE,
    chunk_events: int = DEFAULT_CHUNK_EVENTS,
) -> Iterator[ak.Array]:
    """Yield chunks of nurec events from a GraphNeT SQLite file (``truth=None``: data without truth)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        tables = _sqlite_tables(connection)
    except sqlite3.DatabaseError as err:
        raise SourceError(f"{path}: not a readable SQLite database ({err})") from err
    try:
        if truth is not None and truth not in tables:
            raise SourceError(f"{path}: no table '{truth}' (tables: {', '.join(tables) or 'none'})")
        pulses = pulses or _pick_pulse_table(tables, truth, str(path))
        if pulses not in tables:
            raise SourceError(f"{path}: no table '{pulses}' (tables: {', '.join(tables) or 'none'})")
        for name in (EVENT_KEY, *PULSE_COLUMNS):
            if name not in tables[pulses]:
                raise SourceError(f"{path}: table '{pulses}' has no column '{name}'")
        key_table = truth if truth is not None else pulses
        event_nos = np.array([r[0] for r in connection.execute(
            f'SELECT DISTINCT {EVENT_KEY} FROM "{key_table}" ORDER BY {EVENT_KEY}')], dtype=np.int64)
        for start in range(0, max(len(event_nos), 1), chunk_events):
            chunk = event_nos[start:start + chunk_events]
            low, high = (int(chunk[0]), int(chunk[-1])) if len(chunk) else (0, -1)
            query = f'SELECT * FROM "{{}}" WHERE {EVENT_KEY} BETWEEN ? AND ?'
            pulse_table = pd.read_sql_query(query.format(pulses), connection, params=(low, high))
            truth_table = (pd.read_sql_query(query.format(truth), connection, params=(low, high))
                           if truth is not None else None)
            yield events_from_pulse_table(pulse_table, truth_table, chunk, f"{path} table '{pulses}'")
    finally:
        connection.close()


# --- Parquet ------------------------------------------------------------------------------

def _read_parquet(path: Path, where: str) -> pd.DataFrame:
    try:
        table = pd.read_parquet(path)
    except Exception as err:
        raise SourceError(f"{where}: cannot read Parquet ({err})") from err
    if EVENT_KEY not in table.columns and table.index.name == EVENT_KEY:
        table = table.reset_index()
    return table


def _table_files(root: Path, table: str) -> list[Path]:
    folder = root / table
    files = sorted(folder.glob("*.parquet"), key=lambda p: (len(p.stem), p.stem)) if folder.is_dir() else []
    return files


def iter_graphnet_parquet(
    path: str | os.PathLike,
    pulses: str | None = None,
    truth: str | None = DEFAULT_TRUTH_TABLE,
    chunk_events: int = DEFAULT_CHUNK_EVENTS,
) -> Iterator[ak.Array]:
    """Yield chunks of nurec events from GraphNeT Parquet (a merged/ directory or a nested file)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if path.is_dir():
        yield from _iter_merged(path / "merged" if (path / "merged").is_dir() else path, pulses, truth)
    else:
        yield from _iter_nested(path, pulses, truth, chunk_events)


def _iter_merged(root: Path, pulses: str | None, truth: str | None) -> Iterator[ak.Array]:
    tables = sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.parquet")))
    if truth is not None and truth not in tables:
        raise SourceError(f"{root}: no table '{truth}' (tables: {', '.join(tables) or 'none'})")
    if pulses is None:
        others = [t for t in tables if t != truth]
        if len(others) != 1:
            raise SourceError(f"{root}: cannot tell the pulse table (candidates: {', '.join(others) or 'none'}); name it with --pulses")
        pulses = others[0]
    if pulses not in tables:
        raise SourceError(f"{root}: no table '{pulses}' (tables: {', '.join(tables) or 'none'})")
    truth_table = None
    if truth is not None:
        truth_table = pd.concat([_read_parquet(f, str(f)) for f in _table_files(root, truth)], ignore_index=True)
    for file in _table_files(root, pulses):
        pulse_table = _read_parquet(file, str(file))
        if EVENT_KEY not in pulse_table.columns:
            raise SourceError(f"{file}: no column '{EVENT_KEY}'")
        event_nos = pd.unique(pulse_table[EVENT_KEY].to_numpy().astype(np.int64))
        yield events_from_pulse_table(pulse_table, truth_table, event_nos, str(file))


def _iter_nested(path: Path, pulses: str | None, truth: str | None, chunk_events: int) -> Iterator[ak.Array]:
    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:
        raise SourceError(f"{path}: cannot read Parquet ({err})") from err
    columns = parquet.schema_arrow.names
    if truth is not None and truth not in columns:
        raise SourceError(f"{path}: no table '{truth}' (columns: {', '.join(columns)})")
    if pulses is None:
        others = [c for c in columns if c != truth]
        if len(others) != 1:
            raise SourceError(f"{path}: cannot tell the pulse table (candidates: {', '.join(others)}); name it with --pulses")
        pulses = others[0]
    if pulses not in columns:
        raise SourceError(f"{path}: no table '{pulses}' (columns: {', '.join(columns)})")
    wanted = [pulses] + ([truth] if truth is not None else [])
    try:
        batches = parquet.iter_batches(batch_size=chunk_events, columns=wanted)
        for batch in batches:
            records = ak.from_arrow(batch)
            pulse_records = records[pulses]
            if EVENT_KEY not in pulse_records.fields:
                raise SourceError(f"{path}: table '{pulses}' has no column '{EVENT_KEY}'")
            event_nos = ak.to_numpy(pulse_records[EVENT_KEY]).astype(np.int64)
            counts = None
            flat = {}
            for name in pulse_records.fields:
                if name == EVENT_KEY:
                    continue
                values = pulse_records[name]
                counts = ak.to_numpy(ak.num(values, axis=1)) if counts is None else counts
                flat[name] = ak.to_numpy(ak.flatten(values))
            flat[EVENT_KEY] = np.repeat(event_nos, counts if counts is not None else 0)
            pulse_table = pd.DataFrame(flat)
            truth_table = (pd.DataFrame({name: ak.to_numpy(records[truth][name]) for name in records[truth].fields})
                           if truth is not None else None)
            yield events_from_pulse_table(pulse_table, truth_table, event_nos, f"{path} table '{pulses}'")
    except SourceError:
        raise
    except Exception as err:
        raise SourceError(f"{path}: cannot read Parquet ({err})") from err



__all__ = ["events_from_pulse_table", "iter_graphnet_parquet", "iter_graphnet_sqlite"]
