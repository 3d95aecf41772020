"""The gRPC reconstruction server on a real localhost port, through real channels."""

from __future__ import annotations

import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import awkward as ak
import grpc
import numpy as np
import pandas as pd
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from service_testing import (
    POISON_RUN_ID,
    CentroidDirection,
    free_port,
    serve_config,
    small_events,
    wait_until,
)

from nurec.client import ReconstructionClient
from nurec.io.schema import PREDICTION_COLUMNS
from nurec.methods.registry import available_methods, build_method
from nurec.protocol import pb, pb_grpc
from nurec.protocol.codec import encode_events
from services.server import SERVICE_NAME, BackgroundServer

COLUMNS = [*PREDICTION_COLUMNS, "n_hits"]


@pytest.fixture(scope="module")
def events():
    return small_events(40)


@pytest.fixture(scope="module")
def method():
    return CentroidDirection()


@pytest.fixture(scope="module")
def server(method):
    with BackgroundServer(serve_config(metrics_port=free_port()), method) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with ReconstructionClient(server.target, retries=0) as running:
        yield running


@pytest.fixture()
def gated():
    """A server whose model call blocks until the test opens ``method.gate``."""
    method = CentroidDirection()
    running = BackgroundServer(serve_config(max_batch_size=4, max_queue=8, max_queue_delay_ms=1), method).start()
    try:
        yield running, method
    finally:
        method.gate.set()
        running.stop()


def _call(target: str, events, timeout_s: float | None = None, run_id: int | None = None, **kwargs):
    messages = encode_events(events)
    if run_id is not None:
        for message in messages:
            message.run_id = run_id
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.ReconstructionStub(channel)
        return stub.Reconstruct(pb.ReconstructRequest(events=messages, **kwargs), timeout=timeout_s)


def test_served_predictions_identical_to_in_process(client, events):
    expected = CentroidDirection().reconstruct(events)[COLUMNS]
    unary = client.reconstruct(events, batch_events=16)
    streamed = pd.concat(list(client.reconstruct_stream([events], batch_events=7, window=3)), ignore_index=True)
    for served in (unary, streamed):
        pd.testing.assert_frame_equal(served[COLUMNS], expected, check_dtype=False)
        assert (served["model_version"] == "test-1").all()


def test_served_linefit_identical_to_in_process(events):
    if "linefit" not in {spec.name for spec in available_methods()}:
        pytest.skip("linefit is not registered yet")
    expected = build_method("linefit").reconstruct(events)
    with BackgroundServer(serve_config(method="linefit")) as running, \
            ReconstructionClient(running.target) as linefit_client:
        served = linefit_client.reconstruct(events)
    pd.testing.assert_frame_equal(served[list(PREDICTION_COLUMNS)], expected[list(PREDICTION_COLUMNS)],
                                  check_dtype=False)


def test_served_bundled_gnn_matches_in_process():
    if "gnn" not in {spec.name for spec in available_methods()}:
        pytest.skip("gnn is not registered yet")
    try:
        method = build_method("gnn", model="default")
    except FileNotFoundError:
        pytest.skip("the bundled GNN model is not there yet")
    events = small_events(20, detector="icecube86")
    expected = method.reconstruct(events)
    with BackgroundServer(serve_config(method="gnn", model="default", detector="icecube86")) as running, \
            ReconstructionClient(running.target) as gnn_client:
        served = gnn_client.reconstruct(events)
        assert gnn_client.model_info()["version"] == method.version
    pd.testing.assert_frame_equal(served[list(PREDICTION_COLUMNS)], expected[list(PREDICTION_COLUMNS)],
                                  check_dtype=False)


def test_concurrent_clients_are_batched_and_get_their_own_results(gated, events):
    running, method = gated
    method.gate.clear()
    with ThreadPoolExecutor(9) as pool:
        blocker = pool.submit(_call, running.target, events[:1])
        assert method.entered.wait(10)
        singles = [pool.submit(_call, running.target, events[i:i + 1]) for i in range(1, 9)]
        wait_until(lambda: running.server.batcher.queued_events == 8, what="8 queued events")
        method.gate.set()
        responses = [f.result(timeout=10) for f in singles]
        blocker.result(timeout=10)
    expected = CentroidDirection().reconstruct(events[1:9])
    for i, response in enumerate(responses):
        (result,) = response.results
        assert result.event_id == expected["event_id"][i]
        assert result.dir_x == expected["dir_x"][i]
    assert method.batch_sizes[1:] == [4, 4]  # max_batch_size 4: two full batches of other clients' events
    metrics = running.server.metrics
    assert metrics.value("nurec_serve_batch_size_sum") / metrics.value("nurec_serve_batch_size_count") > 1


def test_bad_event_fails_alone_while_neighbours_succeed(client, events):
    messages = encode_events(events[:5])
    messages[1].raw.t = messages[1].raw.t[:-4]  # one time value fewer than hits
    messages[3].raw.x = np.float32([np.nan] * (len(messages[3].raw.x) // 4)).tobytes()
    messages[4].detector = "no-such-detector"
    response = client.reconstruct_messages(messages)
    codes = [r.error.code for r in response.results]
    assert codes == [pb.OK, pb.INVALID_ARGUMENT, pb.OK, pb.INVALID_ARGUMENT, pb.INVALID_ARGUMENT]
    assert [r.event_id for r in response.results] == list(events.event_id[:5])
    assert response.results[1].error.field == "hits.t"
    assert "expected" in response.results[1].error.message
    assert response.results[3].error.field == "hits.x"
    assert "non-finite" in response.results[3].fit_status
    assert response.results[4].error.field == "detector"
    assert np.isnan(response.results[1].dir_x) and np.isfinite(response.results[2].dir_x)


@pytest.mark.parametrize(("edit", "field"), [
    (lambda m: m.ClearField("hits"), "hits"),
    (lambda m: m.raw.CopyFrom(pb.RawHits()), "hits"),
    (lambda m: setattr(m.raw, "charge", m.raw.charge + b"\0"), "hits.charge"),
])
def test_strict_request_fails_with_invalid_argument_naming_the_field(server, events, edit, field):
    messages = encode_events(events[:3])
    edit(messages[2])
    with grpc.insecure_channel(server.target) as channel, pytest.raises(grpc.RpcError) as err:
        pb_grpc.ReconstructionStub(channel).Reconstruct(pb.ReconstructRequest(events=messages, strict=True))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(f"events[2] (event_id {events.event_id[2]}): {field}:")


def test_too_many_hits_is_invalid_argument(events):
    with BackgroundServer(serve_config(max_hits=10), CentroidDirection()) as running:
        response = _call(running.target, events[:3])
    n_hits = [len(h) for h in events.hits[:3].t.to_list()]
    for result, n in zip(response.results, n_hits, strict=True):
        assert (result.error.code == pb.INVALID_ARGUMENT) == (n > 10)
        if n > 10:
            assert result.error.message == f"hits: {n} hits exceed the server limit of 10 (max_hits)"


def test_directions_are_taken_from_the_geometry_when_not_sent(client, events):
    sent = client.reconstruct_messages(encode_events(events[:4]))
    looked_up = client.reconstruct_messages(encode_events(events[:4], send_directions=False))
    assert [r.dir_x for r in sent.results] == [r.dir_x for r in looked_up.results]
    unknown = encode_events(events[:1], send_directions=False)
    unknown[0].raw.sensor_id = np.full(len(unknown[0].raw.sensor_id) // 4, 10**6, "<i4").tobytes()
    (result,) = client.reconstruct_messages(unknown).results
    assert result.error.field == "hits.sensor_id" and "not in detector" in result.error.message


def test_sensor_ids_are_checked_and_pmt_directions_must_be_finite_when_sent(client, events):
    messages = encode_events(events[:3])  # PMT directions sent
    messages[0].raw.sensor_id = np.full(len(messages[0].raw.sensor_id) // 4, 10**6, "<i4").tobytes()
    dir_x = np.frombuffer(messages[1].raw.dir_x, "<f4").copy()
    dir_x[0] = np.nan
    messages[1].raw.dir_x = dir_x.tobytes()
    results = client.reconstruct_messages(messages).results
    assert [(r.error.code, r.error.field) for r in results] == [
        (pb.INVALID_ARGUMENT, "hits.sensor_id"), (pb.INVALID_ARGUMENT, "hits.dir_x"), (pb.OK, "")]
    assert results[0].error.message == "hits.sensor_id: sensor 1000000 is not in detector 'icecube-mini'"


def test_unknown_model_is_not_found(server, events):
    with pytest.raises(grpc.RpcError) as err:
        _call(server.target, events[:1], model="no-such-model")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-model" in err.value.details()


def test_full_queue_is_resource_exhausted_and_server_keeps_serving(gated, events):
    running, method = gated
    method.gate.clear()
    with ThreadPoolExecutor(2) as pool:
        computing = pool.submit(_call, running.target, events[:4])
        assert method.entered.wait(10)
        queued = pool.submit(_call, running.target, events[4:12])  # fills max_queue (8)
        wait_until(lambda: running.server.batcher.queued_events == 8, what="a full queue")
        with pytest.raises(grpc.RpcError) as err:
            _call(running.target, events[12:13])
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        method.gate.set()
        assert len(computing.result(10).results) == 4 and len(queued.result(10).results) == 8
    assert _call(running.target, events[12:13]).results[0].error.code == pb.OK


def test_expired_deadline_is_not_computed(gated, events):
    running, method = gated
    method.gate.clear()
    with ThreadPoolExecutor(1) as pool:
        computing = pool.submit(_call, running.target, events[:4])
        assert method.entered.wait(10)
        with pytest.raises(grpc.RpcError) as err:
            _call(running.target, events[4:6], timeout_s=1.0, run_id=777)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        method.gate.set()
        computing.result(10)
    _call(running.target, events[6:7])  # the batcher has moved past the expired request
    assert 777 not in method.run_ids
    metrics = running.server.metrics
    dropped = (metrics.value("nurec_serve_events_total", {"outcome": "expired"})
               + metrics.value("nurec_serve_events_total", {"outcome": "cancelled"}))
    assert dropped == 2


def test_health_serving_then_not_serving_while_draining(gated, events):
    running, method = gated
    with ReconstructionClient(running.target, retries=0) as probe:
        assert probe.health() == "SERVING"
        assert probe.health(SERVICE_NAME) == "SERVING"
        method.gate.clear()
        with ThreadPoolExecutor(1) as pool:
            accepted = pool.submit(_call, running.target, events[:3])
            assert method.entered.wait(10)
            stopped = running.begin_drain()
            wait_until(lambda: probe.health() == "NOT_SERVING", what="NOT_SERVING")
            with pytest.raises(grpc.RpcError) as err:
                _call(running.target, events[3:4])
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            method.gate.set()
            assert [r.error.code for r in accepted.result(10).results] == [pb.OK] * 3
            stopped.result(30)


def test_reflection_lists_the_service(server):
    with grpc.insecure_channel(server.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (response,) = list(stub.ServerReflectionInfo(iter([request])))
    names = {s.name for s in response.list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names


def test_list_models_and_model_info(client):
    (info,) = client.list_models()
    assert info["name"] == "centroid" and info["version"] == "test-1" and info["is_default"]
    assert client.model_info("centroid") == info


def test_metrics_are_served_over_http(server, client, events):
    client.reconstruct(events[:3])
    with urllib.request.urlopen(f"http://127.0.0.1:{server.server.metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    for name in ("nurec_serve_requests_total", "nurec_serve_events_total", "nurec_serve_queue_depth",
                 "nurec_serve_batch_size_bucket", "nurec_serve_queue_seconds_bucket",
                 "nurec_serve_compute_seconds_bucket", "nurec_serve_total_seconds_bucket"):
        assert name in text
    assert 'nurec_serve_requests_total{code="OK",rpc="Reconstruct"}' in text


def test_stream_results_keep_order_and_event_ids(server, events):
    with ReconstructionClient(server.target) as streaming:
        tables = list(streaming.reconstruct_stream([events[:10], events[10:25]], batch_events=3, window=2))
    assert [len(t) for t in tables] == [3, 3, 3, 1, 3, 3, 3, 3, 3]
    assert pd.concat(tables)["event_id"].tolist() == events.event_id[:25].tolist()


def test_events_are_grouped_by_detector(client):
    mixed = [small_events(3, detector="icecube-mini"), small_events(3, detector="orca6")]
    messages = encode_events(mixed[0], "icecube-mini") + encode_events(mixed[1], "orca6")
    response = client.reconstruct_messages(messages)
    expected = [CentroidDirection().reconstruct(e)["dir_x"].tolist() for e in mixed]
    assert [r.dir_x for r in response.results] == expected[0] + expected[1]


def test_concurrent_streams_do_not_mix_results(server, events):
    def run(offset: int) -> list[int]:
        with ReconstructionClient(server.target) as c:
            chunk = events[offset:offset + 10]
            return pd.concat(list(c.reconstruct_stream([chunk], batch_events=2)))["event_id"].tolist()

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, [0, 10, 20, 30]))
    assert results == [events.event_id[o:o + 10].tolist() for o in (0, 10, 20, 30)]


def test_threads_are_not_leaked_by_streams(server, events):
    before = threading.active_count()
    with ReconstructionClient(server.target) as c:
        for _ in range(3):
            next(iter(c.reconstruct_stream([events], batch_events=5)))  # abandon mid-stream
    wait_until(lambda: threading.active_count() <= before + 2, timeout_s=10, what="client threads to end")


def test_oversized_message_is_refused_and_server_keeps_serving(events):
    with BackgroundServer(serve_config(max_message_mb=1), CentroidDirection()) as running:
        big = encode_events(events[:1])
        n_hits = 40_000  # 9 fields x 4 bytes x 40k hits = 1.4 MiB > 1 MiB
        big[0].raw.CopyFrom(pb.RawHits(**{f: bytes(4 * n_hits) for f in pb.RawHits.DESCRIPTOR.fields_by_name}))
        with grpc.insecure_channel(running.target) as channel, pytest.raises(grpc.RpcError) as err:
            pb_grpc.ReconstructionStub(channel).Reconstruct(pb.ReconstructRequest(events=big), timeout=10)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert _call(running.target, events[:2]).results[1].error.code == pb.OK


def test_request_larger_than_a_batch_is_split_and_reassembled_in_order(events):
    method = CentroidDirection()
    with BackgroundServer(serve_config(max_batch_size=4), method) as running:
        response = _call(running.target, events[:10])
    assert [r.event_id for r in response.results] == events.event_id[:10].tolist()
    assert method.batch_sizes == [4, 4, 2]
    expected = CentroidDirection().reconstruct(events[:10])["dir_x"].tolist()
    assert [r.dir_x for r in response.results] == expected


def test_event_that_crashes_the_method_fails_alone(client, events):
    messages = encode_events(events[:4])
    messages[2].run_id = POISON_RUN_ID
    response = client.reconstruct_messages(messages)
    assert [r.error.code for r in response.results] == [pb.OK, pb.OK, pb.INTERNAL, pb.OK]
    assert "poisoned batch" in response.results[2].error.message
    assert response.results[2].fit_status.startswith("failed: method raised ValueError: poisoned batch")


def test_packed_and_raw_encodings_give_identical_results(client, events):
    raw = client.reconstruct_messages(encode_events(events[:8], encoding="raw"))
    packed = client.reconstruct_messages(encode_events(events[:8], encoding="packed"))
    assert [r.dir_x for r in raw.results] == [r.dir_x for r in packed.results]
    assert all(r.error.code == pb.OK for r in packed.results)


def test_stream_answers_earlier_messages_then_ends_with_the_call_error(server, events):
    messages = encode_events(events[:3])
    messages[1].raw.t = b""
    requests = [pb.ReconstructRequest(events=[m], strict=True) for m in messages]
    received = []
    with grpc.insecure_channel(server.target) as channel, pytest.raises(grpc.RpcError) as err:
        for response in pb_grpc.ReconstructionStub(channel).ReconstructStream(iter(requests), timeout=10):
            received.append(response)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("events[0] (event_id 1): hits.t:")
    assert [r.results[0].event_id for r in received] == [0]
    with grpc.insecure_channel(server.target) as channel, pytest.raises(grpc.RpcError) as err:
        list(pb_grpc.ReconstructionStub(channel).ReconstructStream(
            iter([pb.ReconstructRequest(model="nope", events=messages[:1])]), timeout=10))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_missing_sensor_ids_are_named(client, events):
    messages = encode_events(events[:1])
    messages[0].raw.sensor_id = b""
    (result,) = client.reconstruct_messages(messages).results
    assert result.error.field == "hits.sensor_id"
    assert result.error.message == f"hits.sensor_id: 0 values, expected {len(events.hits[0])} (one per hit)"


def test_served_linefit_on_km3net_events_equals_nurec_reconstruct(tmp_path):
    """The server builds the method for the request's detector (water medium, KM3NeT cleaning)."""
    from nurec.cli import main
    from nurec.io.parquet import write_dataset
    from nurec.io.predictions import read_predictions
    from sim.config import SimulationConfig
    from sim.simulate import simulate_events

    orca, metadata = simulate_events(SimulationConfig(detector="orca6", n_events=12, seed=5))
    write_dataset(tmp_path / "orca", orca, metadata)
    assert main(["reconstruct", "--method", "linefit", "--data", str(tmp_path / "orca"),
                 "--out", str(tmp_path / "linefit.parquet"), "--quiet"]) == 0
    expected = read_predictions(tmp_path / "linefit.parquet")
    with BackgroundServer(serve_config(method="linefit", detector="icecube-mini")) as running, \
            ReconstructionClient(running.target) as linefit_client:
        served = linefit_client.reconstruct_messages(encode_events(orca, "orca6"))
    assert [r.dir_x for r in served.results] == expected["dir_x"].tolist()
    assert [r.fit_status for r in served.results] == expected["fit_status"].tolist()
    icecube_media = build_method("linefit", detector="icecube-mini").reconstruct(orca)
    assert not np.allclose(icecube_media["dir_x"], expected["dir_x"], equal_nan=True)  # the detector matters


def test_served_gnn_refuses_events_of_a_detector_it_was_not_trained_for():
    orca = small_events(3, detector="orca6")
    icecube = small_events(2, detector="icecube86")
    with BackgroundServer(serve_config(method="gnn", model="default", detector="icecube86")) as running, \
            ReconstructionClient(running.target) as gnn_client:
        (info,) = gnn_client.list_models()
        response = gnn_client.reconstruct_messages(encode_events(icecube, "icecube86") + encode_events(orca, "orca6"))
    assert info["detectors"] == ["icecube86"]
    assert [r.HasField("error") for r in response.results] == [False, False, True, True, True]
    refused = response.results[2].error
    assert refused.code == pb.FAILED_PRECONDITION and refused.field == "detector"
    assert "icecube86" in refused.message and "orca6" in refused.message and "nurec train" in refused.message
    assert "\n" not in refused.message
    assert all(r.fit_status == "ok" for r in response.results[:2])


def test_a_server_max_hits_above_the_library_default_is_the_one_limit(events):
    # 25,000 hits: over the run loop's default bound (20,000), under this server's --max-hits.
    hits = events[0].hits.to_list()
    big = ak.Array([{**events[0].to_list(), "hits": (hits * (25_000 // len(hits) + 1))[:25_000]}])
    assert len(big.hits[0]) == 25_000
    with BackgroundServer(serve_config(max_hits=30_000), CentroidDirection()) as running:
        response = _call(running.target, ak.concatenate([big, events[1:2]]))
    assert [r.error.code for r in response.results] == [pb.OK, pb.OK]
    assert [r.fit_status for r in response.results] == ["ok", "ok"]
