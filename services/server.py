"""The gRPC reconstruction server: any method of the nurec registry behind a dynamic batcher.

``ReconstructionServer`` wires the servicer, the batcher, health, reflection, metrics and
security together on a ``grpc.aio`` server; ``serve(config)`` runs it until SIGTERM/SIGINT
and then drains: health turns NOT_SERVING, new work is refused with UNAVAILABLE, every
accepted event is still computed and answered, then the process exits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from nurec.registry import Reconstructor, available_methods, get_method
from services._generated import reconstruction_pb2 as pb
from services._generated import reconstruction_pb2_grpc as pb_grpc
from services.auth import BearerTokenInterceptor, read_token, server_credentials
from services.batcher import BatchFailed, DeadlineExpired, Draining, DynamicBatcher, QueueFull
from services.codec import (
    DecodeLimits,
    EventBlock,
    EventFailure,
    decode_events,
    encode_predictions,
    failure_message,
)
from services.config import ServeConfig
from services.metrics import ServerMetrics
from services.worker import ProcessWorker

log = logging.getLogger("nurec.serve")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Reconstruction"].full_name
DEFAULT_METHOD = ("gnn", "default")
FALLBACK_METHOD = "linefit"
STREAM_WINDOW = 64
"""Messages of one stream being reconstructed at once; beyond it the server stops reading (backpressure)."""


class RpcFailure(Exception):
    """A call-level error: a gRPC status code and a message naming the field."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def resolve_method(method: str | None, model: str | None) -> tuple[str, str | None]:
    """Return (method name, "model" option) to serve: the bundled GNN if registered, else LineFit."""
    if method:
        return method, model
    names = {spec.name for spec in available_methods()}
    if DEFAULT_METHOD[0] in names:
        return DEFAULT_METHOD[0], model or DEFAULT_METHOD[1]
    if FALLBACK_METHOD in names:
        return FALLBACK_METHOD, model
    raise ValueError(f"method: no default method registered ({DEFAULT_METHOD[0]} or {FALLBACK_METHOD}); "
                     f"available: {', '.join(sorted(names)) or 'none'}")


def _card(method: Reconstructor) -> dict[str, Any]:
    """Return the model card of a method as a dict (empty if it has none)."""
    for attribute in ("card", "model_card", "metadata"):
        card = getattr(method, attribute, None)
        if callable(card) and not isinstance(card, Mapping):
            card = card()
        if card is None:
            continue
        if dataclasses.is_dataclass(card):
            return dataclasses.asdict(card)
        if hasattr(card, "to_dict"):
            return dict(card.to_dict())
        if isinstance(card, Mapping):
            return dict(card)
    return {}


def _names(value: Any) -> list[str]:
    """Return names from a string, a {"name": ...} mapping, or a list of either."""
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, Mapping):
        return [str(value["name"])] if "name" in value else []
    if isinstance(value, list | tuple):
        return [name for item in value for name in _names(item)]
    return []


def _numbers(data: Any, prefix: str = "") -> dict[str, float]:
    """Return the numeric leaves of nested metrics as {"a.b": value}."""
    if isinstance(data, Mapping):
        out: dict[str, float] = {}
        for key, value in data.items():
            out.update(_numbers(value, f"{prefix}{key}."))
        return out
    if isinstance(data, bool) or not isinstance(data, int | float | np.number):
        return {}
    return {prefix.rstrip("."): float(data)}


def describe_model(name: str, variant: str | None, method: Reconstructor) -> pb.ModelInfo:
    """Return the ModelInfo of a served method from its registry entry and model card."""
    card = _card(method)
    spec = {s.name: s for s in available_methods()}.get(name)
    detectors = _names(card.get("detectors") or card.get("detector"))
    inputs = _names(card.get("inputs") or card.get("features") or getattr(method, "features", None))
    return pb.ModelInfo(
        name=name, variant=variant or "", version=str(getattr(method, "version", "")),
        description=str(card.get("description") or (spec.description if spec else "")),
        detectors=detectors, inputs=inputs, metrics=_numbers(card.get("metrics", {})),
    )


class ServedModel:
    """A loaded method, its description, and the function the batcher calls (in the worker thread).

    With a ProcessWorker the method's ``reconstruct`` runs in that process; this process
    keeps its own copy of the method only to describe it.
    """

    def __init__(self, name: str, variant: str | None, method: Reconstructor, config: ServeConfig,
                 worker: ProcessWorker | None = None) -> None:
        self.name = name
        self.method = method
        self.worker = worker
        self.info = describe_model(name, variant, method)
        self.version = self.info.version
        self.limits = DecodeLimits(max_hits=config.max_hits, default_detector=config.detector,
                                   model_detectors=tuple(self.info.detectors), model_name=name)

    def compute(self, block: EventBlock) -> list[pb.EventReconstruction]:
        """Return one result message per event of ``block`` (events of each detector run together)."""
        detectors = np.unique(block.detector)
        if len(detectors) <= 1:
            return self._compute_group(block)
        results: list[Any] = [None] * len(block)
        for detector in detectors:
            index = np.flatnonzero(block.detector == detector)
            for i, result in zip(index, self._compute_group(block.take(index)), strict=True):
                results[i] = result
        return results

    def _compute_group(self, block: EventBlock) -> list[pb.EventReconstruction]:
        try:
            # Event ids are renumbered within the batch: different clients may reuse ids.
            numbered = dataclasses.replace(block, event_id=np.arange(len(block)))
            table = (self.worker.reconstruct_block(numbered) if self.worker is not None
                     else self.method.reconstruct(numbered.to_awkward()))
            row_ids = table["event_id"].to_numpy()
            if len(table) != len(block) or not np.array_equal(np.sort(row_ids), np.arange(len(block))):
                raise BatchFailed(f"method returned {len(table)} rows for {len(block)} events")
            table = table.iloc[np.argsort(row_ids)]
            return encode_predictions(table, block.event_id, self.version)
        except Exception as err:
            if len(block) == 1:
                log.warning("event failed", extra={"event_id": int(block.event_id[0]), "error": repr(err)})
                failure = EventFailure(pb.INTERNAL, "", f"reconstruction failed: {err}")
                return [failure_message(block.event_id[0], self.name, self.version, failure)]
            # Isolate the event that breaks the batch: its neighbours still get results.
            log.warning("batch failed, retrying event by event", extra={"events": len(block), "error": repr(err)})
            return [r for i in range(len(block)) for r in self._compute_group(block.take([i]))]


class ReconstructionServicer(pb_grpc.ReconstructionServicer):
    """Validates and adapts calls; the batcher and the method do the work."""

    def __init__(self, server: ReconstructionServer) -> None:
        self._server = server

    @property
    def _metrics(self) -> ServerMetrics:
        return self._server.metrics

    def _model(self, name: str) -> ServedModel:
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
        self._server.busy += 1
        try:
            computed = await self._server.batcher.submit(block, timeout_s, wait_for_room=wait_for_room)
        except QueueFull as err:
            raise RpcFailure(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err)) from None
        except Draining as err:
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE, f"{err}; retry on another server") from None
        except DeadlineExpired as err:
            raise RpcFailure(grpc.StatusCode.DEADLINE_EXCEEDED, str(err)) from None
        except BatchFailed as err:
            raise RpcFailure(grpc.StatusCode.INTERNAL, str(err)) from None
        finally:
            self._server.busy -= 1
        self._metrics.events.labels("ok").inc(len(computed))
        if not failures:
            return pb.ReconstructResponse(results=computed)
        results: list[Any] = [None] * n_events
        for position, result in zip(positions.tolist(), computed, strict=True):
            results[position] = result
        for position, failure in failures.items():
            results[position] = failure_message(request.events[position].event_id, model.name,
                                                model.version, failure)
        return pb.ReconstructResponse(results=results)

    def _finish(self, rpc: str, code: grpc.StatusCode, start: float) -> None:
        self._metrics.requests.labels(rpc, code.name).inc()
        if code != grpc.StatusCode.OK:
            self._metrics.errors.labels(code.name).inc()
        self._metrics.total_seconds.labels(rpc).observe(time.perf_counter() - start)

    async def Reconstruct(self, request, context):
        start, code = time.perf_counter(), grpc.StatusCode.OK
        try:
            return await self._reconstruct(request, context.time_remaining(), wait_for_room=False)
        except RpcFailure as failure:
            code = failure.code
            await context.abort(failure.code, failure.details)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        finally:
            self._finish("Reconstruct", code, start)

    async def ReconstructStream(self, request_iterator, context):
        start, code = time.perf_counter(), grpc.StatusCode.OK
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
        try:
            while (task := await window.get()) is not done:
                if isinstance(task, Exception):
                    raise task
                yield await task
        except RpcFailure as failure:
            code = failure.code
            await context.abort(failure.code, failure.details)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        finally:
            reader.cancel()
            while not window.empty():
                task = window.get_nowait()
                if isinstance(task, asyncio.Future):
                    task.cancel()
            self._finish("ReconstructStream", code, start)

    async def ListModels(self, request, context):
        start = time.perf_counter()
        models = [self._info(m) for m in self._server.models.values()]
        self._finish("ListModels", grpc.StatusCode.OK, start)
        return pb.ListModelsResponse(models=models)

    async def GetModelInfo(self, request, context):
        start, code = time.perf_counter(), grpc.StatusCode.OK
        try:
            return self._info(self._model(request.name))
        except RpcFailure as failure:
            code = failure.code
            await context.abort(failure.code, failure.details)
        finally:
            self._finish("GetModelInfo", code, start)

    def _info(self, model: ServedModel) -> pb.ModelInfo:
        info = pb.ModelInfo()
        info.CopyFrom(model.info)
        info.is_default = model.name == self._server.default_model
        return info


class ReconstructionServer:
    """One served model behind a dynamic batcher on a grpc.aio server (start, drain, stop)."""

    def __init__(self, config: ServeConfig, method: Reconstructor | None = None) -> None:
        self.config = config.validate()
        self.metrics = ServerMetrics()
        self.models: dict[str, ServedModel] = {}
        self.default_model = ""
        self.draining = False
        self.busy = 0
        self.port = 0
        self.metrics_port = 0
        self._method = method
        self._server: grpc.aio.Server | None = None
        self._health: health.aio.HealthServicer | None = None
        self._metrics_http: Any = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nurec-infer")
        self.batcher: DynamicBatcher | None = None
        self._stopped: asyncio.Event | None = None

    def _load_model(self) -> ServedModel:
        config = self.config
        if self._method is not None:
            name, variant, method = self._method.name, config.model, self._method
        else:
            name, variant = resolve_method(config.method, config.model)
            try:
                method = get_method(name, **({"model": variant} if variant else {}))
            except FileNotFoundError as err:
                if config.method or FALLBACK_METHOD not in {s.name for s in available_methods()}:
                    raise
                # No method was asked for and the bundled GNN model is missing: serve LineFit.
                log.warning("default model unavailable, serving the fallback method",
                            extra={"method": name, "error": str(err), "fallback": FALLBACK_METHOD})
                name, variant = FALLBACK_METHOD, None
                method = get_method(name)
        if config.threads and "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(config.threads)
        worker = None
        if config.worker == "process" and self._method is None:
            worker = ProcessWorker(name, {"model": variant} if variant else {}, config.threads)
        return ServedModel(name, variant, method, config, worker)

    async def start(self) -> None:
        """Load the model and start serving (gRPC, health, reflection, metrics)."""
        config = self.config
        model = self._load_model()
        self.models = {model.name: model}
        self.default_model = model.name
        self._stopped = asyncio.Event()
        self.batcher = DynamicBatcher(
            model.compute, self._executor, max_batch_size=config.max_batch_size,
            max_queue_delay_s=config.max_queue_delay_ms / 1000.0, max_queue=config.max_queue,
            metrics=self.metrics)
        self.batcher.start()
        size = config.max_message_mb * 1024 * 1024
        token = read_token(config.token_file)
        interceptors = [BearerTokenInterceptor(token)] if token else []
        self._server = grpc.aio.server(
            interceptors=interceptors,
            options=[("grpc.max_receive_message_length", size), ("grpc.max_send_message_length", size),
                     ("grpc.so_reuseport", 0)])
        pb_grpc.add_ReconstructionServicer_to_server(ReconstructionServicer(self), self._server)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server)
        address = f"{config.host}:{config.port}"
        credentials = server_credentials(config)
        try:
            if config.metrics_port:
                try:
                    self._metrics_http = self.metrics.serve_http(config.metrics_port, config.host)
                except OSError as err:
                    raise OSError(f"metrics_port: cannot listen on {config.host}:{config.metrics_port} "
                                  f"({err.strerror or err})") from None
                self.metrics_port = self._metrics_http.server_port
            try:
                self.port = (self._server.add_secure_port(address, credentials) if credentials
                             else self._server.add_insecure_port(address))
            except RuntimeError as err:
                raise OSError(f"port: cannot listen on {address} ({err})") from None
            if not self.port:
                raise OSError(f"port: cannot listen on {address}")
        except OSError:
            await self._release()
            raise
        await self._server.start()
        for service in ("", SERVICE_NAME):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving", extra={
            "address": f"{config.host}:{self.port}", "model": model.name, "variant": model.info.variant,
            "worker": "process" if model.worker else "thread",
            "version": model.version, "tls": bool(credentials), "mtls": bool(config.tls_client_ca),
            "token_auth": bool(token), "metrics_port": self.metrics_port or None,
            "config": config.to_dict()})

    async def _release(self) -> None:
        """Stop the batcher, the worker and the metrics endpoint."""
        if self.batcher is not None:
            await self.batcher.stop()
        self._executor.shutdown(wait=True)
        for model in self.models.values():
            if model.worker is not None:
                model.worker.close()
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()
            self._metrics_http = None

    async def drain_and_stop(self) -> None:
        """Turn health NOT_SERVING, refuse new work, finish accepted work, then stop."""
        if self.draining:
            assert self._stopped is not None
            await self._stopped.wait()
            return
        self.draining = True
        began = time.monotonic()
        assert self._health is not None and self._server is not None and self.batcher is not None
        for service in ("", SERVICE_NAME):
            await self._health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        log.info("draining", extra={"queued_events": self.batcher.queued_events, "busy_calls": self.busy})
        finished = await self.batcher.drain(self.config.drain_timeout_s)
        while self.busy and time.monotonic() - began < self.config.drain_timeout_s:
            await asyncio.sleep(0.01)  # results are being handed back to their calls
        left = max(1.0, self.config.drain_timeout_s - (time.monotonic() - began))
        await self._server.stop(grace=min(left, 5.0))
        await self._release()
        log.info("stopped", extra={"drained": finished and not self.busy,
                                   "drain_s": round(time.monotonic() - began, 3)})
        assert self._stopped is not None
        self._stopped.set()


async def _serve_until_signal(config: ServeConfig) -> None:
    server = ReconstructionServer(config)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.drain_and_stop()


def serve(config: ServeConfig) -> int:
    """Serve until SIGTERM or SIGINT, drain, and return the exit code."""
    asyncio.run(_serve_until_signal(config))
    return 0


class BackgroundServer:
    """A ReconstructionServer on its own event loop in a thread (for tests, notebooks, benchmarks)."""

    def __init__(self, config: ServeConfig, method: Reconstructor | None = None) -> None:
        self.server = ReconstructionServer(config, method)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nurec-serve", daemon=True)

    @property
    def target(self) -> str:
        return f"{self.server.config.host}:{self.server.port}"

    def start(self) -> BackgroundServer:
        """Start serving; return self once the port is open."""
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout=120)
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            raise
        return self

    def begin_drain(self) -> Any:
        """Start draining (as on SIGTERM); return a future that completes when stopped."""
        return asyncio.run_coroutine_threadsafe(self.server.drain_and_stop(), self._loop)

    def stop(self) -> None:
        """Drain, stop and end the thread."""
        if self._thread.is_alive() and self.server.batcher is not None:
            self.begin_drain().result(timeout=60)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
