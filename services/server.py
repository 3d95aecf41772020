"""The gRPC reconstruction server: any method of the nurec registry behind a dynamic batcher.

``ReconstructionServer`` wires the servicer, the batcher, health, reflection, metrics and
security together on a ``grpc.aio`` server; ``serve(config)`` runs it until SIGTERM/SIGINT
and then drains: health turns NOT_SERVING, new work is refused with UNAVAILABLE, every
accepted event is still computed and answered, then the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from nurec.client import read_token
from nurec.methods.contract import Method
from nurec.methods.registry import available_methods, method_accepts
from nurec.protocol import pb, pb_grpc
from nurec.protocol.kserve import kpb_grpc
from services.auth import BearerTokenInterceptor, server_credentials
from services.batcher import DynamicBatcher
from services.config import ServeConfig
from services.kserve import KServeServicer
from services.metrics import ServerMetrics
from services.served import FALLBACK_METHOD, ServedModel, resolve_method
from services.servicer import ReconstructionServicer
from services.worker import ProcessWorker

log = logging.getLogger("nurec.serve")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Reconstruction"].full_name


class ReconstructionServer:
    """One served model behind a dynamic batcher on a grpc.aio server (start, drain, stop)."""

    def __init__(self, config: ServeConfig, method: Method | None = None) -> None:
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
            return ServedModel(self._method.name, config.model, {}, config, method=self._method)
        name, variant = resolve_method(config.method, config.model)
        try:
            return self._served(name, variant)
        except FileNotFoundError as err:
            if config.method or FALLBACK_METHOD not in {s.name for s in available_methods()}:
                raise
            # No method was asked for and the bundled GNN model is missing: serve LineFit.
            log.warning("default model unavailable, serving the fallback method",
                        extra={"method": name, "error": str(err), "fallback": FALLBACK_METHOD})
            return self._served(FALLBACK_METHOD, None)

    def _served(self, name: str, variant: str | None) -> ServedModel:
        """Return method ``name`` served for the configured default detector (in a worker process if set)."""
        config = self.config
        options = {"model": variant} if variant else {}
        if config.threads and method_accepts(name, "threads"):
            options["threads"] = config.threads
        # Built here first (ServedModel describes it): a refused model file is then a one-line
        # error from this process, not a worker that dies in its initializer.
        served = ServedModel(name, variant, options, config)
        if config.worker == "process":
            served.worker = ProcessWorker(name, options, config.threads, config.detector)
        return served

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
        native = ReconstructionServicer(self)
        pb_grpc.add_ReconstructionServicer_to_server(native, self._server)
        kpb_grpc.add_GRPCInferenceServiceServicer_to_server(KServeServicer(self, native), self._server)
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

    def __init__(self, config: ServeConfig, method: Method | None = None) -> None:
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
