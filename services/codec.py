"""Conversions between protobuf messages and the nurec event and prediction schemas.

Requests are decoded into an ``EventBlock`` (flat numpy hit columns plus per-event hit
counts), which concatenates cheaply across requests and becomes the awkward events array
of the nurec schema in one step. Problems with single events (mismatched array lengths,
non-finite values, no hits, too many hits, unknown detector or sensor) are returned per
event, naming the field, so the rest of a batch is still reconstructed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import awkward as ak
import numpy as np
import pandas as pd

from nurec.geometry import available_detectors, get_geometry
from nurec.io.schema import HIT_FIELDS, PREDICTION_COLUMNS
from nurec.methods.run import METHOD_RAISED_STATUS
from nurec.protocol import pb
from nurec.protocol.codec import DIR_FIELDS, FLOAT_OUTPUTS, WIRE_DTYPES
from nurec.ragged import RaggedEvents, offsets_from_counts
from services.names import name_problem

FINITE_FIELDS = ("x", "y", "z", "t", "charge")
"""Hit fields that must be finite (as nurec.io.schema.event_problems checks)."""


@dataclass(frozen=True)
class EventFailure:
    """Why one event was not reconstructed: a gRPC code, the field, and a one-line reason."""

    code: int
    field: str
    reason: str

    @property
    def message(self) -> str:
        return f"{self.field}: {self.reason}" if self.field else self.reason


def invalid(field_name: str, reason: str) -> EventFailure:
    """Return an INVALID_ARGUMENT failure for ``field_name``."""
    return EventFailure(pb.INVALID_ARGUMENT, field_name, reason)


class EventBlock(RaggedEvents):
    """Decoded events: a RaggedEvents view with the wire's hit fields as item columns and
    ``event_id``, ``run_id`` and ``detector`` (name) as event columns."""

    @classmethod
    def of(cls, event_id: np.ndarray, run_id: np.ndarray, counts: np.ndarray, hits: dict[str, np.ndarray],
           detector: np.ndarray) -> EventBlock:
        """Return the block of events with ``counts`` hits each, in order."""
        return cls(offsets_from_counts(counts), hits,
                   {"event_id": event_id, "run_id": run_id, "detector": np.asarray(detector, dtype=object)})

    @property
    def event_id(self) -> np.ndarray:
        return self.event_columns["event_id"]

    @property
    def run_id(self) -> np.ndarray:
        return self.event_columns["run_id"]

    @property
    def detector(self) -> np.ndarray:
        return self.event_columns["detector"]

    @property
    def hits(self) -> dict[str, np.ndarray]:
        return self.columns

    def renumbered(self) -> EventBlock:
        """Return the block with event ids 0..n-1 (ids are only unique within a client's request)."""
        return self.with_event_columns(event_id=np.arange(len(self), dtype=np.int64))

    def to_awkward(self) -> ak.Array:  # type: ignore[override]
        """Return the events in the nurec event schema."""
        return super().to_awkward("hits", list(HIT_FIELDS), ["event_id", "run_id", "hits"])

    @staticmethod
    def empty() -> EventBlock:
        return EventBlock.of(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                             {k: np.zeros(0, WIRE_DTYPES[k].newbyteorder("=")) for k in HIT_FIELDS},
                             np.zeros(0, dtype=object))


@dataclass(frozen=True)
class DecodeLimits:
    """What the server accepts: hits per event and the detector of events that name none."""

    max_hits: int = 20_000
    default_detector: str = "icecube86"


def _field_sizes(event: pb.Event) -> tuple[dict[str, int], EventFailure | None]:
    """Return (values per hit field, a failure) of one event's hits."""
    kind = event.WhichOneof("hits")
    if kind is None:
        return {}, invalid("hits", "no hits (set raw or packed)")
    hits = getattr(event, kind)
    sizes = {}
    for name, dtype in WIRE_DTYPES.items():
        value = getattr(hits, name)
        if kind == "raw":
            if len(value) % dtype.itemsize:
                return {}, invalid(f"hits.{name}", f"{len(value)} bytes is not a whole number of "
                                   f"{dtype.itemsize}-byte values")
            sizes[name] = len(value) // dtype.itemsize
        else:
            sizes[name] = len(value)
    return sizes, None


def _check_event(event: pb.Event, limits: DecodeLimits, known: set[str]) -> tuple[int, bool, str, EventFailure | None]:
    """Return (hits, whether PMT directions are missing, detector, failure or None) of one event."""
    detector = event.detector or limits.default_detector
    if (problem := name_problem(detector)) is not None:  # checked first: never echo a huge name
        return 0, False, "", invalid("detector", problem)
    sizes, failure = _field_sizes(event)
    if failure is not None:
        return 0, False, detector, failure
    n = sizes["sensor_id"]
    no_dirs = all(sizes[d] == 0 for d in DIR_FIELDS)
    if n == 0 and any(sizes.values()):
        return n, no_dirs, detector, invalid("hits.sensor_id", f"0 values, expected {max(sizes.values())} (one per hit)")
    for name, size in sizes.items():
        if size != n and not (no_dirs and name in DIR_FIELDS):
            return n, no_dirs, detector, invalid(
                f"hits.{name}", f"{size} values, expected {n} (one per hit, as hits.sensor_id)")
    if n == 0:
        return n, no_dirs, detector, invalid("hits", "no hits")
    if n > limits.max_hits:
        return n, no_dirs, detector, invalid("hits", f"{n} hits exceed the server limit of {limits.max_hits} (max_hits)")
    if detector not in known:
        return n, no_dirs, detector, invalid(
            "detector", f"unknown detector '{detector}' (known: {', '.join(sorted(known))})")
    return n, no_dirs, detector, None


def decode_events(events: Sequence[pb.Event], limits: DecodeLimits) -> tuple[EventBlock, np.ndarray, dict[int, EventFailure]]:
    """Return (valid events as a block, their positions in ``events``, failures by position)."""
    failures: dict[int, EventFailure] = {}
    valid: list[int] = []
    n_hits: list[int] = []
    needs_dirs: list[bool] = []
    detectors: list[str] = []
    known = set(available_detectors())
    for i, event in enumerate(events):
        n, no_dirs, detector, failure = _check_event(event, limits, known)
        if failure is not None:
            failures[i] = failure
            continue
        valid.append(i)
        n_hits.append(n)
        needs_dirs.append(no_dirs)
        detectors.append(detector)

    chosen = [events[i] for i in valid]
    counts = np.asarray(n_hits, dtype=np.int64)
    hits = {}
    for name, dtype in WIRE_DTYPES.items():
        parts = [_field_bytes(event, name, dtype, n, fill) for event, n, fill
                 in zip(chosen, n_hits, needs_dirs, strict=True)]
        hits[name] = np.frombuffer(b"".join(parts), dtype=dtype).astype(dtype.newbyteorder("="))
    block = EventBlock.of(
        np.fromiter((e.event_id for e in chosen), dtype=np.int64, count=len(chosen)),
        np.fromiter((e.run_id for e in chosen), dtype=np.int64, count=len(chosen)),
        counts, hits, np.asarray(detectors, dtype=object),
    )
    positions = np.asarray(valid, dtype=np.int64)
    keep = _fill_directions(block, np.asarray(needs_dirs, dtype=bool), positions, failures)
    keep &= _check_finite(block, positions, failures)
    if not keep.all():
        block, positions = block.take(np.flatnonzero(keep)), positions[keep]
    return block, positions, failures


def _field_bytes(event: pb.Event, name: str, dtype: np.dtype, n_hits: int, fill: bool) -> bytes:
    if fill and name in DIR_FIELDS:
        return bytes(n_hits * dtype.itemsize)  # filled from the geometry afterwards
    if event.WhichOneof("hits") == "raw":
        return getattr(event.raw, name)
    return np.asarray(getattr(event.packed, name), dtype=dtype).tobytes()


def _fill_directions(block: EventBlock, needs: np.ndarray, positions: np.ndarray,
                     failures: dict[int, EventFailure]) -> np.ndarray:
    """Fill PMT directions of events that sent none from their geometry; return events kept."""
    keep = np.ones(len(block), dtype=bool)
    if not needs.any():
        return keep
    event_of_hit = np.repeat(np.arange(len(block)), block.counts)
    for detector in np.unique(block.detector[needs]):
        events = np.flatnonzero(needs & (block.detector == detector))
        geometry = get_geometry(detector)
        hit_mask = np.isin(event_of_hit, events)
        sensors = block.hits["sensor_id"][hit_mask]
        order = np.argsort(geometry.sensor_id)
        found_at = np.clip(np.searchsorted(geometry.sensor_id[order], sensors), 0, len(order) - 1)
        rows = order[found_at]
        known = geometry.sensor_id[rows] == sensors
        for axis, name in enumerate(DIR_FIELDS):
            block.hits[name][hit_mask] = np.where(known, geometry.direction[rows, axis], np.nan)
        for event in np.unique(event_of_hit[hit_mask][~known]):
            bad = sensors[~known & (event_of_hit[hit_mask] == event)][0]
            failures[int(positions[event])] = invalid(
                "hits.sensor_id", f"sensor {bad} is not in detector '{detector}' (needed for its PMT direction)")
            keep[event] = False
    return keep


def _check_finite(block: EventBlock, positions: np.ndarray, failures: dict[int, EventFailure]) -> np.ndarray:
    """Record events with non-finite hit values as failures; return events kept.

    Same rule and message as nurec.io.schema.event_problems, on the flat columns: the
    awkward version costs milliseconds per call, too much for single-event requests.
    """
    keep = np.ones(len(block), dtype=bool)
    if len(block) == 0:
        return keep
    starts = block.offsets[:-1]  # every event here has at least one hit
    for name in FINITE_FIELDS:
        bad_hit = ~np.isfinite(block.hits[name])
        if not bad_hit.any():
            continue
        bad_event = (np.add.reduceat(bad_hit.astype(np.int64), starts) > 0) & keep
        for index in np.flatnonzero(bad_event):
            failures[int(positions[index])] = invalid(f"hits.{name}", "non-finite value")
        keep &= ~bad_event
    return keep


# --- predictions <-> messages -----------------------------------------------------------

def failure_message(event_id: int, method: str, version: str, failure: EventFailure) -> pb.EventReconstruction:
    """Return the result message of an event that was not reconstructed."""
    nan = math.nan
    return pb.EventReconstruction(
        event_id=int(event_id), dir_x=nan, dir_y=nan, dir_z=nan, zenith=nan, azimuth=nan, energy=nan,
        angular_uncertainty_deg=nan, p_track=nan, method=method, model_version=version,
        fit_status=f"failed: {failure.message}",
        error=pb.EventError(code=failure.code, field=failure.field, message=failure.message),
    )


def encode_predictions(table: pd.DataFrame, event_ids: np.ndarray, version: str) -> list[pb.EventReconstruction]:
    """Return result messages for the rows of a prediction table (event ids replaced by ``event_ids``)."""
    outputs = {name: table[name].to_numpy(np.float64).tolist() for name in FLOAT_OUTPUTS}
    extra_columns = [c for c in table.columns if c not in PREDICTION_COLUMNS
                     and pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])]
    extras = {c: table[c].to_numpy(np.float64).tolist() for c in extra_columns}
    methods = table["method"].astype(str).tolist()
    statuses = table["fit_status"].astype(str).tolist()
    messages = []
    for row, event_id in enumerate(np.asarray(event_ids).tolist()):
        message = pb.EventReconstruction(
            event_id=event_id, method=methods[row], model_version=version, fit_status=statuses[row],
            **{name: values[row] for name, values in outputs.items()},
        )
        if extras:
            message.extra.update({c: v[row] for c, v in extras.items()})
        if statuses[row].startswith(METHOD_RAISED_STATUS):
            # The method crashed on this event (isolated by nurec.methods.run.reconstruct_batch).
            reason = statuses[row].removeprefix("failed: ")
            message.error.CopyFrom(pb.EventError(code=pb.INTERNAL, field="", message=reason))
        messages.append(message)
    return messages
