"""The KServe v2 / Triton tensor contract of nurec's service (proto/inference/grpc_predict_v2.proto).

Events travel as named 1-D tensors: every hit column of the nurec event schema
concatenated over the events (``hit_*``, n_hits values) plus the hits per event
(``event_n_hits``) or the event boundaries (``event_offsets``); predictions come back as
one tensor per prediction column (n_events values) with a per-event error. The contract
is spelled out in the .proto's header; this module holds it as data (for the server's
codec and metadata) and the client half: nurec events -> request, response -> table.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import awkward as ak
import numpy as np
import pandas as pd

from nurec.io.schema import FIT_OK, PREDICTION_COLUMNS
from nurec.protocol._generated import grpc_predict_v2_pb2 as kpb
from nurec.protocol._generated import grpc_predict_v2_pb2_grpc as kpb_grpc
from nurec.protocol.codec import DIR_FIELDS, FLOAT_OUTPUTS

__all__ = ["kpb", "kpb_grpc"]

NUMPY_DTYPES = {"INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"), "FP32": np.dtype("<f4"),
                "FP64": np.dtype("<f8")}
"""Little-endian element type of the tensor datatypes nurec reads and writes (BYTES aside)."""
TYPED_FIELDS = {"INT32": "int_contents", "INT64": "int64_contents", "FP32": "fp32_contents",
                "FP64": "fp64_contents", "BYTES": "bytes_contents"}
"""InferTensorContents field of each datatype (the typed, non-raw encoding)."""


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the contract: name, datatypes accepted (the first is declared), rows, column."""

    name: str
    datatypes: tuple[str, ...]
    per: str              # "hit", "event" or "boundary" (n_events + 1 values)
    column: str = ""      # the nurec hit column or event field it carries
    optional: bool = False

    @property
    def datatype(self) -> str:
        """Return the datatype declared in the model metadata."""
        return self.datatypes[0]


_INT = ("INT32", "INT64")
_LONG = ("INT64", "INT32")
_FLOAT = ("FP32", "FP64")

HIT_TENSORS: dict[str, TensorSpec] = {spec.column: spec for spec in (
    TensorSpec("hit_sensor_id", _INT, "hit", "sensor_id"),
    TensorSpec("hit_x_m", _FLOAT, "hit", "x"),
    TensorSpec("hit_y_m", _FLOAT, "hit", "y"),
    TensorSpec("hit_z_m", _FLOAT, "hit", "z"),
    TensorSpec("hit_time_ns", _FLOAT, "hit", "t"),
    TensorSpec("hit_charge_pe", _FLOAT, "hit", "charge"),
    TensorSpec("hit_dir_x", _FLOAT, "hit", "dir_x", optional=True),
    TensorSpec("hit_dir_y", _FLOAT, "hit", "dir_y", optional=True),
    TensorSpec("hit_dir_z", _FLOAT, "hit", "dir_z", optional=True),
)}
"""Hit tensors by nurec hit column (nurec.io.schema.HIT_FIELDS), in schema order."""

N_HITS = TensorSpec("event_n_hits", _LONG, "event", "n_hits", optional=True)
OFFSETS = TensorSpec("event_offsets", _LONG, "boundary", "offsets", optional=True)
EVENT_ID = TensorSpec("event_id", _LONG, "event", "event_id", optional=True)
RUN_ID = TensorSpec("run_id", _LONG, "event", "run_id", optional=True)

INPUTS: dict[str, TensorSpec] = {spec.name: spec for spec in (*HIT_TENSORS.values(), N_HITS, OFFSETS, EVENT_ID, RUN_ID)}
"""Every input tensor by name. One of event_n_hits and event_offsets is required."""

OUTPUTS: dict[str, str] = {"event_id": "INT64", **{name: "FP64" for name in FLOAT_OUTPUTS},
                           "fit_status": "BYTES", "error_code": "INT32", "error": "BYTES"}
"""Output tensor name -> datatype, in the order a response lists them."""

PARAMETER_DETECTOR = "detector"
PARAMETER_STRICT = "strict"


def encode_bytes(items: Iterable[bytes]) -> bytes:
    """Return BYTES tensor elements as raw contents: each a 4-byte little-endian length, then the bytes."""
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def decode_bytes(raw: bytes) -> list[bytes]:
    """Return the elements of a raw BYTES tensor (the inverse of ``encode_bytes``)."""
    items, at = [], 0
    while at < len(raw):
        if at + 4 > len(raw):
            raise ValueError("BYTES tensor: truncated length prefix")
        (size,) = struct.unpack_from("<I", raw, at)
        if at + 4 + size > len(raw):
            raise ValueError("BYTES tensor: element runs past the end")
        items.append(raw[at + 4:at + 4 + size])
        at += 4 + size
    return items


def event_tensors(events: ak.Array, send_directions: bool = True) -> dict[str, np.ndarray]:
    """Return the input tensors (name -> 1-D array in the declared datatype) of nurec events."""
    counts = ak.to_numpy(ak.num(events.hits, axis=1)).astype(np.int64)
    tensors: dict[str, np.ndarray] = {}
    for column, spec in HIT_TENSORS.items():
        if column in DIR_FIELDS and not send_directions:
            continue
        tensors[spec.name] = ak.to_numpy(ak.flatten(events.hits[column])).astype(NUMPY_DTYPES[spec.datatype])
    tensors[N_HITS.name] = counts
    tensors[EVENT_ID.name] = ak.to_numpy(events.event_id).astype(np.int64)
    if "run_id" in events.fields:
        tensors[RUN_ID.name] = ak.to_numpy(events.run_id).astype(np.int64)
    return tensors


def infer_request(tensors: Mapping[str, np.ndarray], model: str, detector: str = "", strict: bool = False,
                  request_id: str = "") -> kpb.ModelInferRequest:
    """Return a ModelInferRequest carrying ``tensors`` as raw contents (datatype from each array's dtype)."""
    datatypes = {np.dtype(v): k for k, v in NUMPY_DTYPES.items()}
    request = kpb.ModelInferRequest(model_name=model, id=request_id)
    for name, values in tensors.items():
        values = np.ascontiguousarray(values)
        datatype = datatypes.get(values.dtype.newbyteorder("<"))
        if datatype is None:
            raise ValueError(f"{name}: dtype {values.dtype} has no tensor datatype (use int32/int64/float32/float64)")
        request.inputs.add(name=name, datatype=datatype, shape=list(values.shape))
        request.raw_input_contents.append(values.astype(NUMPY_DTYPES[datatype], copy=False).tobytes())
    if detector:
        request.parameters[PARAMETER_DETECTOR].string_param = detector
    if strict:
        request.parameters[PARAMETER_STRICT].bool_param = True
    return request


def output_arrays(response: kpb.ModelInferResponse) -> dict[str, np.ndarray | list[bytes]]:
    """Return the output tensors of a response by name (BYTES tensors as lists of bytes)."""
    arrays: dict[str, np.ndarray | list[bytes]] = {}
    for index, output in enumerate(response.outputs):
        if response.raw_output_contents:
            raw = response.raw_output_contents[index]
            arrays[output.name] = (decode_bytes(raw) if output.datatype == "BYTES"
                                   else np.frombuffer(raw, dtype=NUMPY_DTYPES[output.datatype]))
        else:
            values = getattr(output.contents, TYPED_FIELDS[output.datatype])
            arrays[output.name] = (list(values) if output.datatype == "BYTES"
                                   else np.asarray(values, dtype=NUMPY_DTYPES[output.datatype]))
    return arrays


def predictions_table(response: kpb.ModelInferResponse) -> pd.DataFrame:
    """Return a response as a prediction table (PREDICTION_COLUMNS, then model_version, error_code, error)."""
    arrays = output_arrays(response)
    n = len(arrays["event_id"])
    table: dict[str, object] = {"event_id": np.asarray(arrays["event_id"], dtype=np.int64)}
    for name in FLOAT_OUTPUTS:
        table[name] = np.asarray(arrays[name], dtype=np.float64)
    table["method"] = [response.model_name] * n
    table["fit_status"] = [s.decode() or FIT_OK for s in arrays["fit_status"]]
    table["model_version"] = [response.model_version] * n
    table["error_code"] = np.asarray(arrays["error_code"], dtype=np.int32)
    table["error"] = [s.decode() for s in arrays["error"]]
    return pd.DataFrame(table).astype({k: v for k, v in PREDICTION_COLUMNS.items() if v != "object"})
