"""Admission control on estimated work and deadlines: refuse at once what cannot be answered in time."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import awkward as ak
import grpc
import pandas as pd
import pytest
from service_testing import CentroidDirection, serve_config, small_events, wait_until

from nurec.client import ReconstructionClient
from nurec.protocol import pb, pb_grpc
from nurec.protocol.codec import encode_events
from services.admission import WorkEstimate
from services.server import BackgroundServer


@pytest.fixture(scope="module")
def events():
    return small_events(24)


def _call(target: str, events, timeout_s: float | None = None, run_id: int | None = None):
    messages = encode_events(events)
    for message in messages:
        if run_id is not None:
            message.run_id = run_id
    with grpc.insecure_channel(target) as channel:
        return pb_grpc.ReconstructionStub(channel).Reconstruct(pb.ReconstructRequest(events=messages),
                                                                timeout=timeout_s)


def _hits(events) -> int:
    return int(ak.sum(ak.num(events.hits, axis=1)))


def _observe(running: BackgroundServer, events, seconds: float, times: int = 1) -> None:
    """Feed the server's work estimate: model calls over ``events`` took ``seconds`` (on its event loop)."""
    estimate = running.server.batcher.estimate

    async def feed() -> None:
        for _ in range(times):
            estimate.observe(_hits(events), seconds)

    asyncio.run_coroutine_threadsafe(feed(), running._loop).result(timeout=10)


@pytest.fixture()
def gated():
    """A server (batches of 4) whose model call blocks until the test opens ``method.gate``."""
    method = CentroidDirection()

    def start(**changes):
        settings = {"max_batch_size": 4, "max_queue": 64, "max_queue_delay_ms": 1, **changes}
        running = BackgroundServer(serve_config(**settings), method).start()
        started.append(running)
        return running, method

    started: list[BackgroundServer] = []
    yield start
    method.gate.set()
    for running in started:
        running.stop()


def test_work_estimate_separates_the_fixed_cost_of_a_call_from_the_cost_per_hit():
    estimate = WorkEstimate(max_batch_size=100)
    assert not estimate.known and estimate.seconds(1000, 50_000) == 0.0
    for hits in (50, 500, 5000, 40, 2500, 5200, 90, 4800):
        estimate.observe(hits, 0.02 + 1e-5 * hits)
    assert estimate.fixed_s == pytest.approx(0.02) and estimate.per_hit_s == pytest.approx(1e-5)
    # 250 events of 100 hits: three calls of at most 100 events
    assert estimate.seconds(250, 25_000) == pytest.approx(3 * 0.02 + 0.25)
    same_size = WorkEstimate()
    for _ in range(3):
        same_size.observe(800, 0.4)
    assert (same_size.fixed_s, same_size.per_hit_s) == (0.0, pytest.approx(0.0005))


def test_call_that_cannot_meet_its_deadline_is_refused_at_once(gated, events):
    running, method = gated(max_queue_wait_s=100)
    _observe(running, events[:4], 1.0)
    queued_s, own_s = (_hits(events[a:a + 4]) / _hits(events[:4]) for a in (4, 8))
    deadline_s = 0.9 * (queued_s + own_s)
    assert own_s < deadline_s  # on an idle server the call would be accepted
    method.gate.clear()
    with ThreadPoolExecutor(2) as pool:
        computing = pool.submit(_call, running.target, events[:4])
        assert method.entered.wait(10)
        queued = pool.submit(_call, running.target, events[4:8])  # no deadline: accepted, waits
        wait_until(lambda: running.server.batcher.queued_events == 4, what="4 queued events")
        # The running call, the queued call and its own events take longer than its deadline:
        # refused now, not answered DEADLINE_EXCEEDED when the deadline has passed.
        with pytest.raises(grpc.RpcError) as err:
            _call(running.target, events[8:12], timeout_s=deadline_s, run_id=555)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "estimated time to answer 4 events" in err.value.details()
        assert "before the call's deadline" in err.value.details()
        assert running.server.metrics.value("nurec_serve_events_total", {"outcome": "rejected"}) == 4
        method.gate.set()
        assert len(computing.result(10).results) == 4 and len(queued.result(10).results) == 4
    assert 555 not in method.run_ids


def test_queued_work_beyond_max_queue_wait_is_refused_at_once(gated, events):
    running, method = gated(max_queue_wait_s=0.5)
    _observe(running, events[:4], 10.0)
    method.gate.clear()
    with ThreadPoolExecutor(1) as pool:
        computing = pool.submit(_call, running.target, events[:4])
        assert method.entered.wait(10)
        with pytest.raises(grpc.RpcError) as err:  # ~10 s of work ahead, 0.5 s allowed
            _call(running.target, events[4:5], timeout_s=30)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "exceeds max_queue_wait_s 0.5 s" in err.value.details()
        method.gate.set()
        computing.result(10)
    assert _call(running.target, events[4:5]).results[0].error.code == pb.OK


def test_a_stream_waits_for_room_instead_of_being_refused(gated, events):
    running, method = gated(max_queue_wait_s=0.5)
    _observe(running, events[:4], 10.0)
    method.gate.clear()
    with ThreadPoolExecutor(2) as pool, ReconstructionClient(running.target, retries=0) as client:
        computing = pool.submit(_call, running.target, events[:4])
        assert method.entered.wait(10)
        streamed = pool.submit(lambda: pd.concat(list(client.reconstruct_stream([events[4:10]], batch_events=3))))
        wait_until(lambda: running.server.metrics.value("nurec_serve_events_received_total") == 10,
                   what="the stream's first message to arrive")
        assert not streamed.done()
        method.gate.set()
        computing.result(10)
        assert streamed.result(10)["event_id"].tolist() == events.event_id[4:10].tolist()


def test_queued_call_that_can_no_longer_meet_its_deadline_is_dropped_before_compute(gated, events):
    running, method = gated(max_queue_wait_s=100)
    _observe(running, events[:4], 0.4)  # a 4-event call fits in its 30 s
    method.gate.clear()
    with ThreadPoolExecutor(2) as pool:
        computing = pool.submit(_call, running.target, events[:4])
        assert method.entered.wait(10)
        late = pool.submit(_call, running.target, events[4:8], 30.0, 888)
        wait_until(lambda: running.server.batcher.queued_events == 4, what="the call to be queued")
        _observe(running, events[:4], 400.0, times=30)  # the model turned slow: ~400 s per 4 events now
        method.gate.set()
        computing.result(10)
        with pytest.raises(grpc.RpcError) as err:
            late.result(10)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "deadline cannot be met" in err.value.details()
    assert 888 not in method.run_ids
    assert running.server.metrics.value("nurec_serve_events_total", {"outcome": "expired"}) == 4
