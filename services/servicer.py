"""The Reconstruction servicer: validates and adapts calls; the batcher and the method do the work."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

import grpc

from nurec.protocol import pb, pb_grpc
from services.batcher import (
    BatchFailed,
    DeadlineExpired,
    Draining,
    DynamicBatcher,
    QueueFull,
    WorkerLost,
)
from services.codec import EventBlock, decode_events, failure_message
from services.config import ServeConfig
from services.metrics import ServerMetrics
from services.names import name_problem
from services.registration import UndecodableRequest
from services.served import ServedModel


class ServingState(Protocol):
    """What the servicer reads and updates of the server that owns it (``services.server``)."""

    config: ServeConfig
    metrics: ServerMetrics
    models: dict[str, ServedModel]
    default_model: str
    draining: bool
    busy: int
    batcher: DynamicBatcher | None

STREAM_WINDOW = 64
"""Messages of one stream being reconstructed at once; beyond it the server stops reading (backpressure)."""


class RpcFailure(Exception):
    """A call-level error: a gRPC status code and a message naming the field."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class ReconstructionServicer(pb_grpc.ReconstructionServicer):
    """Validates and adapts calls; the batcher and the method do the work."""

    def __init__(self, server: ServingState) -> None:
        self._server = server

    @property
    def _metrics(self) -> ServerMetrics:
        return self._server.metrics

    def _model(self, name: str) -> ServedModel:
        if (problem := name_problem(name)) is not None:
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, f"model: {problem}")
        model = self._server.models.get(name or self._server.default_model)
        if model is None:
            raise RpcFailure(grpc.StatusCode.NOT_FOUND, f"model: unknown model '{name}' "
                             f"(served: {', '.join(self._server.models)})")
        return model

    async def _reconstruct(self, request: pb.ReconstructRequest, timeout_s: float | None,
                           wait_for_room: bool) -> pb.ReconstructResponse:
        if self._server.draining:
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE, "server is draining; retry on another server")
        model = self._model(request.model)
        n_events = len(request.events)
        self._metrics.received.inc(n_events)
        if n_events > self._server.config.max_queue:
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, f"events: {n_events} events exceed the "
                             f"server's max_queue of {self._server.config.max_queue}; split the request")
        block, positions, failures = decode_events(request.events, model.limits)
        if failures:
            self._metrics.events.labels("invalid").inc(len(failures))
            self._metrics.errors.labels("INVALID_ARGUMENT").inc(len(failures))
            if request.strict:
                index = min(failures)
                raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT,
                                 f"events[{index}] (event_id {request.events[index].event_id}): "
                                 f"{failures[index].message}")
        computed = await self.submit_block(block, timeout_s, wait_for_room)
        if not failures:
            return pb.ReconstructResponse(results=computed)
        results: list[Any] = [None] * n_events
        for position, result in zip(positions.tolist(), computed, strict=True):
            results[position] = result
        for position, failure in failures.items():
            results[position] = failure_message(request.events[position].event_id, model.name,
                                                model.version, failure)
        return pb.ReconstructResponse(results=results)

    async def submit_block(self, block: EventBlock, timeout_s: float | None, wait_for_room: bool) -> list[Any]:
        """Return the per-event results of ``block`` from the batcher, the one path to the model.

        Both protocols (this one and services.kserve) submit here; the batcher's refusals
        become RpcFailures with their status codes.
        """
        self._server.busy += 1
        try:
            computed = await self._server.batcher.submit(block, timeout_s, wait_for_room=wait_for_room)
        except QueueFull as err:
            self._metrics.events.labels("rejected").inc(len(block))
            raise RpcFailure(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err)) from None
        except Draining as err:
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE, f"{err}; retry on another server") from None
        except WorkerLost as err:
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE, f"{err}; retry") from None
        except DeadlineExpired as err:
            raise RpcFailure(grpc.StatusCode.DEADLINE_EXCEEDED, str(err)) from None
        except BatchFailed as err:
            raise RpcFailure(grpc.StatusCode.INTERNAL, str(err)) from None
        finally:
            self._server.busy -= 1
        self._metrics.events.labels("ok").inc(len(computed))
        return computed

    def count_undecodable(self, rpc: str) -> None:
        """Count a call refused before it reached this servicer (undecodable request bytes)."""
        self._metrics.requests.labels(rpc, "INVALID_ARGUMENT").inc()
        self._metrics.errors.labels("INVALID_ARGUMENT").inc()

    def _finish(self, rpc: str, code: grpc.StatusCode, start: float) -> None:
        self._metrics.requests.labels(rpc, code.name).inc()
        if code != grpc.StatusCode.OK:
            self._metrics.errors.labels(code.name).inc()
        self._metrics.total_seconds.labels(rpc).observe(time.perf_counter() - start)

    @contextlib.asynccontextmanager
    async def _accounted(self, rpc: str, context) -> AsyncIterator[None]:
        """Count and time one call; an RpcFailure aborts it with its status code and details."""
        start, code = time.perf_counter(), grpc.StatusCode.OK
        try:
            yield
        except (RpcFailure, UndecodableRequest) as failure:
            code = failure.code
            await context.abort(failure.code, failure.details)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        finally:
            self._finish(rpc, code, start)

    async def Reconstruct(self, request, context):
        async with self._accounted("Reconstruct", context):
            return await self._reconstruct(request, context.time_remaining(), wait_for_room=False)

    async def ReconstructStream(self, request_iterator, context):
        window: asyncio.Queue = asyncio.Queue(maxsize=STREAM_WINDOW)
        done = object()

        async def read() -> None:
            try:
                async for request in request_iterator:
                    await window.put(asyncio.ensure_future(
                        self._reconstruct(request, context.time_remaining(), wait_for_room=True)))
            except Exception as err:  # reading failed: answer what was read, then end with the error
                await window.put(err)
            await window.put(done)

        reader = asyncio.ensure_future(read())
        async with self._accounted("ReconstructStream", context):
            try:
                while (task := await window.get()) is not done:
                    if isinstance(task, Exception):
                        raise task
                    yield await task
            finally:
                reader.cancel()
                while not window.empty():
                    task = window.get_nowait()
                    if isinstance(task, asyncio.Future):
                        task.cancel()

    async def ListModels(self, request, context):
        start = time.perf_counter()
        models = [self._info(m) for m in self._server.models.values()]
        self._finish("ListModels", grpc.StatusCode.OK, start)
        return pb.ListModelsResponse(models=models)

    async def GetModelInfo(self, request, context):
        async with self._accounted("GetModelInfo", context):
            return self._info(self._model(request.name))

    def _info(self, model: ServedModel) -> pb.ModelInfo:
        info = pb.ModelInfo()
        info.CopyFrom(model.info)
        info.is_default = model.name == self._server.default_model
        return info
