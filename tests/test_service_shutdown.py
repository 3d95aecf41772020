"""`nurec serve` in a subprocess: SIGTERM drains every accepted request, then the process exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pandas as pd
import pytest
from service_testing import free_port, small_events, wait_until

from nurec.client import ReconstructionClient

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SERVE = ("import sys, service_plugin; from nurec.cli import main; "
         "sys.exit(main(['serve'] + sys.argv[1:]))")


def _scrape(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


@pytest.fixture()
def served():
    """A `nurec serve` process with the slow test method (0.3 s per batch of at most 5 events)."""
    port, metrics_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO), os.environ.get("PYTHONPATH", "")]),
           "NUREC_SERVE_MAX_BATCH_SIZE": "5"}  # settings from the environment, too
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE, "--method", "centroid", "--model", "slow", "--host", "127.0.0.1",
         "--port", str(port), "--metrics-port", str(metrics_port), "--detector", "icecube-mini",
         "--max-queue-delay-ms", "1"],
        env=env, stderr=subprocess.PIPE, text=True)
    try:
        yield process, f"127.0.0.1:{port}", metrics_port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def test_sigterm_loses_no_accepted_request(served):
    process, target, metrics_port = served
    events = small_events(30)
    with ReconstructionClient(target, retries=8, initial_backoff_s=0.2) as client:
        wait_until(lambda: _serving(client), timeout_s=60, what="the server to start")
        with ThreadPoolExecutor(4) as pool:
            unary = [pool.submit(client.reconstruct, events[i:i + 5], batch_events=5) for i in range(0, 15, 5)]
            stream = pool.submit(lambda: pd.concat(list(client.reconstruct_stream([events[15:]], batch_events=3))))
            wait_until(lambda: _scrape(metrics_port, "nurec_serve_events_received_total") == 30,
                       what="all 30 events to be accepted")
            process.send_signal(signal.SIGTERM)
            wait_until(lambda: client.health() == "NOT_SERVING", what="NOT_SERVING while draining")
            with ReconstructionClient(target, retries=0) as late, pytest.raises(grpc.RpcError) as err:
                late.reconstruct(events[:1])
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            tables = [f.result(timeout=60) for f in unary] + [stream.result(timeout=60)]
    served_ids = pd.concat(tables)["event_id"].tolist()
    assert served_ids == events.event_id.tolist()
    assert all((t["fit_status"] == "ok").all() for t in tables)
    assert process.wait(timeout=30) == 0
    log = process.stderr.read()
    assert '"msg": "draining"' in log and '"drained": true' in log


def _serving(client: ReconstructionClient) -> bool:
    try:
        return client.health(timeout_s=1) == "SERVING"
    except grpc.RpcError:
        return False


def test_serve_without_arguments_serves_the_default_model(tmp_path):
    from nurec.methods.registry import available_methods
    from services.served import resolve_method

    try:
        name, variant = resolve_method(None, None)
    except ValueError:
        pytest.skip("neither gnn nor linefit is registered yet")
    if name == "gnn":
        from nurec.models.reconstruct import resolve_model_path

        try:
            resolve_model_path("default")
        except FileNotFoundError:  # the server falls back to LineFit until the bundled model exists
            name, variant = "linefit", None
    assert name in {spec.name for spec in available_methods()}
    port = free_port()
    env = {**os.environ, "NUREC_SERVE_PORT": str(port), "NUREC_SERVE_METRICS_PORT": "0", "NUREC_SERVE_WORKER": "thread"}
    process = subprocess.Popen([sys.executable, "-m", "nurec", "serve"], env=env, cwd=tmp_path,
                               stderr=subprocess.DEVNULL)
    try:
        with ReconstructionClient(f"localhost:{port}") as client:
            wait_until(lambda: _serving(client), timeout_s=90, what="the default server to start")
            (info,) = client.list_models()
            assert (info["name"], info["variant"], info["is_default"]) == (name, variant or "", True)
            table = client.reconstruct(small_events(5, detector="icecube86"), detector="icecube86")
            assert len(table) == 5 and (table["method"] == name).all()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


SCRIPT_WITHOUT_MAIN_GUARD = """
import pandas as pd
import service_plugin
from service_testing import CentroidDirection, serve_config, small_events
from nurec.client import ReconstructionClient
from services.server import BackgroundServer

events = small_events(12)
with BackgroundServer(serve_config(worker="process")) as running, ReconstructionClient(running.target) as client:
    served = client.reconstruct(events)
expected = CentroidDirection().reconstruct(events)
pd.testing.assert_frame_equal(served[list(expected.columns)], expected, check_dtype=False)
print("identical")
"""


def test_process_worker_gives_in_process_results_even_from_a_script_without_main_guard():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-"], input=SCRIPT_WITHOUT_MAIN_GUARD, env=env, text=True,
                            capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "identical"
