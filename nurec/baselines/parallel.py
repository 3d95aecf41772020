"""Run per-event fits on several cores: events are cut into chunks, one task per chunk."""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def available_cores() -> int:
    """Return the number of CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_jobs(n_jobs: int | None) -> int:
    """Return the worker count: ``None`` or 0 means all available cores, negative counts back."""
    cores = available_cores()
    if not n_jobs:
        return cores
    if n_jobs < 0:
        return max(1, cores + 1 + n_jobs)
    return max(1, int(n_jobs))


def map_chunks(function: Callable[[Any], Any], chunks: Sequence[Any], n_jobs: int | None) -> list[Any]:
    """Return [function(chunk) for chunk in chunks], run in worker processes when useful.

    With one worker or one chunk everything runs in this process (no start-up cost).
    Workers are forked while this process runs a single Python thread (scripts need no
    ``__main__`` guard); with more threads (a gRPC server, a thread pool) forking is
    unsafe and a "forkserver" starts them instead.
    """
    workers = min(resolve_jobs(n_jobs), len(chunks))
    if workers <= 1:
        return [function(chunk) for chunk in chunks]
    method = "fork" if threading.active_count() == 1 else "forkserver"
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return list(pool.map(function, chunks))


def split_evenly(n_items: int, n_jobs: int | None, max_chunk: int = 64, min_chunk: int = 4) -> list[range]:
    """Return index ranges covering ``n_items``: ≥ 2 chunks per worker, each ≤ ``max_chunk``."""
    workers = resolve_jobs(n_jobs)
    size = max(min_chunk, min(max_chunk, -(-n_items // max(1, 2 * workers))))
    return [range(s, min(s + size, n_items)) for s in range(0, n_items, size)]
