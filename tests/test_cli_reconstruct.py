import numpy as np
import pandas as pd
import pytest

from nurec.cli import main
from nurec.io.predictions import read_predictions, read_predictions_metadata


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "mini"
    assert main(["simulate", "--detector", "icecube-mini", "--events", "8", "--seed", "3", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("method,extra", [("linefit", []), ("likelihood", ["--jobs", "2"])])
def test_reconstruct_writes_predictions_with_provenance(tiny_dataset, tmp_path, method, extra, capsys):
    out = tmp_path / "predictions.parquet"
    code = main(["reconstruct", "--method", method, "--data", str(tiny_dataset), "--out", str(out),
                 "--quiet", *extra])
    assert code == 0
    assert f"{method}: 8 events" in capsys.readouterr().out
    table = read_predictions(out)
    assert table.event_id.tolist() == list(range(8))
    assert (table.fit_status == "ok").all()
    np.testing.assert_allclose(np.linalg.norm(table[["dir_x", "dir_y", "dir_z"]].to_numpy(), axis=1), 1.0)
    meta = read_predictions_metadata(out)
    assert meta["method"] == method and meta["n_events"] == 8 and meta["wall_s"] > 0
    assert meta["schema"] == "nurec.provenance/1"
    assert meta["detector"]["name"] == "icecube-mini" and meta["detector"]["hash"]


def test_reconstruct_unknown_method_is_one_line_error(tiny_dataset, tmp_path, capsys):
    code = main(["reconstruct", "--method", "nope", "--data", str(tiny_dataset), "--out", str(tmp_path / "p.parquet")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "unknown method 'nope'" in err and "\n" not in err
    assert not (tmp_path / "p.parquet").exists()


def test_reconstruct_model_option_rejected_for_method_without_model(tiny_dataset, tmp_path, capsys):
    code = main(["reconstruct", "--method", "linefit", "--data", str(tiny_dataset), "--out",
                 str(tmp_path / "p.parquet"), "--model", "x.pt"])
    assert code == 1 and "--model" in capsys.readouterr().err


def test_reconstruct_refuses_a_trained_method_on_another_detector(tmp_path, capsys):
    orca = tmp_path / "orca"
    assert main(["simulate", "--detector", "orca6", "--events", "3", "--seed", "3", "--out", str(orca)]) == 0
    capsys.readouterr()
    code = main(["reconstruct", "--method", "gnn", "--data", str(orca), "--out", str(tmp_path / "p.parquet")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err
    assert err.startswith("nurec reconstruct: error: method 'gnn'") and "icecube86" in err and "orca6" in err
    assert "nurec train" in err  # how to train one for orca6
    assert not (tmp_path / "p.parquet").exists()


def test_reconstruct_on_a_dask_cluster_equals_in_process(tmp_path):
    from dask.distributed import LocalCluster

    from nurec.io.parquet import write_dataset
    from nurec.io.predictions import read_predictions_manifest
    from sim.config import SimulationConfig
    from sim.simulate import simulate_events

    events, metadata = simulate_events(SimulationConfig(detector="orca6", n_events=12, seed=4))
    data = write_dataset(tmp_path / "data", events, metadata, chunk_events=5)
    assert main(["reconstruct", "--method", "linefit", "--data", str(data), "--out", str(tmp_path / "one.parquet"),
                 "--quiet"]) == 0
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        assert main(["reconstruct", "--method", "linefit", "--data", str(data), "--out", str(tmp_path / "parts"),
                     "--scheduler", cluster.scheduler_address, "--quiet"]) == 0
    in_process = read_predictions(tmp_path / "one.parquet")
    on_cluster = read_predictions(tmp_path / "parts")
    assert sorted(p.name for p in (tmp_path / "parts").glob("part-*.parquet")) == [
        "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    pd.testing.assert_frame_equal(on_cluster, in_process)
    provenance = read_predictions_manifest(tmp_path / "parts")["provenance"]
    assert provenance["n_events"] == 12 and provenance["detector"]["name"] == "orca6"


def test_max_events_reconstructs_only_the_first_n_and_says_so(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "first.parquet"
    assert main(["reconstruct", "--method", "linefit", "--data", str(tiny_dataset), "--out", str(out),
                 "--max-events", "5", "--quiet"]) == 0
    assert "linefit: the first 5 of 8 events (--max-events)" in capsys.readouterr().out
    assert read_predictions(out).event_id.tolist() == [0, 1, 2, 3, 4]
    meta = read_predictions_metadata(out)
    assert meta["n_events"] == 5 and meta["subsample"] and meta["extra"]["max_events"] == 5


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_max_events_must_be_a_positive_count(tiny_dataset, tmp_path, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["reconstruct", "--method", "linefit", "--data", str(tiny_dataset), "--out",
              str(tmp_path / "p.parquet"), "--max-events", value])
    assert exit_.value.code == 2 and "--max-events" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["p.pq", "p.CSV"])
def test_out_parquet_or_csv_by_suffix(tiny_dataset, tmp_path, name):
    out = tmp_path / name
    assert main(["reconstruct", "--method", "linefit", "--data", str(tiny_dataset), "--out", str(out),
                 "--quiet"]) == 0
    assert read_predictions(out).event_id.tolist() == list(range(8))
    is_csv = out.read_bytes().startswith(b"event_id,")
    assert is_csv == (name == "p.CSV")


@pytest.mark.parametrize("extra", [[], ["--max-events", "3"]])
def test_unknown_out_suffix_is_refused_before_any_work(tmp_path, extra, capsys):
    # the data does not exist and the method is the torch one: the suffix is what gets refused
    code = main(["reconstruct", "--method", "gnn", "--data", str(tmp_path / "missing"), "--out",
                 str(tmp_path / "p.txt"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err
    assert err.startswith("nurec reconstruct: error: ") and "p.txt" in err
    assert ".parquet, .pq, .csv" in err
    assert not (tmp_path / "p.txt").exists()


def test_a_prediction_file_is_refused_as_the_dask_output_directory(tiny_dataset, tmp_path, capsys):
    code = main(["reconstruct", "--method", "linefit", "--data", str(tiny_dataset), "--out",
                 str(tmp_path / "p.parquet"), "--workers", "1"])
    assert code == 1 and "directory" in capsys.readouterr().err
    assert not (tmp_path / "p.parquet").exists()


def test_help_lists_the_registered_methods_and_the_defaults(monkeypatch, capsys):
    from nurec.methods import registry

    monkeypatch.setitem(registry._METHODS, "made-up-fit",
                        registry.MethodSpec("made-up-fit", "nowhere:nothing", "a method registered by this test"))
    with pytest.raises(SystemExit):
        main(["reconstruct", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # help wraps lines
    for spec in registry.available_methods():
        assert spec.name in text
    assert "made-up-fit: a method registered by this test" in text  # from the registry, not a fixed list
    assert "events per method call at most (default: 256)" in text
    assert "(default: all)" in text  # --max-events
