"""Map a per-chunk function over chunks: in-process, on a local Dask cluster, or on a remote one.

Used by ``nurec simulate`` (one chunk = one Parquet part file) and meant for batch
reconstruction: the caller supplies a picklable function of one task and, optionally, a
callback that consumes each result in the main process as it arrives (e.g. to record
the chunk in a DatasetWriter). Results are returned in task order, so the output of a
run never depends on the number of workers or the order chunks finish in.

- ``workers=0``: run in this process (no Dask), for small jobs and tests.
- ``workers=N``: start a ``dask.distributed.LocalCluster`` of N single-threaded worker
  processes on this machine; ``workers=None`` uses one per CPU core.
- ``scheduler="tcp://host:port"``: submit to an existing Dask scheduler (e.g. started by
  dask-jobqueue on Slurm/HTCondor); the workers there must have nurec installed.

A tqdm progress bar counts ``units`` (e.g. events) and shows their rate.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ParallelOptions:
    """Where chunks run: ``workers`` (0 = in-process, None = one per core) or a ``scheduler`` address."""

    workers: int | None = None
    scheduler: str | None = None
    progress: bool = True
    processes: bool = True  # LocalCluster worker processes (False: threads, for tests)

    def resolved_workers(self, n_tasks: int) -> int:
        """Return the number of local workers to start (0 = run in-process)."""
        if self.scheduler:
            return 0
        if self.workers is None:
            # One chunk gains nothing from a cluster: run it here.
            workers = min(os.cpu_count() or 1, n_tasks)
            return 0 if workers <= 1 else workers
        if self.workers < 0:
            raise ValueError(f"workers: must be 0 (in-process) or more, got {self.workers}")
        return self.workers


def map_chunks(
    func: Callable[[T], R],
    tasks: Sequence[T],
    options: ParallelOptions | None = None,
    units: Sequence[int] | None = None,
    unit: str = "chunk",
    description: str = "",
    on_result: Callable[[int, R], Any] | None = None,
    result_units: Callable[[R], int] | None = None,
) -> list[R]:
    """Return ``[func(task) for task in tasks]``, computed in-process or on a Dask cluster.

    ``units[i]`` (default 1) is how much task i advances the progress bar, or
    ``result_units(result)`` if given. ``on_result(i, result)`` runs in this process as
    each task finishes. On an error or Ctrl-C the remaining tasks are cancelled, the
    cluster is closed and the exception propagates.
    """
    options = options or ParallelOptions()
    tasks = list(tasks)
    weights = list(units) if units is not None else [1] * len(tasks)
    results: list[Any] = [None] * len(tasks)
    with _progress(sum(weights), unit, description, options.progress) as bar:

        def finished(index: int, result: Any) -> None:
            results[index] = result
            if on_result is not None:
                on_result(index, result)
            bar.update(result_units(result) if result_units else weights[index])

        n_workers = options.resolved_workers(len(tasks))
        if not options.scheduler and n_workers == 0:
            for index, task in enumerate(tasks):
                finished(index, func(task))
            return results
        _map_dask(func, tasks, options, n_workers, finished, bar)
    return results


def _map_dask(func, tasks, options: ParallelOptions, n_workers: int, finished, bar) -> None:
    from dask.distributed import Client, LocalCluster, as_completed

    with ExitStack() as stack:
        if options.scheduler:
            bar.set_postfix_str(f"scheduler {options.scheduler}")
            client = stack.enter_context(Client(options.scheduler, timeout="30s"))
        else:
            cluster = stack.enter_context(LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=options.processes,
                dashboard_address=":0", silence_logs=40,  # no fixed port to clash on
            ))
            client = stack.enter_context(Client(cluster))
        bar.reset(total=bar.total)  # rates count from when the workers are up
        futures = [client.submit(func, task, pure=False) for task in tasks]
        index_of = {future.key: i for i, future in enumerate(futures)}
        try:
            for future in as_completed(futures):
                finished(index_of[future.key], future.result())
        except BaseException:
            client.cancel(futures, force=True)
            raise


class _NullBar:
    total = 0

    def update(self, n: int = 1) -> None:
        pass

    def reset(self, total: int | None = None) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def __enter__(self) -> _NullBar:
        return self

    def __exit__(self, *exc) -> None:
        pass


def _progress(total: int, unit: str, description: str, enabled: bool):
    if not enabled:
        return _NullBar()
    from tqdm import tqdm

    return tqdm(total=total, unit=f" {unit}", desc=description or None, file=sys.stderr,
                dynamic_ncols=True, smoothing=0.1, mininterval=0.5)

