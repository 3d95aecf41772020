"""`nurec evaluate` on a dataset directory and prediction files."""

import json

import numpy as np

from nurec.cli import main
from nurec.cli.evaluate import TERMINAL_LABELS, format_table
from nurec.evaluate.fluxes import flux_names
from nurec.evaluate.truth import truth_table
from nurec.io.parquet import write_dataset
from nurec.io.predictions import write_predictions
from nurec.io.schema import empty_predictions, finish_predictions
from nurec.methods.run import Provenance
from sim.config import SimulationConfig
from sim.simulate import simulate_events


def test_evaluate_cli_reports_prediction_files_against_a_dataset(tmp_path, capsys):
    events, metadata = simulate_events(SimulationConfig(detector="icecube86", n_events=50, seed=9))
    write_dataset(tmp_path / "data", events, metadata)
    truth = truth_table(events)
    table = empty_predictions(truth["event_id"].to_numpy(), "copy")
    table[["dir_x", "dir_y", "dir_z"]] = truth[["dir_x", "dir_y", "dir_z"]].to_numpy()
    table.loc[0, ["dir_x", "dir_y", "dir_z"]] = np.nan
    table.loc[0, "fit_status"] = "failed: all hits at one time"
    provenance = Provenance("copy", "2", {"name": "icecube86", "hash": ""}, n_events=123, wall_s=0.5, cpu_s=1.0)
    write_predictions(finish_predictions(table), tmp_path / "copy.parquet", provenance.to_dict())
    rc = main(["evaluate", "--data", str(tmp_path / "data"), "--predictions", str(tmp_path / "copy.parquet"),
               "--out", str(tmp_path / "report"), "--bootstrap", "100"])
    assert rc == 0
    out = capsys.readouterr().out
    # plain-text summary table (no terminal library): header, dashes, one row per method
    lines = out.splitlines()
    start = lines.index("Reconstruction quality summary (see the report for definitions)")
    header, dashes, row = lines[start + 1:start + 4]
    assert header.split("  ")[0] == "Method" and header.endswith(TERMINAL_LABELS[-1])
    assert row.startswith("copy ") and " 1 of 50 " in row and row.endswith("123")
    gaps = [i for i, c in enumerate(dashes) if c == " "]
    assert len(dashes.split()) == len(TERMINAL_LABELS)
    assert all(line[i] == " " for line in (header, row) for i in gaps if i < len(line))  # columns line up
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    method = metrics["methods"]["copy"]
    assert method["version"] == "2" and metrics["timing"]["copy"]["events_per_s_per_core"] == 123.0
    assert method["counts"]["failure_reasons"] == {"all hits at one time": 1}
    assert method["direction"]["all"]["median"] < 1e-5  # the true direction, recovered
    assert metrics["dataset"]["seed"] == 9 and metrics["dataset"]["n_events"] == 50
    assert [f["flux"] for f in metrics["weighted_metrics"]["fluxes"]] == flux_names()
    # The muon's direction as the truth: the neutrino's direction is now off by the kinematic angle.
    rc = main(["evaluate", "--data", str(tmp_path / "data"), "--predictions", str(tmp_path / "copy.parquet"),
               "--out", str(tmp_path / "muon"), "--bootstrap", "100", "--direction-reference", "muon",
               "--fluxes", "none"])
    assert rc == 0
    metrics = json.loads((tmp_path / "muon" / "metrics.json").read_text())
    assert metrics["references"]["direction"].startswith("the muon's initial direction")
    assert metrics["methods"]["copy"]["direction"]["track"]["median"] > 0.01
    assert metrics["weighted_metrics"] == {"available": False, "reason": "no flux chosen"}


def test_evaluate_cli_names_a_missing_predictions_file(tmp_path, capsys):
    events, metadata = simulate_events(SimulationConfig(detector="icecube86", n_events=10, seed=9))
    write_dataset(tmp_path / "data", events, metadata)
    rc = main(["evaluate", "--data", str(tmp_path / "data"), "--predictions", str(tmp_path / "nope.parquet"),
               "--out", str(tmp_path / "report")])
    assert rc == 1
    assert "nope.parquet: no such predictions file" in capsys.readouterr().err


def test_format_table_aligns_text_left_and_numbers_right():
    text = format_table(["Method", "Events"], [["copy", "5"], ["likelihood", "1,234"]])
    assert text.splitlines() == [
        "Method      Events",
        "----------  ------",
        "copy             5",
        "likelihood   1,234",
    ]


def test_evaluate_cli_refuses_a_method_trained_for_another_detector(tmp_path, capsys):
    events, metadata = simulate_events(SimulationConfig(detector="orca6", n_events=5, seed=9))
    write_dataset(tmp_path / "data", events, metadata)
    rc = main(["evaluate", "--data", str(tmp_path / "data"), "--methods", "gnn", "--out", str(tmp_path / "report")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 1 and err.startswith("nurec evaluate: error: method 'gnn'")
    assert "icecube86" in err and "orca6" in err and "nurec train" in err
    assert not (tmp_path / "report" / "metrics.json").exists()


def test_evaluate_cli_refuses_a_predictions_file_of_unknown_type_before_reading_events(tmp_path, capsys):
    table = tmp_path / "linefit.txt"
    table.write_text("event_id\n1\n")
    rc = main(["evaluate", "--data", str(tmp_path / "no-data"), "--predictions", str(table),
               "--out", str(tmp_path / "report")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "\n" not in err
    assert "linefit.txt" in err and ".parquet, .pq, .csv" in err
    assert not (tmp_path / "report").exists()
