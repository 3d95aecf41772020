"""Run registered methods on events with timing, so every method is measured the same way.

A method that raises on a batch does not stop the run: the events of that batch get
``fit_status = "failed: method raised <error>"`` and NaN outputs, and the report counts them.

Which events a method runs on is a count, never a time: every event, or the leading
``max_events[name]`` events (the events are in random order, so these are a random
subsample fixed by the data, the same for every method given the same count). Timing has
three parts, reported separately: building the method (``load_s``), a warm-up call on the
first event(s) (``warmup_s``: lazy imports, thread pools, caches; its predictions are kept),
and the timed reconstruction of the rest, from which the throughput is computed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import awkward as ak
import pandas as pd
from tqdm import tqdm

from nurec.evaluate.metrics import throughput
from nurec.evaluate.report import MethodPredictions
from nurec.io.predictions import write_predictions
from nurec.methods.contract import DetectorRef
from nurec.methods.registry import available_methods, build_method, resolve_detector
from nurec.methods.run import (
    PROGRESS_INTERVAL_S,
    BatchSizer,
    Provenance,
    cpu_seconds,
    error_reason,
    reconstruct_batch,
)

SLOW_METHODS = ("likelihood", "likelihood-mpe", "cascade-likelihood", "bdt-uncertainty")
"""Per-event likelihood fits (about 0.3-3 s per event per core); the rest do hundreds of events per second."""

WARMUP_EVENTS = 1
"""Events of the untimed first call of each method."""


@dataclass
class MethodRun:
    """The outcome of running one method: predictions (or why it was skipped) and timing.

    ``throughput``: nurec.evaluate.metrics.throughput of the timed events (after the
    warm-up) plus ``load_s`` (building the method), ``warmup_s`` and ``warmup_events``.
    """

    name: str
    predictions: pd.DataFrame | None
    version: str = "unknown"
    throughput: dict[str, Any] = field(default_factory=dict)
    subsample: bool = False
    skipped: str | None = None
    load_s: float = 0.0
    detector: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)

    def as_method_predictions(self) -> MethodPredictions:
        """Return the run as input for the report (raises if the method was skipped)."""
        if self.predictions is None:
            raise ValueError(f"{self.name}: skipped ({self.skipped}), no predictions")
        return MethodPredictions(self.name, self.version, self.predictions, self.metadata(),
                                 self.throughput, self.subsample)

    def metadata(self) -> dict[str, Any]:
        """Return the provenance (nurec.methods.run.Provenance) written beside the predictions."""
        return self.provenance().to_dict()

    def provenance(self) -> Provenance:
        """Return the run's provenance record (wall_s/cpu_s: the timed events; the warm-up in ``extra``)."""
        n_predicted = 0 if self.predictions is None else len(self.predictions)
        return Provenance(self.name, self.version, self.detector, self.options, n_events=n_predicted,
                          subsample=self.subsample, load_s=self.load_s,
                          wall_s=float(self.throughput.get("wall_s", 0.0)),
                          cpu_s=float(self.throughput.get("cpu_s", 0.0) or 0.0),
                          extra={"timed_events": int(self.throughput.get("n_events", 0)),
                                 "warmup_s": float(self.throughput.get("warmup_s", 0.0)),
                                 "warmup_events": int(self.throughput.get("warmup_events", 0))})


@dataclass
class _Batches:
    tables: list[pd.DataFrame] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    n_done: int = 0
    first_error: str | None = None


def _reconstruct_batches(method: Any, events: ak.Array, batch_size: int, stop_if_first_raises: bool = False,
                         bar: tqdm | None = None) -> _Batches:
    """Return predictions and timing of ``method`` on ``events`` in batches; a raising batch fails its events.

    With ``stop_if_first_raises`` an exception on the first batch stops the run (``first_error``).
    With a progress ``bar``, calls are sized by BatchSizer to take a few seconds each, so the bar
    moves within a batch of slow fits; the predictions do not depend on the sizes.
    """
    out = _Batches()
    sizer = BatchSizer(batch_size, PROGRESS_INTERVAL_S if bar is not None else None)
    start = 0
    while start < len(events):
        batch = events[start : start + sizer.next_size()]
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        try:  # a method that fails outright on its first batch (e.g. an untrained model) can be skipped
            table = reconstruct_batch(method, batch, isolate=not (start == 0 and stop_if_first_raises))
        except Exception as err:  # noqa: BLE001
            out.first_error = error_reason(err)
            return out
        wall_s = time.perf_counter() - wall0
        out.wall_s += wall_s
        out.cpu_s += cpu_seconds() - cpu0
        sizer.record(len(batch), wall_s)
        out.tables.append(table)
        out.n_done += len(batch)
        start += len(batch)
        if bar is not None:
            bar.update(len(batch))
            bar.set_postfix_str(f"{out.n_done / out.wall_s:.3g} ev/s" if out.wall_s > 0 else "")
    return out


def run_methods(
    names: list[str],
    events: ak.Array,
    options: dict[str, dict] | None = None,
    detector: Any = None,
    batch_size: int = 256,
    max_events: Mapping[str, int] | None = None,
    skip_if_first_batch_raises: bool = False,
    show_bar: bool = False,
) -> list[MethodRun]:
    """Return one MethodRun per name (in order): predictions and timing on ``events``, or why it was skipped.

    A method named in ``max_events`` runs on that many leading events (marked as a
    subsample when that is fewer than all); the others on every event.
    ``skip_if_first_batch_raises`` turns a method that fails outright on its warm-up call
    (e.g. an untrained model) into a skipped one instead of a table of failures. Every
    method is built for ``detector`` (a Geometry, a metadata record or a name; None: the
    default detector); a trained method that is not valid for it is skipped with the
    one-line reason. Timing: see the module docstring.
    """
    geometry = resolve_detector(detector)
    detector_record = DetectorRef.of(geometry).to_dict()
    runs = []
    for name in names:
        limit = len(events) if max_events is None or name not in max_events else max(0, int(max_events[name]))
        run = _run_one(name, events[:limit], (options or {}).get(name) or {}, geometry, detector_record,
                       batch_size, skip_if_first_batch_raises, show_bar)
        run.subsample = run.predictions is not None and limit < len(events)
        runs.append(run)
    return runs


def _run_one(name: str, events: ak.Array, options: dict[str, Any], geometry: Any, detector_record: dict[str, str],
             batch_size: int, skip_if_first_raises: bool, show_bar: bool) -> MethodRun:
    """Return one method's run: build it (timed), warm it up on the first event(s), time the rest."""
    options_text = {k: str(v) for k, v in options.items()}
    start = time.perf_counter()
    try:
        method = build_method(name, geometry, **options)
    except Exception as err:  # noqa: BLE001 - any construction error makes the method unavailable
        return MethodRun(name, None, skipped=error_reason(err), detector=detector_record, options=options_text)
    load_s = time.perf_counter() - start
    version = str(getattr(method, "version", "unknown"))
    warm = _reconstruct_batches(method, events[:WARMUP_EVENTS], WARMUP_EVENTS, stop_if_first_raises=skip_if_first_raises)
    if warm.first_error is not None:
        return MethodRun(name, None, version, skipped=warm.first_error, load_s=load_s, detector=detector_record,
                         options=options_text)
    bar = tqdm(total=len(events), initial=warm.n_done, desc=name, unit="ev", disable=not show_bar,
               file=sys.stderr, leave=False)
    timed = _reconstruct_batches(method, events[warm.n_done:], batch_size, bar=bar if show_bar else None)
    bar.close()
    rate = throughput(timed.n_done, timed.wall_s, timed.cpu_s)
    rate.update(load_s=load_s, warmup_s=warm.wall_s, warmup_events=warm.n_done)
    tables = warm.tables + timed.tables
    predictions = pd.concat(tables, ignore_index=True) if tables else None
    return MethodRun(name, predictions, version, rate, load_s=load_s, detector=detector_record, options=options_text,
                     skipped=None if predictions is not None else "no events to reconstruct")


def run_method(name: str, events: ak.Array, options: dict[str, Any] | None = None, **settings: Any) -> MethodRun:
    """Return the predictions and timing of one method on ``events`` (settings as for run_methods)."""
    return run_methods([name], events, {name: options or {}}, **settings)[0]


def print_progress(message: str) -> None:
    """Print one progress line to stderr (flushed, so it shows when piped)."""
    print(message, file=sys.stderr, flush=True)


Progress = Callable[[str], None]


def method_names(requested: Sequence[str] | None = None) -> list[str]:
    """Return the requested method names (checked against the registry) or all registered ones."""
    registered = [spec.name for spec in available_methods()]
    if requested is None:
        return registered
    unknown = [name for name in requested if name not in registered]
    if unknown:
        raise ValueError(f"methods: unknown method '{unknown[0]}' (registered: {', '.join(registered) or 'none'})")
    return list(requested)


def reconstruct_all(
    events: ak.Array,
    names: Sequence[str],
    out_dir: Path | None = None,
    max_events: Mapping[str, int] | None = None,
    batch_size: int = 256,
    options: dict[str, dict] | None = None,
    skip_unready: bool = True,
    progress: Progress | None = print_progress,
    extra_metadata: dict | None = None,
    detector: Any = None,
    subsample: bool = False,
) -> tuple[list[MethodRun], dict[str, str]]:
    """Return (runs of the methods that ran, {method: reason} for those skipped) on ``events``.

    A method named in ``max_events`` runs on that many leading events (run_methods).
    Predictions are written to
    ``out_dir/<method>.parquet`` when ``out_dir`` is given, with ``extra_metadata`` in
    each file's provenance (``extra``). Methods are built for ``detector`` (see run_methods).
    ``subsample``: ``events`` are already a subsample of the dataset (the provenance says so).
    """
    say = progress or (lambda _msg: None)
    limited = {n: min(int(k), len(events)) for n, k in (max_events or {}).items() if n in names and k < len(events)}
    say(f"reconstructing {len(events)} events with {', '.join(names) or 'no methods'}"
        + "".join(f"; {name}: the first {k}" for name, k in limited.items()) + " ...")
    runs, skipped = [], {}
    for run in run_methods(list(names), events, options, detector, batch_size=batch_size, max_events=max_events,
                           skip_if_first_batch_raises=skip_unready, show_bar=progress is not None):
        if run.skipped:
            say(f"  skipped {run.name}: {run.skipped}")
            skipped[run.name] = run.skipped
            continue
        rate = run.throughput
        n_failed = int((run.predictions["fit_status"] != "ok").sum())
        say(f"  {run.name}: {len(run.predictions)} events, {n_failed} failed; build {rate['load_s']:.2f} s, "
            f"warm-up {rate['warmup_s']:.2f} s, then {rate['events_per_s']:.3g} events/s "
            f"({rate['events_per_s_per_core']:.3g} per core)")
        if out_dir is not None:
            provenance = run.provenance()
            provenance.subsample = provenance.subsample or subsample
            provenance.extra.update(extra_metadata or {})
            write_predictions(run.predictions, Path(out_dir) / f"{run.name}.parquet", provenance.to_dict())
        runs.append(run)
    return runs, skipped
