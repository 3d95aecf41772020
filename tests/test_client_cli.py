"""`nurec client` and the client library against real servers: datasets, fleets, retries."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
from service_testing import CentroidDirection, free_port, serve_config, small_events, wait_until

from nurec.cli import main
from nurec.client import AsyncReconstructionClient, ReconstructionClient, channel_target
from nurec.io.parquet import write_dataset
from nurec.io.predictions import read_predictions, read_predictions_metadata
from nurec.io.schema import PREDICTION_COLUMNS
from nurec.protocol import pb
from nurec.protocol.codec import encode_events
from services.server import BackgroundServer

COLUMNS = [*PREDICTION_COLUMNS, "n_hits"]


@pytest.fixture(scope="module")
def events():
    return small_events(30)


@pytest.fixture(scope="module")
def fleet():
    """Two servers of the same method on free ports."""
    servers = [BackgroundServer(serve_config(), CentroidDirection()).start() for _ in range(2)]
    yield servers
    for server in servers:
        server.stop()


def test_client_reconstruct_writes_the_in_process_predictions(fleet, events, tmp_path, capsys):
    data_dir = write_dataset(tmp_path / "events", events, {"detector": {"name": "icecube-mini"}}, chunk_events=12)
    out = tmp_path / "predictions.parquet"
    targets = [arg for server in fleet for arg in ("--target", server.target)]
    assert main(["client", "reconstruct", str(data_dir), *targets, "--out", str(out),
                 "--batch-events", "5", "--window", "2", "--no-progress"]) == 0
    assert "wrote 30 predictions (0 failed)" in capsys.readouterr().out
    expected = CentroidDirection().reconstruct(events)[COLUMNS]
    pd.testing.assert_frame_equal(read_predictions(out)[COLUMNS], expected, check_dtype=False)
    assert read_predictions_metadata(out)["model"]["name"] == "centroid"


def _served_rpcs(server) -> float:
    return sum(server.server.metrics.value("nurec_serve_requests_total", {"rpc": rpc, "code": "OK"})
               for rpc in ("GetModelInfo", "ReconstructStream"))


def test_streams_spread_a_dataset_over_the_fleet(fleet, events):
    # round_robin picks among the connected servers: once both have answered a call, consecutive
    # streams go to different servers (before that, a slow connection can leave one out).
    with ReconstructionClient([server.target for server in fleet]) as client:
        before = [server.server.metrics.value("nurec_serve_events_received_total") for server in fleet]
        seen = [_served_rpcs(server) for server in fleet]
        wait_until(lambda: client.model_info() is not None
                   and all(_served_rpcs(s) > n for s, n in zip(fleet, seen, strict=True)), what="both servers")
        tables = list(client.reconstruct_streams([events], streams=2, batch_events=5, window=2))
    assert sum(len(table) for table in tables) == len(events)
    after = [server.server.metrics.value("nurec_serve_events_received_total") for server in fleet]
    assert all(a > b for a, b in zip(after, before, strict=True))


def test_client_health_and_models_commands(fleet, capsys):
    assert main(["client", "health", "--target", fleet[0].target]) == 0
    assert capsys.readouterr().out.strip() == "SERVING"
    assert main(["client", "models", "--target", fleet[0].target]) == 0
    assert '"name": "centroid"' in capsys.readouterr().out


def test_several_targets_are_balanced_round_robin(fleet, events):
    target, _ = channel_target([s.target for s in fleet])
    assert target.startswith("ipv4:") and target.count(",") == 1
    def served() -> list[float]:
        return [s.server.metrics.value("nurec_serve_requests_total", {"rpc": "Reconstruct", "code": "OK"})
                for s in fleet]

    with ReconstructionClient([s.target for s in fleet]) as client:
        start = served()

        def both_ready() -> bool:  # until both connections are up, round_robin uses the ready one
            client.reconstruct(events[:1])
            return all(a > b for a, b in zip(served(), start, strict=True))

        wait_until(both_ready, what="both servers to take calls")
        before = served()
        for i in range(10):
            client.reconstruct(events[i:i + 1])
    after = served()
    assert [a - b for a, b in zip(after, before, strict=True)] == [5, 5]


def test_unavailable_calls_are_retried_on_another_server(events):
    draining_method = CentroidDirection()
    draining = BackgroundServer(serve_config(), draining_method).start()
    healthy = BackgroundServer(serve_config(), CentroidDirection()).start()
    try:
        with ReconstructionClient([draining.target, healthy.target], initial_backoff_s=0.01) as client, \
                ReconstructionClient(draining.target) as direct:
            def both_ready() -> bool:
                client.reconstruct(events[:1])
                return bool(draining_method.run_ids) and healthy.server.metrics.value(
                    "nurec_serve_events_received_total") > 0

            wait_until(both_ready, what="both servers to take calls")
            draining_method.entered.clear()
            draining_method.gate.clear()
            with ThreadPoolExecutor(1) as pool:
                held = pool.submit(direct.reconstruct_messages, encode_events(events[:1]))
                assert draining_method.entered.wait(10)
                stopped = draining.begin_drain()  # now refuses new work with UNAVAILABLE
                tables = [client.reconstruct(events[i:i + 1]) for i in range(1, 7)]
                draining_method.gate.set()
                assert held.result(10).results[0].error.code == pb.OK
                stopped.result(30)
        assert pd.concat(tables)["event_id"].tolist() == events.event_id[1:7].tolist()
        refused = draining.server.metrics.value("nurec_serve_requests_total",
                                                {"rpc": "Reconstruct", "code": "UNAVAILABLE"})
        assert refused >= 1
    finally:
        draining_method.gate.set()
        draining.stop()
        healthy.stop()


def test_async_client_matches_the_sync_client(fleet, events):
    async def run():
        async with AsyncReconstructionClient(fleet[0].target) as client:
            unary = await client.reconstruct(events, batch_events=7, concurrency=3)
            streamed = [t async for t in client.reconstruct_stream([events], batch_events=4, window=2)]
            models = await client.list_models()
            return unary, pd.concat(streamed, ignore_index=True), models, await client.health()

    unary, streamed, models, health = asyncio.run(run())
    with ReconstructionClient(fleet[0].target) as client:
        expected = client.reconstruct(events)
    pd.testing.assert_frame_equal(unary, expected)
    pd.testing.assert_frame_equal(streamed, expected)
    assert models[0]["name"] == "centroid" and health == "SERVING"


def test_unreadable_target_is_a_clear_error():
    with pytest.raises(ValueError, match="not host:port"):
        channel_target(["localhost:1", "nonsense"])


REPO = Path(__file__).resolve().parents[1]
GRAPHNET_DB = REPO / "tests/data/graphnet/tests/sqlite/oscNext_genie_level7_v02/oscNext_genie_level7_v02_first_5_frames.db"


@pytest.mark.parametrize("action", [["health"], ["models"], ["reconstruct", str(GRAPHNET_DB), "--out", "out.parquet"]])
def test_client_without_a_server_prints_one_line_and_exits_1(action, tmp_path):
    # a port nobody listens on; run as a user would, so gRPC's own stderr output counts too
    target = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "nurec", "client", *action, "--target", target, "--retries", "1"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - start
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"nurec client: error: UNAVAILABLE at {target}: ")
    assert result.stdout == "" and not (tmp_path / "out.parquet").exists()
    assert elapsed < 60  # gives up after one short retry, not a hang


def test_interrupted_stream_resends_unanswered_messages_to_the_restarted_server(events):
    from service_testing import free_port

    port = free_port()
    first_method, second_method = CentroidDirection(), CentroidDirection()
    first = BackgroundServer(serve_config(port=port), first_method).start()
    second = None
    try:
        first_method.gate.clear()
        with ReconstructionClient(f"127.0.0.1:{port}", retries=10, initial_backoff_s=0.05) as client, \
                ThreadPoolExecutor(1) as pool:
            streamed = pool.submit(lambda: list(client.reconstruct_stream([events[:6]], batch_events=1, window=2)))
            assert first_method.entered.wait(10)
            wait_until(lambda: first.server.metrics.value("nurec_serve_events_received_total") == 2,
                       what="two messages in flight")
            stopping = first.begin_drain()  # rolling restart: the old server refuses new messages
            first_method.gate.set()
            stopping.result(30)
            first.stop()
            second = BackgroundServer(serve_config(port=port), second_method).start()
            tables = streamed.result(timeout=60)
        assert pd.concat(tables)["event_id"].tolist() == events.event_id[:6].tolist()
        assert first_method.run_ids and second_method.run_ids  # both servers did part of the work
        assert len(first_method.run_ids) + len(second_method.run_ids) >= 6
    finally:
        first_method.gate.set()
        first.stop()
        if second is not None:
            second.stop()


def test_client_reconstruct_keeps_the_source_keys_of_a_converted_dataset(fleet, events, tmp_path):
    from nurec.io.sources import EVENT_KEYS_FILE

    data_dir = write_dataset(tmp_path / "converted", events[:6], {"detector": {"name": "icecube-mini"}})
    keys = pd.DataFrame({"event_id": events.event_id[:6].to_numpy(), "event_no": 1000 + events.event_id[:6].to_numpy()})
    keys.to_parquet(data_dir / EVENT_KEYS_FILE)
    out = tmp_path / "predictions.csv"
    assert main(["client", "reconstruct", str(data_dir), "--target", fleet[0].target, "--out", str(out),
                 "--no-progress"]) == 0
    table = read_predictions(out)
    assert (table["event_no"] == table["event_id"] + 1000).all() and len(table) == 6


def test_client_reconstruct_refuses_an_unknown_out_suffix_before_calling_the_server(tmp_path, capsys):
    # nobody listens on the target and the data do not exist: the suffix is refused first, in one line
    code = main(["client", "reconstruct", str(tmp_path / "missing"), "--out", str(tmp_path / "p.json"),
                 "--target", f"127.0.0.1:{free_port()}", "--retries", "1", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err
    assert err.startswith("nurec client: error: ") and "p.json" in err and ".parquet, .pq, .csv" in err
    assert "UNAVAILABLE" not in err and not (tmp_path / "p.json").exists()
