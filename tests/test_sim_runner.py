"""The chunked runner and `nurec simulate/inspect/display`: determinism, Dask, failures, bad input."""

import json
from pathlib import Path

import pytest

from nurec.cli import main
from nurec.evaluate.fluxes import flux_models
from nurec.evaluate.truth import truth_table
from nurec.evaluate.weights import expected_events_per_year
from nurec.io.parquet import read_dataset, read_metadata
from nurec.parallel import ParallelOptions, map_chunks
from sim import runner
from sim.config import SimulationConfig
from sim.runner import run_simulation

SMALL = SimulationConfig(detector="icecube86", n_events=60, chunk_events=20, energy_min_gev=1e3,
                         energy_max_gev=1e5, seed=5)


def dataset_bytes(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


@pytest.fixture(scope="module")
def in_process(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "in_process"
    run_simulation(SMALL, out, ParallelOptions(workers=0, progress=False))
    return out


def test_same_seed_gives_identical_files_and_another_seed_different_ones(in_process, tmp_path):
    again = tmp_path / "again"
    run_simulation(SMALL, again, ParallelOptions(workers=0, progress=False))
    assert dataset_bytes(again) == dataset_bytes(in_process)
    assert sorted(dataset_bytes(again)) == ["dataset.json", "part-00000.parquet", "part-00001.parquet",
                                            "part-00002.parquet"]
    other = tmp_path / "other"
    run_simulation(SMALL.with_updates(seed=6), other, ParallelOptions(workers=0, progress=False))
    assert dataset_bytes(other)["part-00000.parquet"] != dataset_bytes(in_process)["part-00000.parquet"]


def test_dask_local_cluster_with_two_workers_writes_identical_files(in_process, tmp_path):
    out = tmp_path / "dask"
    run_simulation(SMALL, out, ParallelOptions(workers=2, processes=False, progress=False))
    assert dataset_bytes(out) == dataset_bytes(in_process)


def test_runner_on_an_existing_scheduler_and_worker_on_localhost(in_process, tmp_path):
    from dask.distributed import LocalCluster

    # A scheduler and a worker talking TCP on localhost (in this process, for speed).
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0",
                      protocol="tcp://", host="127.0.0.1") as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        out = tmp_path / "remote"
        run_simulation(SMALL, out, ParallelOptions(scheduler=cluster.scheduler_address, progress=False))
    assert dataset_bytes(out) == dataset_bytes(in_process)


def test_manifest_counts_generated_events_and_events_have_unique_ids(in_process):
    metadata = read_metadata(in_process)
    events = read_dataset(in_process)
    assert len(events) == 60
    assert sorted(events.event_id.tolist()) == list(range(60))
    assert metadata["n_generated"] > 60
    assert metadata["config"]["seed"] == 5 and metadata["detector"]["name"] == "icecube86"


def test_a_failing_chunk_leaves_no_dataset_behind(tmp_path, monkeypatch):
    real = runner.simulate_chunk

    def fail_on_second(config, index):
        if index == 1:
            raise RuntimeError("simulated crash")
        return real(config, index)

    monkeypatch.setattr(runner, "simulate_chunk", fail_on_second)
    out = tmp_path / "crash"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_simulation(SMALL, out, ParallelOptions(workers=0, progress=False))
    assert not out.exists()


def test_map_chunks_returns_results_in_task_order_whatever_finishes_first():
    seen = []
    results = map_chunks(lambda x: x * x, [3, 1, 2], ParallelOptions(workers=2, processes=False, progress=False),
                         on_result=lambda i, r: seen.append(i))
    assert results == [9, 1, 4]
    assert sorted(seen) == [0, 1, 2]


def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_simulate_with_config_file_and_overrides(tmp_path, capsys):
    config = tmp_path / "sim.toml"
    config.write_text('[simulation]\ndetector = "icecube-mini"\nflavors = ["nue"]\ninteractions = ["CC"]\n'
                      "energy_min_gev = 1e3\nenergy_max_gev = 1e4\n")
    out = tmp_path / "cli"
    code, stdout, _ = run_cli(["simulate", "--config", str(config), "--events", "12", "--chunk-events", "6",
                               "--no-noise", "--directions", "upgoing", "--seed", "3", "--out", str(out),
                               "--workers", "0", "--quiet"], capsys)
    assert code == 0 and "wrote 12 events" in stdout
    metadata = read_metadata(out)
    assert metadata["config"]["flavors"] == ["nue"] and metadata["config"]["noise"] is False
    events = read_dataset(out)
    assert not any(events.hits.is_noise.tolist()[0]) and all(d > 0 for d in events.truth.dir_z.tolist())
    code, _, err = run_cli(["simulate", "--config", str(config), "--events", "12", "--out", str(out),
                            "--workers", "0", "--quiet"], capsys)
    assert code == 1 and "--overwrite" in err


@pytest.mark.parametrize("args, message", [
    (["--detector", "icecube87"], "unknown detector 'icecube87'"),
    (["--energy-range", "1e5", "1e3"], "energy range: min"),
    (["--events", "0"], "n_events"),
])
def test_cli_bad_input_is_one_line_error_and_leaves_nothing(args, message, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run_cli(["simulate", *args, "--out", str(out), "--workers", "0", "--quiet"], capsys)
    assert code == 1
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_malformed_geometry_table_names_the_problem(tmp_path, capsys):
    table = tmp_path / "geo.csv"
    table.write_text("sensor_id,x,y\n0,0,0\n1,10,0\n")
    out = tmp_path / "out"
    code, _, err = run_cli(["simulate", "--detector", str(table), "--out", str(out), "--quiet"], capsys)
    assert code == 1 and "no 'z' column" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_unwritable_output_is_one_line_error(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    out = blocker / "dataset"
    code, _, err = run_cli(["simulate", "--detector", "icecube-mini", "--events", "5", "--out", str(out),
                            "--workers", "0", "--quiet"], capsys)
    assert code == 1 and str(out) in err and len(err.strip().splitlines()) == 1
    assert blocker.read_text() == "not a directory"


def test_cli_inspect_prints_expected_events_per_year_for_each_flux(in_process, capsys):
    code, stdout, _ = run_cli(["inspect", str(in_process)], capsys)
    assert code == 0
    truth, metadata = truth_table(read_dataset(in_process)), read_metadata(in_process)
    lines = [line for line in stdout.splitlines() if any(f.name in line for f in flux_models())]
    assert len(lines) == 2 and lines[0].startswith("  events/year")
    for line, flux in zip(lines, flux_models(), strict=True):
        assert line.split()[-1] == flux.name
        assert float(line.split()[-2]) == pytest.approx(expected_events_per_year(truth, metadata, flux), rel=1e-3)
    assert "(triggered nu_mu, nu_mu_bar CC only; no oscillation, no absorption in the Earth)" in stdout
    summary = json.loads(run_cli(["inspect", str(in_process), "--json"], capsys)[1])
    assert set(summary["expected_events_per_year"]) == {f.name for f in flux_models()}
    assert "arXiv:1502.03916" in summary["fluxes"]["honda2014_spl_solmin"]


def test_cli_inspect_and_display(in_process, tmp_path, capsys):
    code, stdout, _ = run_cli(["inspect", str(in_process)], capsys)
    assert code == 0
    assert "icecube86" in stdout and "60 triggered of" in stdout and "nu_mu" in stdout and "hits/event" in stdout
    code, stdout, _ = run_cli(["inspect", str(in_process), "--json"], capsys)
    summary = json.loads(stdout)
    assert summary["events"] == 60 and summary["interactions"] == {"CC": 60}
    image = tmp_path / "event.png"
    code, _, _ = run_cli(["display", str(in_process), "--event", "7", "--out", str(image)], capsys)
    assert code == 0 and image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.stat().st_size > 20_000
    code, _, err = run_cli(["display", str(in_process), "--event", "999", "--out", str(image)], capsys)
    assert code == 1 and "event 999" in err
