"""Dynamic batching: merge events from concurrent requests into one model call.

Requests (unary calls and stream messages) submit blocks of events. A single batching
task takes events in arrival order until ``max_batch_size`` events are waiting or the
oldest has waited ``max_queue_delay``, runs the model on them in a worker thread (off the
event loop), and hands each request its own slice of the results. A request larger than
the free room of a batch is split across batches and reassembled in order.

Admission is on estimated work, not on queue length (services/admission.py fits the
time of recent model calls): a request is refused at once with ``QueueFull`` when the
work queued ahead of it would take longer than ``max_queue_wait_s``, or when the work
ahead plus its own would not finish before its deadline; it never waits just to time
out. ``max_queue`` events is a memory cap on top. Streams (``wait_for_room``) wait for
room instead of being refused, but still not past their deadline. The queue is served
in arrival order; requests whose deadline has passed, or that could no longer be
computed before it, and requests whose caller has gone, are dropped before compute.
Deadline decisions plan with the estimate plus twice its recent relative error.

Once draining, new work is refused with ``Draining`` while everything already accepted
is still computed; ``abandon`` fails every waiting and running request at once (a hard
drain, or a worker that stopped responding) and lets the batching loop go on without
waiting for the abandoned model call.
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

from services.admission import WorkEstimate
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


class WorkerLost(Exception):
    """The model worker died or stopped responding; the request may be retried (UNAVAILABLE)."""


PASSED_THROUGH = (Draining, WorkerLost)
"""Errors of the model call that reach the callers as they are (not as BatchFailed)."""


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

    @property
    def remaining_hits(self) -> int:
        offsets = self.block.offsets
        return int(offsets[-1] - offsets[self.taken])


class DynamicBatcher:
    """Batches submitted events into calls of ``compute(block) -> per-event results``.

    ``compute`` runs in ``executor`` and must return one result per event of its block,
    in order. ``max_queue_delay_s`` is how long the oldest waiting event may wait for
    others to join its batch; ``max_queue_wait_s`` bounds the estimated work queued
    ahead of a new request (``estimate``, fitted to the measured model calls).
    """

    def __init__(self, compute: Callable[[EventBlock], Sequence[Any]], executor: Executor, *,
                 max_batch_size: int = 512, max_queue_delay_s: float = 0.005, max_queue: int = 10_000,
                 max_queue_wait_s: float = 1.0, metrics: ServerMetrics | None = None,
                 estimate: WorkEstimate | None = None) -> None:
        self._compute = compute
        self.executor = executor
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_s
        self.max_queue = max_queue
        self.max_queue_wait_s = max_queue_wait_s
        self.metrics = metrics or ServerMetrics()
        self.estimate = estimate or WorkEstimate(max_batch_size)
        self._queue: deque[_Job] = deque()
        self._queued_events = 0
        self._queued_hits = 0
        self._computing = False
        self._draining = False
        self._paused: Exception | None = None
        self._running: list[_Job] = []
        self._running_events = 0
        self._running_hits = 0
        self._running_since = 0.0
        self._running_call: asyncio.Future | None = None
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

    def running_for_s(self) -> tuple[int, int, float]:
        """Return (events, hits, seconds so far) of the model call running now; zeros when none runs."""
        if not self._computing:
            return 0, 0, 0.0
        return self._running_events, self._running_hits, time.monotonic() - self._running_since

    def _running_left_s(self) -> float:
        """Return the estimated seconds until the running model call ends (0 when none runs)."""
        if not self._computing:
            return 0.0
        elapsed = time.monotonic() - self._running_since
        return max(0.0, self.estimate.batch_seconds(self._running_hits) - elapsed)

    def estimated_wait_s(self) -> float:
        """Return the estimated seconds until the model could start on a request submitted now."""
        return self._running_left_s() + self.estimate.seconds(self._queued_events, self._queued_hits)

    async def drain(self, timeout_s: float | None = None) -> bool:
        """Refuse new work, finish what was accepted; return True if all finished in time."""
        self._draining = True
        assert self._idle is not None and self._arrived is not None and self._room is not None
        self._arrived.set()
        self._make_room()  # streams waiting for room learn that the server drains
        try:
            await asyncio.wait_for(self._wait_idle(), timeout_s)
            return True
        except TimeoutError:
            return False

    async def _wait_idle(self) -> None:
        while not self.idle:
            self._idle.clear()
            await self._idle.wait()

    def pause(self, error: Exception) -> None:
        """Refuse new work with ``error`` until ``resume`` (while the worker restarts)."""
        self._paused = error
        self._make_room()

    def resume(self) -> None:
        """Accept new work again after ``pause``."""
        self._paused = None

    def abandon(self, error: Exception, executor: Executor | None = None) -> int:
        """Fail every waiting and running request with ``error``; return how many calls failed.

        The running model call is not waited for: the batching loop goes on at once, on
        ``executor`` if given (the abandoned call may still hold the old one's thread).
        """
        failed = 0
        for job in [*self._running, *self._queue]:
            if not job.future.done():
                job.future.set_exception(error)
                failed += 1
        self._queue.clear()
        self._set_queued(0, 0)
        self._make_room()
        if executor is not None:
            self.executor = executor
        if self._running_call is not None and not self._running_call.done():
            self._running_call.cancel()  # wakes _run_batch, which treats it as abandoned
        return failed

    async def stop(self) -> None:
        """Stop the batching task; waiting requests fail with Draining."""
        self._draining = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.abandon(Draining("server stopped"))

    # --- submission --------------------------------------------------------------------

    def _refusal(self, events: int) -> str | None:
        """Return why a request of ``events`` events cannot be queued now, or None if it can."""
        if self._queued_events + events > self.max_queue:
            return f"queue full: {self._queued_events} events waiting, max_queue is {self.max_queue}"
        if not self.estimate.known:
            return None
        wait = self.estimated_wait_s()
        if wait > self.max_queue_wait_s:
            return (f"overloaded: estimated wait {wait:.3f} s for the {self._queued_events} queued events "
                    f"exceeds max_queue_wait_s {self.max_queue_wait_s:g} s")
        return None

    def _infeasible(self, events: int, hits: int, timeout_s: float | None) -> str | None:
        """Return why a request cannot be answered before its deadline, or None if it can."""
        if timeout_s is None or not self.estimate.known:
            return None
        wait = self.estimated_wait_s()
        # Its results come when the batch holding its last events ends; later arrivals fill that
        # batch as they filled the running one.
        fill = self._running_events if self._computing else 0
        finish = (self.max_queue_delay_s + self._running_left_s() * self.estimate.margin
                  + self.estimate.planned_seconds(self._queued_events + events, self._queued_hits + hits, fill))
        if finish <= timeout_s:
            return None
        return (f"overloaded: estimated time to answer {events} events is {finish:.3f} s (queue wait "
                f"{wait:.3f} s), more than the {timeout_s:.3f} s left before the call's deadline; "
                f"retry later, on another server or with a longer deadline")

    async def submit(self, block: EventBlock, timeout_s: float | None = None,
                     wait_for_room: bool = False) -> list[Any]:
        """Return the per-event results of ``block`` once computed.

        ``timeout_s`` is the time left before the caller's deadline (None: no deadline).
        Raises QueueFull (at once; unless ``wait_for_room`` and only the room is lacking),
        Draining, WorkerLost or DeadlineExpired.
        """
        if len(block) == 0:
            return []
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        hits = block.n_items
        while True:
            if self._draining:
                raise Draining("server is draining")
            if self._paused is not None:
                raise self._paused
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise DeadlineExpired("deadline passed while waiting for room in the queue")
            infeasible = self._infeasible(len(block), hits, left)
            if infeasible is not None:
                raise QueueFull(infeasible)
            refusal = self._refusal(len(block))
            if refusal is None:
                break
            if not wait_for_room:
                raise QueueFull(refusal)
            assert self._room is not None
            self._room.clear()
            try:
                await asyncio.wait_for(self._room.wait(), left)
            except TimeoutError:
                raise DeadlineExpired("deadline passed while waiting for room in the queue") from None
        job = _Job(block, loop.create_future(), loop.time(), deadline)
        self._queue.append(job)
        self._set_queued(self._queued_events + len(block), self._queued_hits + hits)
        assert self._arrived is not None and self._idle is not None
        self._idle.clear()
        self._arrived.set()
        return await job.future

    def _set_queued(self, n: int, hits: int) -> None:
        shrunk = n < self._queued_events
        self._queued_events, self._queued_hits = n, hits
        self.metrics.queue_depth.set(n)
        if shrunk:
            self._make_room()

    def _make_room(self) -> None:
        """Wake streams waiting for room to check again (room is estimated work, not a count)."""
        if self._room is not None:
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
        """Return (job, first, stop) event slices forming the next batch; drop dead jobs.

        Jobs are taken in arrival order, into full batches (the cheapest per event). One whose
        deadline has passed, or would pass before the batch it would join ends, is dropped
        (DeadlineExpired) without compute: a caller gets its results only when its whole
        batch ends, so the batch counts as holding as many events as will be taken now.
        """
        slices: list[tuple[_Job, int, int]] = []
        n = n_hits = 0
        known = self.estimate.known
        queued, queued_hits = self._queued_events, self._queued_hits
        fill = min(self.max_batch_size, queued)
        while self._queue and n < self.max_batch_size:
            job = self._queue[0]
            late = None
            if job.future.done():  # the caller went away (cancelled RPC)
                outcome = "cancelled"
            elif job.deadline is not None and job.deadline <= now:
                outcome, late = "expired", "deadline passed before the events were computed"
            else:
                outcome = None
                count = min(job.remaining, self.max_batch_size - n)
                slice_hits = int(job.block.offsets[job.taken + count] - job.block.offsets[job.taken])
                if known and job.deadline is not None and job.taken == 0:
                    finish = self.estimate.planned_seconds(n + job.remaining, n_hits + job.remaining_hits, fill)
                    if now + finish > job.deadline:
                        outcome = "expired"
                        late = (f"deadline cannot be met: computing would take an estimated {finish:.3f} s, "
                                f"{job.deadline - now:.3f} s were left")
            if outcome is not None:
                self._queue.popleft()
                queued, queued_hits = queued - job.remaining, queued_hits - job.remaining_hits
                self.metrics.events.labels(outcome).inc(job.remaining)
                if late is not None:
                    job.future.set_exception(DeadlineExpired(late))
                continue
            if job.taken == 0:
                self.metrics.queue_seconds.observe(now - job.enqueued)
            slices.append((job, job.taken, job.taken + count))
            job.taken += count
            n, n_hits = n + count, n_hits + slice_hits
            queued, queued_hits = queued - count, queued_hits - slice_hits
            if job.remaining == 0:
                self._queue.popleft()
        self._set_queued(queued, queued_hits)
        return slices

    async def _run_batch(self, slices: list[tuple[_Job, int, int]]) -> None:
        blocks = [job.block if (first, stop) == (0, len(job.block)) else
                  job.block.take(list(range(first, stop))) for job, first, stop in slices]
        batch = EventBlock.concatenate(blocks)
        self.metrics.batch_size.observe(len(batch))
        loop = asyncio.get_running_loop()
        self._running = [job for job, _first, _stop in slices]
        self._running_events, self._running_hits = len(batch), batch.n_items
        self._running_since = time.monotonic()
        self._computing = True
        self.metrics.estimated_wait.set(self.estimated_wait_s())
        expected_s = self.estimate.batch_seconds(batch.n_items)
        start = time.perf_counter()
        completed = False
        try:
            self._running_call = loop.run_in_executor(self.executor, self._compute, batch)
            results = await self._running_call
            completed = True
            if len(results) != len(batch):
                raise BatchFailed(f"model returned {len(results)} results for {len(batch)} events")
        except asyncio.CancelledError:
            if self._task is not None and self._task.cancelling():
                raise  # the batcher itself is being stopped
            log.warning("abandoned a batch of %d events", len(batch))  # by abandon(): callers were answered
            return
        except Exception as err:  # a failing model must not take the server down
            passed = isinstance(err, PASSED_THROUGH)
            if not passed:
                log.exception("batch of %d events failed", len(batch))
            for job, _first, _stop in slices:
                if not job.future.done():
                    job.future.set_exception(err if passed else BatchFailed(f"reconstruction failed: {err}"))
            return
        finally:
            self._computing = False
            self._running, self._running_call = [], None
            self._make_room()
            elapsed = time.perf_counter() - start
            self.metrics.compute_seconds.observe(elapsed)
            if completed:
                self.estimate.observe(batch.n_items, elapsed)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("batch", extra={"events": len(batch), "requests": len(slices),
                                          "hits": batch.n_items, "compute_ms": round(elapsed * 1000, 3),
                                          "estimated_ms": round(expected_s * 1000, 3),
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
