"""A small deterministic reconstruction method and helpers for the service and client tests.

``CentroidDirection`` estimates the direction of travel as the unit vector from the
charge-weighted centroid of the earlier half of the hits (by time) to that of the later
half; a real method's stand-in that needs no training. Its ``gate`` (a threading.Event)
lets a test hold the model busy without sleeping.
"""

from __future__ import annotations

import socket
import threading
import time

import awkward as ak
import numpy as np
import pandas as pd

from nurec.io.schema import empty_predictions, event_problems, finish_predictions
from nurec.methods.contract import MethodInfo
from nurec.methods.registry import register_method

POISON_RUN_ID = 666
"""CentroidDirection raises on any batch holding an event of this run (a method bug stand-in)."""


class CentroidDirection:
    """Direction from early-hit centroid to late-hit centroid; records what it computed."""

    name = "centroid"
    version = "test-1"

    def __init__(self, seconds_per_batch: float = 0.0, detector: object = None) -> None:
        self.seconds_per_batch = seconds_per_batch
        self.detector = detector
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.batch_sizes: list[int] = []
        self.run_ids: list[int] = []

    def describe(self) -> MethodInfo:
        """Return a description valid on any detector."""
        return MethodInfo(self.name, self.version, "test: early-to-late hit centroid direction", ("direction",))

    def reconstruct(self, events: ak.Array) -> pd.DataFrame:
        """Return one prediction row per event; events with unusable hits get fit_status failed."""
        self.entered.set()
        self.gate.wait()
        if self.seconds_per_batch:
            time.sleep(self.seconds_per_batch)  # stands in for model compute
        self.batch_sizes.append(len(events))
        self.run_ids.extend(ak.to_numpy(events.run_id).tolist())
        if POISON_RUN_ID in self.run_ids[-len(events):]:
            raise ValueError(f"poisoned batch (run_id {POISON_RUN_ID})")
        table = empty_predictions(ak.to_numpy(events.event_id), self.name)
        hits = events.hits
        late = hits.t > ak.mean(hits.t, axis=1)
        q = hits.charge
        centroids = []
        for mask in (~late, late):
            weight = ak.sum(q * mask, axis=1)
            centroids.append(np.stack([ak.to_numpy(ak.sum(hits[c] * q * mask, axis=1) / weight)
                                       for c in ("x", "y", "z")], axis=1))
        direction = centroids[1] - centroids[0]
        norm = np.linalg.norm(direction, axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            direction = direction / norm
        table["dir_x"], table["dir_y"], table["dir_z"] = direction.T
        table["n_hits"] = ak.to_numpy(ak.num(hits, axis=1)).astype(float)
        for i, problem in enumerate(event_problems(events, min_hits=2)):
            if problem is not None or not np.isfinite(direction[i]).all():
                table.loc[i, ["dir_x", "dir_y", "dir_z"]] = np.nan
                table.loc[i, "fit_status"] = f"failed: {problem or 'degenerate hits'}"
        return finish_predictions(table)


class NullMethod:
    """Returns NaN predictions at once: measures the cost of serving alone (bench_serve --plugin)."""

    name = "centroid"
    version = "test-null"

    def describe(self) -> MethodInfo:
        """Return a description valid on any detector."""
        return MethodInfo(self.name, self.version, "test: computes nothing", ())

    def reconstruct(self, events: ak.Array) -> pd.DataFrame:
        """Return one all-NaN 'ok' row per event."""
        return empty_predictions(ak.to_numpy(events.event_id), self.name)


STALL_S = 120.0
"""Seconds per batch of the "stall" variant: longer than any test waits (a hung model stand-in)."""


def make_centroid(model: str | None = None, detector: object = None) -> CentroidDirection | NullMethod:
    """Return the test method; model "slow" takes 0.3 s per batch, "stall" STALL_S, "null" computes nothing."""
    if model == "null":
        return NullMethod()
    seconds = {"slow": 0.3, "stall": STALL_S}.get(model or "", 0.0)
    return CentroidDirection(seconds_per_batch=seconds, detector=detector)


CENTROID_REGISTRATION = ("centroid", "service_testing:make_centroid", "test: early-to-late hit centroid direction")
"""How tests/service_plugin.py registers the test method in server subprocesses and benchmarks.

The pytest process itself does not register it globally (other tests list every
registered method); tests that need it in the registry use the ``centroid_registered``
fixture pattern (monkeypatch the registry).
"""


def register_centroid() -> None:
    """Register the test method "centroid" in the nurec registry."""
    register_method(*CENTROID_REGISTRATION)


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def small_events(n_events: int = 40, seed: int = 7, detector: str = "icecube-mini"):
    """Return a few simulated events (awkward, nurec schema) for service tests."""
    from sim.config import SimulationConfig
    from sim.simulate import simulate_events

    events, _ = simulate_events(SimulationConfig(detector=detector, n_events=n_events, seed=seed))
    return events


def serve_config(**changes):
    """Return a ServeConfig for an in-process test server on a free port without metrics."""
    from services.config import ServeConfig

    settings = {"method": "centroid", "port": 0, "metrics_port": 0, "detector": "icecube-mini", "worker": "thread",
                "host": "127.0.0.1"}
    settings.update(changes)
    return ServeConfig(**settings)


def wait_until(condition, timeout_s: float = 20.0, what: str = "condition") -> None:
    """Poll ``condition()`` until true (a bounded wait on another thread, not a fixed sleep)."""
    end = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)
