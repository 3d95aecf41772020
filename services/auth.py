"""Transport security (TLS, mutual TLS) and bearer-token authentication for the server."""

from __future__ import annotations

import hmac
import ssl
from pathlib import Path

import grpc

from services.config import ServeConfig, ServeConfigError

HEALTH_PREFIX = "/grpc.health.v1.Health/"
"""Health checks are answered without a token, so load balancers and probes can ask."""


def check_key_pair(cert_path: str, key_path: str) -> None:
    """Raise ServeConfigError (one line) unless the key file holds the private key of the certificate.

    grpcio reports a mismatched pair only as a port it "cannot listen" on; the standard
    library's OpenSSL binding says what is wrong.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)

    def no_password() -> bytes:
        raise ServeConfigError(f"tls_key: {key_path} is encrypted; give an unencrypted key")

    try:
        context.load_cert_chain(cert_path, key_path, password=no_password)
    except ssl.SSLError as err:
        if "KEY_VALUES_MISMATCH" in str(err) or "key values mismatch" in str(err):
            raise ServeConfigError(f"tls_key: the private key in {key_path} does not match the "
                                   f"certificate in {cert_path}") from None
        reason = err.reason or str(err)
        raise ServeConfigError(f"tls_cert, tls_key: cannot load certificate {cert_path} with key {key_path} "
                               f"({reason})") from None


def server_credentials(config: ServeConfig) -> grpc.ServerCredentials | None:
    """Return TLS server credentials from the config's files (mutual TLS with a client CA), or None."""
    if not config.tls_cert:
        return None
    check_key_pair(config.tls_cert, config.tls_key)
    if config.tls_client_ca:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(config.tls_client_ca)
        except ssl.SSLError as err:
            raise ServeConfigError(f"tls_client_ca: cannot load CA certificates from {config.tls_client_ca} "
                                   f"({err.reason or err})") from None
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
