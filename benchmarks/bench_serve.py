"""Benchmark the gRPC service: throughput and latency of served vs in-process reconstruction.

Starts `nurec serve` in a subprocess on 127.0.0.1 and drives it from this process with an
asyncio client, each case closed-loop for ``--duration-s``: unary calls of 1 and of 16
events and bidirectional streams (1 event per message) at concurrency 1/16/64/256, the
KServe v2 ModelInfer call (1 event per call) at concurrency 64, and one stream of
256-event messages (the `nurec client reconstruct` path). The same method is timed
in-process at several batch sizes, before and after the served cases; "vs in-proc" divides
by the best mean rate. Served rates are steady-state rates (see Calls.steady).

Where the machine allows, the model's worker process, the server process and this client
are pinned to separate cores (os.sched_setaffinity) and the in-process method runs on the
worker's core, so a ratio compares the same compute resources and not the client's CPU.
With 2 cores the server and the client share one and the worker has the other.

    python benchmarks/bench_serve.py                    # default method (gnn, else linefit)
    python benchmarks/bench_serve.py --quick            # 1 s per case, fewer batch sizes
    python benchmarks/bench_serve.py --method linefit --duration-s 3
    # the cost of serving alone (a test method that computes nothing):
    PYTHONPATH=tests python benchmarks/bench_serve.py --plugin service_plugin --method centroid --model null
    # overload: offer 2x the measured capacity with a deadline (accepted, shed, expired, goodput)
    python benchmarks/bench_serve.py --overload-only --overload-deadline-s 1 5

Targets (issue 14), concurrency 64, process worker: unary 1 event per call >= 0.6x and
16 events per call >= 0.9x the in-process best rate.

The overload table (``--overload``, or ``--overload-only`` for it alone) first measures
capacity (one stream of ``--bulk-events``-event messages, which waits for room instead of
being refused), then offers ``--overload-factor`` times that rate open-loop for
``--overload-duration-s`` with each deadline: calls accepted (answered OK), shed
(RESOURCE_EXHAUSTED), expired (DEADLINE_EXCEEDED) or other; goodput (events answered OK
within their deadline during the offer window, per second) against capacity; the share of
the events the server computed that reached a caller in time; p99 latency of accepted
calls and of refusals. Goals at 2x: goodput >= 80% of capacity, >= 90% of computed events
delivered, p99 of accepted calls <= the deadline.
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
from dataclasses import dataclass
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

try:  # absent in checkouts older than the KServe service (to benchmark them with this script)
    from nurec.protocol.kserve import event_tensors, infer_request, kpb_grpc
except ImportError:
    kpb_grpc = None


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


# --- where each process runs ---------------------------------------------------------------

@dataclass(frozen=True)
class Cores:
    """CPU sets of the model's worker, the server and this client (None: not pinned)."""

    worker: set[int] | None
    server: set[int] | None
    client: set[int] | None

    @staticmethod
    def plan(pin: bool) -> Cores:
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if not pin or len(cpus) < 2:
            return Cores(None, None, None)
        if len(cpus) == 2:
            return Cores({cpus[0]}, {cpus[1]}, {cpus[1]})
        return Cores({cpus[0]}, {cpus[1]}, set(cpus[2:]))

    def describe(self) -> str:
        if self.worker is None:
            return "not pinned"
        return f"worker cores {sorted(self.worker)}, server {sorted(self.server)}, client {sorted(self.client)}"


def _children(pid: int) -> list[int]:
    """Return the descendants of process ``pid`` (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
        for kid in kids:
            found += [kid, *_children(kid)]
    return found


def pin_process(pid: int, cores: set[int]) -> None:
    """Pin every thread of process ``pid`` to ``cores`` (threads keep their own affinity in Linux)."""
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            os.sched_setaffinity(int(task.name), cores)
        except OSError:
            pass  # the thread ended


# --- load generators ---------------------------------------------------------------------

@dataclass
class Calls:
    """(start, end) times of every call of one case, and the load that made them."""

    spans: list[tuple[float, float]]
    in_flight: int        # calls (or messages) outstanding at once
    events_per_call: int
    began: float

    def steady(self) -> tuple[float, list[float]]:
        """Return (events/s, latencies s) in the steady state.

        Closed loop, Little's law: rate = calls in flight x events per call / mean latency,
        over calls that started after the first answer (the pipeline is full) and so are
        free of the ramp-up; counting completions instead would hinge on where batch-sized
        bursts of answers fall. Falls back to all calls when none started that late.
        """
        if not self.spans:
            return float("nan"), []
        first_answer = min(end for _, end in self.spans)
        latencies = [end - start for start, end in self.spans if start >= first_answer]
        if not latencies:
            latencies = [end - start for start, end in self.spans]
        return self.in_flight * self.events_per_call / float(np.mean(latencies)), latencies


async def closed_loop(call, requests: list, concurrency: int, duration_s: float, events_per_call: int) -> Calls:
    """Return the calls of ``concurrency`` callers each awaiting ``call(request)`` back to back."""
    spans: list[tuple[float, float]] = []
    began = time.perf_counter()
    end = began + duration_s

    async def worker(offset: int) -> None:
        i = offset
        while time.perf_counter() < end:
            start = time.perf_counter()
            await call(requests[i % len(requests)])
            spans.append((start, time.perf_counter()))
            i += concurrency

    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return Calls(spans, concurrency, events_per_call, began)


async def run_streams(stub, requests: list[pb.ReconstructRequest], concurrency: int, duration_s: float) -> Calls:
    """Return the messages of ``concurrency`` streams each sending one single-event message at a time."""
    spans: list[tuple[float, float]] = []
    began = time.perf_counter()
    end = began + duration_s

    async def worker(offset: int) -> None:
        call = stub.ReconstructStream(timeout=120)
        i = offset
        while time.perf_counter() < end:
            start = time.perf_counter()
            await call.write(requests[i % len(requests)])
            await call.read()
            spans.append((start, time.perf_counter()))
            i += concurrency
        await call.done_writing()
        await call.wait_for_connection()
        assert await call.code() == grpc.StatusCode.OK

    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return Calls(spans, concurrency, 1, began)


async def run_bulk(stub, messages: list[pb.Event], batch_events: int, window: int, duration_s: float) -> Calls:
    """Return the messages of one stream of ``batch_events``-event messages, ``window`` in flight."""
    requests = [pb.ReconstructRequest(events=messages[i:i + batch_events])
                for i in range(0, len(messages) - batch_events + 1, batch_events)]
    spans: list[tuple[float, float]] = []
    sent: asyncio.Queue = asyncio.Queue()
    slots = asyncio.Semaphore(window)
    call = stub.ReconstructStream(timeout=120)
    began = time.perf_counter()
    end = began + duration_s

    async def send() -> None:
        i = 0
        while time.perf_counter() < end:
            await slots.acquire()
            sent.put_nowait(time.perf_counter())
            await call.write(requests[i % len(requests)])
            i += 1
        await call.done_writing()

    sender = asyncio.ensure_future(send())
    async for _response in call:
        spans.append((sent.get_nowait(), time.perf_counter()))
        slots.release()
    await sender
    return Calls(spans, window, batch_events, began)


def kserve_requests(events, model: str, detector: str) -> list:
    """Return one single-event ModelInferRequest (raw tensors) per event."""
    tensors = event_tensors(events)
    offsets = np.concatenate([[0], np.cumsum(tensors["event_n_hits"])])
    requests = []
    for i in range(len(events)):
        one = {name: (values[offsets[i]:offsets[i + 1]] if name.startswith("hit_") else values[i:i + 1])
               for name, values in tensors.items()}
        requests.append(infer_request(one, model, detector=detector))
    return requests


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


def in_process(method, events, batch_sizes: list[int], duration_s: float,
               cores: set[int] | None = None) -> dict[int, tuple[float, float]]:
    """Return {batch size: (events/s, seconds per batch)} calling the method directly (on ``cores``)."""
    if cores is not None:
        previous = os.sched_getaffinity(0)
        os.sched_setaffinity(0, cores)
        try:
            return in_process(method, events, batch_sizes, duration_s)
        finally:
            os.sched_setaffinity(0, previous)
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


# --- the concurrency table ---------------------------------------------------------------

@dataclass
class Row:
    case: str
    events_per_call: int
    concurrency: int
    rate: float
    p50_ms: float
    p99_ms: float
    mean_batch: float
    batch_ms: float


async def _measure(case: str, per_call: int, concurrency: int, metrics_port: int, run) -> Row:
    before = scrape(metrics_port)
    rate, latencies = (await run()).steady()
    after = scrape(metrics_port)
    batches = after["nurec_serve_batch_size_count"] - before["nurec_serve_batch_size_count"]
    batch_events = after["nurec_serve_batch_size_sum"] - before["nurec_serve_batch_size_sum"]
    compute_s = (after["nurec_serve_compute_seconds_sum"] - before["nurec_serve_compute_seconds_sum"]) / max(batches, 1)
    return Row(case, per_call, concurrency, rate, *percentiles_ms(latencies),
               batch_events / max(batches, 1), compute_s * 1000)


async def concurrency_table(port: int, metrics_port: int, events, name: str, detector: str,
                            args: argparse.Namespace) -> list[Row]:
    """Return the rows of every served case (unary 1 and 16 events/call, stream, KServe, bulk)."""
    messages = encode_events(events, detector)
    singles = [pb.ReconstructRequest(events=[m]) for m in messages]
    sixteens = [pb.ReconstructRequest(events=messages[i:i + 16]) for i in range(0, len(messages) - 15, 16)]
    rows = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await asyncio.wait_for(channel.channel_ready(), 300)
        stub = pb_grpc.ReconstructionStub(channel)

        def unary(request):
            return stub.Reconstruct(request, timeout=120)

        await closed_loop(unary, singles, 4, 0.5, 1)  # warm-up
        for concurrency in args.concurrency:
            rows.append(await _measure("unary", 1, concurrency, metrics_port, lambda c=concurrency: closed_loop(
                unary, singles, c, args.duration_s, 1)))
        for concurrency in args.concurrency:
            rows.append(await _measure("unary", 16, concurrency, metrics_port, lambda c=concurrency: closed_loop(
                unary, sixteens, c, args.duration_s, 16)))
        for concurrency in args.concurrency:
            rows.append(await _measure("stream", 1, concurrency, metrics_port, lambda c=concurrency: run_streams(
                stub, singles, c, args.duration_s)))
        if kpb_grpc is not None:
            kserve = kpb_grpc.GRPCInferenceServiceStub(channel)
            infers = kserve_requests(events, name, detector)

            def infer(request):
                return kserve.ModelInfer(request, timeout=120)

            await closed_loop(infer, infers, 4, 0.5, 1)  # warm-up
            rows.append(await _measure("kserve", 1, 64, metrics_port, lambda: closed_loop(
                infer, infers, 64, args.duration_s, 1)))
        rows.append(await _measure("bulk", args.bulk_events, 1, metrics_port, lambda: run_bulk(
            stub, messages, args.bulk_events, 8, args.duration_s)))
    return rows


def print_table(rows: list[Row], runs: list[dict[int, tuple[float, float]]], max_queue_delay_ms: float) -> None:
    """Print the served rows against the in-process best (mean of the runs before and after serving)."""
    local = {size: tuple(float(np.mean([run[size][k] for run in runs])) for k in range(2)) for size in runs[0]}
    best_size = max(local, key=lambda b: local[b][0])
    best_rate = local[best_size][0]
    print(f"\n{'case':<8}{'ev/call':>8}{'conc':>6}{'events/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'mean batch':>11}"
          f"{'ms/batch':>10}{'vs in-proc':>11}{'p99 target ms':>15}")
    for row in rows:
        target = max_queue_delay_ms + 3 * row.batch_ms
        verdict = (f"{'(per message)':>15}" if row.case == "bulk"
                   else f"{target:>11.1f} {'ok' if row.p99_ms <= target else 'MISS'}")
        print(f"{row.case:<8}{row.events_per_call:>8}{row.concurrency:>6}{row.rate:>10.0f}{row.p50_ms:>9.1f}"
              f"{row.p99_ms:>9.1f}{row.mean_batch:>11.1f}{row.batch_ms:>10.1f}{row.rate / best_rate:>10.0%}{verdict}")
    print("\nin-process (mean of the runs before and after the served cases)")
    for size, (rate, seconds) in local.items():
        each = " / ".join(f"{run[size][0]:.0f}" for run in runs)
        print(f"  batch {size:>4}: {rate:>9.0f} events/s ({each}), {seconds * 1000:8.1f} ms/batch"
              f"{'  <- best' if size == best_size else ''}")
    goals = {("unary", 1): 0.6, ("unary", 16): 0.9}
    for row in rows:
        goal = goals.get((row.case, row.events_per_call))
        if goal is not None and row.concurrency == 64:
            ratio = row.rate / best_rate
            print(f"goal: {row.case} {row.events_per_call} event(s)/call at concurrency 64: {ratio:.2f}x "
                  f"in-process (goal >= {goal}x) {'ok' if ratio >= goal else 'MISS'}")


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


def start_server(args: argparse.Namespace, name: str, variant: str | None, cores: Cores,
                 extra: list[str]) -> tuple[subprocess.Popen, int, int]:
    """Start `nurec serve` on free ports, the process pinned to the server's cores; return (process, port, metrics port)."""
    port, metrics_port = free_port(), free_port()
    serve_args = ["serve", "--method", name, "--host", "127.0.0.1", "--port", str(port),
                  "--metrics-port", str(metrics_port), "--detector", args.detector,
                  "--max-batch-size", str(args.max_batch_size), "--max-queue-delay-ms", str(args.max_queue_delay_ms),
                  "--threads", str(args.threads), "--log-level", "WARNING", "--worker", args.worker,
                  *(["--model", variant] if variant else []), *extra]
    pin = f"os.sched_setaffinity(0, {sorted(cores.server)}); " if cores.server is not None else ""
    code = (f"import os, sys; {pin}{'import ' + args.plugin + ';' if args.plugin else ''} "
            "from nurec.cli import main; sys.exit(main(sys.argv[1:]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-c", code, *serve_args], env=env), port, metrics_port


def pin_worker(server: subprocess.Popen, args: argparse.Namespace, cores: Cores) -> None:
    """Pin the server's model worker (and multiprocessing's helpers) to the worker's cores, once it runs."""
    if cores.worker is not None and args.worker == "process":
        for child in _children(server.pid):
            pin_process(child, cores.worker)


def overload(args: argparse.Namespace, name: str, variant: str | None, events, cores: Cores) -> list[dict]:
    """Run the overload table against a fresh server (pinned as the concurrency table's); print it, return its rows."""
    k = args.overload_events_per_call
    messages = encode_events(events, args.detector)
    requests = [pb.ReconstructRequest(events=messages[i:i + k]) for i in range(0, len(messages) - k + 1, k)]
    server, port, metrics_port = start_server(args, name, variant, cores, args.overload_serve_args)
    rows: list[dict] = []
    try:
        async def drive() -> None:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await asyncio.wait_for(channel.channel_ready(), 120)
                pin_worker(server, args, cores)
                stub = pb_grpc.ReconstructionStub(channel)
                await _closed_loop_capacity(stub, requests, 4, 1.0)  # warm-up
                # Capacity: one stream of large messages keeps the server busy (it waits for room,
                # where unary calls would be refused), as `nurec client` sends.
                capacity, _ = (await run_bulk(stub, messages, args.bulk_events, 8, args.overload_duration_s)).steady()
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
    parser.add_argument("--quick", action="store_true", help="1 s per case, in-process batch sizes 64 and 512")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64, 256, 512])
    parser.add_argument("--bulk-events", type=int, default=256,
                        help="events per message in the bulk-stream case (window 8), as `nurec client` sends")
    parser.add_argument("--max-batch-size", type=int, default=512)
    parser.add_argument("--max-queue-delay-ms", type=float, default=5.0)
    parser.add_argument("--worker", choices=["process", "thread"], default="process")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in server and in-process")
    parser.add_argument("--no-pin", action="store_true", help="leave processes where the OS puts them")
    parser.add_argument("--seed", type=int, default=3)
    add_overload_arguments(parser)
    args = parser.parse_args()
    if args.quick:
        args.duration_s = min(args.duration_s, 1.0)
        args.batch_sizes = [64, 512]
    if args.plugin:
        importlib.import_module(args.plugin)
    cores = Cores.plan(not args.no_pin)
    if cores.client is not None:
        os.sched_setaffinity(0, cores.client)
    name, variant = resolve_method(args.method, args.model)
    method = build_method(name, **({"model": variant} if variant else {}))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(args.threads)
    events, _ = simulate_events(SimulationConfig(detector=args.detector, n_events=args.events, seed=args.seed))
    if args.overload_only:
        overload(args, name, variant, events, cores)
        return 0
    batch_sizes = [b for b in args.batch_sizes if b <= len(events)]
    local_before = in_process(method, events, batch_sizes, args.duration_s, cores.worker)
    hits = np.asarray(events.hits.t.layout.offsets)[-1] / len(events)
    print(f"method {name} {variant or ''} | {len(events)} {args.detector} events, {hits:.0f} hits/event | "
          f"{os.cpu_count()} CPUs, {cores.describe()} | {args.duration_s:g} s per case | torch threads "
          f"{args.threads} | {args.worker} worker | max batch {args.max_batch_size}, max delay "
          f"{args.max_queue_delay_ms:g} ms | load average {os.getloadavg()[0]:.1f} at start")

    # Closed loops at concurrency 256 queue more than admission's default 1 s of work: this
    # table measures throughput and latency, the overload table admission.
    server, port, metrics_port = start_server(args, name, variant, cores, ["--max-queue-wait-s", "60"])
    try:
        async def drive() -> list[Row]:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await asyncio.wait_for(channel.channel_ready(), 300)
            pin_worker(server, args, cores)
            return await concurrency_table(port, metrics_port, events, name, args.detector, args)

        rows = asyncio.run(drive())
    finally:
        server.terminate()
        server.wait(60)

    local_after = in_process(method, events, batch_sizes, args.duration_s, cores.worker)
    print_table(rows, [local_before, local_after], args.max_queue_delay_ms)
    print("(timings on a shared or busy machine vary by 20-50 %: compare runs made back to back)")
    if args.overload:
        overload(args, name, variant, events, cores)
    return 0


if __name__ == "__main__":
    sys.exit(main())
