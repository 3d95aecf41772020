"""Benchmark the gRPC service: throughput and latency of served vs in-process reconstruction.

Starts `nurec serve` in a subprocess on 127.0.0.1 and drives it from this process with
an asyncio client: closed-loop single-event calls at several concurrencies, as unary
calls and over bidirectional streams (one event per message). The same method is then
timed in-process at several batch sizes, and one stream of 256-event messages (the
`nurec client reconstruct` path) shows bulk throughput. Every case runs for ``--duration-s``.

    python benchmarks/bench_serve.py                    # default method (gnn, else linefit)
    python benchmarks/bench_serve.py --method linefit --duration-s 3
    # the cost of serving alone (a test method that computes nothing):
    PYTHONPATH=tests python benchmarks/bench_serve.py --plugin service_plugin --method centroid --model null

Targets (issue 5): at concurrency 64 the served throughput is >= 80% of the in-process
best; p99 latency <= max_queue_delay + 3 x one batch's compute time.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nurec.methods.registry import build_method  # noqa: E402
from nurec.protocol._generated import reconstruction_pb2 as pb  # noqa: E402
from nurec.protocol._generated import reconstruction_pb2_grpc as pb_grpc  # noqa: E402
from nurec.protocol.codec import encode_events  # noqa: E402
from services.served import resolve_method  # noqa: E402
from sim.config import SimulationConfig  # noqa: E402
from sim.simulate import simulate_events  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentiles_ms(latencies_s: list[float]) -> tuple[float, float]:
    """Return (p50, p99) of latencies in milliseconds."""
    if not latencies_s:
        return float("nan"), float("nan")
    p50, p99 = np.percentile(np.asarray(latencies_s) * 1000, [50, 99])
    return float(p50), float(p99)


async def run_unary(stub, requests: list[pb.ReconstructRequest], concurrency: int, duration_s: float):
    """Return (events done, elapsed s, latencies s) of closed-loop single-event unary calls."""
    latencies: list[float] = []
    end = time.perf_counter() + duration_s

    async def worker(offset: int) -> None:
        i = offset
        while time.perf_counter() < end:
            start = time.perf_counter()
            await stub.Reconstruct(requests[i % len(requests)], timeout=60)
            latencies.append(time.perf_counter() - start)
            i += concurrency

    start = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return len(latencies), time.perf_counter() - start, latencies


async def run_streams(stub, requests: list[pb.ReconstructRequest], concurrency: int, duration_s: float):
    """Return (events done, elapsed s, latencies s) of closed-loop single-event stream messages."""
    latencies: list[float] = []
    end = time.perf_counter() + duration_s

    async def worker(offset: int) -> None:
        call = stub.ReconstructStream(timeout=120)
        i = offset
        while time.perf_counter() < end:
            start = time.perf_counter()
            await call.write(requests[i % len(requests)])
            await call.read()
            latencies.append(time.perf_counter() - start)
            i += concurrency
        await call.done_writing()
        await call.wait_for_connection()
        assert await call.code() == grpc.StatusCode.OK

    start = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return len(latencies), time.perf_counter() - start, latencies


async def run_bulk(stub, messages: list[pb.Event], batch_events: int, window: int, duration_s: float):
    """Return (events done, elapsed s, latencies s per message) of one stream of large messages."""
    requests = [pb.ReconstructRequest(events=messages[i:i + batch_events])
                for i in range(0, len(messages) - batch_events + 1, batch_events)]
    latencies: list[float] = []
    sent: asyncio.Queue = asyncio.Queue()
    slots = asyncio.Semaphore(window)
    call = stub.ReconstructStream(timeout=120)
    start = time.perf_counter()
    end = start + duration_s

    async def send() -> None:
        i = 0
        while time.perf_counter() < end:
            await slots.acquire()
            sent.put_nowait(time.perf_counter())
            await call.write(requests[i % len(requests)])
            i += 1
        await call.done_writing()

    sender = asyncio.ensure_future(send())
    done = 0
    async for response in call:
        latencies.append(time.perf_counter() - sent.get_nowait())
        done += len(response.results)
        slots.release()
    await sender
    return done, time.perf_counter() - start, latencies


def scrape(port: int) -> dict[str, float]:
    """Return the unlabelled-or-summed samples of the server's metrics."""
    values: dict[str, float] = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line and not line.startswith("#"):
                name = line.split("{")[0].split()[0]
                values[name] = values.get(name, 0.0) + float(line.split()[-1])
    return values


def in_process(method, events, batch_sizes: list[int], duration_s: float) -> dict[int, tuple[float, float]]:
    """Return {batch size: (events/s, seconds per batch)} calling the method directly."""
    out = {}
    for size in batch_sizes:
        batch = events[:size]
        method.reconstruct(batch)  # warm-up
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < duration_s:
            method.reconstruct(batch)
            n += 1
        elapsed = time.perf_counter() - start
        out[size] = (n * size / elapsed, elapsed / n)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default=None, help="registered method (default: gnn, else linefit)")
    parser.add_argument("--model", default=None)
    parser.add_argument("--plugin", default=None, help="module to import first (registers extra methods)")
    parser.add_argument("--detector", default="icecube86")
    parser.add_argument("--events", type=int, default=512, help="distinct simulated events to send")
    parser.add_argument("--duration-s", type=float, default=3.0, help="length of each case")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64, 256, 512])
    parser.add_argument("--bulk-events", type=int, default=256,
                        help="events per message in the bulk-stream case (window 8), as `nurec client` sends")
    parser.add_argument("--max-batch-size", type=int, default=512)
    parser.add_argument("--max-queue-delay-ms", type=float, default=5.0)
    parser.add_argument("--worker", choices=["process", "thread"], default="process")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in server and in-process")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    if args.plugin:
        importlib.import_module(args.plugin)
    name, variant = resolve_method(args.method, args.model)
    method = build_method(name, **({"model": variant} if variant else {}))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(args.threads)
    events, _ = simulate_events(SimulationConfig(detector=args.detector, n_events=args.events, seed=args.seed))
    hits = np.asarray(events.hits.t.layout.offsets)[-1] / len(events)
    print(f"method {name} {variant or ''} | {len(events)} {args.detector} events, {hits:.0f} hits/event | "
          f"{os.cpu_count()} CPUs | {args.duration_s:g} s per case | torch threads {args.threads} | "
          f"{args.worker} worker | max batch {args.max_batch_size}, max delay {args.max_queue_delay_ms:g} ms")

    port, metrics_port = free_port(), free_port()
    serve_args = ["serve", "--method", name, "--host", "127.0.0.1", "--port", str(port),
                  "--metrics-port", str(metrics_port), "--detector", args.detector,
                  "--max-batch-size", str(args.max_batch_size), "--max-queue-delay-ms",
                  str(args.max_queue_delay_ms), "--threads", str(args.threads), "--log-level", "WARNING",
                  "--worker", args.worker]
    if variant:
        serve_args += ["--model", variant]
    code = (f"import sys; {'import ' + args.plugin + ';' if args.plugin else ''} "
            "from nurec.cli import main; sys.exit(main(sys.argv[1:]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    server = subprocess.Popen([sys.executable, "-c", code, *serve_args], env=env)
    rows: list[tuple] = []
    bulk: list[tuple] = []
    try:
        requests = [pb.ReconstructRequest(events=[m]) for m in encode_events(events, args.detector)]

        async def drive():
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await asyncio.wait_for(channel.channel_ready(), 120)
                stub = pb_grpc.ReconstructionStub(channel)
                await run_unary(stub, requests, 4, 0.5)  # warm-up
                before = scrape(metrics_port)
                n, elapsed, latencies = await run_bulk(stub, [r.events[0] for r in requests],
                                                       args.bulk_events, 8, args.duration_s)
                after = scrape(metrics_port)
                batches = after["nurec_serve_batch_size_count"] - before["nurec_serve_batch_size_count"]
                batch_events = after["nurec_serve_batch_size_sum"] - before["nurec_serve_batch_size_sum"]
                compute_s = (after["nurec_serve_compute_seconds_sum"]
                             - before["nurec_serve_compute_seconds_sum"]) / max(batches, 1)
                bulk.append((f"bulk{args.bulk_events}", 1, n / elapsed, *percentiles_ms(latencies),
                             batch_events / max(batches, 1), compute_s * 1000))
                for kind, runner in (("unary", run_unary), ("stream", run_streams)):
                    for concurrency in args.concurrency:
                        before = scrape(metrics_port)
                        n, elapsed, latencies = await runner(stub, requests, concurrency, args.duration_s)
                        after = scrape(metrics_port)
                        batches = after["nurec_serve_batch_size_count"] - before["nurec_serve_batch_size_count"]
                        batch_events = after["nurec_serve_batch_size_sum"] - before["nurec_serve_batch_size_sum"]
                        compute_s = (after["nurec_serve_compute_seconds_sum"]
                                     - before["nurec_serve_compute_seconds_sum"]) / max(batches, 1)
                        rows.append((kind, concurrency, n / elapsed, *percentiles_ms(latencies),
                                     batch_events / max(batches, 1), compute_s * 1000))

        asyncio.run(drive())
    finally:
        server.terminate()
        server.wait(60)

    local = in_process(method, events, [b for b in args.batch_sizes if b <= len(events)], args.duration_s)
    best_size = max(local, key=lambda b: local[b][0])
    best_rate = local[best_size][0]

    print(f"\n{'case':<8}{'conc':>6}{'events/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'mean batch':>12}"
          f"{'ms/batch':>10}{'vs in-proc':>12}{'p99 target ms':>15}")
    for kind, concurrency, rate, p50, p99, mean_batch, batch_ms in rows + bulk:
        target = args.max_queue_delay_ms + 3 * batch_ms
        verdict = f"{target:>11.1f} {'ok' if p99 <= target else 'MISS'}" if concurrency > 1 or kind in (
            "unary", "stream") else f"{'(per message)':>15}"
        print(f"{kind:<8}{concurrency:>6}{rate:>11.0f}{p50:>9.1f}{p99:>9.1f}{mean_batch:>12.1f}"
              f"{batch_ms:>10.1f}{rate / best_rate:>11.0%}{verdict}")
    print("\nin-process")
    for size, (rate, seconds) in local.items():
        print(f"  batch {size:>4}: {rate:>9.0f} events/s, {seconds * 1000:8.1f} ms/batch"
              f"{'  <- best' if size == best_size else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
