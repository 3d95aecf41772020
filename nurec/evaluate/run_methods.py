"""Run registered methods on events with timing, so every method is measured the same way.

A method that raises on a batch does not stop the run: the events of that batch get
``fit_status = "failed: method raised <error>"`` and NaN outputs, and the report counts them.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import awkward as ak
import numpy as np
import pandas as pd
from tqdm import tqdm

from nurec.evaluate.metrics import throughput
from nurec.evaluate.report import MethodPredictions
from nurec.io.schema import PREDICTION_COLUMNS, empty_predictions
from nurec.registry import get_method


def cpu_seconds() -> float:
    """Return user + system CPU seconds of this process, its threads and its reaped child processes."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def failed_predictions(event_ids: np.ndarray, method: str, reason: str) -> pd.DataFrame:
    """Return a prediction table marking every event failed with ``reason`` (NaN outputs)."""
    table = empty_predictions(np.asarray(event_ids), method)
    table["fit_status"] = f"failed: {reason}"
    return table


def _error_reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"method raised {type(err).__name__}" + (f": {text[:200]}" if text else "")


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

    def as_method_predictions(self) -> MethodPredictions:
        """Return the run as input for the report (raises if the method was skipped)."""
        if self.predictions is None:
            raise ValueError(f"{self.name}: skipped ({self.skipped}), no predictions")
        return MethodPredictions(self.name, self.version, self.predictions, self.metadata(),
                                 self.throughput, self.subsample)

    def metadata(self) -> dict[str, Any]:
        """Return provenance for nurec.io.predictions.write_predictions."""
        return {"method": self.name, "version": self.version, "throughput": self.throughput,
                "subsample": self.subsample, "load_s": self.load_s,
                "n_events": 0 if self.predictions is None else len(self.predictions)}


def run_method(
    name: str,
    events: ak.Array,
    options: dict[str, Any] | None = None,
    batch_size: int = 256,
    time_budget_s: float | None = None,
    probe_events: int = 8,
    min_events: int = 50,
    skip_if_first_batch_raises: bool = False,
    progress: Callable[[str], None] | None = None,
    show_bar: bool = False,
) -> MethodRun:
    """Return the predictions and timing of method ``name`` on ``events``, batch by batch.

    With ``time_budget_s`` the method first reconstructs ``probe_events`` events; if the
    rest would not fit in the budget at the probed speed, it runs on only as many of the
    following events as fit (at least ``min_events``, in batches of at most a fifth of the
    budget, stopping at 1.5 times the budget if it slows down) and the run is marked as a
    subsample. ``skip_if_first_batch_raises`` turns a method that fails outright (e.g.
    an untrained model) into a skipped one instead of a table of failures.
    Throughput counts reconstruction only (building the method is ``load_s``).
    """
    say = progress or (lambda _msg: None)
    start = time.perf_counter()
    try:
        method = get_method(name, **(options or {}))
    except Exception as err:  # noqa: BLE001 - any construction error makes the method unavailable
        return MethodRun(name, None, skipped=_error_reason(err))
    load_s = time.perf_counter() - start
    version = str(getattr(method, "version", "unknown"))
    n_total = len(events)
    ids = ak.to_numpy(events.event_id)
    tables: list[pd.DataFrame] = []
    wall = cpu = 0.0
    n_target = n_total
    position = 0
    first = True
    bar = tqdm(total=n_total, desc=name, unit="ev", disable=not show_bar, file=sys.stderr, leave=False)
    step = batch_size
    while position < n_target:
        size = min(probe_events if first and time_budget_s is not None else step, n_target - position)
        batch = events[position : position + size]
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        try:
            table = method.reconstruct(batch)
            missing = [c for c in PREDICTION_COLUMNS if c not in table.columns]
            if missing:
                raise ValueError(f"predictions lack column '{missing[0]}'")
        except Exception as err:  # noqa: BLE001 - one bad batch must not stop the others
            if first and skip_if_first_batch_raises:
                bar.close()
                return MethodRun(name, None, version, skipped=_error_reason(err), load_s=load_s)
            table = failed_predictions(ids[position : position + size], name, _error_reason(err))
        wall += time.perf_counter() - wall0
        cpu += cpu_seconds() - cpu0
        tables.append(table)
        position += size
        bar.update(size)
        bar.set_postfix_str(f"{position / wall:.3g} ev/s" if wall > 0 else "")
        if first and time_budget_s is not None and position < n_total:
            per_event = wall / position
            affordable = int(time_budget_s / per_event * (1 + 1e-9)) if per_event > 0 else n_total
            n_target = int(min(n_total, max(min_events, affordable)))
            # Batches of at most a fifth of the budget, so a slow method can be stopped in time.
            step = int(np.clip(0.2 * time_budget_s / per_event, 1, batch_size)) if per_event > 0 else batch_size
            if n_target < n_total:
                bar.total = n_target
                bar.refresh()
                say(f"{name}: {per_event * 1e3:.0f} ms/event, running {n_target} of {n_total} events "
                    f"to stay within {time_budget_s:.0f} s")
        first = False
        if time_budget_s is not None and wall >= 1.5 * time_budget_s and position < n_target:
            say(f"{name}: stopped after {position} events, {wall:.0f} s (budget {time_budget_s:.0f} s)")
            break
    bar.close()
    predictions = pd.concat(tables, ignore_index=True) if tables else failed_predictions(ids[:0], name, "")
    rate = throughput(position, wall, cpu)
    return MethodRun(name, predictions, version, rate, subsample=position < n_total, load_s=load_s)


def print_progress(message: str) -> None:
    """Print one progress line to stderr (flushed, so it shows when piped)."""
    print(message, file=sys.stderr, flush=True)
