"""Seed-frame node features: positions in the LineFit frame, Cherenkov residuals, rotation back."""

import numpy as np
import pytest
import torch

from nurec.graph.features import (
    GLOBAL_FEATURE_NAMES,
    SEED_FRAME_NAMES,
    FeatureConfig,
    _seed_residuals,
    events_to_graphs,
    seed_frame_axes,
)
from nurec.models.network import GraphNetwork, ModelSpec
from nurec.physics.medium import ICE
from nurec.physics.timing import track_geometry
from sim.config import SimulationConfig
from sim.simulate import simulate_events

SETTINGS = {"max_nodes": 64, "time_window_ns": 2000.0, "linefit": "improved"}


@pytest.fixture(scope="module")
def tracks():
    config = SimulationConfig(detector="icecube86", flavors=("numu",), interactions=("CC",), n_events=12,
                              energy_min_gev=1e4, energy_max_gev=1e5, seed=4)
    return simulate_events(config)[0]


def test_seed_frame_axes_are_right_handed_with_the_direction_as_third_axis():
    rng = np.random.default_rng(3)
    directions = rng.normal(size=(50, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    directions[0] = [0.0, 0.0, -1.0]  # vertical: the other reference axis
    axes = seed_frame_axes(np.vstack([directions, np.zeros((1, 3))]))
    np.testing.assert_allclose(axes[:-1, 2], directions, atol=1e-12)
    np.testing.assert_allclose(np.einsum("nij,nkj->nik", axes, axes), np.broadcast_to(np.eye(3), axes.shape),
                               atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(axes), 1.0, atol=1e-12)
    np.testing.assert_array_equal(axes[-1], np.eye(3))  # no LineFit: the detector frame


def test_direct_light_from_the_seed_track_has_zero_time_residual():
    rng = np.random.default_rng(5)
    direction = np.array([0.6, 0.0, -0.8])
    rel = rng.uniform(-300, 300, size=(40, 3))
    t_direct = track_geometry(rel, np.zeros(3), direction, ICE)["delay_ns"] + 1234.5  # any time offset
    scattered = t_direct + np.where(np.arange(40) == 7, 50.0, 0.0)
    residual, perpendicular = _seed_residuals(rel, scattered, np.broadcast_to(direction, rel.shape),
                                              np.ones(40), np.zeros(40, dtype=np.int64), 1, "ice")
    others = np.arange(40) != 7
    np.testing.assert_allclose(residual[others], residual[others][0], atol=1e-6)
    assert residual[7] - residual[0] == pytest.approx(50.0)
    along = rel @ direction
    np.testing.assert_allclose(perpendicular, np.linalg.norm(rel - along[:, None] * direction, axis=1))


def test_seed_frame_keeps_space_time_distances_and_adds_features(tracks):
    detector = events_to_graphs(tracks, FeatureConfig(**SETTINGS))
    seed = events_to_graphs(tracks, FeatureConfig(**SETTINGS, frame="seed", seed_residuals=True))
    assert seed.nodes.shape[1] == detector.nodes.shape[1] + 2
    assert seed.globals.shape[1] == len(GLOBAL_FEATURE_NAMES) + len(SEED_FRAME_NAMES)
    np.testing.assert_array_equal(seed.counts, detector.counts)
    start, stop = 0, int(detector.counts[0])
    pairwise = [np.linalg.norm(g.nodes[start:stop, None, :3] - g.nodes[None, start:stop, :3], axis=-1)
                for g in (detector, seed)]
    np.testing.assert_allclose(pairwise[0], pairwise[1], atol=1e-2)  # a rotation: same kNN graph
    assert np.all(np.isfinite(seed.nodes))


def test_seed_frame_model_tilts_the_seed_and_rotates_back_to_detector_coordinates():
    spec = ModelSpec(network={"conv_dims": [8], "post_dims": [8], "readout_dims": [8]},
                     features=FeatureConfig(max_nodes=16, frame="seed"))
    network = GraphNetwork(spec)
    names = spec.features.global_feature_names
    torch.nn.init.zeros_(network.backbone.head.weight)
    with torch.no_grad():  # u = tan(20°/2): 20 degrees towards e1 of the seed frame; log kappa 3
        network.backbone.head.bias.copy_(torch.tensor([np.tan(np.radians(10.0)), 0.0, 3.0, 0.0, 0.0]))
    seed = np.array([[0.0, 0.6, 0.8], [1.0, 0.0, 0.0]])
    axes = seed_frame_axes(seed)
    glob = torch.zeros(2, len(names))
    glob[:, [names.index(f"linefit_dir_{c}") for c in "xyz"]] = torch.tensor(seed, dtype=torch.float32)
    glob[:, [names.index(n) for n in SEED_FRAME_NAMES]] = torch.tensor(axes.reshape(2, 9), dtype=torch.float32)
    out = network(torch.randn(5, len(spec.features.feature_names)), torch.tensor([3, 2]), glob)
    assert out.shape == (2, 5)
    tilt = np.radians(20.0)
    expected = np.exp(3.0) * (np.cos(tilt) * seed + np.sin(tilt) * axes[:, 0])
    np.testing.assert_allclose(out[:, :3].detach().numpy(), expected, rtol=1e-5)


def test_unknown_frame_is_rejected_by_name():
    with pytest.raises(ValueError, match="features.frame"):
        FeatureConfig.from_dict({"frame": "galactic"})


def test_detector_coordinates_restore_the_rotated_positions(tracks):
    detector = events_to_graphs(tracks, FeatureConfig(**SETTINGS))
    features = FeatureConfig(**SETTINGS, frame="seed", detector_coordinates=True)
    seed = events_to_graphs(tracks, features)
    columns = [features.feature_names.index(f"detector_{c}") for c in "xyz"]
    np.testing.assert_allclose(seed.nodes[:, columns], detector.nodes[:, :3], atol=1e-3)
    with pytest.raises(ValueError, match="features.detector_coordinates"):
        FeatureConfig.from_dict({"detector_coordinates": True})
