"""The gRPC reconstruction server: any method of the nurec registry behind a dynamic batcher.

``ReconstructionServer`` wires the servicer, the batcher, the watchdog, health,
reflection, metrics and security together on a ``grpc.aio`` server; ``serve(config)``
runs it until SIGTERM/SIGINT and then drains: health turns NOT_SERVING, new work is
refused with UNAVAILABLE, and accepted events are still computed and answered, for at
most ``drain_timeout_s``. That limit is hard: what is still waiting or running then is
abandoned (its callers are answered UNAVAILABLE, the worker process is killed) and the
process exits within about a second more (exit code 1 instead of 0).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from nurec.client import read_token
from nurec.methods.contract import Method
from nurec.methods.registry import available_methods, method_accepts
from nurec.protocol import pb
from nurec.protocol.kserve import kpb
from services.auth import BearerTokenInterceptor, server_credentials
from services.batcher import Draining, DynamicBatcher
from services.config import ServeConfig
from services.kserve import KServeServicer
from services.metrics import ServerMetrics
from services.registration import add_servicer
from services.served import FALLBACK_METHOD, ServedModel, resolve_method
from services.servicer import ReconstructionServicer
from services.watchdog import Watchdog
from services.worker import DaemonThreadExecutor, ProcessWorker

log = logging.getLogger("nurec.serve")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Reconstruction"].full_name

EXIT_MARGIN_S = 0.3
"""Of the second allowed after the drain timeout: how long the answers of abandoned calls may take."""


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
        self.batcher: DynamicBatcher | None = None
        self.watchdog: Watchdog | None = None
        self._stopped: asyncio.Event | None = None
        self.drained = False

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
            served.worker = ProcessWorker(name, options, config.threads, config.detector,
                                          heartbeat_s=min(0.1, config.worker_timeout_s / 10))
        return served

    @property
    def ready(self) -> bool:
        """Return True while calls are accepted (not draining, no worker being replaced)."""
        return (self.batcher is not None and not self.draining
                and not (self.watchdog is not None and self.watchdog.recovering))

    async def _set_serving(self, serving: bool) -> None:
        assert self._health is not None
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", SERVICE_NAME):
            await self._health.set(service, status)

    async def start(self) -> None:
        """Load the model and start serving (gRPC, health, reflection, metrics, watchdog)."""
        config = self.config
        credentials = server_credentials(config)  # a bad key or certificate fails before the model loads
        token = read_token(config.token_file)
        metrics_token = read_token(config.metrics_token_file, environ={}) if config.metrics_token_file else None
        model = self._load_model()
        self.models = {model.name: model}
        self.default_model = model.name
        self._stopped = asyncio.Event()
        self.batcher = DynamicBatcher(
            model.compute, DaemonThreadExecutor(), max_batch_size=config.max_batch_size,
            max_queue_delay_s=config.max_queue_delay_ms / 1000.0, max_queue=config.max_queue,
            max_queue_wait_s=config.max_queue_wait_s, metrics=self.metrics)
        self.batcher.start()
        size = config.max_message_mb * 1024 * 1024
        interceptors = [BearerTokenInterceptor(token)] if token else []
        self._server = grpc.aio.server(
            interceptors=interceptors,
            options=[("grpc.max_receive_message_length", size), ("grpc.max_send_message_length", size),
                     ("grpc.so_reuseport", 0)])
        native = ReconstructionServicer(self)
        add_servicer(self._server, pb.DESCRIPTOR.services_by_name["Reconstruction"], native,
                     on_undecodable=native.count_undecodable)
        add_servicer(self._server, kpb.DESCRIPTOR.services_by_name["GRPCInferenceService"], KServeServicer(self, native),
                     on_undecodable=native.count_undecodable)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server)
        address = f"{config.host}:{config.port}"
        try:
            if config.metrics_port:
                try:
                    self._metrics_http = self.metrics.serve_http(config.metrics_port, config.metrics_host,
                                                                 metrics_token)
                except OSError as err:
                    raise OSError(f"metrics_port: cannot listen on {config.metrics_host}:{config.metrics_port} "
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
        await self._set_serving(True)
        self.watchdog = Watchdog(self.batcher, model.worker, config, self.metrics, self._set_serving,
                                 lambda: self.draining)
        self.watchdog.start()
        log.info("serving", extra={
            "address": f"{config.host}:{self.port}", "model": model.name, "variant": model.info.variant,
            "worker": "process" if model.worker else "thread",
            "worker_pid": model.worker.pid if model.worker else None,
            "version": model.version, "tls": bool(credentials), "mtls": bool(config.tls_client_ca),
            "token_auth": bool(token), "metrics_port": self.metrics_port or None,
            "metrics_token": bool(metrics_token), "config": config.to_dict()})

    async def _release(self) -> None:
        """Stop the watchdog, the batcher, the worker and the metrics endpoint."""
        if self.watchdog is not None:
            await self.watchdog.stop()
        if self.batcher is not None:
            await self.batcher.stop()
            self.batcher.executor.shutdown(wait=False)  # a hung model call must not hold the exit
        for model in self.models.values():
            if model.worker is not None:
                await asyncio.get_running_loop().run_in_executor(None, model.worker.close)
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()
            self._metrics_http = None

    def _answered(self) -> dict[str, int]:
        """Return the calls answered since the start, by status code (for the last log line)."""
        counts: dict[str, int] = {}
        for metric in self.metrics.requests.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    code = sample.labels["code"]
                    counts[code] = counts.get(code, 0) + int(sample.value)
        return counts

    async def drain_and_stop(self) -> bool:
        """Turn health NOT_SERVING, refuse new work, finish accepted work within the drain timeout, stop.

        Returns True if everything accepted was answered with its results, False if the
        drain timeout forced the rest to be abandoned (answered UNAVAILABLE).
        """
        if self.draining:
            assert self._stopped is not None
            await self._stopped.wait()
            return self.drained
        self.draining = True
        began = time.monotonic()
        limit = self.config.drain_timeout_s
        assert self._health is not None and self._server is not None and self.batcher is not None
        await self._set_serving(False)
        log.info("draining", extra={"queued_events": self.batcher.queued_events, "busy_calls": self.busy})
        finished = await self.batcher.drain(limit)
        abandoned = 0
        if not finished:
            if self.watchdog is not None:
                await self.watchdog.stop()  # the worker is killed on purpose now
            error = Draining(f"drain timeout of {limit:g} s passed before the request was computed; "
                             f"it was abandoned")
            old = self.batcher.executor
            abandoned = self.batcher.abandon(error, DaemonThreadExecutor())
            old.shutdown(wait=False)
            for model in self.models.values():
                if model.worker is not None:  # the running batch is not waited for
                    await asyncio.get_running_loop().run_in_executor(None, model.worker.kill)
            log.warning("drain timeout: abandoned unfinished calls", extra={"abandoned_calls": abandoned})
        end = began + limit + EXIT_MARGIN_S
        while self.busy and time.monotonic() < end:
            await asyncio.sleep(0.01)  # results (or UNAVAILABLE) are being handed back to their calls
        await self._server.stop(grace=min(max(end - time.monotonic(), 0.05), 5.0))
        await self._release()
        self.drained = finished and not self.busy
        log.info("stopped", extra={"drained": self.drained, "abandoned_calls": abandoned,
                                   "drain_s": round(time.monotonic() - began, 3), "answered": self._answered()})
        assert self._stopped is not None
        self._stopped.set()
        return self.drained


async def _serve_until_signal(config: ServeConfig) -> bool:
    server = ReconstructionServer(config)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    return await server.drain_and_stop()


def serve(config: ServeConfig) -> int:
    """Serve until SIGTERM or SIGINT, drain; return 0, or exit with 1 if the drain timeout abandoned calls."""
    if asyncio.run(_serve_until_signal(config)):
        return 0
    # Abandoned: the worker is killed and every call answered; skip the interpreter's
    # teardown (tenths of a second with torch loaded) so the exit keeps to the time limit.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


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
