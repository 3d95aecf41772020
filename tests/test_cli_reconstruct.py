import numpy as np
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
    assert meta["options"]["detector"] == "icecube-mini"


def test_reconstruct_unknown_method_is_one_line_error(tiny_dataset, tmp_path, capsys):
    code = main(["reconstruct", "--method", "nope", "--data", str(tiny_dataset), "--out", str(tmp_path / "p.parquet")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "unknown method 'nope'" in err and "\n" not in err
    assert not (tmp_path / "p.parquet").exists()


def test_reconstruct_model_option_rejected_for_method_without_model(tiny_dataset, tmp_path, capsys):
    code = main(["reconstruct", "--method", "linefit", "--data", str(tiny_dataset), "--out",
                 str(tmp_path / "p.parquet"), "--model", "x.pt"])
    assert code == 1 and "--model" in capsys.readouterr().err
