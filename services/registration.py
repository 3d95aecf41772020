"""Register a gRPC servicer from its service descriptor, answering undecodable requests INVALID_ARGUMENT.

grpcio answers a request whose bytes do not parse as the method's message with UNKNOWN
("Unexpected DecodeError"), which reads as a server fault. Here each method's
deserializer returns an ``Undecodable`` marker instead of raising; a unary call that
gets one is aborted with INVALID_ARGUMENT before the servicer runs, and a request
stream raises ``UndecodableRequest`` at the bad message, so a servicer can answer the
messages before it first (the stream then ends INVALID_ARGUMENT; a servicer that does
not catch it gets the same status from the wrapper here).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor


@dataclass(frozen=True)
class Undecodable:
    """Bytes that are not a valid message of ``type_name`` (what the deserializer returns for them)."""

    type_name: str
    size: int
    reason: str

    @property
    def details(self) -> str:
        return f"request: {self.size} bytes are not a valid {self.type_name} message ({self.reason})"


class UndecodableRequest(Exception):
    """A message of a request stream did not decode (INVALID_ARGUMENT)."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, undecodable: Undecodable) -> None:
        super().__init__(undecodable.details)
        self.details = undecodable.details


def _tolerant(parse: Callable[[bytes], Any], type_name: str) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception as err:  # DecodeError, or whatever hostile bytes make the parser raise
            reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
            return Undecodable(type_name, len(data), reason)
    return deserialize


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, Undecodable):
            raise UndecodableRequest(request)
        yield request


def _handler(method: MethodDescriptor, behaviour: Callable, on_undecodable: Callable[[str], None]):
    request_type = message_factory.GetMessageClass(method.input_type)
    response_type = message_factory.GetMessageClass(method.output_type)
    name = method.name
    kwargs = {"request_deserializer": _tolerant(request_type.FromString, method.input_type.full_name),
              "response_serializer": response_type.SerializeToString}

    async def refuse(context, details: str) -> None:
        on_undecodable(name)
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, details)

    if not method.client_streaming and not method.server_streaming:
        async def unary_unary(request, context):
            if isinstance(request, Undecodable):
                await refuse(context, request.details)
            return await behaviour(request, context)
        return grpc.unary_unary_rpc_method_handler(unary_unary, **kwargs)
    if not method.client_streaming:
        async def unary_stream(request, context):
            if isinstance(request, Undecodable):
                await refuse(context, request.details)
            async for response in behaviour(request, context):
                yield response
        return grpc.unary_stream_rpc_method_handler(unary_stream, **kwargs)
    if not method.server_streaming:
        async def stream_unary(requests, context):
            try:
                return await behaviour(_checked(requests), context)
            except UndecodableRequest as err:
                await refuse(context, err.details)
        return grpc.stream_unary_rpc_method_handler(stream_unary, **kwargs)

    async def stream_stream(requests, context):
        try:
            async for response in behaviour(_checked(requests), context):
                yield response
        except UndecodableRequest as err:
            await refuse(context, err.details)
    return grpc.stream_stream_rpc_method_handler(stream_stream, **kwargs)


def add_servicer(server: grpc.aio.Server, service: ServiceDescriptor, servicer: Any,
                 on_undecodable: Callable[[str], None] = lambda method: None) -> None:
    """Register every method of ``service`` on ``server``, served by the same-named methods of ``servicer``.

    ``on_undecodable(method name)`` is called for each call refused for undecodable bytes
    by this wrapper (metrics).
    """
    handlers = {method.name: _handler(method, getattr(servicer, method.name), on_undecodable)
                for method in service.methods}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    if hasattr(server, "add_registered_method_handlers"):  # grpcio >= 1.62: faster method lookup
        server.add_registered_method_handlers(service.full_name, handlers)
