"""Hostile request shapes: undecodable bytes and oversized names get INVALID_ARGUMENT, short messages."""

from __future__ import annotations

import grpc
import pytest
from service_testing import CentroidDirection, serve_config, small_events

from nurec.protocol import pb, pb_grpc
from nurec.protocol.codec import encode_events
from services.names import MAX_NAME_BYTES
from services.server import BackgroundServer

GARBAGE = b"\xff\xff\xff\xff\x0f"
"""Not a protobuf message: a field key whose varint never ends."""


@pytest.fixture(scope="module")
def server():
    with BackgroundServer(serve_config(), CentroidDirection()) as running:
        yield running


@pytest.fixture(scope="module")
def events():
    return small_events(3)


def test_undecodable_unary_request_is_invalid_argument(server):
    with grpc.insecure_channel(server.target) as channel:
        for method in ("Reconstruct", "GetModelInfo"):
            call = channel.unary_unary(f"/nurec.v1.Reconstruction/{method}")
            with pytest.raises(grpc.RpcError) as err:
                call(GARBAGE, timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert err.value.details().startswith("request: 5 bytes are not a valid nurec.v1.")
    requests = server.server.metrics.value("nurec_serve_requests_total",
                                           {"rpc": "Reconstruct", "code": "INVALID_ARGUMENT"})
    assert requests == 1


def test_undecodable_stream_message_ends_the_stream_after_earlier_answers(server, events):
    good = pb.ReconstructRequest(events=encode_events(events[:1])).SerializeToString()
    with grpc.insecure_channel(server.target) as channel:
        call = channel.stream_stream("/nurec.v1.Reconstruction/ReconstructStream",
                                     response_deserializer=pb.ReconstructResponse.FromString)
        received = []
        with pytest.raises(grpc.RpcError) as err:
            for response in call(iter([good, GARBAGE, good]), timeout=10):
                received.append(response)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid nurec.v1.ReconstructRequest" in err.value.details()
    assert [r.results[0].error.code for r in received] == [pb.OK]


def test_oversized_detector_name_fails_the_event_without_echoing_it(server, events):
    messages = encode_events(events[:2])
    messages[0].detector = "d" * 10_000_000
    with grpc.insecure_channel(server.target, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        response = pb_grpc.ReconstructionStub(channel).Reconstruct(pb.ReconstructRequest(events=messages),
                                                                   timeout=30)
    refused, neighbour = response.results
    assert refused.error.code == pb.INVALID_ARGUMENT and refused.error.field == "detector"
    assert refused.error.message == f"detector: name of 10000000 bytes exceeds the limit of {MAX_NAME_BYTES} bytes"
    assert neighbour.error.code == pb.OK
    assert response.ByteSize() < 2_000


def test_oversized_model_name_is_invalid_argument_without_echoing_it(server, events):
    name = "m" * 100_000
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.ReconstructionStub(channel)
        for call in (lambda: stub.Reconstruct(pb.ReconstructRequest(model=name, events=encode_events(events[:1])),
                                              timeout=10),
                     lambda: stub.GetModelInfo(pb.GetModelInfoRequest(name=name), timeout=10)):
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert err.value.details() == f"model: name of 100000 bytes exceeds the limit of {MAX_NAME_BYTES} bytes"
