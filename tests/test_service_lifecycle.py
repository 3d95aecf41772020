"""Exact lifecycle: a hard drain timeout, a watchdog that replaces a dead or stopped worker, no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from service_testing import CentroidDirection, free_port, serve_config, small_events, wait_until

from nurec.client import ReconstructionClient
from nurec.protocol import pb, pb_grpc
from nurec.protocol.codec import encode_events
from services.server import BackgroundServer

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SERVE = ("import sys, service_plugin; from nurec.cli import main; "
         "sys.exit(main(['serve'] + sys.argv[1:]))")
linux_only = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")


@pytest.fixture(scope="module")
def events():
    return small_events(8)


def _call(target: str, events, timeout_s: float = 30.0):
    with grpc.insecure_channel(target) as channel:
        return pb_grpc.ReconstructionStub(channel).Reconstruct(
            pb.ReconstructRequest(events=encode_events(events)), timeout=timeout_s)


def _code(future) -> grpc.StatusCode:
    try:
        future.result(timeout=30)
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def _health(target: str) -> str:
    with ReconstructionClient(target, retries=0) as probe:
        try:
            return probe.health(timeout_s=2)
        except grpc.RpcError as err:
            return err.code().name


def _children(pid: int) -> list[int]:
    """Return the ids of the live child processes of ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _serve(*args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-c", SERVE, "--host", "127.0.0.1", "--port", str(port),
                                "--detector", "icecube-mini", *args], env=env, stderr=subprocess.PIPE, text=True)
    target = f"127.0.0.1:{port}"
    try:
        wait_until(lambda: _health(target) == "SERVING" or process.poll() is not None, timeout_s=90,
                   what="the server to start")
    except BaseException:
        process.kill()
        raise
    assert process.poll() is None, process.stderr.read()[-2000:]
    return process, target


def test_hard_drain_abandons_a_stuck_batch_in_thread_mode(events):
    method = CentroidDirection()
    method.gate.clear()
    running = BackgroundServer(serve_config(max_batch_size=4, max_queue_delay_ms=1, drain_timeout_s=0.5),
                               method).start()
    try:
        with ThreadPoolExecutor(2) as pool:
            computing = pool.submit(_call, running.target, events[:4])
            assert method.entered.wait(10)
            queued = pool.submit(_call, running.target, events[4:8])
            wait_until(lambda: running.server.batcher.queued_events == 4, what="a queued call")
            assert running.begin_drain().result(timeout=10) is False  # the model call never returned
            for future in (computing, queued):
                with pytest.raises(grpc.RpcError) as err:
                    future.result(timeout=10)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "drain timeout of 0.5 s passed" in err.value.details()
    finally:
        method.gate.set()
        running.stop()


def test_drain_timeout_is_a_hard_limit_for_the_process(events):
    metrics_port = free_port()
    process, target = _serve("--method", "centroid", "--model", "stall", "--metrics-port", str(metrics_port),
                             "--drain-timeout-s", "1", "--max-queue-delay-ms", "1")
    try:
        with ThreadPoolExecutor(1) as pool:
            stuck = pool.submit(_call, target, events[:2])
            wait_until(lambda: _scrape(metrics_port, "nurec_serve_events_received_total") == 2,
                       what="the call to be accepted")
            process.send_signal(signal.SIGTERM)
            with pytest.raises(grpc.RpcError) as err:
                stuck.result(timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "drain timeout" in err.value.details()
        assert process.wait(timeout=10) == 1  # not after the 120 s batch
        log = process.stderr.read()
        assert '"msg": "drain timeout: abandoned unfinished calls"' in log and '"drained": false' in log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def _scrape(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


@linux_only
def test_watchdog_replaces_a_stopped_and_a_killed_worker_process(events):
    config = serve_config(method="linefit", worker="process", worker_timeout_s=0.5, metrics_port=0)
    with BackgroundServer(config) as running, ThreadPoolExecutor(1) as pool:
        worker = running.server.models["linefit"].worker
        assert _call(running.target, events[:2]).results[0].error.code == pb.OK
        for stop in (signal.SIGSTOP, signal.SIGKILL):
            pid = worker.pid
            os.kill(pid, stop)
            pending = pool.submit(_call, running.target, events[:2], 60.0)
            wait_until(lambda: _health(running.target) == "NOT_SERVING", what="NOT_SERVING")
            assert _code(pending) == grpc.StatusCode.UNAVAILABLE  # at once, not at its 60 s deadline
            wait_until(lambda: _health(running.target) == "SERVING", timeout_s=60, what="SERVING again")
            assert worker.pid != pid and not _running(pid)
            assert _call(running.target, events[:2]).results[1].error.code == pb.OK
        assert running.server.metrics.value("nurec_serve_worker_restarts_total") == 2


def test_watchdog_abandons_a_hung_model_call_in_thread_mode(events):
    method = CentroidDirection()
    method.gate.clear()
    running = BackgroundServer(serve_config(batch_timeout_s=0.5), method).start()
    try:
        with ThreadPoolExecutor(1) as pool:
            hung = pool.submit(_call, running.target, events[:2], 60.0)
            assert method.entered.wait(10)
            assert _code(hung) == grpc.StatusCode.UNAVAILABLE
            method.gate.set()
            wait_until(lambda: _health(running.target) == "SERVING", what="SERVING again")
            assert _call(running.target, events[:2]).results[0].error.code == pb.OK
    finally:
        method.gate.set()
        running.stop()


@linux_only
def test_worker_and_resource_tracker_exit_when_the_server_is_killed():
    process, target = _serve("--method", "linefit", "--worker", "process", "--metrics-port", "0")
    try:
        children = _children(process.pid)
        assert children, "the server started no worker process"
    finally:
        process.kill()
        process.wait(10)
    wait_until(lambda: not any(_running(pid) for pid in children), timeout_s=10,
               what="the worker and the resource tracker to exit")


def test_metrics_endpoint_binds_localhost_and_can_require_a_token(tmp_path):
    token_file = tmp_path / "metrics-token"
    token_file.write_text("scrape-me\n")
    config = serve_config(host="0.0.0.0", metrics_port=free_port(), metrics_token_file=str(token_file))
    with BackgroundServer(config, CentroidDirection()) as running:
        assert running.server._metrics_http.server_address[0] == "127.0.0.1"  # not the gRPC host
        url = f"http://127.0.0.1:{running.server.metrics_port}/metrics"
        with pytest.raises(urllib.request.HTTPError) as err:
            urllib.request.urlopen(url, timeout=5)
        assert err.value.code == 401
        request = urllib.request.Request(url, headers={"Authorization": "Bearer scrape-me"})
        with urllib.request.urlopen(request, timeout=5) as reply:
            assert "nurec_serve_requests_total" in reply.read().decode()
