"""The one run loop: methods applied to events in batches, with failure isolation, timing and provenance.

``reconstruct_batch`` is the unit every caller uses (``nurec reconstruct``, the evaluation
and demo, the pipeline, the service): it returns exactly one prediction row per event, in
event order; events over the per-event cost bound (``EventLimits``: hits, distinct sensors)
fail before the method runs, with ``fit_status = "failed: hits: 25,000 hits exceeds
max_hits_per_event=20,000"``; if the method raises on a batch, the batch is retried event
by event so one bad event fails alone with ``fit_status = "failed: method raised ..."``.
``reconstruct_events`` runs it over an iterable of event batches with a progress bar that
moves within large batches (calls sized by ``BatchSizer``), and returns the predictions
with their ``Provenance`` — the one schema written beside every prediction file.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import awkward as ak
import numpy as np
import pandas as pd

from nurec.io.schema import PREDICTION_COLUMNS, empty_predictions
from nurec.methods.contract import DetectorMismatch, DetectorRef, EventLimits, Method
from nurec.ragged import offsets_from_counts
from nurec.version import __version__

PROVENANCE_SCHEMA = "nurec.provenance/1"
METHOD_RAISED_STATUS = "failed: method raised"
"""fit_status prefix of an event on which the method itself raised (a bug, not bad input)."""


@dataclass
class Provenance:
    """Where a prediction table came from: the one provenance schema of every prediction file.

    Timing: ``load_s`` builds the method; ``wall_s``/``cpu_s`` are reconstruction only
    (``cpu_s`` counts this process and its worker processes).
    """

    method: str
    version: str
    detector: dict[str, str]
    options: dict[str, str] = field(default_factory=dict)
    data: str = ""
    n_events: int = 0
    subsample: bool = False
    load_s: float = 0.0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    nurec_version: str = __version__
    schema: str = PROVENANCE_SCHEMA
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float | None:
        """Return reconstructed events per wall-clock second (None before any were timed)."""
        return self.n_events / self.wall_s if self.wall_s > 0 else None

    @property
    def events_per_cpu_s(self) -> float | None:
        """Return reconstructed events per CPU second (per core)."""
        return self.n_events / self.cpu_s if self.cpu_s > 0 else None

    def to_dict(self) -> dict[str, Any]:
        """Return the provenance as JSON-able data (rates included)."""
        data = asdict(self)
        data["events_per_s"] = self.events_per_s
        data["events_per_cpu_s"] = self.events_per_cpu_s
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Provenance:
        """Return the provenance stored by ``to_dict`` (unknown keys go to ``extra``).

        Raises ValueError if ``data`` is not in this schema.
        """
        if data.get("schema") != PROVENANCE_SCHEMA:
            raise ValueError(f"provenance: schema {data.get('schema')!r} is not {PROVENANCE_SCHEMA}")
        known = {name for name in cls.__dataclass_fields__ if name != "extra"}
        extra = {k: v for k, v in data.items() if k not in known and k not in ("events_per_s", "events_per_cpu_s")}
        return cls(**{k: v for k, v in data.items() if k in known}, extra={**data.get("extra", {}), **extra})


def provenance_for(method: Method, detector: DetectorRef, options: Mapping[str, Any] | None = None,
                   data: str = "", load_s: float = 0.0) -> Provenance:
    """Return an empty provenance record for ``method`` built for ``detector`` with ``options``."""
    return Provenance(method.name, str(method.version), detector.to_dict(),
                      {k: str(v) for k, v in (options or {}).items()}, str(data), load_s=load_s)


def failed_predictions(event_ids: np.ndarray, method: str, reason: str) -> pd.DataFrame:
    """Return a prediction table marking every event failed with ``reason`` (NaN outputs)."""
    table = empty_predictions(np.asarray(event_ids), method)
    table["fit_status"] = f"failed: {reason}"
    return table


def error_reason(err: BaseException) -> str:
    """Return a one-line reason for a method that raised ``err`` (a refusal is its own message, whole)."""
    if isinstance(err, DetectorMismatch):
        return str(err)
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    prefix = METHOD_RAISED_STATUS.removeprefix("failed: ")
    return f"{prefix} {type(err).__name__}" + (f": {text[:200]}" if text else "")


def _checked(table: pd.DataFrame, event_ids: np.ndarray) -> pd.DataFrame:
    """Return ``table`` in event order after checking it has the schema and one row per event."""
    missing = [c for c in PREDICTION_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"predictions lack column '{missing[0]}'")
    if len(table) != len(event_ids):
        raise ValueError(f"method returned {len(table)} rows for {len(event_ids)} events")
    rows = table["event_id"].to_numpy()
    if np.array_equal(rows, event_ids):
        return table.reset_index(drop=True)
    order = np.argsort(rows, kind="stable")
    position = np.searchsorted(rows[order], event_ids)
    position = np.clip(position, 0, len(rows) - 1)
    if not np.array_equal(rows[order][position], event_ids) or len(np.unique(rows)) != len(rows):
        raise ValueError("method returned rows for other events than it was given")
    return table.iloc[order[position]].reset_index(drop=True)


DEFAULT_LIMITS = EventLimits()
"""The per-event cost bound of every run unless a caller sets its own."""


def over_limits(events: ak.Array, limits: EventLimits) -> dict[int, str]:
    """Return {event index: "<field>: <reason>"} for the events of ``events`` over ``limits``.

    Events without the schema's hits are left to the method (it names the missing field).
    """
    if "hits" not in events.fields or "sensor_id" not in events.hits.fields:
        return {}
    counts = ak.to_numpy(ak.num(events.hits, axis=1))
    bounds = [v for v in (limits.max_hits_per_event, limits.max_sensors_per_event) if v]
    if len(counts) == 0 or not bounds or counts.max() <= min(bounds):
        return {}  # the common case: no event has as many hits as either limit
    many = limits.max_sensors_per_event and (counts > limits.max_sensors_per_event).any()
    sensor_id = ak.to_numpy(ak.flatten(events.hits.sensor_id, axis=1)) if many else None
    return {i: str(problem) for i, problem in limits.problems(offsets_from_counts(counts), sensor_id).items()}


def reconstruct_batch(method: Method, events: ak.Array, isolate: bool = True,
                      limits: EventLimits = DEFAULT_LIMITS) -> pd.DataFrame:
    """Return one prediction row per event of ``events``, in order; failures isolated per event.

    Events over ``limits`` fail with the limit and their value and never reach the method.
    Event ids must be unique within the batch (the service renumbers them). With
    ``isolate`` False an exception of the method propagates instead.
    """
    event_ids = ak.to_numpy(events.event_id).astype(np.int64)
    refused = over_limits(events, limits)
    if not refused:
        return _reconstruct_isolated(method, events, event_ids, isolate)
    keep = np.ones(len(events), dtype=bool)
    keep[list(refused)] = False
    failed = failed_predictions(event_ids[~keep], method.name, "")
    failed["fit_status"] = [f"failed: {refused[i]}" for i in np.flatnonzero(~keep)]
    if not keep.any():
        return failed
    computed = _reconstruct_isolated(method, events[keep], event_ids[keep], isolate)
    return _checked(pd.concat([computed, failed], ignore_index=True), event_ids)


def _reconstruct_isolated(method: Method, events: ak.Array, event_ids: np.ndarray, isolate: bool) -> pd.DataFrame:
    try:
        return _checked(method.reconstruct(events), event_ids)
    except Exception as err:  # noqa: BLE001 - one bad event must not fail its neighbours
        if not isolate:
            raise
        if len(events) <= 1:
            return failed_predictions(event_ids, method.name, error_reason(err))
    return pd.concat([_reconstruct_isolated(method, events[i : i + 1], event_ids[i : i + 1], True)
                      for i in range(len(events))], ignore_index=True)


def _live_descendants_cpu_s() -> float:
    """Return CPU seconds of this process's live descendants (and of the children they reaped), from /proc.

    Worker pools started through a forkserver are not children of this process, and a
    live helper's reaped workers never reach RUSAGE_CHILDREN: reading /proc counts them.
    Returns 0 where /proc is not available.
    """
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return 0.0
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        # After the command name: state, ppid, ..., utime(12), stime(13), cutime(14), cstime(15).
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = sum(int(v) for v in fields[11:15]) / tick
    me, total = os.getpid(), 0.0
    for pid in parents:
        ancestor, depth = parents[pid], 0
        while ancestor not in (0, 1, me) and ancestor in parents and depth < 64:
            ancestor, depth = parents[ancestor], depth + 1
        if ancestor == me and pid != me:
            total += cpu[pid]
    return total


def cpu_seconds() -> float:
    """Return user + system CPU seconds of this process, its threads and all its descendant processes."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime + _live_descendants_cpu_s()


def split_batches(events: ak.Array, batch_size: int) -> Iterable[ak.Array]:
    """Yield consecutive batches of at most ``batch_size`` events."""
    for start in range(0, len(events), max(int(batch_size), 1)):
        yield events[start : start + batch_size]


PROGRESS_INTERVAL_S = 2.0
"""Wall seconds a method call aims at while someone watches progress (the bar moves about this often)."""
EVENTS_PER_CORE = 8
"""A watched sub-batch holds at least this many events per core, so methods that spread a batch over
worker processes (the likelihood fits) keep every core busy."""


def available_cores() -> int:
    """Return the number of CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass
class BatchSizer:
    """Sizes of successive method calls: with ``interval_s``, calls of about that many seconds.

    Without ``interval_s`` every call gets ``batch_size`` events. With it, the first call
    gets ``min_events`` and later calls as many events as the mean time per event so far
    says take ``interval_s``, between ``min_events`` and ``batch_size``: a slow per-event
    fit advances its progress bar every few seconds instead of once per ``batch_size``
    events, while a fast batched method (LineFit, the GNN) soon gets whole batches.
    """

    batch_size: int
    interval_s: float | None = None
    min_events: int = 0
    _events: int = 0
    _seconds: float = 0.0

    def __post_init__(self) -> None:
        self.batch_size = max(int(self.batch_size), 1)
        if not self.min_events:
            self.min_events = EVENTS_PER_CORE * available_cores()
        self.min_events = int(min(max(self.min_events, 1), self.batch_size))

    def next_size(self) -> int:
        """Return how many events the next call gets."""
        if self.interval_s is None:
            return self.batch_size
        if self._events == 0 or self._seconds <= 0:
            return self.min_events
        per_event_s = self._seconds / self._events
        return int(np.clip(self.interval_s / per_event_s, self.min_events, self.batch_size))

    def record(self, n_events: int, seconds: float) -> None:
        """Record that a call on ``n_events`` events took ``seconds``."""
        self._events += int(n_events)
        self._seconds += float(seconds)


def reconstruct_events(
    method: Method,
    batches: Iterable[ak.Array],
    provenance: Provenance,
    batch_size: int = 256,
    max_events: int | None = None,
    progress: bool = False,
    total: int | None = None,
    on_batch: Callable[[int], None] | None = None,
    progress_interval_s: float = PROGRESS_INTERVAL_S,
    min_sub_batch: int = 0,
    limits: EventLimits = DEFAULT_LIMITS,
) -> tuple[pd.DataFrame, Provenance]:
    """Return (predictions of every event of ``batches``, the provenance with counts and timing).

    Each incoming batch (e.g. a dataset chunk) is cut into calls of at most ``batch_size``
    events. While progress is shown (``progress``: a tqdm bar on stderr, shown on a
    terminal; or ``on_batch``, called with the event count of every call) the calls are
    sized to take about ``progress_interval_s`` seconds each (``BatchSizer``; at least
    ``min_sub_batch`` events, default 8 per core), so progress moves within one large
    batch. The predictions do not depend on the sizes.

    Events over ``limits`` (hits, distinct sensors) fail alone, before the method sees them.
    At most ``max_events`` events are reconstructed, the leading ones, and no batch past
    them is read. If that leaves events out, the provenance says so: ``subsample`` True,
    ``extra["max_events"]`` and (when ``total`` is given) ``extra["source_n_events"]``.
    """
    from tqdm import tqdm

    tables: list[pd.DataFrame] = []
    n_done = 0
    limit = max_events
    left_out = False
    watched = progress or on_batch is not None
    sizer = BatchSizer(batch_size, progress_interval_s if watched else None, min_sub_batch)
    bar_total = min(total, limit) if total is not None and limit is not None else total if total is not None else limit
    bar = tqdm(total=bar_total, desc=method.name, unit=" events", disable=None if progress else True,
               file=sys.stderr, smoothing=0.1, leave=False)
    try:
        for chunk in batches:
            if limit is not None and len(chunk) > limit - n_done:
                left_out = True
                chunk = chunk[: max(limit - n_done, 0)]
            start = 0
            while start < len(chunk):
                batch = chunk[start : start + sizer.next_size()]
                cpu0, wall0 = cpu_seconds(), time.perf_counter()
                tables.append(reconstruct_batch(method, batch, limits=limits))
                wall = time.perf_counter() - wall0
                provenance.wall_s += wall
                provenance.cpu_s += cpu_seconds() - cpu0
                sizer.record(len(batch), wall)
                start += len(batch)
                n_done += len(batch)
                bar.update(len(batch))
                if on_batch is not None:
                    on_batch(len(batch))
            if limit is not None and n_done >= limit:
                break  # stream: the batches after the limit are never read
    finally:
        bar.close()
    provenance.n_events += n_done
    if limit is not None and (left_out or (total is not None and total > n_done)):
        provenance.subsample = True
        provenance.extra["max_events"] = int(limit)
        if total is not None:
            provenance.extra["source_n_events"] = int(total)
    table = pd.concat(tables, ignore_index=True) if tables else empty_predictions(np.zeros(0, np.int64), method.name)
    return table, provenance
