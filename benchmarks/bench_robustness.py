"""Robustness of the gRPC service: fuzzing, SIGTERM under load, a dead or stopped worker, a killed server.

Everything runs on 127.0.0.1 against `nurec serve` subprocesses, bounded in count and
time. Four sections, each printing a table:

1. Fuzz campaign (LineFit, process worker): ``--requests`` malformed requests (random
   bytes, mutated valid requests, mismatched hit-array lengths, NaN/inf in any hit field,
   empty and huge events, unknown sensors/detectors/models, oversized names, strict
   calls), most carrying valid neighbour events. Counted: crashes (server exited),
   hangs (no answer within ``--hang-s``), wrong status codes (call or per-event, against
   what each malformation must get), valid neighbours answered correctly (identical to
   in-process LineFit), echoing responses (larger than 10 kB for a short request), and
   health samples that were not SERVING.
2. SIGTERM under load: closed-loop load, then SIGTERM. (a) LineFit, the queue drains
   within the timeout: accepted calls lost (goal 0), exit time. (b) a model call that
   never ends (the test plugin's "stall" method): every accepted call answered
   UNAVAILABLE, exit time <= drain timeout + 1 s.
3. Worker kill/stop (LineFit, process worker, default watchdog): SIGKILL, then SIGSTOP of
   the worker under load: time to NOT_SERVING, to SERVING again, failed calls (codes) and
   how long the failed calls had waited.
4. Server `kill -9`: worker and resource-tracker processes still alive after 5 s (goal 0).

    python benchmarks/bench_robustness.py            # 10,000 fuzz requests (a few minutes)
    python benchmarks/bench_robustness.py --quick    # 1,000 requests, shorter load phases

Linux only (reads /proc to find the worker processes).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nurec.methods.registry import build_method  # noqa: E402
from nurec.protocol._generated import reconstruction_pb2 as pb  # noqa: E402
from nurec.protocol.codec import DIR_FIELDS, WIRE_DTYPES, encode_events  # noqa: E402
from sim.config import SimulationConfig  # noqa: E402
from sim.simulate import simulate_events  # noqa: E402

DETECTOR = "icecube86"
METHOD = "linefit"
MAX_HITS = 20_000
MAX_NAME_BYTES = 256
RECONSTRUCT = "/nurec.v1.Reconstruction/Reconstruct"
HEALTH = "/grpc.health.v1.Health/Check"
SERVE_CODE = "import sys; from nurec.cli import main; sys.exit(main(sys.argv[1:]))"
PLUGIN_CODE = "import sys, service_plugin; from nurec.cli import main; sys.exit(main(sys.argv[1:]))"
OK, INVALID = "OK", "INVALID_ARGUMENT"


# --- processes ---------------------------------------------------------------------------------

def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def children(pid: int) -> list[int]:
    """Return the live child processes of ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def worker_pid(server_pid: int) -> int | None:
    """Return the model worker's pid (the child that is not multiprocessing's resource tracker)."""
    for pid in children(server_pid):
        if "resource_tracker" not in command_line(pid):
            return pid
    return None


def health(target: str, timeout_s: float = 1.0) -> str:
    with grpc.insecure_channel(target) as channel:
        try:
            reply = channel.unary_unary(HEALTH)(b"", timeout=timeout_s)  # empty HealthCheckRequest
        except grpc.RpcError as err:
            return err.code().name
    # HealthCheckResponse: field 1 (status) varint; 1 = SERVING, 2 = NOT_SERVING.
    return {b"\x08\x01": "SERVING", b"\x08\x02": "NOT_SERVING"}.get(reply, f"status {reply!r}")


class Server:
    """A `nurec serve` subprocess on a free localhost port."""

    def __init__(self, *flags: str, plugin: bool = False, log: bool = False) -> None:
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        paths = [str(REPO), *([str(REPO / "tests")] if plugin else []), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
        self.process = subprocess.Popen(
            [sys.executable, "-c", PLUGIN_CODE if plugin else SERVE_CODE, "serve", "--host", "127.0.0.1",
             "--port", str(self.port), "--metrics-port", "0", "--log-level", "INFO" if log else "WARNING", *flags],
            env=env, stderr=subprocess.PIPE if log else subprocess.DEVNULL, text=True)
        end = time.monotonic() + 180
        while health(self.target) != "SERVING":
            if self.process.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"server did not start (exit code {self.process.poll()})")
            time.sleep(0.1)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)


# --- the fuzz campaign ---------------------------------------------------------------------------

@dataclass
class Case:
    """One request to send and what it must get."""

    kind: str
    data: bytes
    call_codes: tuple[str, ...]  # acceptable call status codes
    bad: dict[int, int] = field(default_factory=dict)  # event position -> required per-event code
    good: dict[int, int] = field(default_factory=dict)  # event position -> index of the reference event
    any_event_code: bool = False  # per-event codes not predictable (random/mutated bytes)
    detail: str = ""  # which variant (field, encoding) of the malformation


class Fuzzer:
    """Seeded generator of malformed requests around a pool of valid events."""

    KINDS = ("random_bytes", "mutated", "length_mismatch", "partial_bytes", "non_finite", "empty_event",
             "huge_event", "unknown_sensor", "unknown_detector", "long_detector", "unknown_model",
             "long_model", "strict_invalid", "large_event")

    def __init__(self, messages: list[pb.Event], rng: np.random.Generator, n_sensors: int) -> None:
        self.messages = messages
        self.rng = rng
        self.n_sensors = n_sensors

    def _neighbours(self, count: int) -> tuple[list[pb.Event], list[int]]:
        picks = self.rng.integers(0, len(self.messages), count).tolist()
        return [self._copy(self.messages[i]) for i in picks], picks

    @staticmethod
    def _copy(message: pb.Event) -> pb.Event:
        copy = pb.Event()
        copy.CopyFrom(message)
        return copy

    def _with_bad(self, kind: str, bad: pb.Event, code: int = pb.INVALID_ARGUMENT, **request) -> Case:
        neighbours, refs = self._neighbours(int(self.rng.integers(1, 3)))
        position = int(self.rng.integers(0, len(neighbours) + 1))
        events = neighbours[:position] + [bad] + neighbours[position:]
        good = {i: ref for i, ref in zip([i for i in range(len(events)) if i != position], refs, strict=True)}
        data = pb.ReconstructRequest(events=events, **request).SerializeToString()
        return Case(kind, data, (OK,), {position: code}, good)

    def _victim(self) -> pb.Event:
        return self._copy(self.messages[int(self.rng.integers(0, len(self.messages)))])

    def case(self, kind: str) -> Case:
        rng = self.rng
        if kind == "random_bytes":
            return decoded_case(kind, rng.bytes(int(rng.integers(0, 4096))))
        if kind == "mutated":
            events, _ = self._neighbours(int(rng.integers(1, 4)))
            data = bytearray(pb.ReconstructRequest(events=events).SerializeToString())
            for _ in range(int(rng.integers(1, 9))):
                at = int(rng.integers(0, max(len(data), 1)))
                action = rng.integers(0, 3)
                if action == 0 and data:
                    data[at % len(data)] = int(rng.integers(0, 256))
                elif action == 1:
                    data[at:at] = rng.bytes(int(rng.integers(1, 8)))
                else:
                    del data[at:at + int(rng.integers(1, 8))]
            return decoded_case(kind, bytes(data))
        victim = self._victim()
        names = list(WIRE_DTYPES)
        if kind == "length_mismatch":
            name = names[int(rng.integers(0, len(names)))]
            values = getattr(victim.raw, name)
            drop = 4 * int(rng.integers(1, max(2, len(values) // 4)))
            setattr(victim.raw, name, values[:-drop] if rng.random() < 0.5 else values + bytes(drop))
            return self._with_bad(kind, victim)
        if kind == "partial_bytes":
            name = names[int(rng.integers(0, len(names)))]
            setattr(victim.raw, name, getattr(victim.raw, name)[:-int(rng.integers(1, 4))])
            return self._with_bad(kind, victim)
        if kind == "non_finite":
            name = [n for n in names if n != "sensor_id"][int(rng.integers(0, len(names) - 1))]
            values = np.frombuffer(getattr(victim.raw, name), "<f4").copy()
            values[int(rng.integers(0, len(values)))] = rng.choice([np.nan, np.inf, -np.inf])
            setattr(victim.raw, name, values.tobytes())
            case = self._with_bad(kind, victim)
            case.detail = name
            return case
        if kind == "empty_event":
            if rng.random() < 0.5:
                victim.ClearField("raw")
            else:
                victim.raw.CopyFrom(pb.RawHits())
            return self._with_bad(kind, victim)
        if kind == "huge_event":
            n = MAX_HITS + int(rng.integers(1, 1000))
            victim.raw.CopyFrom(_hits(rng, n, self.n_sensors))
            return self._with_bad(kind, victim)
        if kind == "unknown_sensor":
            ids = np.frombuffer(victim.raw.sensor_id, "<i4").copy()
            ids[int(rng.integers(0, len(ids)))] = int(rng.choice([-1, 10**6, 2**31 - 1, self.n_sensors + 7]))
            victim.raw.sensor_id = ids.tobytes()
            looked_up = rng.random() < 0.5
            if looked_up:  # the server looks directions up
                for name in DIR_FIELDS:
                    victim.raw.ClearField(name)
            case = self._with_bad(kind, victim)
            case.detail = "directions looked up" if looked_up else "directions sent"
            return case
        if kind == "unknown_detector":
            victim.detector = f"no-such-detector-{int(rng.integers(0, 10**6))}"
            return self._with_bad(kind, victim)
        if kind == "long_detector":
            victim.detector = "d" * int(rng.integers(MAX_NAME_BYTES + 1, 2_000_000))
            return self._with_bad(kind, victim)
        if kind == "unknown_model":
            events, _ = self._neighbours(1)
            data = pb.ReconstructRequest(model=f"no-such-model-{int(rng.integers(0, 10**6))}",
                                         events=events).SerializeToString()
            return Case(kind, data, ("NOT_FOUND",))
        if kind == "long_model":
            events, _ = self._neighbours(1)
            model = "m" * int(rng.integers(MAX_NAME_BYTES + 1, 2_000_000))
            return Case(kind, pb.ReconstructRequest(model=model, events=events).SerializeToString(), (INVALID,))
        if kind == "strict_invalid":
            victim.raw.t = victim.raw.t[:-4]
            case = self._with_bad(kind, victim, strict=True)
            return Case(kind, case.data, (INVALID,))
        if kind == "large_event":  # within max_hits but heavy: refused per event or computed, never a crash
            victim.raw.CopyFrom(_hits(rng, int(rng.integers(2_000, 8_000)), self.n_sensors))
            case = self._with_bad(kind, victim)
            case.any_event_code = True
            return case
        raise ValueError(kind)


def _hits(rng: np.random.Generator, n: int, n_sensors: int) -> pb.RawHits:
    """Return ``n`` plausible hits on random sensors of the detector."""
    columns = {"sensor_id": rng.integers(0, n_sensors, n).astype("<i4")}
    for name in WIRE_DTYPES:
        if name != "sensor_id":
            columns[name] = rng.normal(0, 300, n).astype("<f4")
    columns["t"] = np.sort(rng.uniform(0, 10_000, n)).astype("<f4")
    columns["charge"] = rng.uniform(0.2, 3, n).astype("<f4")
    return pb.RawHits(**{k: v.tobytes() for k, v in columns.items()})


def decoded_case(kind: str, data: bytes) -> Case:
    """Return what arbitrary bytes must get: INVALID_ARGUMENT unless they decode as a request."""
    try:
        request = pb.ReconstructRequest.FromString(data)
    except Exception:
        return Case(kind, data, (INVALID,))
    if len(request.model.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        codes: tuple[str, ...] = (INVALID,)
    elif request.model not in ("", METHOD):
        codes = ("NOT_FOUND",)
    else:
        codes = (OK, INVALID) if request.strict else (OK,)
    return Case(kind, data, codes, any_event_code=True)


@dataclass
class FuzzTally:
    requests: Counter = field(default_factory=Counter)
    wrong: Counter = field(default_factory=Counter)
    hangs: int = 0
    shed: int = 0
    crashes: int = 0
    neighbours: int = 0
    neighbours_ok: int = 0
    echoes: int = 0
    not_serving: int = 0
    health_samples: int = 0
    examples: dict = field(default_factory=dict)
    wrong_details: dict = field(default_factory=dict)


def _same(result: pb.EventReconstruction, expected: pb.EventReconstruction) -> bool:
    a = np.array([result.dir_x, result.dir_y, result.dir_z, result.energy])
    b = np.array([expected.dir_x, expected.dir_y, expected.dir_z, expected.energy])
    return (result.error.code == pb.OK and result.fit_status == expected.fit_status
            and bool(np.array_equal(a, b, equal_nan=True)))


async def fuzz(target: str, process: subprocess.Popen, fuzzer: Fuzzer, references: list[pb.EventReconstruction],
               n_requests: int, concurrency: int, hang_s: float) -> FuzzTally:
    tally = FuzzTally()
    kinds = Fuzzer.KINDS
    weights = np.array([3, 3, 2, 1, 2, 1, 0.05, 1, 1, 0.2, 1, 0.2, 1, 0.02])
    weights = weights / weights.sum()
    plan = fuzzer.rng.choice(len(kinds), size=n_requests, p=weights)
    queue: asyncio.Queue = asyncio.Queue()
    for k in plan:
        queue.put_nowait(kinds[int(k)])
    options = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        call = channel.unary_unary(RECONSTRUCT)

        async def one(case: Case) -> None:
            tally.requests[case.kind] += 1
            for attempt in range(4):  # RESOURCE_EXHAUSTED (a heavy event filled the queue): retry, as clients do
                try:
                    reply = await call(case.data, timeout=hang_s)
                    code = OK
                except grpc.aio.AioRpcError as err:
                    code, reply = err.code().name, b""
                if code != "RESOURCE_EXHAUSTED":
                    break
                await asyncio.sleep(0.2 * 2 ** attempt)
            if code == "DEADLINE_EXCEEDED":
                tally.hangs += 1
                return
            if code == "RESOURCE_EXHAUSTED":
                tally.shed += 1
                return
            problem = None
            if code not in case.call_codes:
                problem = f"call {code}, expected {'/'.join(case.call_codes)}"
            elif code == OK:
                response = pb.ReconstructResponse.FromString(reply)
                if len(reply) > 10_000 + 200 * len(response.results) and case.kind.startswith("long"):
                    tally.echoes += 1
                for position, required in case.bad.items():
                    got = response.results[position].error.code if position < len(response.results) else None
                    if got != required and not case.any_event_code:
                        problem = f"event code {pb.Code.Name(got) if got is not None else 'missing'}"
                for position, ref in case.good.items():
                    tally.neighbours += 1
                    if position < len(response.results) and _same(response.results[position], references[ref]):
                        tally.neighbours_ok += 1
            if problem is not None:
                tally.wrong[case.kind] += 1
                tally.examples.setdefault(case.kind, problem)
                if case.detail:
                    tally.wrong_details.setdefault(case.kind, Counter())[case.detail] += 1

        async def worker() -> None:
            while not queue.empty():
                kind = queue.get_nowait()
                await one(fuzzer.case(kind))
                if process.poll() is not None:
                    tally.crashes += 1
                    while not queue.empty():
                        queue.get_nowait()

        async def probe() -> None:
            while True:
                await asyncio.sleep(0.5)
                state = await asyncio.to_thread(health, target, 2.0)
                tally.health_samples += 1
                tally.not_serving += state != "SERVING"

        prober = asyncio.ensure_future(probe())
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        prober.cancel()
    return tally


def run_fuzz(args: argparse.Namespace) -> None:
    events, _ = simulate_events(SimulationConfig(detector=DETECTOR, n_events=64, seed=args.seed))
    messages = encode_events(events, DETECTOR)
    from nurec.geometry import get_geometry

    n_sensors = len(get_geometry(DETECTOR).sensor_id)
    server = Server("--method", METHOD, "--detector", DETECTOR)
    try:
        with grpc.insecure_channel(server.target) as channel:  # the served result of each valid event alone
            call = channel.unary_unary(RECONSTRUCT)
            references = [pb.ReconstructResponse.FromString(call(pb.ReconstructRequest(events=[m]).SerializeToString(),
                                                                 timeout=60)).results[0] for m in messages]
        expected = build_method(METHOD, DETECTOR).reconstruct(events)
        in_process_equal = bool(np.array_equal(expected["dir_x"].to_numpy(), [r.dir_x for r in references],
                                               equal_nan=True))
        fuzzer = Fuzzer(messages, np.random.default_rng(args.seed), n_sensors)
        began = time.monotonic()
        tally = asyncio.run(fuzz(server.target, server.process, fuzzer, references, args.requests,
                                 args.concurrency, args.hang_s))
        elapsed = time.monotonic() - began
    finally:
        server.close()
    total = sum(tally.requests.values())
    print(f"\n1. fuzz: {total} malformed requests to {METHOD} ({args.concurrency} concurrent) in {elapsed:.0f} s; "
          f"references identical to in-process {METHOD}: {in_process_equal}")
    print(f"{'kind':<18}{'requests':>10}{'wrong code':>12}  example")
    for kind in Fuzzer.KINDS:
        details = ", ".join(f"{d} {n}" for d, n in sorted(tally.wrong_details.get(kind, {}).items()))
        example = tally.examples.get(kind, "") + (f" ({details})" if details else "")
        print(f"{kind:<18}{tally.requests[kind]:>10}{tally.wrong[kind]:>12}  {example}")
    print(f"crashes {tally.crashes} (goal 0) | hangs {tally.hangs} (goal 0) | shed after 3 retries "
          f"{tally.shed} | wrong status codes "
          f"{sum(tally.wrong.values())} (goal 0) | valid neighbours answered correctly "
          f"{tally.neighbours_ok}/{tally.neighbours} (goal all) | echoing responses {tally.echoes} | "
          f"health not SERVING {tally.not_serving}/{tally.health_samples} samples")


# --- lifecycle --------------------------------------------------------------------------------

@dataclass
class LoadResult:
    outcomes: Counter = field(default_factory=Counter)
    details: Counter = field(default_factory=Counter)  # of calls counted lost


def classify(err: grpc.RpcError | None) -> str:
    """Name a call's outcome: ok, refused, abandoned or failed (the server answered), else lost (seen by the client).

    A call the server never handed to the service (cancelled by the transport while it
    stopped) also reads as lost here; the server's own count of answered calls tells.
    """
    if err is None:
        return "ok"
    details = err.details() or ""
    code = err.code()
    if code == grpc.StatusCode.UNAVAILABLE:
        if "draining" in details or "failed to connect" in details.lower() or "connection refused" in details.lower():
            return "refused"
        if "drain timeout" in details:
            return "abandoned"
        if "model worker" in details:
            return "failed (worker)"
        return "lost"
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return "refused"
    if code == grpc.StatusCode.CANCELLED:
        return "lost"
    return f"failed ({code.name})"


def load(target: str, messages: list[pb.Event], stop: threading.Event, clients: int, per_call: int,
         timeout_s: float, result: LoadResult, latencies: list | None = None) -> list[threading.Thread]:
    """Start closed-loop client threads (each its own channel) until ``stop`` is set."""
    def client(offset: int) -> None:
        with grpc.insecure_channel(target) as channel:
            call = channel.unary_unary(RECONSTRUCT)
            i = offset
            while not stop.is_set():
                chosen = [messages[(i + j) % len(messages)] for j in range(per_call)]
                started = time.monotonic()
                try:
                    call(pb.ReconstructRequest(events=chosen).SerializeToString(), timeout=timeout_s)
                    outcome = "ok"
                except grpc.RpcError as err:
                    outcome = classify(err)
                    if outcome == "lost":
                        result.details[f"{err.code().name}: {err.details()}"] += 1
                    time.sleep(0.05)  # as a client backs off
                result.outcomes[outcome] += 1
                if latencies is not None:
                    latencies.append((outcome, time.monotonic() - started))
                i += clients * per_call

    threads = [threading.Thread(target=client, args=(k * per_call,), daemon=True) for k in range(clients)]
    for thread in threads:
        thread.start()
    return threads


def sigterm_under_load(messages: list[pb.Event], quick: bool) -> list[tuple]:
    rows = []
    for label, flags, plugin, drain_s in (
            ("linefit, queue drains", ("--method", METHOD, "--detector", DETECTOR), False, 5.0),
            ("stuck model call", ("--method", "centroid", "--model", "stall", "--detector", DETECTOR,
                                  "--max-batch-size", "8"), True, 2.0)):
        server = Server(*flags, "--drain-timeout-s", str(drain_s), plugin=plugin, log=True)
        result, stop = LoadResult(), threading.Event()
        threads = load(server.target, messages, stop, 16, 16, 60.0, result)
        time.sleep(1.0 if quick else 3.0)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        try:
            code = server.process.wait(drain_s + 30)
        except subprocess.TimeoutExpired:
            code = None
        exit_s = time.monotonic() - signalled
        stop.set()
        for thread in threads:
            thread.join(70)
        server.close()
        answered = _answered(server.process.stderr.read())
        o = result.outcomes
        # Accepted calls lost: handled by the service but never answered (cancelled), or answered
        # OK by the server without the client getting the answer.
        lost = answered.get("CANCELLED", 0) + max(0, answered.get("OK", 0) - o["ok"])
        rows.append((label, drain_s, exit_s, code, o["ok"], o["abandoned"], o["refused"],
                     sum(v for k, v in o.items() if k.startswith("failed")), o["lost"], lost,
                     dict(result.details)))
    return rows


def _answered(log: str) -> dict[str, int]:
    """Return the server's calls answered by status code, from its last ("stopped") log line."""
    import json

    for line in reversed(log.splitlines()):
        if '"msg": "stopped"' in line:
            return json.loads(line).get("answered", {})
    return {}


def worker_faults(messages: list[pb.Event], quick: bool) -> list[tuple]:
    server = Server("--method", METHOD, "--detector", DETECTOR)
    rows = []
    try:
        result, stop = LoadResult(), threading.Event()
        latencies: list = []
        threads = load(server.target, messages, stop, 8, 8, 60.0, result, latencies)
        time.sleep(1.0)
        for fault in (signal.SIGKILL, signal.SIGSTOP):
            pid = worker_pid(server.process.pid)
            assert pid is not None, "no worker process found"
            before = len(latencies)
            injected = time.monotonic()
            os.kill(pid, fault)
            transitions, state, down_s, up_s = [], "SERVING", None, None
            while time.monotonic() - injected < 120:
                now_state = health(server.target, 1.0)
                if now_state != state:
                    transitions.append(now_state)
                    state = now_state
                    if state != "SERVING" and down_s is None:
                        down_s = time.monotonic() - injected
                    if state == "SERVING" and down_s is not None:
                        up_s = time.monotonic() - injected
                        break
                time.sleep(0.02)
            time.sleep(0.5 if quick else 1.0)
            after = latencies[before:]
            failed = Counter(outcome for outcome, _ in after if outcome != "ok")
            waited = max((s for outcome, s in after if outcome != "ok"), default=float("nan"))
            rows.append((signal.Signals(fault).name, down_s, up_s, " > ".join(["SERVING", *transitions]),
                         dict(failed), waited, not alive(pid)))
        stop.set()
        for thread in threads:
            thread.join(70)
    finally:
        server.close()
    return rows


def server_kill(quick: bool) -> tuple[int, int, list[str]]:
    server = Server("--method", METHOD, "--detector", DETECTOR)
    kids = children(server.process.pid)
    names = [("resource_tracker" if "resource_tracker" in command_line(p) else "worker") for p in kids]
    server.process.kill()
    server.process.wait(10)
    time.sleep(5.0)
    left = [name for pid, name in zip(kids, names, strict=True) if alive(pid)]
    for pid in kids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    return len(kids), len(left), left


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 fuzz requests, shorter load phases")
    parser.add_argument("--requests", type=int, default=None, help="fuzz requests (default 10,000; quick 1,000)")
    parser.add_argument("--concurrency", type=int, default=16, help="fuzz requests in flight")
    parser.add_argument("--hang-s", type=float, default=30.0, help="a request unanswered this long is a hang")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--sections", nargs="+", default=["fuzz", "sigterm", "worker", "kill"],
                        choices=["fuzz", "sigterm", "worker", "kill"])
    args = parser.parse_args()
    if not Path("/proc/self/stat").exists():
        print("bench_robustness needs Linux (/proc)")
        return 1
    args.requests = args.requests or (1_000 if args.quick else 10_000)
    print(f"bench_robustness: {os.cpu_count()} CPUs | seed {args.seed} | {'quick' if args.quick else 'full'}")
    if "fuzz" in args.sections:
        run_fuzz(args)
    events, _ = simulate_events(SimulationConfig(detector=DETECTOR, n_events=64, seed=args.seed + 1))
    messages = encode_events(events, DETECTOR)
    if "sigterm" in args.sections:
        rows = sigterm_under_load(messages, args.quick)
        print("\n2. SIGTERM under load (16 clients, 16-event calls): accepted calls lost (goal 0), "
              "exit <= drain timeout + 1 s")
        print(f"{'case':<24}{'drain s':>8}{'exit s':>8}{'code':>6}{'ok':>7}{'abandoned':>11}{'refused':>9}"
              f"{'failed':>8}{'unanswered':>12}{'lost':>6}{'exit ok':>9}")
        for label, drain_s, exit_s, code, ok, abandoned, refused, failed, unanswered, lost, details in rows:
            print(f"{label:<24}{drain_s:>8g}{exit_s:>8.2f}{str(code):>6}{ok:>7}{abandoned:>11}{refused:>9}"
                  f"{failed:>8}{unanswered:>12}{lost:>6}{'yes' if exit_s <= drain_s + 1 else 'NO':>9}"
                  f"{'  unanswered: ' + str(details) if details else ''}")
        print("ok: answered with results; abandoned: UNAVAILABLE at the drain timeout; refused: UNAVAILABLE "
              "(draining, or no server) or RESOURCE_EXHAUSTED; unanswered: the client got no status from the "
              "service (the transport cancelled the call while the server stopped); lost: calls the service "
              "accepted but did not answer (its own count, from its last log line)")
    if "worker" in args.sections:
        rows = worker_faults(messages, args.quick)
        print("\n3. worker faults under load (8 clients; default worker_timeout_s 3 s)")
        print(f"{'fault':<9}{'down s':>8}{'up s':>8}  {'failed calls':<34}{'max wait s':>11}{'old gone':>9}  health")
        for fault, down_s, up_s, path, failed, waited, gone in rows:
            down = f"{down_s:.2f}" if down_s is not None else "never"
            up = f"{up_s:.2f}" if up_s is not None else "never"
            print(f"{fault:<9}{down:>8}{up:>8}  {str(failed):<34}{waited:>11.2f}{str(gone):>9}  {path}")
    if "kill" in args.sections:
        n, left, names = server_kill(args.quick)
        print(f"\n4. server kill -9: {n} child processes; alive after 5 s: {left} {names} (goal 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
