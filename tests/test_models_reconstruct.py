"""The GNN inference API: model files, failed rows for bad events, the registry, the bundled model."""

import subprocess
import sys

import awkward as ak
import numpy as np
import pytest
import torch

from nurec.geometry import get_geometry
from nurec.graph.features import FeatureConfig, events_to_graphs
from nurec.io.schema import PREDICTION_COLUMNS
from nurec.methods.contract import DetectorMismatch, trained_for_record
from nurec.methods.registry import build_method
from nurec.models.network import GraphNetwork, ModelSpec
from nurec.models.reconstruct import DEFAULT_MODEL_FILE, load_gnn
from nurec.models.serialize import save_model
from sim.config import SimulationConfig
from sim.simulate import simulate_events

SMALL = {"conv_dims": [16, 16], "post_dims": [32], "readout_dims": [32]}


@pytest.fixture(scope="module")
def events():
    config = SimulationConfig(detector="icecube86", flavors=("numu", "nue"), interactions=("CC",), n_events=40,
                              energy_min_gev=1e3, energy_max_gev=1e5, seed=11)
    return simulate_events(config)[0]


@pytest.fixture(scope="module")
def model_file(events, tmp_path_factory):
    torch.manual_seed(0)
    spec = ModelSpec(network=SMALL, features=FeatureConfig(max_nodes=64))
    network = GraphNetwork(spec)
    network.set_statistics(events_to_graphs(events, spec.features))
    network.kappa_scale.fill_(0.7)
    trained_for = trained_for_record(get_geometry("icecube86"), (1e3, 1e5))
    return save_model(network, tmp_path_factory.mktemp("model") / "model.pt", {"name": "tiny", "trained_for": trained_for})


def test_predictions_follow_the_prediction_schema(events, model_file):
    table = load_gnn(model_file).reconstruct(events)
    assert list(table.columns[: len(PREDICTION_COLUMNS)]) == list(PREDICTION_COLUMNS)
    assert (table["method"] == "gnn").all() and (table["fit_status"] == "ok").all()
    assert np.allclose(np.linalg.norm(table[["dir_x", "dir_y", "dir_z"]].to_numpy(), axis=1), 1.0)
    assert np.all((table["p_track"] > 0) & (table["p_track"] < 1))
    assert np.all((table["angular_uncertainty_deg"] > 0) & (table["angular_uncertainty_deg"] <= 180))
    assert np.all(table["energy"] > 0)
    assert table["event_id"].tolist() == ak.to_list(events.event_id)


def test_saved_and_reloaded_model_gives_identical_predictions(events, model_file, tmp_path):
    first = load_gnn(model_file)
    copy = save_model(first.network, tmp_path / "copy.pt", first.metadata)
    a = first.reconstruct(events)
    b = load_gnn(copy).reconstruct(events)
    numeric = [c for c in a.columns if a[c].dtype.kind == "f"]
    assert np.array_equal(a[numeric].to_numpy(), b[numeric].to_numpy())


def test_model_file_loads_with_weights_only(model_file):
    payload = torch.load(model_file, weights_only=True)
    assert payload["format"] == "nurec-gnn" and isinstance(payload["spec_json"], str)


def test_batch_size_does_not_change_predictions(events, model_file):
    a = load_gnn(model_file, batch_size=7).reconstruct(events)
    b = load_gnn(model_file, batch_size=512).reconstruct(events)
    assert np.allclose(a["dir_x"], b["dir_x"], atol=1e-5) and np.allclose(a["energy"], b["energy"], rtol=1e-5)


def test_events_without_hits_or_with_nan_fail_alone(events, model_file):
    hits = events.hits
    empty = ak.with_field(events[:1], hits[:1][:, :0], "hits")
    t = ak.to_numpy(ak.flatten(hits[1:2].t)).copy()
    t[0] = np.nan
    nan_hits = ak.with_field(hits[1:2], ak.unflatten(t, ak.num(hits[1:2])), "t")
    with_nan = ak.with_field(events[1:2], nan_hits, "hits")
    batch = ak.concatenate([empty, with_nan, events[2:6]])
    table = load_gnn(model_file).reconstruct(batch)
    assert table["fit_status"].iloc[0].startswith("failed: hits")
    assert table["fit_status"].iloc[1] == "failed: hits.t: non-finite value"
    assert table.iloc[:2][["dir_x", "energy", "angular_uncertainty_deg", "p_track"]].isna().all().all()
    assert (table["fit_status"].iloc[2:] == "ok").all()
    good = load_gnn(model_file).reconstruct(events[2:6])
    assert np.allclose(table["dir_z"].iloc[2:].to_numpy(), good["dir_z"].to_numpy(), atol=1e-6)


def test_registry_builds_gnn_from_a_model_path(events, model_file):
    method = build_method("gnn", model=str(model_file), detector="icecube86")
    assert method.name == "gnn" and method.version.startswith("tiny-")
    assert len(method.reconstruct(events[:3])) == 3
    info = method.describe()
    assert info.trained and [d.name for d in info.detectors] == ["icecube86"]
    assert info.energy_range_gev == (1e3, 1e5)


def test_model_without_a_training_record_refuses_every_detector(events, tmp_path):
    network = GraphNetwork(ModelSpec(network=SMALL, features=FeatureConfig(max_nodes=64)))
    network.set_statistics(events_to_graphs(events, network.spec.features))
    path = save_model(network, tmp_path / "anonymous.pt", {"name": "anonymous"})
    with pytest.raises(DetectorMismatch, match="trained for no recorded detector, not icecube86"):
        build_method("gnn", model=str(path), detector="icecube86")


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model file"):
        load_gnn(tmp_path / "nope.pt")


def test_importing_nurec_does_not_import_torch():
    code = "import sys, nurec; assert callable(nurec.load_model); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_bundled_default_model_loads_and_predicts(events):
    import nurec

    model = nurec.load_model("default")
    table = model.reconstruct(events[:8])
    assert (table["fit_status"] == "ok").all()
    assert table[["dir_x", "energy", "angular_uncertainty_deg", "p_track"]].notna().all().all()
    assert DEFAULT_MODEL_FILE.stat().st_size <= 20 * 2**20
