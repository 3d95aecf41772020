"""The KServe v2 / Triton protocol of `nurec serve`, driven by tritonclient and by raw messages."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as triton
from service_testing import POISON_RUN_ID, CentroidDirection, serve_config, small_events, wait_until
from tritonclient.grpc import model_config_pb2 as triton_config_pb2
from tritonclient.grpc import service_pb2 as triton_pb2
from tritonclient.utils import InferenceServerException

from nurec.client import ReconstructionClient
from nurec.io.schema import PREDICTION_COLUMNS
from nurec.protocol import pb, pb_grpc
from nurec.protocol.codec import FLOAT_OUTPUTS, encode_events
from nurec.protocol.kserve import (
    INPUTS,
    OUTPUTS,
    event_tensors,
    infer_request,
    kpb,
    kpb_grpc,
    predictions_table,
)
from services.server import BackgroundServer


@pytest.fixture(scope="module")
def events():
    return small_events(30)


@pytest.fixture(scope="module")
def server():
    with BackgroundServer(serve_config(), CentroidDirection()) as running:
        yield running


@pytest.fixture(scope="module")
def triton_client(server):
    client = triton.InferenceServerClient(server.target)
    yield client
    client.close()


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.target) as channel:
        yield kpb_grpc.GRPCInferenceServiceStub(channel)


def triton_inputs(tensors: dict[str, np.ndarray]) -> list[triton.InferInput]:
    inputs = []
    for name, values in tensors.items():
        tensor = triton.InferInput(name, list(values.shape), triton.np_to_triton_dtype(values.dtype))
        tensor.set_data_from_numpy(values)
        inputs.append(tensor)
    return inputs


def native_predictions(server, events, detector: str = "") -> pd.DataFrame:
    with ReconstructionClient(server.target, retries=0) as client:
        return client.reconstruct(events, detector=detector)


# --- the proto ------------------------------------------------------------------------------

def _triton_message(full_name: str):
    for module in (triton_pb2, triton_config_pb2):
        try:
            return module.DESCRIPTOR.pool.FindMessageTypeByName(full_name)
        except KeyError:
            continue
    raise AssertionError(f"tritonclient has no message {full_name}")


def _field_kind(field) -> tuple:
    named = field.message_type or field.enum_type
    return (field.number, field.type, field.is_repeated, named.full_name if named else "")


def _messages(descriptor):
    yield descriptor
    for nested in descriptor.nested_types:
        yield from _messages(nested)


def test_proto_is_wire_compatible_with_tritonclients_own():
    service = kpb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    theirs = triton_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == theirs.full_name == "inference.GRPCInferenceService"
    for method in service.methods:
        other = theirs.methods_by_name[method.name]
        assert (method.input_type.full_name, method.output_type.full_name) == \
            (other.input_type.full_name, other.output_type.full_name), method.name
    compared = 0
    for top in kpb.DESCRIPTOR.message_types_by_name.values():
        for message in _messages(top):
            other = _triton_message(message.full_name)
            for field in message.fields:
                assert _field_kind(field) == _field_kind(other.fields_by_name[field.name]), \
                    f"{message.full_name}.{field.name}"
                compared += 1
    assert compared > 60
    ours = kpb.DESCRIPTOR.enum_types_by_name["DataType"]
    assert {v.name: v.number for v in ours.values} == \
        {v.name: v.number for v in triton_config_pb2.DESCRIPTOR.enum_types_by_name["DataType"].values}


@pytest.mark.parametrize("first", ["nurec", "tritonclient"])
def test_kserve_messages_and_tritonclient_import_together_in_either_order(first):
    imports = {"nurec": "import nurec.protocol.kserve", "tritonclient": "import tritonclient.grpc"}
    order = [imports[first], *(v for k, v in imports.items() if k != first)]
    result = subprocess.run([sys.executable, "-c", "; ".join(order)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


# --- tritonclient, unchanged ------------------------------------------------------------------

def test_tritonclient_health_and_metadata(server, triton_client):
    assert triton_client.is_server_live() and triton_client.is_server_ready()
    assert triton_client.is_model_ready("centroid")
    assert triton_client.is_model_ready("centroid", model_version="test-1")
    assert not triton_client.is_model_ready("centroid", model_version="7")
    assert not triton_client.is_model_ready("no-such-model")
    assert triton_client.get_server_metadata().name == "nurec"
    metadata = triton_client.get_model_metadata("centroid")
    assert (metadata.name, list(metadata.versions)) == ("centroid", ["test-1"])
    assert [(t.name, t.datatype) for t in metadata.inputs] == [(s.name, s.datatype) for s in INPUTS.values()]
    assert [(t.name, t.datatype) for t in metadata.outputs] == list(OUTPUTS.items())
    config = triton_client.get_model_config("centroid").config
    assert config.name == "centroid" and config.max_batch_size == 0
    assert [i.name for i in config.input if not i.optional] == [
        "hit_sensor_id", "hit_x_m", "hit_y_m", "hit_z_m", "hit_time_ns", "hit_charge_pe"]
    with pytest.raises(InferenceServerException) as err:
        triton_client.get_model_metadata("no-such-model")
    assert err.value.status() == "StatusCode.NOT_FOUND"


def test_tritonclient_infer_equals_the_native_api(server, triton_client, events):
    expected = native_predictions(server, events)
    result = triton_client.infer("centroid", triton_inputs(event_tensors(events)))
    assert result.get_response().model_version == "test-1"
    np.testing.assert_array_equal(result.as_numpy("event_id"), expected["event_id"])
    for name in FLOAT_OUTPUTS:
        np.testing.assert_array_equal(result.as_numpy(name), expected[name].to_numpy(), err_msg=name)
    assert [s.decode() for s in result.as_numpy("fit_status")] == expected["fit_status"].tolist()
    assert (result.as_numpy("error_code") == 0).all() and set(result.as_numpy("error")) == {b""}
    assert np.isfinite(result.as_numpy("dir_x")).any()


def test_offsets_int64_ids_fp64_hits_and_typed_contents_give_the_same_numbers(server, stub, events):
    tensors = event_tensors(events)
    reference = predictions_table(stub.ModelInfer(infer_request(tensors, "centroid")))
    counts = tensors.pop("event_n_hits")
    tensors["event_offsets"] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    tensors["hit_sensor_id"] = tensors["hit_sensor_id"].astype(np.int64)
    for name in ("hit_x_m", "hit_y_m", "hit_z_m", "hit_time_ns", "hit_charge_pe"):
        tensors[name] = tensors[name].astype(np.float64)  # float32 values: exact in FP64, rounded back
    raw = stub.ModelInfer(infer_request(tensors, "centroid"))
    typed = kpb.ModelInferRequest(model_name="centroid")
    fields = {"INT32": "int_contents", "INT64": "int64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents"}
    for tensor in infer_request(tensors, "centroid").inputs:
        values = tensors[tensor.name]
        added = typed.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        getattr(added.contents, fields[tensor.datatype]).extend(values.tolist())
    for response in (raw, stub.ModelInfer(typed)):
        pd.testing.assert_frame_equal(predictions_table(response), reference)


def test_directions_come_from_the_geometry_of_the_detector_parameter(server, stub):
    orca = small_events(6, detector="orca6")
    sent = predictions_table(stub.ModelInfer(infer_request(event_tensors(orca), "centroid", detector="orca6")))
    looked_up = predictions_table(stub.ModelInfer(infer_request(
        event_tensors(orca, send_directions=False), "centroid", detector="orca6")))
    pd.testing.assert_frame_equal(looked_up, sent)
    assert (sent["error_code"] == 0).all()
    wrong = predictions_table(stub.ModelInfer(infer_request(
        event_tensors(orca, send_directions=False), "centroid", detector="icecube-mini")))
    assert (wrong["error_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]).any()
    assert wrong["error"].str.startswith("hit_sensor_id: sensor").any()


def test_bad_events_fail_alone_with_errors_naming_the_tensor(server, stub, events):
    tensors = event_tensors(events[:5])
    counts = tensors["event_n_hits"]
    starts = np.concatenate([[0], np.cumsum(counts)])
    tensors["hit_time_ns"][starts[1]] = np.nan
    tensors["hit_dir_y"][starts[2]] = np.inf
    tensors["run_id"][3] = POISON_RUN_ID  # the method raises on the batch; the event is isolated
    table = predictions_table(stub.ModelInfer(infer_request(tensors, "centroid")))
    invalid, internal = grpc.StatusCode.INVALID_ARGUMENT.value[0], grpc.StatusCode.INTERNAL.value[0]
    assert table["error_code"].tolist() == [0, invalid, invalid, internal, 0]
    assert table["error"][1] == "hit_time_ns: non-finite value"
    assert table["error"][2] == "hit_dir_y: non-finite value"
    assert "poisoned batch" in table["error"][3]
    assert table["fit_status"][1] == "failed: hit_time_ns: non-finite value"
    assert np.isnan(table["dir_x"][1]) and np.isfinite(table["dir_x"][0]) and np.isfinite(table["dir_x"][4])
    assert table["event_id"].tolist() == events.event_id[:5].tolist()


def test_empty_and_oversized_events_fail_alone(events):
    with BackgroundServer(serve_config(max_hits=10), CentroidDirection()) as running, \
            grpc.insecure_channel(running.target) as channel:
        tensors = event_tensors(events[:3])
        tensors["event_n_hits"] = np.array([0, *tensors["event_n_hits"][1:]], dtype=np.int64)
        tensors["event_n_hits"][-1] += sum(len(h) for h in events.hits[:1].t.to_list())
        table = predictions_table(kpb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            infer_request(tensors, "centroid")))
    assert table["error"][0] == "event_n_hits: no hits"
    assert table["error"][1].startswith("event_n_hits: ") and "exceed the server limit of 10" in table["error"][1]


def _malformed(edit):
    def make(events):
        tensors = event_tensors(events[:3])
        request = infer_request(tensors, "centroid")
        edit(request, tensors)
        return request
    return make


def _set_input(request, name: str, **changes) -> None:
    tensor = next(t for t in request.inputs if t.name == name)
    for key, value in changes.items():
        if key == "shape":
            del tensor.shape[:]
            tensor.shape.extend(value)
        elif key == "raw":
            request.raw_input_contents[list(request.inputs).index(tensor)] = value
        else:
            setattr(tensor, key, value)


def _drop_input(request, name: str) -> None:
    index = [t.name for t in request.inputs].index(name)
    del request.inputs[index]
    del request.raw_input_contents[index]


def _add_input(request, name: str, values: np.ndarray, datatype: str) -> None:
    request.inputs.add(name=name, datatype=datatype, shape=[len(values)])
    request.raw_input_contents.append(values.tobytes())


MALFORMED = {
    "wrong datatype": (_malformed(lambda r, t: _set_input(r, "hit_time_ns", datatype="FP16")), "hit_time_ns"),
    "two dimensions": (_malformed(lambda r, t: _set_input(
        r, "hit_x_m", shape=[1, len(t["hit_x_m"])])), "hit_x_m"),
    "raw size": (_malformed(lambda r, t: _set_input(r, "hit_charge_pe", raw=t["hit_charge_pe"][:-1].tobytes())),
                 "hit_charge_pe"),
    "length": (_malformed(lambda r, t: (_set_input(r, "hit_y_m", shape=[len(t["hit_y_m"]) - 1],
                                                   raw=t["hit_y_m"][:-1].tobytes()))), "hit_y_m"),
    "unknown input": (_malformed(lambda r, t: _add_input(r, "hit_colour", t["hit_x_m"], "FP32")), "hit_colour"),
    "missing": (_malformed(lambda r, t: _drop_input(r, "hit_sensor_id")), "hit_sensor_id"),
    "one direction": (_malformed(lambda r, t: _drop_input(r, "hit_dir_z")), "hit_dir_z"),
    "twice": (_malformed(lambda r, t: _add_input(r, "hit_x_m", t["hit_x_m"], "FP32")), "hit_x_m"),
    "counts sum": (_malformed(lambda r, t: _set_input(r, "event_n_hits", raw=(t["event_n_hits"] + 1).tobytes())),
                   "event_n_hits"),
    "counts and offsets": (_malformed(lambda r, t: _add_input(
        r, "event_offsets", np.array([0, len(t["hit_x_m"])], dtype=np.int64), "INT64")), "event_n_hits, event_offsets"),
    "event ids": (_malformed(lambda r, t: _set_input(r, "event_id", shape=[2], raw=t["event_id"][:2].tobytes())),
                  "event_id"),
    "sensor id range": (_malformed(lambda r, t: (_drop_input(r, "hit_sensor_id"), _add_input(
        r, "hit_sensor_id", np.full(len(t["hit_x_m"]), 2**40, dtype=np.int64), "INT64"))), "hit_sensor_id"),
    "raw entries": (_malformed(lambda r, t: r.raw_input_contents.append(b"")), "raw_input_contents"),
    "unknown parameter": (_malformed(lambda r, t: r.parameters["detecter"].CopyFrom(
        kpb.InferParameter(string_param="orca6"))), "parameters.detecter"),
    "unknown detector": (_malformed(lambda r, t: r.parameters["detector"].CopyFrom(
        kpb.InferParameter(string_param="x" * 100_000))), "parameters.detector"),
    "unknown output": (_malformed(lambda r, t: r.outputs.add(name="energy_tev")), "outputs"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_tensors_fail_the_call_with_invalid_argument_naming_the_tensor(server, stub, events, case):
    make, name = MALFORMED[case]
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(make(events), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(f"{name}:"), err.value.details()
    assert len(err.value.details()) < 1000
    assert (predictions_table(stub.ModelInfer(infer_request(event_tensors(events[:2]), "centroid")))["error_code"]
            == 0).all()  # the server keeps serving


def test_strict_fails_the_call_on_the_first_invalid_event(server, stub, events):
    tensors = event_tensors(events[:3])
    tensors["hit_x_m"][-1] = np.nan
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(infer_request(tensors, "centroid", strict=True), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == f"event 2 (event_id {events.event_id[2]}): hit_x_m: non-finite value"


def test_unknown_model_or_version_is_not_found(server, stub, events):
    for model, version in (("no-such-model", ""), ("centroid", "2")):
        request = infer_request(event_tensors(events[:1]), model)
        request.model_version = version
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(request, timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND and err.value.details().startswith("model_name:")


def test_requested_outputs_are_answered_in_their_order(server, triton_client, events):
    wanted = [triton.InferRequestedOutput("zenith"), triton.InferRequestedOutput("event_id")]
    result = triton_client.infer("centroid", triton_inputs(event_tensors(events[:4])), outputs=wanted,
                                 request_id="r-7")
    response = result.get_response()
    assert [o.name for o in response.outputs] == ["zenith", "event_id"] and response.id == "r-7"
    assert result.as_numpy("event_id").tolist() == events.event_id[:4].tolist()


def test_kserve_and_native_calls_share_one_batch(events):
    method = CentroidDirection()
    with BackgroundServer(serve_config(max_batch_size=64, max_queue_delay_ms=1), method) as running, \
            grpc.insecure_channel(running.target) as channel, ThreadPoolExecutor(3) as pool:
        method.gate.clear()
        native = pb_grpc.ReconstructionStub(channel)
        kserve = kpb_grpc.GRPCInferenceServiceStub(channel)
        blocker = pool.submit(native.Reconstruct, pb.ReconstructRequest(events=encode_events(events[:1])), timeout=20)
        assert method.entered.wait(10)
        first = pool.submit(native.Reconstruct, pb.ReconstructRequest(events=encode_events(events[1:4])), timeout=20)
        second = pool.submit(kserve.ModelInfer, infer_request(event_tensors(events[4:9]), "centroid"), timeout=20)
        wait_until(lambda: running.server.batcher.queued_events == 8, what="both calls queued")
        method.gate.set()
        blocker.result(10)
        native_dirs = [r.dir_x for r in first.result(10).results]
        kserve_table = predictions_table(second.result(10))
    assert method.batch_sizes == [1, 8]  # one model call for the events of both protocols
    expected = CentroidDirection().reconstruct(events[1:9])
    assert native_dirs == expected["dir_x"][:3].tolist()
    np.testing.assert_array_equal(kserve_table["dir_x"], expected["dir_x"][3:])


def test_predictions_table_has_the_prediction_columns(server, stub, events):
    table = predictions_table(stub.ModelInfer(infer_request(event_tensors(events[:3]), "centroid")))
    assert list(table.columns[:len(PREDICTION_COLUMNS)]) == list(PREDICTION_COLUMNS)
    assert (table["method"] == "centroid").all()


def test_native_codec_refuses_non_finite_pmt_directions(server, events):
    messages = encode_events(events[:2])
    directions = np.frombuffer(messages[0].raw.dir_z, "<f4").copy()
    directions[0] = np.nan
    messages[0].raw.dir_z = directions.tobytes()
    with ReconstructionClient(server.target, retries=0) as client:
        results = client.reconstruct_messages(messages).results
    assert results[0].error.code == pb.INVALID_ARGUMENT and results[0].error.field == "hits.dir_z"
    assert results[1].error.code == pb.OK
