"""The one event schema and the one prediction schema of nurec.

Events are awkward arrays of records, one record per event::

    event_id  int64      unique within a dataset
    run_id    int64
    hits      var * {sensor_id: int32, x, y, z: float32 [m], t: float32 [ns],
                     charge: float32 [photo-electrons],
                     dir_x, dir_y, dir_z: float32 (PMT pointing, unit vector),
                     is_noise: bool (simulation truth only; models must not read it),
                     tot_ns: float32 [ns] (KM3NeT time over threshold; optional),
                     trig: bool (the hit is one the trigger fired on; optional),
                     hlc: bool (IceCube hard local coincidence, else SLC; optional)}
    truth     {pdg: int32, interaction: string ("CC"/"NC"), energy: float64 [GeV],
               dir_x, dir_y, dir_z: float64 (direction of TRAVEL),
               zenith, azimuth: float64 [rad] (IceCube convention: where the
               neutrino COMES FROM, dir = -(sin z cos a, sin z sin a, cos z)),
               vertex_x, vertex_y, vertex_z: float64 [m], t0: float64 [ns],
               inelasticity, track_length [m], is_track: bool,
               visible_energy [GeV]}                       (optional: real data has none)
    weight    float64, OneWeight-style generation weight [GeV cm^2 sr] (optional)

Predictions are flat tables (pandas DataFrames), one row per event, with
``PREDICTION_COLUMNS`` first and any method-specific columns after them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import awkward as ak
import numpy as np
import pandas as pd

from nurec.ragged import RaggedEvents

HIT_FIELDS: dict[str, str] = {
    "sensor_id": "int32",
    "x": "float32",
    "y": "float32",
    "z": "float32",
    "t": "float32",
    "charge": "float32",
    "dir_x": "float32",
    "dir_y": "float32",
    "dir_z": "float32",
}
"""Required hit fields and their storage dtypes."""

OPTIONAL_HIT_FIELDS: dict[str, str] = {"is_noise": "bool", "tot_ns": "float32", "trig": "bool", "hlc": "bool"}

TRUTH_FIELDS: dict[str, str] = {
    "pdg": "int32",
    "interaction": "string",
    "energy": "float64",
    "dir_x": "float64",
    "dir_y": "float64",
    "dir_z": "float64",
    "zenith": "float64",
    "azimuth": "float64",
    "vertex_x": "float64",
    "vertex_y": "float64",
    "vertex_z": "float64",
    "t0": "float64",
    "inelasticity": "float64",
    "track_length": "float64",
    "is_track": "bool",
    "visible_energy": "float64",
}

EVENT_FIELDS = ("event_id", "run_id", "hits")

PREDICTION_COLUMNS: dict[str, str] = {
    "event_id": "int64",
    "dir_x": "float64",
    "dir_y": "float64",
    "dir_z": "float64",
    "zenith": "float64",
    "azimuth": "float64",
    "energy": "float64",
    "angular_uncertainty_deg": "float64",
    "p_track": "float64",
    "method": "object",
    "fit_status": "object",
}
"""Columns every reconstruction method returns, in this order.

``dir_*`` is the reconstructed direction of travel, ``zenith``/``azimuth`` where the
particle comes from (IceCube convention), ``energy`` in GeV (NaN if not estimated),
``angular_uncertainty_deg`` the predicted 68% containment radius (NaN if not
estimated), ``fit_status`` is ``"ok"`` or ``"failed: <reason>"``.
"""

FIT_OK = "ok"


class SchemaError(ValueError):
    """Raised when data do not follow the nurec event schema; the message names the field."""


@dataclass(frozen=True)
class EventProblem:
    """Why one event cannot be reconstructed."""

    index: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


def validate_events(events: ak.Array) -> None:
    """Check the structure of an events array; raise SchemaError naming the first bad field."""
    if not isinstance(events, ak.Array):
        raise SchemaError(f"events: expected an awkward Array, got {type(events).__name__}")
    fields = set(events.fields)
    for name in EVENT_FIELDS:
        if name not in fields:
            raise SchemaError(f"events: missing field '{name}'")
    hit_fields = set(events.hits.fields)
    for name in HIT_FIELDS:
        if name not in hit_fields:
            raise SchemaError(f"hits: missing field '{name}'")
    if "truth" in fields:
        truth_fields = set(events.truth.fields)
        for name in TRUTH_FIELDS:
            if name not in truth_fields:
                raise SchemaError(f"truth: missing field '{name}'")
    ids = ak.to_numpy(events.event_id)
    if ids.dtype.kind not in "iu":
        raise SchemaError(f"event_id: expected integers, got {ids.dtype}")
    if len(np.unique(ids)) != len(ids):
        raise SchemaError("event_id: values are not unique")


FINITE_HIT_FIELDS = ("x", "y", "z", "t", "charge", "dir_x", "dir_y", "dir_z")
"""Hit fields that must be finite for an event to be usable (PMT directions too: the fits and
the networks read them)."""


def event_problems(events: ak.Array, min_hits: int = 1) -> list[EventProblem | None]:
    """Return, for each event, None if its hits are usable or the problem that makes it not.

    Usable means: at least ``min_hits`` hits and finite ``FINITE_HIT_FIELDS`` (positions,
    time, charge, PMT direction). Used by every method to fail single events, not batches;
    the rule is ``hit_problems``'s.
    """
    flat = RaggedEvents.from_awkward(events.hits, [name for name in FINITE_HIT_FIELDS if name in events.hits.fields])
    problems: list[EventProblem | None] = [None] * len(events)
    for index, problem in hit_problems(flat.offsets, flat.columns, min_hits).items():
        problems[index] = problem
    return problems


def hit_problems(offsets: np.ndarray, hits: Mapping[str, np.ndarray], min_hits: int = 1,
                 known_sensors: np.ndarray | None = None, detector: str = "") -> dict[int, EventProblem]:
    """Return {event index: problem} for the events whose hits cannot be used; the one validation rule.

    ``offsets`` (n_events + 1) delimit each event's hits in the flat columns ``hits``.
    Checked, first problem per event: at least ``min_hits`` hits; with ``known_sensors``
    (the ascending sensor ids of ``detector``), every ``sensor_id`` belongs to the detector;
    every column of ``FINITE_HIT_FIELDS`` present is finite. Vectorised over the events
    (the service validates single-event requests with it, so it costs microseconds).
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    counts = np.diff(offsets)
    problems = {int(i): EventProblem(int(i), "hits", f"{counts[i]} hits, need at least {min_hits}")
                for i in np.flatnonzero(counts < min_hits)}
    filled = np.flatnonzero(counts > 0)

    def events_with(bad_hit: np.ndarray) -> np.ndarray:
        bad = np.zeros(len(counts), dtype=bool)
        if bad_hit.any():
            bad[filled] = np.add.reduceat(bad_hit.astype(np.int64), offsets[filled]) > 0
        return np.flatnonzero(bad)

    if known_sensors is not None and "sensor_id" in hits:
        sensors = np.asarray(hits["sensor_id"])
        if len(known_sensors):
            found_at = np.minimum(np.searchsorted(known_sensors, sensors), len(known_sensors) - 1)
            unknown = known_sensors[found_at] != sensors
        else:
            unknown = np.ones(len(sensors), dtype=bool)
        for i in events_with(unknown):
            if int(i) not in problems:
                hits_of = slice(offsets[i], offsets[i + 1])
                bad = sensors[hits_of][unknown[hits_of]][0]
                problems[int(i)] = EventProblem(int(i), "hits.sensor_id", f"sensor {bad} is not in detector '{detector}'")
    for name in FINITE_HIT_FIELDS:
        if name in hits:
            for i in events_with(~np.isfinite(hits[name])):
                problems.setdefault(int(i), EventProblem(int(i), f"hits.{name}", "non-finite value"))
    return problems


def empty_predictions(event_ids: np.ndarray, method: str) -> pd.DataFrame:
    """Return a prediction table with NaN outputs and fit_status 'ok' for the given events."""
    n = len(event_ids)
    table = {name: np.full(n, np.nan) for name in PREDICTION_COLUMNS}
    table["event_id"] = np.asarray(event_ids, dtype=np.int64)
    table["method"] = np.full(n, method, dtype=object)
    table["fit_status"] = np.full(n, FIT_OK, dtype=object)
    return pd.DataFrame(table)


def direction_to_angles(dir_x: np.ndarray, dir_y: np.ndarray, dir_z: np.ndarray):
    """Return (zenith, azimuth) in rad, IceCube convention, of directions of travel."""
    norm = np.sqrt(dir_x**2 + dir_y**2 + dir_z**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        zenith = np.arccos(np.clip(-dir_z / norm, -1.0, 1.0))
        azimuth = np.mod(np.arctan2(-dir_y, -dir_x), 2 * np.pi)
    return zenith, azimuth


def angles_to_direction(zenith: np.ndarray, azimuth: np.ndarray) -> np.ndarray:
    """Return the unit directions of travel, shape (n, 3), for IceCube zenith/azimuth [rad]."""
    zenith = np.asarray(zenith, dtype=np.float64)
    azimuth = np.asarray(azimuth, dtype=np.float64)
    return -np.stack(
        [np.sin(zenith) * np.cos(azimuth), np.sin(zenith) * np.sin(azimuth), np.cos(zenith)],
        axis=-1,
    )


def finish_predictions(table: pd.DataFrame) -> pd.DataFrame:
    """Fill zenith/azimuth from dir_*, order the standard columns first, and fix dtypes."""
    zenith, azimuth = direction_to_angles(
        table["dir_x"].to_numpy(float), table["dir_y"].to_numpy(float), table["dir_z"].to_numpy(float)
    )
    # One frame built from the columns: copying, setting and casting column by column costs
    # milliseconds per call, most of a single-event request's overhead.
    columns = {name: table[name].to_numpy() for name in PREDICTION_COLUMNS if name not in ("zenith", "azimuth")}
    columns["zenith"], columns["azimuth"] = zenith, azimuth
    for name, dtype in PREDICTION_COLUMNS.items():
        if dtype != "object" and columns[name].dtype != np.dtype(dtype):
            columns[name] = columns[name].astype(dtype)
    extra = {name: table[name].to_numpy() for name in table.columns if name not in PREDICTION_COLUMNS}
    return pd.DataFrame({**{name: columns[name] for name in PREDICTION_COLUMNS}, **extra}, index=table.index)


def validate_predictions(table: pd.DataFrame) -> None:
    """Raise SchemaError if a prediction table lacks a standard column."""
    for name in PREDICTION_COLUMNS:
        if name not in table.columns:
            raise SchemaError(f"predictions: missing column '{name}'")
