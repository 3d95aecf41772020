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
    # overload: offer 2x the measured capacity with a deadline (accepted, shed, expired, goodput)
    python benchmarks/bench_serve.py --overload-only --overload-deadline-s 1 5

Targets (issue 5): at concurrency 64 the served throughput is >= 80% of the in-process
best; p99 latency <= max_queue_delay + 3 x one batch's compute time.

The overload table (``--overload``, or ``--overload-only`` for it alone; issue 14) first
measures capacity (one stream of ``--bulk-events``-event messages, which waits for room
instead of being refused), then offers ``--overload-factor`` times that rate open-loop for ``--overload-duration-s``
with each deadline: calls accepted (answered OK), shed (RESOURCE_EXHAUSTED), expired
(DEADLINE_EXCEEDED) or other; goodput (events answered OK within their deadline during
the offer window, per second) against capacity; the share of the events the server
computed that reached a caller in time; p99 latency of accepted calls and of refusals.
Goals at 2x: goodput >= 80% of capacity, >= 90% of computed events delivered, p99 of
accepted calls <= the deadline.
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
                if name == "nurec_serve_events_total" and 'outcome="' in line:  # per outcome too
                    outcome = line.split('outcome="')[1].split('"')[0]
                    values[f"{name}:{outcome}"] = float(line.split()[-1])
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


# --- overload (issue 14): open-loop offered load above capacity, with deadlines -----------------

async def _closed_loop_capacity(stub, requests: list, concurrency: int, duration_s: float) -> float:
    """Return events/s answered OK by closed-loop unary calls (errors count as nothing done)."""
    done = 0
    end = time.perf_counter() + duration_s

    async def worker(offset: int) -> None:
        nonlocal done
        i = offset
        while time.perf_counter() < end:
            try:
                response = await stub.Reconstruct(requests[i % len(requests)], timeout=60)
                done += len(response.results)
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.01)
            i += concurrency

    start = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return done / (time.perf_counter() - start)


async def _open_loop(stub, requests: list, calls_per_s: float, duration_s: float, deadline_s: float):
    """Send calls at a fixed rate for ``duration_s``; return (start, [(code name, latency s, end time)])."""
    outcomes: list[tuple[str, float, float]] = []

    async def one(request) -> None:
        sent = time.perf_counter()
        try:
            await stub.Reconstruct(request, timeout=deadline_s)
            code = "OK"
        except grpc.aio.AioRpcError as err:
            code = err.code().name
        now = time.perf_counter()
        outcomes.append((code, now - sent, now))

    tasks = []
    start = time.perf_counter()
    interval = 1.0 / calls_per_s
    i = 0
    while (due := start + i * interval) < start + duration_s:
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.ensure_future(one(requests[i % len(requests)])))
        i += 1
    await asyncio.gather(*tasks)
    return start, outcomes


def overload(args: argparse.Namespace, name: str, variant: str | None, events) -> list[dict]:
    """Run the overload table against a fresh server; print it and return its rows."""
    k = args.overload_events_per_call
    messages = encode_events(events, args.detector)
    requests = [pb.ReconstructRequest(events=messages[i:i + k]) for i in range(0, len(messages) - k + 1, k)]
    port, metrics_port = free_port(), free_port()
    serve_args = ["serve", "--method", name, "--host", "127.0.0.1", "--port", str(port),
                  "--metrics-port", str(metrics_port), "--detector", args.detector,
                  "--max-batch-size", str(args.max_batch_size), "--max-queue-delay-ms", str(args.max_queue_delay_ms),
                  "--threads", str(args.threads), "--log-level", "WARNING", "--worker", args.worker,
                  *(["--model", variant] if variant else []), *args.overload_serve_args]
    code = (f"import sys; {'import ' + args.plugin + ';' if args.plugin else ''} "
            "from nurec.cli import main; sys.exit(main(sys.argv[1:]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    server = subprocess.Popen([sys.executable, "-c", code, *serve_args], env=env)
    rows: list[dict] = []
    try:
        async def drive() -> None:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await asyncio.wait_for(channel.channel_ready(), 120)
                stub = pb_grpc.ReconstructionStub(channel)
                await _closed_loop_capacity(stub, requests, 4, 1.0)  # warm-up
                # Capacity: one stream of large messages keeps the server busy (it waits for room,
                # where unary calls would be refused), as `nurec client` sends.
                n, elapsed, _ = await run_bulk(stub, messages, args.bulk_events, 8, args.overload_duration_s)
                capacity = n / elapsed
                for deadline_s in args.overload_deadline_s:
                    offered = args.overload_factor * capacity
                    before = scrape(metrics_port)
                    start, outcomes = await _open_loop(stub, requests, offered / k, args.overload_duration_s,
                                                       deadline_s)
                    await asyncio.sleep(0.5)  # the server finishes (or drops) what it still holds
                    after = scrape(metrics_port)
                    computed = after["nurec_serve_batch_size_sum"] - before["nurec_serve_batch_size_sum"]
                    dropped = (after.get("nurec_serve_events_total:expired", 0.0)
                               - before.get("nurec_serve_events_total:expired", 0.0))
                    codes = [c for c, _, _ in outcomes]
                    ok = [(latency, end) for c, latency, end in outcomes if c == "OK"]
                    in_window = sum(1 for latency, end in ok
                                    if latency <= deadline_s and end <= start + args.overload_duration_s)
                    shed_latency = [latency for c, latency, _ in outcomes if c == "RESOURCE_EXHAUSTED"]
                    n = max(len(outcomes), 1)
                    rows.append({
                        "deadline_s": deadline_s, "offered": offered, "capacity": capacity, "calls": len(outcomes),
                        "accepted": len(ok) / n, "shed": codes.count("RESOURCE_EXHAUSTED") / n,
                        "expired": codes.count("DEADLINE_EXCEEDED") / n,
                        "other": sum(c not in ("OK", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED") for c in codes) / n,
                        "goodput": in_window * k / args.overload_duration_s,
                        "computed": computed / (max(end for _, _, end in outcomes) - start),
                        "delivered": len(ok) * k / computed if computed else float("nan"),
                        "late": (computed - len(ok) * k) / computed if computed else float("nan"),
                        "dropped": dropped / k / n,
                        "p99_accepted_ms": percentiles_ms([latency for latency, _ in ok])[1],
                        "p99_shed_ms": percentiles_ms(shed_latency)[1],
                    })

        asyncio.run(drive())
    finally:
        server.terminate()
        server.wait(60)
    print(f"\noverload: {args.overload_factor:g}x capacity offered open-loop for {args.overload_duration_s:g} s "
          f"as unary calls of {k} events ({args.worker} worker, server flags {args.overload_serve_args or 'default'})")
    print(f"{'deadline s':>10}{'capacity/s':>12}{'offered/s':>11}{'calls':>7}{'accepted':>10}{'shed':>7}"
          f"{'expired':>9}{'dropped':>9}{'other':>7}{'computed/s':>12}{'goodput/s':>11}{'vs cap':>8}{'delivered':>11}"
          f"{'p99 ok ms':>11}{'p99 shed ms':>13}")
    for r in rows:
        print(f"{r['deadline_s']:>10g}{r['capacity']:>12.0f}{r['offered']:>11.0f}{r['calls']:>7}{r['accepted']:>10.0%}"
              f"{r['shed']:>7.0%}{r['expired']:>9.0%}{r['dropped']:>9.0%}{r['other']:>7.0%}{r['computed']:>12.0f}"
              f"{r['goodput']:>11.0f}"
              f"{r['goodput'] / r['capacity']:>8.0%}{r['delivered']:>11.0%}{r['p99_accepted_ms']:>11.0f}"
              f"{r['p99_shed_ms']:>13.1f}")
    print("capacity/s: one stream of large messages before the offers; expired: calls answered DEADLINE_EXCEEDED, of which "
          "dropped: by the server before compute; computed/s: events the server computed per second during an "
          "offer (and its tail); delivered: events answered OK / events computed")
    print("goals at 2x: goodput >= 80% of capacity, delivered >= 90% of computed events, "
          "p99 ok <= the deadline")
    return rows


def add_overload_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--overload", action="store_true", help="also print the overload table (after the others)")
    add("--overload-only", action="store_true", help="print only the overload table")
    add("--overload-factor", type=float, default=2.0, help="offered load / measured capacity")
    add("--overload-duration-s", type=float, default=10.0, help="length of the capacity run and of each offer")
    add("--overload-deadline-s", type=float, nargs="+", default=[5.0], help="deadline of each call (one row each)")
    add("--overload-events-per-call", type=int, default=16)
    add("--overload-serve-args", nargs=argparse.REMAINDER, default=[],
        help="extra `nurec serve` flags for the overload server (last on the line)")


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
    add_overload_arguments(parser)
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
    if args.overload_only:
        overload(args, name, variant, events)
        return 0

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
    if args.overload:
        overload(args, name, variant, events)
    return 0


if __name__ == "__main__":
    sys.exit(main())
