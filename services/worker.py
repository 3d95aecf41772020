"""Where the model runs: in a thread of the server process, or in a separate worker process.

A thread is simplest and shares the loaded model, but a method written in Python holds
the GIL while it computes and starves the gRPC event loop. A worker process (started
with "spawn", so no gRPC state is forked) computes in parallel with request handling;
batches travel to it as numpy columns and come back as prediction tables.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import types
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from nurec.methods.contract import Method
from nurec.methods.registry import MethodSpec, available_methods, build_method, register_method
from nurec.methods.run import reconstruct_batch
from services.codec import EventBlock


@dataclass
class _WorkerState:
    """The worker process's method: its registry name and options, built once per detector."""

    name: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    threads: int | None = None
    methods: dict[str, Method] = field(default_factory=dict)

    def method_for(self, detector: str) -> Method:
        if detector not in self.methods:
            self.methods[detector] = build_method(self.name, detector, **self.options)
            if self.threads and "torch" in sys.modules:
                sys.modules["torch"].set_num_threads(self.threads)  # this process only runs the method
        return self.methods[detector]


_STATE = _WorkerState()


def _start_worker(spec: MethodSpec, options: dict[str, Any], threads: int | None, path: list[str],
                  detector: str) -> None:
    """Build the method for the default detector in the worker process (runs once, at its start).

    The method's registry entry travels with it, so a method registered at run time (a
    plugin) is known in the worker too.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when the worker stops
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for entry in reversed(path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    if spec.name not in {s.name for s in available_methods()}:
        register_method(spec.name, spec.target, spec.description)
    _STATE.name, _STATE.options, _STATE.threads = spec.name, dict(options), threads
    _STATE.method_for(detector)


def _reconstruct_in_worker(detector: str, block: EventBlock) -> pd.DataFrame:
    return reconstruct_batch(_STATE.method_for(detector), block.to_awkward())


def _ready() -> bool:
    return bool(_STATE.methods)


@contextmanager
def _without_main_module() -> Iterator[None]:
    """Hide ``__main__`` while the worker starts, so "spawn" does not re-run the caller's script.

    The worker needs only importable modules (the registry target), never the script,
    stdin or notebook that started the server.
    """
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


class ProcessWorker:
    """Runs a registered method in one worker process (built per detector there); restarts it if it dies."""

    def __init__(self, name: str, options: dict[str, Any], threads: int | None, detector: str) -> None:
        specs = {spec.name: spec for spec in available_methods()}
        if name not in specs:
            raise KeyError(f"method: '{name}' is not registered")
        self._args = (specs[name], options, threads, list(sys.path), detector)
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_worker, initargs=self._args)
        with _without_main_module():
            pool.submit(_ready).result()  # starts the process and loads the model before serving
        return pool

    def reconstruct_block(self, detector: str, block: EventBlock) -> pd.DataFrame:
        """Return the method's predictions for the events of ``block`` of ``detector`` (computed in the worker)."""
        try:
            return self._pool.submit(_reconstruct_in_worker, detector, block).result()
        except BrokenProcessPool:
            self._pool = self._start()
            raise RuntimeError("the worker process died; it was restarted") from None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
