"""Dynamic batching: merge events from concurrent requests into one model call.

Requests (unary calls and stream messages) submit blocks of events. A single batching
task takes events in arrival order until ``max_batch_size`` events are waiting or the
oldest has waited ``max_queue_delay``, runs the model on them in a worker thread (off the
event loop), and hands each request its own slice of the results. A request larger than
the free room of a batch is split across batches and reassembled in order.

Limits: at most ``max_queue`` events wait (beyond it ``submit`` raises ``QueueFull``, or
waits for room when asked to); requests whose deadline has passed, or whose caller has
gone, are dropped before compute; once draining, new work is refused with ``Draining``
while everything already accepted is still computed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from services.codec import EventBlock
from services.metrics import ServerMetrics

log = logging.getLogger("nurec.serve.batcher")


class QueueFull(Exception):
    """The queue has no room for the request."""


class Draining(Exception):
    """The server is shutting down and accepts no new work."""


class DeadlineExpired(Exception):
    """The request's deadline passed before it was computed."""


class BatchFailed(Exception):
    """The model call raised; the message says why."""


@dataclass(eq=False)
class _Job:
    block: EventBlock
    future: asyncio.Future
    enqueued: float
    deadline: float | None
    taken: int = 0
    results: list[Any] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return len(self.block) - self.taken


class DynamicBatcher:
    """Batches submitted events into calls of ``compute(block) -> per-event results``.

    ``compute`` runs in ``executor`` and must return one result per event of its block,
    in order. ``max_queue_delay_s`` is how long the oldest waiting event may wait for
    others to join its batch.
    """

    def __init__(self, compute: Callable[[EventBlock], Sequence[Any]], executor: Executor, *,
                 max_batch_size: int = 512, max_queue_delay_s: float = 0.005, max_queue: int = 10_000,
                 metrics: ServerMetrics | None = None) -> None:
        self._compute = compute
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_s
        self.max_queue = max_queue
        self.metrics = metrics or ServerMetrics()
        self._queue: deque[_Job] = deque()
        self._queued_events = 0
        self._computing = False
        self._draining = False
        self._arrived: asyncio.Event | None = None
        self._room: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start the batching task on the running event loop."""
        self._arrived, self._room, self._idle = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self._room.set()
        self._idle.set()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="nurec-batcher")

    @property
    def queued_events(self) -> int:
        """Return the number of events waiting for a batch."""
        return self._queued_events

    @property
    def idle(self) -> bool:
        """Return True when nothing waits and nothing is being computed."""
        return not self._queue and not self._computing

    async def drain(self, timeout_s: float | None = None) -> bool:
        """Refuse new work, finish what was accepted; return True if all finished in time."""
        self._draining = True
        assert self._idle is not None and self._arrived is not None
        self._arrived.set()
        try:
            await asyncio.wait_for(self._wait_idle(), timeout_s)
            return True
        except TimeoutError:
            return False

    async def _wait_idle(self) -> None:
        while not self.idle:
            self._idle.clear()
            await self._idle.wait()

    async def stop(self) -> None:
        """Stop the batching task; waiting requests fail with Draining."""
        self._draining = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while self._queue:
            job = self._queue.popleft()
            if not job.future.done():
                job.future.set_exception(Draining("server stopped"))
        self._set_queued(0)

    # --- submission --------------------------------------------------------------------

    async def submit(self, block: EventBlock, timeout_s: float | None = None,
                     wait_for_room: bool = False) -> list[Any]:
        """Return the per-event results of ``block`` once computed.

        ``timeout_s`` is the time left before the caller's deadline (None: no deadline).
        Raises QueueFull (unless ``wait_for_room``), Draining or DeadlineExpired.
        """
        if len(block) == 0:
            return []
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadline = None if timeout_s is None else now + timeout_s
        while self._queued_events + len(block) > self.max_queue:
            if self._draining:
                raise Draining("server is draining")
            if not wait_for_room:
                raise QueueFull(f"queue full: {self._queued_events} events waiting, "
                                f"max_queue is {self.max_queue}")
            assert self._room is not None
            self._room.clear()
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise DeadlineExpired("deadline passed while waiting for room in the queue")
            try:
                await asyncio.wait_for(self._room.wait(), remaining)
            except TimeoutError:
                raise DeadlineExpired("deadline passed while waiting for room in the queue") from None
        if self._draining:
            raise Draining("server is draining")
        job = _Job(block, loop.create_future(), loop.time(), deadline)
        self._queue.append(job)
        self._set_queued(self._queued_events + len(block))
        assert self._arrived is not None and self._idle is not None
        self._idle.clear()
        self._arrived.set()
        return await job.future

    def _set_queued(self, n: int) -> None:
        self._queued_events = n
        self.metrics.queue_depth.set(n)
        if self._room is not None and n < self.max_queue:
            self._room.set()

    # --- the batching loop -------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._arrived is not None and self._idle is not None
        while True:
            if not self._queue:
                self._idle.set()
                self._arrived.clear()
                await self._arrived.wait()
                continue
            # Wait for a full batch or for the oldest event's delay to run out.
            flush_at = self._queue[0].enqueued + self.max_queue_delay_s
            while self._queued_events < self.max_batch_size and not self._draining:
                remaining = flush_at - loop.time()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
            slices = self._take(loop.time())
            if slices:
                await self._run_batch(slices)

    def _take(self, now: float) -> list[tuple[_Job, int, int]]:
        """Return (job, first, stop) event slices forming the next batch; drop dead jobs."""
        slices: list[tuple[_Job, int, int]] = []
        n = 0
        queued = self._queued_events
        while self._queue and n < self.max_batch_size:
            job = self._queue[0]
            if job.future.done():  # the caller went away (cancelled RPC)
                self._queue.popleft()
                queued -= job.remaining
                self.metrics.events.labels("cancelled").inc(job.remaining)
                continue
            if job.deadline is not None and job.deadline <= now:
                self._queue.popleft()
                queued -= job.remaining
                self.metrics.events.labels("expired").inc(job.remaining)
                job.future.set_exception(DeadlineExpired("deadline passed before the events were computed"))
                continue
            count = min(job.remaining, self.max_batch_size - n)
            if job.taken == 0:
                self.metrics.queue_seconds.observe(now - job.enqueued)
            slices.append((job, job.taken, job.taken + count))
            job.taken += count
            n += count
            queued -= count
            if job.remaining == 0:
                self._queue.popleft()
        self._set_queued(queued)
        return slices

    async def _run_batch(self, slices: list[tuple[_Job, int, int]]) -> None:
        blocks = [job.block if (first, stop) == (0, len(job.block)) else
                  job.block.take(list(range(first, stop))) for job, first, stop in slices]
        batch = EventBlock.concatenate(blocks)
        self.metrics.batch_size.observe(len(batch))
        self._computing = True
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self._compute, batch)
            if len(results) != len(batch):
                raise BatchFailed(f"model returned {len(results)} results for {len(batch)} events")
        except Exception as err:  # a failing model must not take the server down
            log.exception("batch of %d events failed", len(batch))
            for job, _first, _stop in slices:
                if not job.future.done():
                    job.future.set_exception(BatchFailed(f"reconstruction failed: {err}"))
            return
        finally:
            self._computing = False
            elapsed = time.perf_counter() - start
            self.metrics.compute_seconds.observe(elapsed)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("batch", extra={"events": len(batch), "requests": len(slices),
                                          "compute_ms": round(elapsed * 1000, 3),
                                          "queued_events": self._queued_events})
        offset = 0
        for job, first, stop in slices:
            part = results[offset:offset + stop - first]
            offset += stop - first
            if job.future.done():
                continue
            job.results.extend(part)
            if stop == len(job.block):
                job.future.set_result(job.results)
