"""The watchdog: notices a model worker that died or stopped responding, and replaces it.

Checked every ``interval_s`` on the server's event loop:

- a worker process that exited, or sent no heartbeat for ``worker_timeout_s`` (it is
  stopped, e.g. SIGSTOP, or stuck in code that holds the GIL);
- a model call (either worker kind) running longer than ``batch_timeout_s`` and ten
  times the time estimated for its events (a method that loops or deadlocks).

Then health turns NOT_SERVING, every waiting and running call is answered UNAVAILABLE
at once (not at its deadline), new calls are refused UNAVAILABLE, the worker process is
killed and a new one started (in thread mode the stuck thread is abandoned and calls
go to a fresh one), and health turns SERVING again. A worker that fails to start is
retried with a growing pause.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from services.batcher import DynamicBatcher, WorkerLost
from services.config import ServeConfig
from services.metrics import ServerMetrics
from services.worker import DaemonThreadExecutor, ProcessWorker

log = logging.getLogger("nurec.serve.watchdog")

HANG_FACTOR = 10.0
"""A model call counts as hung past this many times its estimated time (and batch_timeout_s)."""


class Watchdog:
    """Watches one batcher and its (optional) worker process; recovers from a dead or hung worker."""

    def __init__(self, batcher: DynamicBatcher, worker: ProcessWorker | None, config: ServeConfig,
                 metrics: ServerMetrics, set_serving: Callable[[bool], Awaitable[None]],
                 draining: Callable[[], bool], interval_s: float = 0.1) -> None:
        self.batcher = batcher
        self.worker = worker
        self.config = config
        self.metrics = metrics
        self._set_serving = set_serving
        self._draining = draining
        self.interval_s = min(interval_s, config.worker_timeout_s / 4)
        self.recovering = False
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="nurec-watchdog")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def problem(self) -> str | None:
        """Return what is wrong with the worker (one line), or None if it looks alive."""
        worker = self.worker
        if worker is not None:
            if not worker.alive:
                return "the worker process is not running"
            silence = worker.silence_s()
            if silence > self.config.worker_timeout_s:
                return f"the worker process (pid {worker.pid}) sent no heartbeat for {silence:.1f} s"
        if self.config.batch_timeout_s > 0:
            events, hits, running_s = self.batcher.running_for_s()
            limit = max(self.config.batch_timeout_s, HANG_FACTOR * self.batcher.estimate.batch_seconds(hits))
            if events and running_s > limit:
                return f"a model call of {events} events has run {running_s:.1f} s (limit {limit:.1f} s)"
        return None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            reason = self.problem()
            if reason is not None:
                await self.recover(reason)

    async def recover(self, reason: str) -> None:
        """Answer pending calls UNAVAILABLE, replace the worker, and serve again."""
        began = time.monotonic()
        self.recovering = True
        loop = asyncio.get_running_loop()
        try:
            log.error("model worker not responding; restarting it", extra={"reason": reason})
            if not self._draining():
                await self._set_serving(False)
            error = WorkerLost(f"the model worker stopped responding ({reason}); it is being restarted")
            self.batcher.pause(error)
            old = self.batcher.executor
            failed = self.batcher.abandon(error, DaemonThreadExecutor())
            old.shutdown(wait=False)  # its thread ends once the abandoned call returns (if ever)
            if self.worker is not None:
                await loop.run_in_executor(None, self.worker.kill)
                pause_s = 1.0
                while not self._draining():
                    try:
                        await loop.run_in_executor(None, self.worker.start)
                        break
                    except Exception as err:  # e.g. the model file went away: keep trying, NOT_SERVING
                        log.error("model worker failed to start", extra={"error": repr(err), "retry_s": pause_s})
                        await asyncio.sleep(pause_s)
                        pause_s = min(2 * pause_s, 30.0)
            self.metrics.worker_restarts.inc()
            self.batcher.resume()
            if not self._draining():
                await self._set_serving(True)
            log.info("model worker replaced", extra={
                "failed_calls": failed, "recovery_s": round(time.monotonic() - began, 3),
                "worker_pid": self.worker.pid if self.worker is not None else None})
        finally:
            self.recovering = False
