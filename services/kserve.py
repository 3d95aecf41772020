"""The KServe v2 / Triton inference service beside nurec's own, on the same server and port.

Models are the methods the server serves (model name = registered method name, e.g.
"gnn"; version = the method's model version). The request parameter "detector" names
the detector of a request's events (default: the server's --detector). ModelInfer decodes
the tensors (services.kserve_codec), then submits the events through the native
servicer's ``submit_block``, i.e. the same batcher and method call as the native API:
there is no second path to the model. See proto/inference/grpc_predict_v2.proto.
"""

from __future__ import annotations

import grpc

import nurec
from nurec.geometry import available_detectors
from nurec.protocol.kserve import (
    HIT_TENSORS,
    INPUTS,
    OUTPUTS,
    PARAMETER_DETECTOR,
    PARAMETER_STRICT,
    kpb,
    kpb_grpc,
)
from services.codec import shown_name
from services.kserve_codec import TensorError, decode_request, encode_response, requested_outputs
from services.served import ServedModel
from services.servicer import ReconstructionServicer, RpcFailure, ServingState

SERVICE_NAME = kpb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
PLATFORM = "nurec"
SCHEDULING_PARAMETERS = frozenset({"priority", "timeout", "sequence_id", "sequence_start", "sequence_end",
                                   "binary_data_output"})
"""Request parameters tritonclient may send on its own; nurec's batcher schedules without them."""
_CONFIG_TYPES = {"INT32": kpb.TYPE_INT32, "INT64": kpb.TYPE_INT64, "FP32": kpb.TYPE_FP32, "FP64": kpb.TYPE_FP64,
                 "BYTES": kpb.TYPE_STRING}


class KServeServicer(kpb_grpc.GRPCInferenceServiceServicer):
    """Health, metadata and inference of the served methods in the KServe v2 protocol."""

    def __init__(self, server: ServingState, native: ReconstructionServicer) -> None:
        self._server = server
        self._native = native

    def _served(self, name: str, version: str) -> ServedModel | None:
        model = self._server.models.get(name)
        if model is None or version not in ("", model.version):
            return None
        return model

    def _model(self, name: str, version: str) -> ServedModel:
        model = self._served(name, version)
        if model is None:
            known = ", ".join(f"{m.name} version {m.version}" for m in self._server.models.values())
            wanted = f"'{shown_name(name)}'" + (f" version '{shown_name(version)}'" if version else "")
            raise RpcFailure(grpc.StatusCode.NOT_FOUND, f"model_name: unknown model {wanted} (served: {known})")
        return model

    async def ServerLive(self, request, context):
        return kpb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return kpb.ServerReadyResponse(ready=not self._server.draining and self._server.batcher is not None)

    async def ModelReady(self, request, context):
        ready = not self._server.draining and self._served(request.name, request.version) is not None
        return kpb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(self, request, context):
        return kpb.ServerMetadataResponse(name="nurec", version=nurec.__version__, extensions=["parameters"])

    async def ModelMetadata(self, request, context):
        async with self._native._accounted("ModelMetadata", context):
            model = self._model(request.name, request.version)
            tensor = kpb.ModelMetadataResponse.TensorMetadata
            return kpb.ModelMetadataResponse(
                name=model.name, versions=[model.version], platform=PLATFORM,
                inputs=[tensor(name=spec.name, datatype=spec.datatype, shape=[-1]) for spec in INPUTS.values()],
                outputs=[tensor(name=name, datatype=datatype, shape=[-1]) for name, datatype in OUTPUTS.items()])

    async def ModelConfig(self, request, context):
        async with self._native._accounted("ModelConfig", context):
            model = self._model(request.name, request.version)
            required = {spec.name for spec in HIT_TENSORS.values() if not spec.optional}
            config = kpb.ModelConfig(
                name=model.name, platform=PLATFORM, backend=PLATFORM, max_batch_size=0,
                input=[kpb.ModelInput(name=spec.name, data_type=_CONFIG_TYPES[spec.datatype], dims=[-1],
                                      optional=spec.name not in required) for spec in INPUTS.values()],
                output=[kpb.ModelOutput(name=name, data_type=_CONFIG_TYPES[datatype], dims=[-1])
                        for name, datatype in OUTPUTS.items()])
            return kpb.ModelConfigResponse(config=config)

    async def ModelInfer(self, request, context):
        async with self._native._accounted("ModelInfer", context):
            return await self._infer(request, context.time_remaining())

    def _parameters(self, request: kpb.ModelInferRequest, model: ServedModel) -> tuple[str, bool]:
        """Return (detector, strict) from the request parameters."""
        detector, strict = model.limits.default_detector, False
        for key, value in request.parameters.items():
            kind = value.WhichOneof("parameter_choice")
            if key == PARAMETER_DETECTOR:
                if kind != "string_param":
                    raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT,
                                     f"parameters.{key}: expected a string parameter, got {kind}")
                detector = value.string_param or detector
            elif key == PARAMETER_STRICT:
                if kind != "bool_param":
                    raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT,
                                     f"parameters.{key}: expected a bool parameter, got {kind}")
                strict = value.bool_param
            elif key not in SCHEDULING_PARAMETERS:
                raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, f"parameters.{shown_name(key)}: unknown parameter "
                                 f"(nurec reads {PARAMETER_DETECTOR}, {PARAMETER_STRICT})")
        known = available_detectors()
        if detector not in known:
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, f"parameters.{PARAMETER_DETECTOR}: unknown detector "
                             f"'{shown_name(detector)}' (known: {', '.join(sorted(known))})")
        return detector, strict

    async def _infer(self, request: kpb.ModelInferRequest, timeout_s: float | None) -> kpb.ModelInferResponse:
        server = self._server
        if server.draining:
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE, "server is draining; retry on another server")
        model = self._model(request.model_name, request.model_version)
        detector, strict = self._parameters(request, model)
        try:
            outputs = requested_outputs(request)
            decoded = decode_request(request, model.limits, detector)
        except TensorError as err:
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, str(err)) from None
        metrics = server.metrics
        metrics.received.inc(decoded.n_events)
        if decoded.n_events > server.config.max_queue:
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, f"inputs: {decoded.n_events} events exceed "
                             f"the server's max_queue of {server.config.max_queue}; split the request")
        failures = decoded.failures
        if failures:
            metrics.events.labels("invalid").inc(len(failures))
            metrics.errors.labels("INVALID_ARGUMENT").inc(len(failures))
            if strict:
                index = min(failures)
                raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, f"event {index} (event_id "
                                 f"{int(decoded.event_id[index])}): {failures[index].message}")
        results = await self._native.submit_block(decoded.block, timeout_s, wait_for_room=False)
        return encode_response(decoded, results, outputs, model.name, model.version, request.id)
