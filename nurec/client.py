"""Client of the nurec reconstruction service: Python API (sync and asyncio).

    from nurec.client import ReconstructionClient
    with ReconstructionClient("localhost:50051") as client:
        predictions = client.reconstruct(events)           # one table, request order

Several targets (``["host-a:50051", "host-b:50051"]``) are load-balanced with gRPC's
round_robin policy; calls failing with UNAVAILABLE (server down or draining) are retried
with exponential backoff. Events travel as raw float32 bytes (see the .proto).
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import awkward as ak
import grpc
import pandas as pd
from grpc_health.v1 import health_pb2, health_pb2_grpc

from nurec.protocol import pb, pb_grpc
from nurec.protocol.codec import decode_results, encode_events

T = TypeVar("T")
RETRYABLE = (grpc.StatusCode.UNAVAILABLE,)

TOKEN_ENV = "NUREC_SERVE_TOKEN"
"""Environment variable holding the bearer token (read by the client and by ``nurec serve``)."""


def read_token(token_file: str | os.PathLike | None, environ: dict[str, str] | None = None) -> str | None:
    """Return the bearer token from ``token_file``, else from $NUREC_SERVE_TOKEN, else None."""
    if token_file:
        token = Path(token_file).read_text().strip()
        if not token:
            raise ValueError(f"token_file: {token_file} is empty")
        return token
    token = (os.environ if environ is None else environ).get(TOKEN_ENV, "").strip()
    return token or None


@dataclass(frozen=True)
class ClientOptions:
    """How to reach the servers: TLS files, bearer token, message size, retries."""

    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    token: str | None = None
    max_message_mb: int = 64
    retries: int = 5
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 5.0


def _targets(target: str | Sequence[str]) -> list[str]:
    items = [target] if isinstance(target, str) else list(target)
    out = [t.strip() for item in items for t in item.split(",") if t.strip()]
    if not out:
        raise ValueError("target: no server address given")
    return out


def channel_target(target: str | Sequence[str]) -> tuple[str, str | None]:
    """Return (gRPC target string, TLS host name) for one or several host:port addresses.

    Several addresses are resolved and joined into one ``ipv4:``/``ipv6:`` target so that
    the round_robin policy spreads calls over all of them.
    """
    targets = _targets(target)
    if len(targets) == 1:
        return targets[0], None
    addresses, families, host_name = [], set(), None
    for item in targets:
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"target: '{item}' is not host:port")
        host = host.strip("[]")
        host_name = host_name or host
        try:
            family, *_, sockaddr = socket.getaddrinfo(host, int(port), proto=socket.IPPROTO_TCP)[0]
        except socket.gaierror as err:
            raise ValueError(f"target: cannot resolve '{host}' ({err})") from None
        families.add(family)
        ip = sockaddr[0]
        addresses.append(f"[{ip}]:{port}" if family == socket.AF_INET6 else f"{ip}:{port}")
    if len(families) > 1:
        raise ValueError("target: mixes IPv4 and IPv6 addresses")
    scheme = "ipv6" if families == {socket.AF_INET6} else "ipv4"
    return f"{scheme}:{','.join(addresses)}", host_name


def _channel_args(target: str | Sequence[str], options: ClientOptions):
    address, host_name = channel_target(target)
    size = options.max_message_mb * 1024 * 1024
    args = [("grpc.max_receive_message_length", size), ("grpc.max_send_message_length", size),
            ("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})),
            ("grpc.enable_retries", 0)]
    credentials = None
    if options.tls_ca or options.tls_cert:
        read = lambda path: Path(path).read_bytes() if path else None  # noqa: E731
        credentials = grpc.ssl_channel_credentials(read(options.tls_ca), read(options.tls_key),
                                                   read(options.tls_cert))
        if host_name:
            args.append(("grpc.ssl_target_name_override", host_name))
    return address, args, credentials


def _metadata(options: ClientOptions) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {options.token}"),) if options.token else ()


def _backoff(options: ClientOptions, attempt: int) -> float:
    return min(options.max_backoff_s, options.initial_backoff_s * 2**attempt)


def _batches(events: ak.Array, batch_events: int) -> Iterator[ak.Array]:
    for start in range(0, len(events), batch_events):
        yield events[start:start + batch_events]


def _until_none(source: queue.Queue) -> Iterator[Any]:
    """Yield items from a queue until a None arrives."""
    while (item := source.get()) is not None:
        yield item


def _concat(tables: list[pd.DataFrame]) -> pd.DataFrame:
    if not tables:
        return decode_results([])
    return pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]


def _info_dict(info: pb.ModelInfo) -> dict[str, Any]:
    return {"name": info.name, "variant": info.variant, "version": info.version,
            "description": info.description, "detectors": list(info.detectors),
            "inputs": list(info.inputs), "metrics": dict(info.metrics), "is_default": info.is_default}


class ReconstructionClient:
    """Blocking client: unary batches, ordered streams with a bounded window, retries."""

    def __init__(self, target: str | Sequence[str], options: ClientOptions | None = None, **kwargs: Any) -> None:
        self.options = options or ClientOptions(**kwargs)
        address, args, credentials = _channel_args(target, self.options)
        self.channel = (grpc.secure_channel(address, credentials, options=args) if credentials
                        else grpc.insecure_channel(address, options=args))
        self._stub = pb_grpc.ReconstructionStub(self.channel)
        self._metadata = _metadata(self.options)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> ReconstructionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _retry(self, call: Callable[[], T]) -> T:
        for attempt in range(self.options.retries + 1):
            try:
                return call()
            except grpc.RpcError as err:
                if err.code() not in RETRYABLE or attempt == self.options.retries:
                    raise
                time.sleep(_backoff(self.options, attempt))
        raise AssertionError("unreachable")

    def reconstruct_messages(self, events: Sequence[pb.Event], model: str = "", strict: bool = False,
                             timeout_s: float | None = None) -> pb.ReconstructResponse:
        """Return the raw response to one Reconstruct call (retried on UNAVAILABLE)."""
        request = pb.ReconstructRequest(model=model, events=events, strict=strict)
        return self._retry(lambda: self._stub.Reconstruct(request, timeout=timeout_s, metadata=self._metadata))

    def reconstruct(self, events: ak.Array, detector: str = "", model: str = "", batch_events: int = 256,
                    strict: bool = False, timeout_s: float | None = None) -> pd.DataFrame:
        """Return the prediction table of ``events`` (unary calls of ``batch_events`` events)."""
        tables = []
        for batch in _batches(events, batch_events):
            response = self.reconstruct_messages(encode_events(batch, detector), model, strict, timeout_s)
            tables.append(decode_results(response.results))
        return _concat(tables)

    def reconstruct_stream(self, chunks: Iterable[ak.Array], detector: str = "", model: str = "",
                           batch_events: int = 256, window: int = 8,
                           timeout_s: float | None = None) -> Iterator[pd.DataFrame]:
        """Yield prediction tables, in order, for events streamed in messages of ``batch_events``.

        At most ``window`` messages are unanswered at a time. If the stream fails with
        UNAVAILABLE, unanswered messages are sent again on a new stream (with backoff).
        """
        requests = (pb.ReconstructRequest(model=model, events=encode_events(batch, detector))
                    for chunk in chunks for batch in _batches(chunk, batch_events))
        pending: deque[pb.ReconstructRequest] = deque()
        exhausted = False
        attempt = 0
        while True:
            outbox: queue.Queue = queue.Queue()
            for request in pending:
                outbox.put(request)
            responses = self._stub.ReconstructStream(iter(outbox.get, None), timeout=timeout_s,
                                                     metadata=self._metadata)
            try:
                while pending or not exhausted:
                    while len(pending) < window and not exhausted:
                        request = next(requests, None)
                        if request is None:
                            exhausted = True
                            break
                        pending.append(request)
                        outbox.put(request)
                    if not pending:
                        break
                    response = next(responses)
                    pending.popleft()
                    attempt = 0
                    yield decode_results(response.results)
                return
            except grpc.RpcError as err:
                if err.code() not in RETRYABLE or attempt >= self.options.retries:
                    raise
                time.sleep(_backoff(self.options, attempt))
                attempt += 1
            finally:
                outbox.put(None)  # ends the request iterator grpc reads in its own thread
                responses.cancel()

    def reconstruct_streams(self, chunks: Iterable[ak.Array], streams: int = 2, detector: str = "",
                            model: str = "", batch_events: int = 256, window: int = 8,
                            timeout_s: float | None = None) -> Iterator[pd.DataFrame]:
        """Yield prediction tables in order, spreading messages over ``streams`` concurrent streams.

        Load balancing is per call, so one stream stays on one server; several streams
        spread a dataset over a fleet (round_robin). Message i travels on stream i % streams.
        """
        if streams <= 1:
            yield from self.reconstruct_stream(chunks, detector, model, batch_events, window, timeout_s)
            return
        inboxes = [queue.Queue(maxsize=window) for _ in range(streams)]
        outboxes: list[queue.Queue] = [queue.Queue() for _ in range(streams)]
        stop = threading.Event()
        end = object()

        def feed() -> None:
            try:
                index = 0
                for chunk in chunks:
                    for batch in _batches(chunk, batch_events):
                        while not stop.is_set():
                            try:
                                inboxes[index % streams].put(batch, timeout=0.1)
                                break
                            except queue.Full:
                                continue
                        index += 1
            except BaseException as err:  # reading the source failed: report it in order
                outboxes[index % streams].put(err)
            finally:
                for inbox in inboxes:
                    inbox.put(None)

        def work(j: int) -> None:
            try:
                for table in self.reconstruct_stream(_until_none(inboxes[j]), detector, model,
                                                     batch_events, window, timeout_s):
                    outboxes[j].put(table)
                outboxes[j].put(end)
            except BaseException as err:
                outboxes[j].put(err)

        threads = [threading.Thread(target=feed, daemon=True)]
        threads += [threading.Thread(target=work, args=(j,), daemon=True) for j in range(streams)]
        for thread in threads:
            thread.start()
        try:
            index = 0
            while True:
                item = outboxes[index % streams].get()
                if item is end:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
                index += 1
        finally:
            stop.set()
            for inbox in inboxes:  # unblock workers whose feeder has stopped
                while True:
                    try:
                        inbox.get_nowait()
                    except queue.Empty:
                        break
                inbox.put(None)

    def list_models(self, timeout_s: float | None = 10.0) -> list[dict[str, Any]]:
        """Return a description of every served model."""
        response = self._retry(lambda: self._stub.ListModels(pb.ListModelsRequest(), timeout=timeout_s,
                                                              metadata=self._metadata))
        return [_info_dict(m) for m in response.models]

    def model_info(self, name: str = "", timeout_s: float | None = 10.0) -> dict[str, Any]:
        """Return the description of one model (empty name: the default model)."""
        info = self._retry(lambda: self._stub.GetModelInfo(pb.GetModelInfoRequest(name=name), timeout=timeout_s,
                                                            metadata=self._metadata))
        return _info_dict(info)

    def health(self, service: str = "", timeout_s: float | None = 5.0) -> str:
        """Return the grpc.health.v1 status name ("SERVING", "NOT_SERVING", ...)."""
        stub = health_pb2_grpc.HealthStub(self.channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s,
                              metadata=self._metadata)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


class AsyncReconstructionClient:
    """asyncio client: the same calls as ReconstructionClient on a grpc.aio channel."""

    def __init__(self, target: str | Sequence[str], options: ClientOptions | None = None, **kwargs: Any) -> None:
        self.options = options or ClientOptions(**kwargs)
        address, args, credentials = _channel_args(target, self.options)
        self.channel = (grpc.aio.secure_channel(address, credentials, options=args) if credentials
                        else grpc.aio.insecure_channel(address, options=args))
        self._stub = pb_grpc.ReconstructionStub(self.channel)
        self._metadata = _metadata(self.options)

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncReconstructionClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def reconstruct_messages(self, events: Sequence[pb.Event], model: str = "", strict: bool = False,
                                   timeout_s: float | None = None) -> pb.ReconstructResponse:
        """Return the raw response to one Reconstruct call (retried on UNAVAILABLE)."""
        request = pb.ReconstructRequest(model=model, events=events, strict=strict)
        for attempt in range(self.options.retries + 1):
            try:
                return await self._stub.Reconstruct(request, timeout=timeout_s, metadata=self._metadata)
            except grpc.aio.AioRpcError as err:
                if err.code() not in RETRYABLE or attempt == self.options.retries:
                    raise
                await asyncio.sleep(_backoff(self.options, attempt))
        raise AssertionError("unreachable")

    async def reconstruct(self, events: ak.Array, detector: str = "", model: str = "", batch_events: int = 256,
                          strict: bool = False, timeout_s: float | None = None, concurrency: int = 4) -> pd.DataFrame:
        """Return the prediction table of ``events``, with up to ``concurrency`` calls in flight."""
        limit = asyncio.Semaphore(concurrency)

        async def one(batch: ak.Array) -> pd.DataFrame:
            async with limit:
                response = await self.reconstruct_messages(encode_events(batch, detector), model, strict, timeout_s)
            return decode_results(response.results)

        return _concat(list(await asyncio.gather(*(one(b) for b in _batches(events, batch_events)))))

    async def reconstruct_stream(self, chunks: Iterable[ak.Array], detector: str = "", model: str = "",
                                 batch_events: int = 256, window: int = 8,
                                 timeout_s: float | None = None) -> AsyncIterator[pd.DataFrame]:
        """Yield prediction tables in order over one stream, at most ``window`` messages unanswered."""
        call = self._stub.ReconstructStream(timeout=timeout_s, metadata=self._metadata)
        slots = asyncio.Semaphore(window)

        async def send() -> None:
            for chunk in chunks:
                for batch in _batches(chunk, batch_events):
                    await slots.acquire()
                    await call.write(pb.ReconstructRequest(model=model, events=encode_events(batch, detector)))
            await call.done_writing()

        sender = asyncio.ensure_future(send())
        try:
            async for response in call:
                slots.release()
                yield decode_results(response.results)
            await sender
        finally:
            sender.cancel()
            call.cancel()

    async def list_models(self, timeout_s: float | None = 10.0) -> list[dict[str, Any]]:
        """Return a description of every served model."""
        response = await self._stub.ListModels(pb.ListModelsRequest(), timeout=timeout_s, metadata=self._metadata)
        return [_info_dict(m) for m in response.models]

    async def health(self, service: str = "", timeout_s: float | None = 5.0) -> str:
        """Return the grpc.health.v1 status name ("SERVING", "NOT_SERVING", ...)."""
        stub = health_pb2_grpc.HealthStub(self.channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s,
                                    metadata=self._metadata)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
