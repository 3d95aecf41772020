import pickle
import shutil

import awkward as ak
import numpy as np
import pytest
import torch

from nurec.baselines.artifacts import TRAINED_DIR, ArtifactError, artifact_path, read_card
from nurec.baselines.charge_energy import ChargeEnergy
from nurec.evaluate.metrics import log_energy_ratio, resolution_and_bias
from nurec.methods.contract import DetectorMismatch
from nurec.methods.registry import build_method
from nurec.threads import torch_threads
from sim.config import SimulationConfig
from sim.simulate import simulate_events
from sim.train_baselines import energy_sample_config


@pytest.fixture(scope="module")
def held_out_events():
    """Events like the energy training sample, from a seed the training never used."""
    return simulate_events(energy_sample_config("icecube86", 400, seed=9001))[0]


def test_cnn_beats_total_charge_on_held_out_events(held_out_events):
    true_energy = ak.to_numpy(held_out_events.truth.energy)
    cnn = build_method("cnn-energy").reconstruct(held_out_events)
    charge = build_method("charge-energy").reconstruct(held_out_events)
    cnn_resolution, cnn_bias = resolution_and_bias(log_energy_ratio(cnn.energy, true_energy))
    charge_resolution, _ = resolution_and_bias(log_energy_ratio(charge.energy, true_energy))
    assert cnn_resolution < charge_resolution, (cnn_resolution, charge_resolution)
    assert abs(cnn_bias) < 0.2


def test_charge_energy_fit_save_load_predicts_the_same(held_out_events, tmp_path):
    estimator = ChargeEnergy(trained=False).fit(held_out_events)
    path = estimator.save(tmp_path / "calibration.json")
    loaded = build_method("charge-energy", model=path)
    first, _ = estimator.predict_log10_energy(held_out_events)
    np.testing.assert_allclose(loaded.predict_log10_energy(held_out_events)[0], first)
    true_log10 = np.log10(ak.to_numpy(held_out_events.truth.energy))
    # Fitted on these events: unbiased on them; NC and through-going muons limit the correlation.
    assert abs(np.median(first - true_log10)) < 0.1
    assert np.corrcoef(first, true_log10)[0, 1] > 0.3


def test_shipped_artifacts_are_small_and_cnn_loads_weights_only():
    card = read_card()
    assert "sim.train_baselines" in card["command"]
    for name, entry in card["files"].items():
        assert (TRAINED_DIR / entry["file"]).stat().st_size < 5_000_000, name
    state = torch.load(artifact_path("cnn_energy"), weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_tampered_artifact_is_refused(tmp_path):
    copy = tmp_path / "trained"
    shutil.copytree(TRAINED_DIR, copy)
    with open(copy / read_card(copy)["files"]["bdt_uncertainty"]["file"], "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ArtifactError, match="sha256"):
        build_method("bdt-uncertainty", model=copy / "bdt_uncertainty.npz")


@pytest.mark.parametrize("name", ["gnn", "cnn-energy", "charge-energy", "bdt-uncertainty"])
def test_trained_methods_refuse_other_detectors(name):
    with pytest.raises(DetectorMismatch) as refused:
        build_method(name, detector="orca6")
    message = str(refused.value)
    assert "\n" not in message
    assert "icecube86" in message and "orca6" in message
    assert "--detector orca6" in message  # the command that trains one for the new detector
    restored = pickle.loads(pickle.dumps(refused.value))  # crosses worker processes intact
    assert str(restored) == message


def test_cascade_fit_recovers_deposited_energy():
    config = SimulationConfig(detector="icecube86", flavors=("nue",), interactions=("CC",), n_events=8, seed=44)
    events, _ = simulate_events(config)
    predictions = build_method("cascade-likelihood", n_jobs=2, n_directions=1).reconstruct(events)
    ratio = log_energy_ratio(predictions.energy, ak.to_numpy(events.truth.visible_energy))
    assert (predictions.fit_status == "ok").all()
    assert abs(np.median(ratio)) < 0.15


def test_reconstructing_leaves_the_torch_thread_count_as_it_was():
    events, _ = simulate_events(SimulationConfig(detector="icecube86", n_events=4, seed=5))
    with torch_threads(3):
        build_method("cnn-energy", detector="icecube86").reconstruct(events)
        build_method("cnn-energy", detector="icecube86", threads=1).reconstruct(events)
        build_method("gnn", detector="icecube86", threads=1).reconstruct(events)
        assert torch.get_num_threads() == 3


def test_cascade_fit_finds_the_direction_of_bright_contained_cascades():
    """The forward-backward asymmetry of cascade light (photon tables) gives the direction back."""
    from nurec.baselines.common import truth_directions
    from nurec.evaluate.metrics import angular_distance_deg
    from nurec.geometry import get_geometry

    config = SimulationConfig(detector="icecube86", flavors=("nue",), interactions=("CC",), n_events=40, seed=779,
                              energy_min_gev=2e5, energy_max_gev=1e6, spectral_index=1.0)
    events, _ = simulate_events(config)
    vertex = np.column_stack([ak.to_numpy(events.truth[f"vertex_{c}"]) for c in "xyz"])
    bright = get_geometry("icecube86").contains(vertex) & (ak.to_numpy(ak.num(events.hits, axis=1)) > 1500)
    events = events[np.flatnonzero(bright)[:3]]
    assert len(events) == 3
    predictions = build_method("cascade-likelihood", n_jobs=2).reconstruct(events)
    error = angular_distance_deg(predictions[["dir_x", "dir_y", "dir_z"]].to_numpy(), truth_directions(events))
    assert np.median(error) < 15.0, error
