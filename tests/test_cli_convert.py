"""``nurec convert`` on real files: datasets, reference predictions, event keys, bad input, LineFit."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import awkward as ak
import numpy as np
import pandas as pd
import pytest

from nurec.cli import main
from nurec.geometry import get_geometry
from nurec.io.parquet import read_dataset, read_metadata
from nurec.io.predictions import read_predictions
from nurec.io.sources import EVENT_KEYS_FILE, GEOMETRY_FILE, reference_filename
from nurec.methods.dataset import dataset_detector, reconstruct_chunks
from nurec.methods.registry import available_methods, build_method
from nurec.parallel import ParallelOptions

km3net_testdata = pytest.importorskip("km3net_testdata")
uproot = pytest.importorskip("uproot")
data_path = km3net_testdata.data_path

NUMUCC = data_path("offline/numucc.root")
NUMUCC_DETX = data_path("detx/KM3NeT_-00000001_20171212.detx")
V92 = data_path("offline/KM3NeT_00000049_00011291.mc.gsg_neutrinos.km3sim_sirene_merged.jterbr."
                "jppmuon_jppshower_static.offline.v9.2.sample.root")


@pytest.fixture(scope="module")
def graphnet_tests(graphnet_data):
    return graphnet_data / "tests"


@pytest.fixture(scope="module")
def osc_db(graphnet_tests):
    return next(graphnet_tests.glob("sqlite/oscNext*/*.db"))


@pytest.fixture(scope="module")
def converted(tmp_path_factory, osc_db, graphnet_tests, graphnet_data):
    """Convert each real sample once with the CLI; return {name: dataset dir}."""
    from test_io_kaggle import write_kaggle_layout

    root = tmp_path_factory.mktemp("converted")
    kaggle = root / "kaggle-source"
    kaggle.mkdir()
    write_kaggle_layout(kaggle, osc_db, graphnet_data / "geometry_tables/icecube/icecube86.parquet")
    jobs = {
        "numucc": [NUMUCC, "--from", "km3net-offline", "--detx", NUMUCC_DETX],
        # ~4000 hits per event, mostly 40K noise: LineFit's hit cleaning is quadratic in the
        # number of hits, so the end-to-end fit uses the triggered hits.
        "numucc_triggered": [NUMUCC, "--detx", NUMUCC_DETX, "--triggered-only"],
        "v92": [V92],
        "sqlite": [osc_db, "--from", "graphnet-sqlite", "--pulses", "SRTInIcePulses", "--truth", "truth"],
        "parquet": [graphnet_tests / "parquet/oscNext_genie_level7_v02", "--from", "graphnet-parquet"],
        "kaggle": [kaggle, "--from", "kaggle"],
    }
    out = {}
    for name, args in jobs.items():
        out[name] = root / name
        assert main(["convert", *map(str, args), "--out", str(out[name]), "--quiet"]) == 0
    return out


def test_convert_km3net_writes_dataset_reference_and_event_keys(converted, capsys):
    dataset = converted["numucc"]
    events = read_dataset(dataset)
    assert len(events) == 10
    reference = read_predictions(dataset / reference_filename("km3net-jmuon"))
    assert reference.method.unique().tolist() == ["km3net-jmuon"]
    assert reference.event_id.tolist() == events.event_id.tolist()
    keys = pd.read_parquet(dataset / EVENT_KEYS_FILE)
    raw = uproot.open(NUMUCC)["E"].arrays(["run_id", "frame_index", "trigger_counter"], library="pd")
    assert keys.frame_index.tolist() == raw.frame_index.tolist()
    assert keys.trigger_counter.tolist() == raw.trigger_counter.tolist()
    assert keys.run_id.tolist() == raw.run_id.tolist()
    metadata = read_metadata(dataset)
    assert metadata["source"] == "km3net-offline" and metadata["n_events"] == 10
    assert metadata["detector"]["family"] == "km3net"


def test_convert_km3net_without_detx_keeps_the_files_geometry_and_det_id(converted, tmp_path, capsys):
    raw = uproot.open(V92)["E"].arrays(["det_id", "hits.pmt_id", "hits.dom_id", "hits.pos.x", "hits.pos.y",
                                        "hits.pos.z", "hits.dir.x", "hits.dir.y", "hits.dir.z"], library="ak")
    hits = {name: ak.to_numpy(ak.flatten(raw[f"hits.{name}"])) for name in
            ("pmt_id", "dom_id", "pos.x", "pos.y", "pos.z", "dir.x", "dir.y", "dir.z")}
    # The dataset names its geometry relative to itself, so a moved copy still finds its own.
    moved = tmp_path / "moved"
    shutil.copytree(converted["v92"], moved)
    assert json.loads((moved / "dataset.json").read_text())["metadata"]["detector"]["name"] == GEOMETRY_FILE
    detector = read_metadata(moved)["detector"]
    assert detector["name"] == str((moved / GEOMETRY_FILE).resolve())
    assert detector["det_id"] == 49 == int(raw["det_id"][0]) and detector["from_file"] is True
    assert detector["label"] == "KM3NeT det_id 49" and detector["family"] == "km3net"
    assert detector["n_sensors_seen"] == detector["n_sensors"] == len(np.unique(hits["pmt_id"]))
    geometry = get_geometry(detector["name"])
    assert geometry.hash == detector["hash"] and geometry.medium == "water"
    rows = geometry.sensor_lookup(hits["pmt_id"])  # every hit's PMT, not only a few
    np.testing.assert_allclose(geometry.position[rows], np.column_stack([hits["pos.x"], hits["pos.y"], hits["pos.z"]]),
                               atol=1e-9)
    np.testing.assert_allclose(geometry.direction[rows], np.column_stack([hits["dir.x"], hits["dir.y"], hits["dir.z"]]),
                               atol=1e-9)
    np.testing.assert_array_equal(geometry.module_id[rows], hits["dom_id"])
    # det_id 49 has six detection units ~20 m apart: one string per vertical line, floors by height
    assert len(np.unique(geometry.string_id)) == 6
    for string in np.unique(geometry.module_string):
        on_string = geometry.module_string == string
        assert np.ptp(geometry.module_position[on_string, 0]) < 1.0
        height_order = np.argsort(geometry.module_position[on_string, 2])
        assert geometry.module_floor[on_string][height_order].tolist() == list(range(on_string.sum()))
    # methods get this geometry, in this process and chunk by chunk (workers rebuild it from the name)
    assert dataset_detector(moved).hash == geometry.hash
    provenance = reconstruct_chunks("linefit", moved, tmp_path / "predictions", parallel=ParallelOptions(workers=0, progress=False))
    assert provenance.n_events == 30 and provenance.to_dict()["detector"]["hash"] == geometry.hash
    assert main(["inspect", str(moved)]) == 0
    assert f"detector       {detector['name']} (det_id 49, geometry hash {geometry.hash})" in capsys.readouterr().out


def test_convert_km3net_with_detx_keeps_the_detx_and_records_the_files_det_id(converted):
    detector = read_metadata(converted["numucc"])["detector"]
    assert detector["name"] == str(Path(NUMUCC_DETX).resolve())
    assert detector["det_id"] == int(uproot.open(NUMUCC)["E"]["det_id"].array()[0])
    assert "from_file" not in detector and not (converted["numucc"] / GEOMETRY_FILE).exists()
    assert dataset_detector(converted["numucc"]).hash == get_geometry(NUMUCC_DETX).hash


def test_convert_graphnet_keeps_event_no(converted, osc_db):
    events = read_dataset(converted["sqlite"])
    with sqlite3.connect(osc_db) as connection:
        counts = pd.read_sql_query("SELECT event_no, COUNT(*) n FROM SRTInIcePulses GROUP BY event_no", connection)
    assert events.source.event_no.tolist() == counts.event_no.tolist()
    assert ak.num(events.hits, axis=1).tolist() == counts.n.tolist()
    assert not (converted["sqlite"] / reference_filename("km3net-jmuon")).exists()


def test_convert_empty_km3net_file_gives_an_empty_complete_dataset(tmp_path, capsys):
    assert main(["convert", data_path("offline/empty_events.root"), "--out", str(tmp_path / "empty"), "--quiet"]) == 0
    assert read_metadata(tmp_path / "empty")["n_events"] == 0
    assert len(read_dataset(tmp_path / "empty")) == 0
    assert "converted 0 events" in capsys.readouterr().out


def _truncated_root(tmp_path):
    path = tmp_path / "truncated.root"
    path.write_bytes(open(V92, "rb").read()[:300_000])
    return [str(path)], "truncated.root"


def _sqlite_without_table(tmp_path, osc_db):
    return [str(osc_db), "--pulses", "InIcePulses"], "no table 'InIcePulses'"


def _parquet_missing_column(tmp_path, graphnet_tests):
    copy = tmp_path / "merged"
    shutil.copytree(graphnet_tests / "parquet/oscNext_genie_level7_v02/merged", copy)
    broken = copy / "SRTInIcePulses/SRTInIcePulses_3.parquet"
    pd.read_parquet(broken).drop(columns=["dom_x"]).to_parquet(broken)
    return [str(copy), "--from", "graphnet-parquet"], "SRTInIcePulses_3.parquet: no column 'dom_x'"


def _dom_absent_from_detx(tmp_path):
    return [NUMUCC, "--detx", data_path("detx/km3net_offline.detx")], "is absent from detx file"


@pytest.mark.parametrize("case", ["truncated_root", "sqlite_without_table", "parquet_missing_column",
                                  "dom_absent_from_detx"])
def test_convert_bad_input_is_one_line_exit_1_and_no_output(case, tmp_path, capsys, osc_db, graphnet_tests):
    args, expected = {
        "truncated_root": lambda: _truncated_root(tmp_path),
        "sqlite_without_table": lambda: _sqlite_without_table(tmp_path, osc_db),
        "parquet_missing_column": lambda: _parquet_missing_column(tmp_path, graphnet_tests),
        "dom_absent_from_detx": lambda: _dom_absent_from_detx(tmp_path),
    }[case]()
    out = tmp_path / "out"
    assert main(["convert", *args, "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("nurec convert: error: ") and "\n" not in err and "Traceback" not in err
    assert expected in err
    assert not out.exists()


@pytest.mark.parametrize("name", ["numucc_triggered", "v92", "sqlite", "parquet", "kaggle"])
def test_linefit_runs_end_to_end_on_each_converted_real_sample(name, converted):
    if "linefit" not in {spec.name for spec in available_methods()}:
        pytest.skip("linefit is not registered in nurec.methods.registry yet")
    dataset = converted[name]
    events = read_dataset(dataset)
    method = build_method("linefit", detector=read_metadata(dataset)["detector"]["name"])
    predictions = method.reconstruct(events)
    assert predictions.event_id.tolist() == events.event_id.tolist()
    ok = (predictions.fit_status == "ok").to_numpy()
    assert ok.mean() >= 0.8
    direction = predictions.loc[ok, ["dir_x", "dir_y", "dir_z"]].to_numpy()
    np.testing.assert_allclose(np.linalg.norm(direction, axis=1), 1.0, atol=1e-9)
    if name in ("numucc_triggered", "v92"):  # the reference fit covers the same events, scored the same way
        reference = read_predictions(dataset / reference_filename("km3net-jmuon"))
        assert reference.event_id.tolist() == predictions.event_id.tolist()


def test_convert_refuses_a_non_empty_output_directory_and_leaves_it_alone(tmp_path, capsys, osc_db):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["convert", str(osc_db), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("nurec convert: error: ") and "not empty" in err and "\n" not in err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_inspect_says_noise_is_unknown_for_an_official_file_and_counts_its_trigger_hits(capsys):
    assert main(["inspect", V92]) == 0
    out = capsys.readouterr().out
    assert "noise hits     unknown" in out
    assert "events/year" not in out  # real-data formats carry no OneWeight: no rates
    raw_trig = uproot.open(V92)["E"].arrays(["hits.trig"], library="ak")["hits.trig"]
    share = float(ak.sum(raw_trig != 0) / ak.sum(ak.num(raw_trig)))
    assert f"trigger hits   {100 * share:.1f}%" in out
