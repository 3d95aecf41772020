"""The server half of the KServe v2 tensor contract: input tensors -> events, results -> output tensors.

A request's tensors become one EventBlock in a few vectorised steps (no per-event Python
objects) and go through the same per-event checks as the native protocol
(``services.codec.check_events``). Tensor-level problems fail the call with a
``TensorError`` naming the tensor; event-level problems fail only their event.
The contract itself (names, datatypes, shapes) is in nurec.protocol.kserve and the .proto.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from nurec.protocol import pb
from nurec.protocol.codec import DIR_FIELDS, FLOAT_OUTPUTS
from nurec.protocol.kserve import (
    EVENT_ID,
    HIT_TENSORS,
    INPUTS,
    N_HITS,
    NUMPY_DTYPES,
    OFFSETS,
    OUTPUTS,
    RUN_ID,
    TYPED_FIELDS,
    encode_bytes,
    kpb,
)
from services.codec import (
    DecodeLimits,
    EventBlock,
    EventFailure,
    FieldNames,
    check_events,
    shown_name,
)

_INT32 = np.iinfo(np.int32)
_FLOAT_COLUMNS = tuple(column for column in HIT_TENSORS if column != "sensor_id")
_FIELD_NAMES = {name: FieldNames({column: spec.name for column, spec in HIT_TENSORS.items()}, hits=name,
                                 detector="parameters.detector") for name in (N_HITS.name, OFFSETS.name)}
"""How check_events names the tensors, by the tensor that gave the hits per event."""


class TensorError(ValueError):
    """A malformed tensor: the whole call fails with INVALID_ARGUMENT; the message names the tensor."""


@dataclass(frozen=True)
class DecodedRequest:
    """The events of a ModelInferRequest: those fit to compute, and the failures of the rest."""

    block: EventBlock               # valid events
    positions: np.ndarray           # their positions in the request
    failures: dict[int, EventFailure]
    event_id: np.ndarray            # of every event of the request, in order

    @property
    def n_events(self) -> int:
        return len(self.event_id)


def read_inputs(request: kpb.ModelInferRequest) -> dict[str, np.ndarray]:
    """Return the request's input tensors by name as little-endian numpy arrays (read-only views)."""
    inputs = list(request.inputs)
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(inputs):
        raise TensorError(f"raw_input_contents: {len(raw)} entries for {len(inputs)} inputs "
                          "(one per input, in the order of inputs)")
    tensors: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(inputs):
        name, datatype, shape = tensor.name, tensor.datatype, tensor.shape
        spec = INPUTS.get(name)
        if spec is None:
            raise TensorError(f"{shown_name(name)}: unknown input (expected: {', '.join(INPUTS)})")
        if name in tensors:
            raise TensorError(f"{name}: given twice")
        if datatype not in spec.datatypes:
            raise TensorError(f"{name}: datatype {shown_name(datatype)}, expected {' or '.join(spec.datatypes)}")
        if len(shape) != 1 or shape[0] < 0:
            raise TensorError(f"{name}: shape {list(shape)[:8]}, expected one dimension [n]")
        size = shape[0]
        dtype = NUMPY_DTYPES[datatype]
        if raw:
            if tensor.HasField("contents"):
                raise TensorError(f"{name}: has contents although raw_input_contents is used (give one or the other)")
            data = raw[index]
            if len(data) != size * dtype.itemsize:
                raise TensorError(f"{name}: {len(data)} bytes of raw contents, expected {size * dtype.itemsize} "
                                  f"for shape [{size}] of {datatype}")
            tensors[name] = np.frombuffer(data, dtype=dtype)
        else:
            field = TYPED_FIELDS[datatype]
            values = getattr(tensor.contents, field)
            if len(values) != size:
                raise TensorError(f"{name}: {len(values)} values in contents.{field}, expected {size} "
                                  f"for shape [{size}]")
            tensors[name] = np.asarray(values, dtype=dtype)
    return tensors


def _counts(tensors: Mapping[str, np.ndarray], n_hits: int) -> tuple[np.ndarray, str]:
    """Return (hits per event, the name of the tensor that gave them)."""
    if (N_HITS.name in tensors) == (OFFSETS.name in tensors):
        raise TensorError(f"{N_HITS.name}, {OFFSETS.name}: give exactly one of them (hits per event, or event boundaries)")
    if N_HITS.name in tensors:
        counts = tensors[N_HITS.name].astype(np.int64)
        if len(counts) and counts.min() < 0:
            raise TensorError(f"{N_HITS.name}: negative hit count {int(counts.min())}")
        if int(counts.sum()) != n_hits:
            raise TensorError(f"{N_HITS.name}: counts sum to {int(counts.sum())}, but the hit tensors hold {n_hits} hits")
        return counts, N_HITS.name
    offsets = tensors[OFFSETS.name].astype(np.int64)
    if len(offsets) == 0 or offsets[0] != 0:
        raise TensorError(f"{OFFSETS.name}: must start at 0 (n_events + 1 values)")
    counts = np.diff(offsets)
    if len(counts) and counts.min() < 0:
        raise TensorError(f"{OFFSETS.name}: decreases at index {int(np.argmax(counts < 0)) + 1}")
    if int(offsets[-1]) != n_hits:
        raise TensorError(f"{OFFSETS.name}: ends at {int(offsets[-1])}, but the hit tensors hold {n_hits} hits")
    return counts, OFFSETS.name


def _per_event(tensors: Mapping[str, np.ndarray], name: str, n_events: int, default: np.ndarray) -> np.ndarray:
    if name not in tensors:
        return default
    values = tensors[name]
    if len(values) != n_events:
        raise TensorError(f"{name}: {len(values)} values, expected {n_events} (one per event)")
    return values.astype(np.int64)


def decode_request(request: kpb.ModelInferRequest, limits: DecodeLimits, detector: str) -> DecodedRequest:
    """Return the events of ``request`` (all of ``detector``), checked; raise TensorError for a malformed tensor."""
    tensors = read_inputs(request)
    required = [spec.name for spec in HIT_TENSORS.values() if not spec.optional]
    missing = [name for name in required if name not in tensors]
    if missing:
        raise TensorError(f"{missing[0]}: missing (required inputs: {', '.join(required)})")
    sensor = HIT_TENSORS["sensor_id"].name
    n_hits = len(tensors[sensor])
    dir_names = [HIT_TENSORS[column].name for column in DIR_FIELDS]
    given_dirs = [name for name in dir_names if name in tensors]
    if given_dirs and len(given_dirs) != len(dir_names):
        absent = next(name for name in dir_names if name not in tensors)
        raise TensorError(f"{absent}: missing (give all three PMT direction tensors, or none to take them "
                          "from the detector geometry)")
    for spec in HIT_TENSORS.values():
        if spec.name in tensors and len(tensors[spec.name]) != n_hits:
            raise TensorError(f"{spec.name}: {len(tensors[spec.name])} values, expected {n_hits} "
                              f"(one per hit, as {sensor})")
    counts, counts_name = _counts(tensors, n_hits)
    n_events = len(counts)
    event_id = _per_event(tensors, EVENT_ID.name, n_events, np.arange(n_events, dtype=np.int64))
    run_id = _per_event(tensors, RUN_ID.name, n_events, np.zeros(n_events, dtype=np.int64))

    sensor_ids = tensors[sensor]
    if sensor_ids.dtype.itemsize > 4 and n_hits and (sensor_ids.min() < _INT32.min or sensor_ids.max() > _INT32.max):
        bad = sensor_ids[(sensor_ids < _INT32.min) | (sensor_ids > _INT32.max)][0]
        raise TensorError(f"{sensor}: sensor id {int(bad)} does not fit the schema's int32")
    # The block owns writable, native-order copies (the float columns are rows of one array);
    # PMT directions not sent are zeros, filled from the geometry.
    floats = np.zeros((len(_FLOAT_COLUMNS), n_hits), dtype=np.float32)
    hits = {"sensor_id": sensor_ids.astype(np.int32)}
    for row, column in enumerate(_FLOAT_COLUMNS):
        hits[column] = floats[row]
        name = HIT_TENSORS[column].name
        if name in tensors:
            floats[row] = tensors[name]
    block = EventBlock.of(event_id, run_id, counts, hits, np.full(n_events, detector, dtype=object))
    needs_dirs = np.full(n_events, not given_dirs, dtype=bool)
    block, positions, failures = check_events(block, needs_dirs, np.arange(n_events, dtype=np.int64), {},
                                              limits, _FIELD_NAMES[counts_name])
    return DecodedRequest(block, positions, failures, event_id)


def requested_outputs(request: kpb.ModelInferRequest) -> list[str]:
    """Return the names of the outputs to answer with, in order; raise TensorError for an unknown one."""
    if not request.outputs:
        return list(OUTPUTS)
    names = []
    for output in request.outputs:
        if output.name not in OUTPUTS:
            raise TensorError(f"outputs: unknown output '{shown_name(output.name)}' (known: {', '.join(OUTPUTS)})")
        names.append(output.name)
    return names


@lru_cache(maxsize=512)
def _response_template(outputs: tuple[str, ...], n_events: int) -> kpb.ModelInferResponse:
    """Return a response holding the output tensors' metadata (copying it beats building it anew)."""
    response = kpb.ModelInferResponse()
    for name in outputs:
        response.outputs.add(name=name, datatype=OUTPUTS[name], shape=[n_events])
    return response


def encode_response(decoded: DecodedRequest, results: Sequence[pb.EventReconstruction], outputs: Sequence[str],
                    model_name: str, model_version: str, request_id: str) -> kpb.ModelInferResponse:
    """Return the response: per-event outputs of the computed ``results`` and of the failed events."""
    n = decoded.n_events
    positions = decoded.positions.tolist()
    floats = np.full((len(FLOAT_OUTPUTS), n), np.nan)
    if results:
        floats[:, positions] = np.array([[getattr(r, name) for name in FLOAT_OUTPUTS] for r in results],
                                        dtype=np.float64).T
    status = [b""] * n
    codes = np.zeros(n, dtype="<i4")
    errors = [b""] * n
    for position, result in zip(positions, results, strict=True):
        status[position] = result.fit_status.encode()
        if result.HasField("error"):
            codes[position] = result.error.code
            errors[position] = result.error.message.encode()
    for position, failure in decoded.failures.items():
        status[position] = f"failed: {failure.message}".encode()
        codes[position] = failure.code
        errors[position] = failure.message.encode()
    raw = {"event_id": lambda: decoded.event_id.astype("<i8").tobytes(),
           "fit_status": lambda: encode_bytes(status),
           "error_code": lambda: codes.tobytes(),
           "error": lambda: encode_bytes(errors)}
    row = {name: k for k, name in enumerate(FLOAT_OUTPUTS)}
    response = kpb.ModelInferResponse()
    response.CopyFrom(_response_template(tuple(outputs), n))
    response.model_name, response.model_version, response.id = model_name, model_version, request_id
    response.raw_output_contents.extend(floats[row[name]].astype("<f8").tobytes() if name in row else raw[name]()
                                        for name in outputs)
    return response
