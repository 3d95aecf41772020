"""Run registered methods on events with timing, so every method is measured the same way.

A method that raises on a batch does not stop the run: the events of that batch get
``fit_status = "failed: method raised <error>"`` and NaN outputs, and the report counts them.

With a time budget every method first reconstructs one untimed warm-up event and a few
timed probe events; the budget is then
shared out by water-filling (fast methods get what they need to do every event, the rest
is split evenly among the slow ones), and a slow method runs on the leading events it can
afford (the events are in random order, so these are a random subsample, the same for all).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pandas as pd
from tqdm import tqdm

from nurec.evaluate.metrics import throughput
from nurec.evaluate.report import MethodPredictions
from nurec.io.predictions import write_predictions
from nurec.methods.contract import DetectorRef
from nurec.methods.registry import available_methods, build_method, resolve_detector
from nurec.methods.run import Provenance, cpu_seconds, error_reason, reconstruct_batch


@dataclass
class MethodRun:
    """The outcome of running one method: predictions (or why it was skipped) and timing."""

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
        """Return the run's provenance record."""
        return Provenance(self.name, self.version, self.detector, self.options,
                          n_events=int(self.throughput.get("n_events", 0)),
                          subsample=self.subsample, load_s=self.load_s,
                          wall_s=float(self.throughput.get("wall_s", 0.0)),
                          cpu_s=float(self.throughput.get("cpu_s", 0.0) or 0.0))


@dataclass
class _Batches:
    tables: list[pd.DataFrame] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    n_done: int = 0
    first_error: str | None = None


def _reconstruct_batches(method: Any, name: str, events: ak.Array, batch_size: int,
                         deadline_s: float | None = None, stop_if_first_raises: bool = False,
                         bar: tqdm | None = None) -> _Batches:
    """Return predictions and timing of ``method`` on ``events`` in batches; a raising batch fails its events.

    Stops early once ``deadline_s`` seconds of reconstruction have passed.
    """
    out = _Batches()
    for start in range(0, len(events), batch_size):
        batch = events[start : start + batch_size]
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        try:  # a method that fails outright on its first batch (e.g. an untrained model) can be skipped
            table = reconstruct_batch(method, batch, isolate=not (start == 0 and stop_if_first_raises))
        except Exception as err:  # noqa: BLE001
            out.first_error = error_reason(err)
            return out
        out.wall_s += time.perf_counter() - wall0
        out.cpu_s += cpu_seconds() - cpu0
        out.tables.append(table)
        out.n_done += len(batch)
        if bar is not None:
            bar.update(len(batch))
            bar.set_postfix_str(f"{out.n_done / out.wall_s:.3g} ev/s" if out.wall_s > 0 else "")
        if deadline_s is not None and out.wall_s >= deadline_s and out.n_done < len(events):
            break
    return out


def share_budget(budget_s: float, needs_s: dict[str, float]) -> dict[str, float]:
    """Return seconds per method: each gets what it needs, at most an even share of what is left (water-filling)."""
    shares: dict[str, float] = {}
    remaining = max(float(budget_s), 0.0)
    ordered = sorted(needs_s, key=lambda n: needs_s[n])
    for index, name in enumerate(ordered):
        shares[name] = min(needs_s[name], remaining / (len(ordered) - index))
        remaining -= shares[name]
    return shares


def run_methods(
    names: list[str],
    events: ak.Array,
    options: dict[str, dict] | None = None,
    detector: Any = None,
    batch_size: int = 256,
    time_budget_s: float | None = None,
    probe_events: int = 4,
    skip_if_first_batch_raises: bool = False,
    progress: Callable[[str], None] | None = None,
    show_bar: bool = False,
) -> list[MethodRun]:
    """Return one MethodRun per name (in order): predictions and timing on ``events``, or why it was skipped.

    Without ``time_budget_s`` every method reconstructs every event. With it, the methods
    share that many seconds of reconstruction (see the module docstring) and a method that
    cannot afford every event runs on the leading ones and is marked as a subsample.
    ``skip_if_first_batch_raises`` turns a method that fails outright (e.g. an untrained
    model) into a skipped one instead of a table of failures. Building a method is timed
    as ``load_s``; throughput counts reconstruction only. Every method is built for
    ``detector`` (a Geometry, a metadata record or a name; None: the default detector);
    a trained method that is not valid for it is skipped with the one-line reason.
    """
    geometry = resolve_detector(detector)
    detector_record = DetectorRef.of(geometry).to_dict()
    say = progress or (lambda _msg: None)
    n_total = len(events)
    built, runs = _build_methods(names, options, geometry, detector_record)
    parts: dict[str, list[_Batches]] = {name: [] for name in built}
    plan = {name: _Target(n_total) for name in built}
    if time_budget_s is not None:
        plan = _share_time_budget(built, events, time_budget_s, probe_events, skip_if_first_batch_raises, parts, say)
    for name, (method, load_s) in built.items():
        version = str(getattr(method, "version", "unknown"))
        if parts[name] and parts[name][0].first_error is not None:
            runs[name] = MethodRun(name, None, version, skipped=parts[name][0].first_error, load_s=load_s,
                                   detector=detector_record)
            continue
        parts[name].append(_run_to_target(method, name, events, parts[name], plan[name], batch_size,
                                          skip_if_first_batch_raises, show_bar, time_budget_s is not None))
        if parts[name][-1].first_error is not None:
            runs[name] = MethodRun(name, None, version, skipped=parts[name][-1].first_error, load_s=load_s,
                                   detector=detector_record)
            continue
        n_done = sum(p.n_done for p in parts[name])
        if n_done < plan[name].n_events:
            say(f"{name}: stopped after {n_done} events (over its time share)")
        rate = throughput(n_done, sum(p.wall_s for p in parts[name]), sum(p.cpu_s for p in parts[name]))
        runs[name] = MethodRun(name, pd.concat([t for p in parts[name] for t in p.tables], ignore_index=True),
                               version, rate, subsample=n_done < n_total, load_s=load_s, detector=detector_record)
    for name, run in runs.items():
        run.options = {k: str(v) for k, v in ((options or {}).get(name) or {}).items()}
    return [runs[name] for name in names]


@dataclass
class _Target:
    """How far a method runs: the leading ``n_events`` events, stopping after ``deadline_s`` of work."""

    n_events: int
    deadline_s: float | None = None


def _build_methods(names: list[str], options: dict[str, dict] | None, geometry: Any,
                   detector_record: dict[str, str]) -> tuple[dict[str, tuple[Any, float]], dict[str, MethodRun]]:
    """Return ({name: (method built for the detector, seconds to build)}, {name: skipped run} for those that cannot be built)."""
    built: dict[str, tuple[Any, float]] = {}
    skipped: dict[str, MethodRun] = {}
    for name in names:
        start = time.perf_counter()
        try:
            method = build_method(name, geometry, **((options or {}).get(name) or {}))
        except Exception as err:  # noqa: BLE001 - any construction error makes the method unavailable
            skipped[name] = MethodRun(name, None, skipped=error_reason(err), detector=detector_record)
            continue
        built[name] = (method, time.perf_counter() - start)
    return built, skipped


def _probe(method: Any, name: str, events: ak.Array, probe_events: int, skip_if_first_raises: bool,
           parts: list[_Batches], time_budget_s: float) -> float:
    """Time ``method`` on the leading events (after one untimed warm-up); return seconds per event.

    Worker pools, lazy imports and caches start once per method and would otherwise make the
    probe unrepresentative. Fast methods get a bigger timed batch, so per-call overheads of
    batched methods do not dominate. The timed batches are appended to ``parts``.
    """
    warm = _reconstruct_batches(method, name, events[:1], 1, stop_if_first_raises=skip_if_first_raises)
    if warm.first_error is not None:
        parts.append(warm)
        return 0.0
    first_size = min(probe_events, len(events))
    probe = _reconstruct_batches(method, name, events[:first_size], first_size,
                                 stop_if_first_raises=skip_if_first_raises)
    parts.append(probe)
    per_event = probe.wall_s / max(probe.n_done, 1)
    if (probe.first_error is None and len(events) > first_size
            and per_event * 16 * probe_events < min(5.0, 0.1 * time_budget_s)):
        more = _reconstruct_batches(method, name, events[first_size : first_size + 16 * probe_events],
                                    16 * probe_events)
        parts.append(more)
        per_event = (probe.wall_s + more.wall_s) / max(probe.n_done + more.n_done, 1)
    return per_event


def _share_time_budget(built: dict[str, tuple[Any, float]], events: ak.Array, time_budget_s: float,
                       probe_events: int, skip_if_first_raises: bool, parts: dict[str, list[_Batches]],
                       say: Callable[[str], None]) -> dict[str, _Target]:
    """Probe every method, then share what is left of the budget: return each method's target."""
    n_total = len(events)
    per_event = {name: _probe(method, name, events, probe_events, skip_if_first_raises, parts[name], time_budget_s)
                 for name, (method, _) in built.items()}
    ready = [n for n in built if parts[n][0].first_error is None]
    probed = {n: sum(p.n_done for p in parts[n]) for n in ready}
    shares = share_budget(time_budget_s - sum(p.wall_s for n in ready for p in parts[n]),
                          {n: per_event[n] * (n_total - probed[n]) for n in ready})
    plan = {name: _Target(n_total) for name in built}
    for name in ready:
        affordable = shares[name] / per_event[name] if per_event[name] > 0 else n_total
        plan[name] = _Target(int(min(n_total, probed[name] + int(affordable * (1 + 1e-9)))), 1.5 * shares[name] + 1.0)
        if plan[name].n_events < n_total:
            say(f"{name}: {per_event[name] * 1e3:.0f} ms/event, running {plan[name].n_events} of {n_total} events "
                f"({shares[name]:.0f} s of the {time_budget_s:.0f} s budget)")
    return plan


def _run_to_target(method: Any, name: str, events: ak.Array, done_parts: list[_Batches], target: _Target,
                   batch_size: int, skip_if_first_raises: bool, show_bar: bool, budgeted: bool) -> _Batches:
    """Return the batches that take ``method`` from the events already done to its target.

    Under a time budget, batches shrink so that a method stops close to its deadline.
    """
    done = sum(p.n_done for p in done_parts)
    bar = tqdm(total=target.n_events, initial=done, desc=name, unit="ev", disable=not show_bar,
               file=sys.stderr, leave=False)
    result = _Batches()
    if done < target.n_events:
        step = batch_size
        if budgeted and done:
            per_event_s = sum(p.wall_s for p in done_parts) / done
            step = int(np.clip(0.2 * (target.deadline_s or 0) / max(per_event_s, 1e-9), 1, batch_size))
        result = _reconstruct_batches(method, name, events[done : target.n_events], step,
                                      deadline_s=target.deadline_s,
                                      stop_if_first_raises=skip_if_first_raises and not done, bar=bar)
    bar.close()
    return result


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
    budget_s: float | None = None,
    batch_size: int = 256,
    options: dict[str, dict] | None = None,
    skip_unready: bool = True,
    progress: Progress | None = print_progress,
    extra_metadata: dict | None = None,
    detector: Any = None,
    subsample: bool = False,
) -> tuple[list[MethodRun], dict[str, str]]:
    """Return (runs of the methods that ran, {method: reason} for those skipped) on ``events``.

    With ``budget_s`` the methods share that much reconstruction time and a slow one runs
    on a subsample (nurec.evaluate.run_methods.run_methods). Predictions are written to
    ``out_dir/<method>.parquet`` when ``out_dir`` is given, with ``extra_metadata`` in
    each file's provenance (``extra``). Methods are built for ``detector`` (see run_methods).
    ``subsample``: ``events`` are already a subsample of the dataset (the provenance says so).
    """
    say = progress or (lambda _msg: None)
    say(f"reconstructing {len(events)} events with {', '.join(names) or 'no methods'}"
        + (f" (time budget {budget_s:.0f} s)" if budget_s is not None else "") + " ...")
    runs, skipped = [], {}
    for run in run_methods(list(names), events, options, detector, batch_size=batch_size, time_budget_s=budget_s,
                           skip_if_first_batch_raises=skip_unready, progress=say, show_bar=progress is not None):
        if run.skipped:
            say(f"  skipped {run.name}: {run.skipped}")
            skipped[run.name] = run.skipped
            continue
        rate = run.throughput
        n_failed = int((run.predictions["fit_status"] != "ok").sum())
        say(f"  {run.name}: {rate['n_events']} events in {rate['wall_s']:.1f} s "
            f"({rate['events_per_s']:.3g} events/s, {rate['events_per_s_per_core']:.3g} per core), {n_failed} failed")
        if out_dir is not None:
            provenance = run.provenance()
            provenance.subsample = provenance.subsample or subsample
            provenance.extra.update(extra_metadata or {})
            write_predictions(run.predictions, Path(out_dir) / f"{run.name}.parquet", provenance.to_dict())
        runs.append(run)
    return runs, skipped
