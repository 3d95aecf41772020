"""Conversions between protobuf messages and the nurec event and prediction schemas.

Requests are decoded into an ``EventBlock`` (flat numpy hit columns plus per-event hit
counts), which concatenates cheaply across requests and becomes the awkward events array
of the nurec schema in one step. Problems with single events (mismatched array lengths,
non-finite values, no hits, too many hits or distinct sensors, unknown detector or sensor)
are returned per event, naming the field, so the rest of a batch is still reconstructed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np
import pandas as pd

from nurec.geometry import available_detectors, get_geometry
from nurec.io.schema import HIT_FIELDS, PREDICTION_COLUMNS, hit_problems
from nurec.methods.contract import EventLimits
from nurec.methods.run import METHOD_RAISED_STATUS
from nurec.protocol import pb
from nurec.protocol.codec import DIR_FIELDS, FLOAT_OUTPUTS, WIRE_DTYPES
from nurec.ragged import RaggedEvents, offsets_from_counts
from services.names import name_problem


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
    """What the server accepts: hits and distinct sensors per event, and the detector of events that name none."""

    max_hits: int = 20_000
    default_detector: str = "icecube86"
    max_sensors: int = EventLimits.max_sensors_per_event


RUN_LOOP_LIMITS = EventLimits(max_hits_per_event=0, max_sensors_per_event=0)
"""The run loop's limits for decoded blocks: none of its own, decoding applied the server's
(``DecodeLimits``: ``--max-hits`` may exceed the library's default bound)."""


@dataclass(frozen=True)
class FieldNames:
    """How a protocol names what it checks, for the one-line errors of ``check_events``.

    ``hit``: hit column -> name of the field or tensor carrying it; ``hits``: the name for
    an event's hits as a whole (no hits, too many); ``detector``: the detector's name.
    """

    hit: dict[str, str]
    hits: str = "hits"
    detector: str = "detector"

    def field(self, schema_field: str) -> str:
        """Return this protocol's name of a schema field ("hits", "hits.<column>")."""
        column = schema_field.removeprefix("hits.")
        return self.hits if schema_field == "hits" else self.hit.get(column, schema_field)


MESSAGE_FIELDS = FieldNames({name: f"hits.{name}" for name in HIT_FIELDS})
"""Field names of the native protocol's Event message."""

_NAMES = tuple(WIRE_DTYPES)
_ITEMSIZE = WIRE_DTYPES[_NAMES[0]].itemsize
# decode_events joins the bytes of every field into one buffer: one item size for all.
assert all(dtype.itemsize == _ITEMSIZE for dtype in WIRE_DTYPES.values()), "hit fields of mixed widths"
_DIR_INDEX = tuple(_NAMES.index(name) for name in DIR_FIELDS)
_MAX_NAME_SHOWN = 64
"""Characters of a client-supplied name repeated in an error (a 10 MB name stays out of the reply)."""


def shown_name(name: str) -> str:
    """Return ``name`` cut to a length fit for an error message."""
    return name if len(name) <= _MAX_NAME_SHOWN else f"{name[:_MAX_NAME_SHOWN]}... ({len(name)} characters)"


def _sizes(event: pb.Event) -> tuple[list[Any], list[int], EventFailure | None]:
    """Return (field values, values per field, a failure) of one event's hits, in WIRE_DTYPES order."""
    kind = event.WhichOneof("hits")
    if kind is None:
        return [], [], invalid("hits", "no hits (set raw or packed)")
    hits = event.raw if kind == "raw" else event.packed
    values = [getattr(hits, name) for name in _NAMES]
    sizes = [len(value) for value in values]
    if kind == "raw":
        for name, size in zip(_NAMES, sizes, strict=True):
            if size % _ITEMSIZE:
                return values, sizes, invalid(f"hits.{name}", f"{size} bytes is not a whole number of "
                                              f"{_ITEMSIZE}-byte values")
        sizes = [size // _ITEMSIZE for size in sizes]
    else:
        values = [np.asarray(value, dtype=WIRE_DTYPES[name]).tobytes() for name, value in zip(_NAMES, values, strict=True)]
    return values, sizes, None


def _size_failure(sizes: list[int], no_dirs: bool) -> EventFailure | None:
    """Return the failure of hit fields whose lengths disagree, or None."""
    n = sizes[0]
    if n == 0 and any(sizes):
        return invalid("hits.sensor_id", f"0 values, expected {max(sizes)} (one per hit)")
    for index, size in enumerate(sizes):
        if size != n and not (no_dirs and index in _DIR_INDEX):
            return invalid(f"hits.{_NAMES[index]}", f"{size} values, expected {n} (one per hit, as hits.sensor_id)")
    return None


def decode_events(events: Sequence[pb.Event], limits: DecodeLimits) -> tuple[EventBlock, np.ndarray, dict[int, EventFailure]]:
    """Return (valid events as a block, their positions in ``events``, failures by position).

    The hits of all events are joined into one buffer (field after field) and become numpy
    columns with one copy; checks that need the values run vectorised over the block
    (``check_events``), so a single-event request costs tens of microseconds.
    """
    failures: dict[int, EventFailure] = {}
    valid: list[int] = []
    counts: list[int] = []
    needs_dirs: list[bool] = []
    columns: list[list[bytes]] = [[] for _ in _NAMES]
    for i, event in enumerate(events):
        if (problem := name_problem(event.detector)) is not None:  # first: a huge name is never echoed
            failures[i] = invalid("detector", problem)
            continue
        values, sizes, failure = _sizes(event)
        if failure is None:
            no_dirs = not (sizes[_DIR_INDEX[0]] or sizes[_DIR_INDEX[1]] or sizes[_DIR_INDEX[2]])
            failure = _size_failure(sizes, no_dirs)
        if failure is not None:
            failures[i] = failure
            continue
        n = sizes[0]
        if no_dirs:
            values[_DIR_INDEX[0]] = values[_DIR_INDEX[1]] = values[_DIR_INDEX[2]] = bytes(n * _ITEMSIZE)
        for column, value in zip(columns, values, strict=True):
            column.append(value)
        valid.append(i)
        counts.append(n)
        needs_dirs.append(no_dirs)

    n_hits = sum(counts)
    joined = b"".join(b"".join(column) for column in columns)
    # One copy to native byte order; integer words, so every bit pattern survives as it came.
    words = np.frombuffer(joined, dtype=np.dtype("<u4")).astype(np.uint32)
    hits = {name: words[k * n_hits:(k + 1) * n_hits].view(WIRE_DTYPES[name].newbyteorder("="))
            for k, name in enumerate(_NAMES)}
    chosen = [events[i] for i in valid]
    detectors = [event.detector or limits.default_detector for event in chosen]
    block = EventBlock.of(
        np.fromiter((e.event_id for e in chosen), dtype=np.int64, count=len(chosen)),
        np.fromiter((e.run_id for e in chosen), dtype=np.int64, count=len(chosen)),
        np.asarray(counts, dtype=np.int64), hits, np.asarray(detectors, dtype=object),
    )
    return check_events(block, np.asarray(needs_dirs, dtype=bool), np.asarray(valid, dtype=np.int64), failures,
                        limits, MESSAGE_FIELDS)


def check_events(block: EventBlock, needs_dirs: np.ndarray, positions: np.ndarray,
                 failures: dict[int, EventFailure], limits: DecodeLimits,
                 names: FieldNames) -> tuple[EventBlock, np.ndarray, dict[int, EventFailure]]:
    """Return (the events of ``block`` fit to compute, their positions, failures by position).

    The checks every protocol shares, in order: no hits, more than ``limits.max_hits``,
    an unknown detector, a sensor that is not in the detector (for events whose PMT
    directions, ``needs_dirs``, are taken from the geometry), then the one validation rule
    (``_check_hits``). ``positions`` are the events' positions in the request; failures are
    added to ``failures`` under them.
    """
    keep = np.ones(len(block), dtype=bool)
    counts = block.counts
    if len(block) and (counts.min() == 0 or counts.max() > limits.max_hits):
        for index in np.flatnonzero((counts == 0) | (counts > limits.max_hits)).tolist():
            n = int(counts[index])
            failures[int(positions[index])] = invalid(names.hits, "no hits" if n == 0 else
                                                      f"{n} hits exceed the server limit of {limits.max_hits} (max_hits)")
            keep[index] = False
    known = set(available_detectors())
    detectors = block.detector
    for index, detector in enumerate(detectors.tolist()):
        if keep[index] and detector not in known:
            failures[int(positions[index])] = invalid(
                names.detector, f"unknown detector '{shown_name(str(detector))}' (known: {', '.join(sorted(known))})")
            keep[index] = False
    if needs_dirs.any():
        keep &= _fill_directions(block, needs_dirs & keep, positions, failures, names)
    keep &= _check_hits(block, positions, failures, keep, limits, names)
    if not keep.all():
        block, positions = block.take(np.flatnonzero(keep)), positions[keep]
    return block, positions, failures


def _fill_directions(block: EventBlock, needs: np.ndarray, positions: np.ndarray,
                     failures: dict[int, EventFailure], names: FieldNames) -> np.ndarray:
    """Fill PMT directions of events that sent none from their geometry; return events kept."""
    keep = np.ones(len(block), dtype=bool)
    if not needs.any():
        return keep
    event_of_hit = block.event_index
    for detector in np.unique(block.detector[needs]):
        events = np.flatnonzero(needs & (block.detector == detector))
        geometry = get_geometry(detector)
        hit_mask = np.isin(event_of_hit, events)
        sensors = block.hits["sensor_id"][hit_mask]
        rows, known = geometry.sensor_rows(sensors)
        for axis, name in enumerate(DIR_FIELDS):
            block.hits[name][hit_mask] = np.where(known, geometry.direction[rows, axis], np.nan)
        for event in np.unique(event_of_hit[hit_mask][~known]):
            bad = sensors[~known & (event_of_hit[hit_mask] == event)][0]
            failures[int(positions[event])] = invalid(
                names.hit["sensor_id"], f"sensor {bad} is not in detector '{detector}' (needed for its PMT direction)")
            keep[event] = False
    return keep


def _check_hits(block: EventBlock, positions: np.ndarray, failures: dict[int, EventFailure], keep: np.ndarray,
                limits: DecodeLimits, names: FieldNames) -> np.ndarray:
    """Record events (of those in ``keep``) with unusable hits as failures; return events kept.

    The rule is nurec.io.schema.hit_problems (sensor ids of the event's detector, finite
    positions, times, charges and PMT directions, sent or filled in) on the flat columns,
    and the distinct-sensor bound (nurec.methods.contract.EventLimits) where that rule finds
    nothing.
    """
    keep = keep.copy()
    bound = EventLimits(max_hits_per_event=0, max_sensors_per_event=limits.max_sensors)
    for detector in np.unique(block.detector[keep]):
        index = np.flatnonzero(keep & (block.detector == detector))
        events = block if len(index) == len(block) else block.take(index)
        problems = bound.problems(events.offsets, events.hits["sensor_id"])
        problems.update(hit_problems(events.offsets, events.hits, known_sensors=get_geometry(detector).sorted_sensor_id,
                                     detector=str(detector)))
        for i, problem in problems.items():
            failures[int(positions[index[i]])] = invalid(names.field(problem.field), problem.reason)
            keep[index[i]] = False
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
    """Return result messages for the rows of a prediction table (event ids replaced by ``event_ids``).

    Each column is read once (pandas access costs tens of microseconds per column; selecting
    several columns at once or astype(str) cost more).
    """
    floats = list(zip(*(table[name].to_numpy(np.float64).tolist() for name in FLOAT_OUTPUTS), strict=True))
    extra_columns = [c for c, dtype in table.dtypes.items() if c not in PREDICTION_COLUMNS
                     and pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)]
    extras = (list(zip(*(table[c].to_numpy(np.float64).tolist() for c in extra_columns), strict=True))
              if extra_columns else None)
    methods = [str(m) for m in table["method"].tolist()]
    statuses = [str(s) for s in table["fit_status"].tolist()]
    messages = []
    for row, event_id in enumerate(np.asarray(event_ids).tolist()):
        status = statuses[row]
        message = pb.EventReconstruction(event_id=event_id, method=methods[row], model_version=version,
                                         fit_status=status, **dict(zip(FLOAT_OUTPUTS, floats[row], strict=True)))
        if extras is not None:
            message.extra.update(zip(extra_columns, extras[row], strict=True))
        if status.startswith(METHOD_RAISED_STATUS):
            # The method crashed on this event (isolated by nurec.methods.run.reconstruct_batch).
            reason = status.removeprefix("failed: ")
            message.error.CopyFrom(pb.EventError(code=pb.INTERNAL, field="", message=reason))
        messages.append(message)
    return messages
