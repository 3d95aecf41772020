"""Where the model runs: in a thread of the server process, or in a separate worker process.

A thread is simplest and shares the loaded model, but a method written in Python holds
the GIL while it computes and starves the gRPC event loop. A worker process (started
with "spawn", so no gRPC state is forked) computes in parallel with request handling;
batches travel to it as numpy columns and come back as prediction tables.
"""

from __future__ import annotations

import importlib
import multiprocessing
import signal
import sys
import types
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any

import pandas as pd

from nurec.registry import Reconstructor, available_methods
from services.codec import EventBlock

_METHOD: Reconstructor | None = None


def _start_worker(target: str, options: dict[str, Any], threads: int | None, path: list[str]) -> None:
    """Load the method in the worker process (runs once, at its start)."""
    global _METHOD
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when the worker stops
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for entry in reversed(path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    module_name, attribute = target.split(":")
    _METHOD = getattr(importlib.import_module(module_name), attribute)(**options)
    if threads and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _reconstruct_in_worker(block: EventBlock) -> pd.DataFrame:
    assert _METHOD is not None
    return _METHOD.reconstruct(block.to_awkward())


def _ready() -> bool:
    return _METHOD is not None


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
    """Runs ``reconstruct`` of a registered method in one worker process; restarts it if it dies."""

    def __init__(self, name: str, options: dict[str, Any], threads: int | None) -> None:
        specs = {spec.name: spec for spec in available_methods()}
        if name not in specs:
            raise KeyError(f"method: '{name}' is not registered")
        self._args = (specs[name].target, options, threads, list(sys.path))
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_worker, initargs=self._args)
        with _without_main_module():
            pool.submit(_ready).result()  # starts the process and loads the model before serving
        return pool

    def reconstruct_block(self, block: EventBlock) -> pd.DataFrame:
        """Return the method's predictions for the events of ``block`` (computed in the worker)."""
        try:
            return self._pool.submit(_reconstruct_in_worker, block).result()
        except BrokenProcessPool:
            self._pool = self._start()
            raise RuntimeError("the worker process died; it was restarted") from None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
