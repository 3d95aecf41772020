"""The event-level LineFit features of the graph: the plane-wave fit or the baseline LineFit."""

import numpy as np
import pytest

from nurec.graph.features import GLOBAL_FEATURE_NAMES, FeatureConfig, events_to_graphs
from nurec.methods.registry import build_method
from sim.config import SimulationConfig
from sim.simulate import simulate_events

DIR_COLUMNS = [GLOBAL_FEATURE_NAMES.index(f"linefit_dir_{c}") for c in "xyz"]


@pytest.fixture(scope="module")
def events():
    config = SimulationConfig(detector="icecube86", flavors=("numu",), interactions=("CC",), n_events=40,
                              energy_min_gev=1e4, energy_max_gev=1e5, seed=11)
    return simulate_events(config)[0]


def test_improved_linefit_feature_is_the_linefit_baseline_direction(events):
    graphs = events_to_graphs(events, FeatureConfig(max_nodes=64, time_window_ns=2000.0, linefit="improved"))
    baseline = build_method("linefit").reconstruct(events)
    ok = (baseline["fit_status"] == "ok").to_numpy()
    assert ok.sum() > 30
    expected = baseline[["dir_x", "dir_y", "dir_z"]].to_numpy()[ok]
    np.testing.assert_allclose(graphs.globals[ok][:, DIR_COLUMNS], expected, atol=1e-5)
    assert np.all(graphs.globals[:, GLOBAL_FEATURE_NAMES.index("linefit_speed")] <= 1.0)


def test_improved_linefit_feature_points_closer_to_high_energy_muons_than_plane_wave(events):
    truth = np.stack([events.truth[f].to_numpy() for f in ("dir_x", "dir_y", "dir_z")], axis=1)
    errors = {}
    for kind in ("plane_wave", "improved"):
        glob = events_to_graphs(events, FeatureConfig(max_nodes=64, time_window_ns=2000.0, linefit=kind)).globals
        cosine = np.clip(np.sum(glob[:, DIR_COLUMNS] * truth, axis=1), -1.0, 1.0)
        errors[kind] = np.median(np.degrees(np.arccos(cosine)))
    assert errors["improved"] < errors["plane_wave"]


def test_old_feature_settings_keep_the_plane_wave_linefit():
    config = FeatureConfig.from_dict({"per_sensor": True, "max_nodes": 64})
    assert config.linefit == "plane_wave"


@pytest.mark.parametrize("setting", [{"linefit": "huber"}, {"linefit_medium": "air"}])
def test_unknown_linefit_setting_is_rejected_by_name(setting):
    with pytest.raises(ValueError, match=f"features.{next(iter(setting))}"):
        FeatureConfig.from_dict(setting)
