"""Transport security (TLS, mutual TLS) and bearer-token authentication for the server."""

from __future__ import annotations

import hmac
from pathlib import Path

import grpc

from services.config import ServeConfig

HEALTH_PREFIX = "/grpc.health.v1.Health/"
"""Health checks are answered without a token, so load balancers and probes can ask."""


def server_credentials(config: ServeConfig) -> grpc.ServerCredentials | None:
    """Return TLS server credentials from the config's files (mutual TLS with a client CA), or None."""
    if not config.tls_cert:
        return None
    key = Path(config.tls_key).read_bytes()
    cert = Path(config.tls_cert).read_bytes()
    client_ca = Path(config.tls_client_ca).read_bytes() if config.tls_client_ca else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca,
                                       require_client_auth=client_ca is not None)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls without ``authorization: Bearer <token>`` metadata (UNAUTHENTICATED)."""

    def __init__(self, token: str, exempt_prefixes: tuple[str, ...] = (HEALTH_PREFIX,)) -> None:
        self._expected = f"Bearer {token}".encode()
        self._exempt = exempt_prefixes

    def _authorized(self, details: grpc.HandlerCallDetails) -> bool:
        if details.method.startswith(self._exempt):
            return True
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else value
                return hmac.compare_digest(given, self._expected)
        return False

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or self._authorized(handler_call_details):
            return handler
        message = "missing or wrong bearer token (metadata 'authorization: Bearer <token>')"

        async def reject(request_or_iterator, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

        async def reject_stream(request_or_iterator, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
            yield  # pragma: no cover (makes this an async generator)

        kinds = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }
        make = kinds[(handler.request_streaming, handler.response_streaming)]
        return make(reject_stream if handler.response_streaming else reject,
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)
