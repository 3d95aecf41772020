"""Shared plumbing of the classical methods: flat hit arrays, detector setup, bad-event checks.

Events arrive as awkward arrays; every method works on one flat numpy view of the hits
(nurec.ragged.RaggedEvents, ``flatten_hits``) with per-event offsets, so per-event sums are
segment sums (np.bincount) rather than Python loops.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import awkward as ak
import numpy as np
import pandas as pd

from nurec.geometry import DEFAULT_DETECTOR, Geometry, get_geometry
from nurec.io.schema import (
    HIT_FIELDS,
    empty_predictions,
    event_problems,
    finish_predictions,
    validate_events,
)
from nurec.methods.contract import MethodInfo, detectors_of_record, energy_range_of_record
from nurec.physics.medium import Medium, get_medium
from nurec.physics.response import RESPONSES, DetectorResponse
from nurec.ragged import RaggedEvents

MIN_HITS = 3
"""Fewest hits any classical method accepts: a direction needs three points off one line."""


@dataclass(frozen=True)
class DetectorSetup:
    """What the fits need to know about the detector: geometry, medium and sensor response."""

    geometry: Geometry
    medium: Medium
    response: DetectorResponse

    @property
    def noise_rate_per_ns(self) -> float:
        """Return the per-sensor noise rate [1/ns]."""
        return self.response.noise_rate_hz * 1e-9

    @property
    def readout_window_ns(self) -> float:
        """Return the readout window length around the light [ns]."""
        return self.response.readout_before_ns + self.response.readout_after_ns


def classical_info(method: Any, estimates: tuple[str, ...]) -> MethodInfo:
    """Return the description of an untrained classical method (valid on any detector)."""
    return MethodInfo(method.name, method.version, _first_line(type(method).__doc__), estimates)


def trained_info(method: Any, estimates: tuple[str, ...], trained_for: dict[str, Any], training: str) -> MethodInfo:
    """Return the description of a trained classical method from its artifact's ``trained_for`` record."""
    return MethodInfo(method.name, method.version, _first_line(type(method).__doc__), estimates,
                      detectors_of_record(trained_for), trained=True, training=training,
                      energy_range_gev=energy_range_of_record(trained_for))


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def detector_setup(detector: str | Geometry = DEFAULT_DETECTOR,
                   response_overrides: dict[str, Any] | None = None) -> DetectorSetup:
    """Return the geometry, medium and response of a built-in detector name or geometry path."""
    geometry = detector if isinstance(detector, Geometry) else get_geometry(detector)
    response = replace(RESPONSES[geometry.family], **(response_overrides or {}))
    return DetectorSetup(geometry, get_medium(geometry.medium), response)


def detector_from_metadata(metadata: dict[str, Any] | None, default: str = DEFAULT_DETECTOR) -> str:
    """Return the detector name recorded in dataset metadata, else ``default``."""
    detector = (metadata or {}).get("detector")
    if isinstance(detector, dict):
        return str(detector.get("name", default))
    if isinstance(detector, str):
        return detector
    return default


def hit_columns(events: ak.Array) -> RaggedEvents:
    """Return the hits of ``events`` as columns of the schema's hit fields: float64, sensor_id int64.

    No schema check (flatten_hits has one).
    """
    dtypes = {name: np.int64 if name == "sensor_id" else np.float64 for name in HIT_FIELDS}
    return RaggedEvents.from_awkward(events.hits, list(HIT_FIELDS), dtypes)


def fit_columns(hits: RaggedEvents) -> RaggedEvents:
    """Return hit columns as the fits use them: ``pos`` and ``pmt_dir`` (n_hits, 3), ``t``, ``charge``, ``sensor_id``."""
    c = hits.columns
    return RaggedEvents(hits.offsets, {
        "pos": np.column_stack([c["x"], c["y"], c["z"]]),
        "t": c["t"],
        "charge": c["charge"],
        "sensor_id": c["sensor_id"],
        "pmt_dir": np.column_stack([c["dir_x"], c["dir_y"], c["dir_z"]]),
    })


def flatten_hits(events: ak.Array) -> RaggedEvents:
    """Return the hits of ``events`` as fit_columns (positions, times, charges in float64).

    Raises SchemaError naming the field if ``events`` does not follow the event schema.
    """
    validate_events(events)
    return fit_columns(hit_columns(events))


def failure_reasons(events: ak.Array, flat: RaggedEvents, min_hits: int = MIN_HITS) -> np.ndarray:
    """Return per event "" if it can be fitted, else the reason ("<field>: <problem>").

    Checks: at least ``min_hits`` hits, finite positions/times/charges (event_problems),
    hit times that are not all equal, and a positive total charge.
    """
    reasons = np.array([str(p) if p is not None else "" for p in event_problems(events, min_hits)],
                       dtype=object)
    finite_t = np.where(np.isfinite(flat["t"]), flat["t"], 0.0)
    t_min = flat.segment_min(finite_t)
    t_max = flat.segment_max(finite_t)
    q_sum = flat.segment_sum(np.where(np.isfinite(flat["charge"]), flat["charge"], 0.0))
    ok = reasons == ""
    reasons[ok & (t_max <= t_min)] = "hits.t: all hits at one time"
    ok = reasons == ""
    reasons[ok & (q_sum <= 0)] = "hits.charge: no positive charge"
    return reasons


def usable_hits(events: ak.Array, min_hits: int = MIN_HITS) -> tuple[RaggedEvents, np.ndarray]:
    """Return (hits of the events that can be fitted, per-event failure reasons; "" = usable)."""
    flat = flatten_hits(events)
    reasons = failure_reasons(events, flat, min_hits)
    return flat.select((reasons == "")[flat.event_index]), reasons


def start_predictions(events: ak.Array, method: str, reasons: np.ndarray) -> pd.DataFrame:
    """Return an empty prediction table with fit_status set to "failed: <reason>" where needed."""
    table = empty_predictions(ak.to_numpy(events.event_id), method)
    failed = reasons != ""
    table.loc[failed, "fit_status"] = ["failed: " + r for r in reasons[failed]]
    return table


def finish(table: pd.DataFrame) -> pd.DataFrame:
    """Return the table with NaN outputs for failed events, angles filled and columns ordered."""
    failed = table["fit_status"].to_numpy() != "ok"
    numeric = [c for c in table.columns if c not in ("event_id", "method", "fit_status")
               and pd.api.types.is_float_dtype(table[c])]
    table.loc[failed, numeric] = np.nan
    return finish_predictions(table)


def orthonormal_pair(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return two unit vectors (…, 3) perpendicular to ``direction`` and to each other."""
    direction = np.asarray(direction, dtype=float)
    helper = np.where(np.abs(direction[..., 2:3]) < 0.9, [0.0, 0.0, 1.0], [1.0, 0.0, 0.0])
    e1 = np.cross(direction, helper)
    e1 /= np.linalg.norm(e1, axis=-1, keepdims=True)
    e2 = np.cross(direction, e1)
    return e1, e2


def opening_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the angle [deg] between direction vectors (…, 3); NaN where either is NaN."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    cos = np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def truth_directions(events: ak.Array) -> np.ndarray:
    """Return the true directions of travel (n, 3) from ``events.truth``."""
    truth = events.truth
    return np.column_stack([ak.to_numpy(truth[k]).astype(float) for k in ("dir_x", "dir_y", "dir_z")])
