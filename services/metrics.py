"""Prometheus metrics of the reconstruction server, in a registry of their own.

Each server owns a ``ServerMetrics`` (so several servers can live in one process, as in
the tests) and exposes it over HTTP when a metrics port is configured: on the address
asked for (the server defaults to localhost), and, given a token, only to requests with
``Authorization: Bearer <token>`` (Prometheus: ``authorization.credentials_file``).
"""

from __future__ import annotations

import hmac
import socket
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

# Latency buckets [s]: 0.5 ms to 20 s, roughly x2 apart.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class ServerMetrics:
    """Counters, gauges and histograms of one server (names prefixed ``nurec_serve_``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("nurec_serve_requests", "RPCs finished, by RPC and status code",
                                ["rpc", "code"], registry=r)
        self.received = Counter("nurec_serve_events_received", "Events received in requests", registry=r)
        self.events = Counter("nurec_serve_events", "Events by outcome (ok, invalid, expired, "
                              "rejected, failed)", ["outcome"], registry=r)
        self.errors = Counter("nurec_serve_errors", "Errors by status code (per call and per event)",
                              ["code"], registry=r)
        self.queue_depth = Gauge("nurec_serve_queue_depth", "Events waiting for a batch", registry=r)
        self.batch_size = Histogram("nurec_serve_batch_size", "Events per model call",
                                    buckets=BATCH_SIZE_BUCKETS, registry=r)
        self.queue_seconds = Histogram("nurec_serve_queue_seconds", "Time an event waited for its batch",
                                       buckets=LATENCY_BUCKETS_S, registry=r)
        self.compute_seconds = Histogram("nurec_serve_compute_seconds", "Time of one model call",
                                         buckets=LATENCY_BUCKETS_S, registry=r)
        self.total_seconds = Histogram("nurec_serve_total_seconds", "Time from request to response",
                                       ["rpc"], buckets=LATENCY_BUCKETS_S, registry=r)
        self.estimated_wait = Gauge("nurec_serve_estimated_wait_seconds",
                                    "Estimated wait of a request arriving now (admission control)", registry=r)
        self.worker_restarts = Counter("nurec_serve_worker_restarts", "Model workers replaced by the "
                                       "watchdog (died or stopped responding)", registry=r)

    def serve_http(self, port: int, host: str, token: str | None = None) -> Any:
        """Start the /metrics HTTP endpoint on ``host:port`` (bearer ``token`` required if given); return it."""
        app = make_wsgi_app(self.registry)
        if token:
            app = _bearer_only(app, token)
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        server_class = type("MetricsServer", (_ThreadingWSGIServer,), {"address_family": family})
        server = make_server(host, port, app, server_class, handler_class=_QuietHandler)
        # A short poll interval: shutdown() waits for it, and the drain has a hard time limit.
        threading.Thread(target=server.serve_forever, args=(0.05,), name="nurec-metrics", daemon=True).start()
        return server

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Return the current value of a sample (0 if it was never set)."""
        return self.registry.get_sample_value(name, labels or {}) or 0.0


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        """Log nothing per scrape."""


def _bearer_only(app: Any, token: str) -> Any:
    expected = f"Bearer {token}".encode()

    def guarded(environ: dict, start_response: Any) -> Any:
        given = environ.get("HTTP_AUTHORIZATION", "").encode()
        if not hmac.compare_digest(given, expected):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"),
                                                 ("WWW-Authenticate", 'Bearer realm="nurec metrics"')])
            return [b"missing or wrong bearer token\n"]
        return app(environ, start_response)
    return guarded
