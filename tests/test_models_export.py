"""Exported (TorchScript-frozen) static parts give the eager network's outputs."""

import numpy as np
import pytest
import torch

from nurec.graph.features import FeatureConfig, events_to_graphs
from nurec.models.export import export_static_parts
from nurec.models.network import GraphNetwork, ModelSpec
from nurec.models.reconstruct import load_gnn, predict_outputs
from sim.config import SimulationConfig
from sim.simulate import simulate_events


@pytest.fixture(scope="module")
def events():
    config = SimulationConfig(detector="icecube86", flavors=("numu", "nue"), interactions=("CC", "NC"),
                              n_events=60, energy_min_gev=1e2, energy_max_gev=1e5, seed=21)
    return simulate_events(config)[0]


@pytest.mark.parametrize("architecture", ["dynedge", "edgeformer"])
def test_exported_network_matches_eager_to_1e_5(events, architecture):
    torch.manual_seed(1)
    network = {"dynedge": {"conv_dims": [16, 16], "post_dims": [32], "readout_dims": [32]},
               "edgeformer": {"conv_dims": [16], "d_model": 16, "n_heads": 2, "n_layers": 1,
                              "readout_dims": [16]}}[architecture]
    spec = ModelSpec(architecture=architecture, network=network, features=FeatureConfig(max_nodes=48, frame="seed"),
                     linefit_seed=True)
    eager = GraphNetwork(spec)
    graphs = events_to_graphs(events, spec.features)
    eager.set_statistics(graphs)
    eager.eval()
    exported = export_static_parts(eager)
    assert any(isinstance(m, torch.jit.ScriptModule) for m in exported.modules())
    np.testing.assert_allclose(predict_outputs(exported, graphs, 17), predict_outputs(eager, graphs, 17),
                               rtol=1e-5, atol=1e-5)


def test_bundled_model_exported_and_eager_predictions_agree(events):
    exported = load_gnn("default", export=True).reconstruct(events)
    eager = load_gnn("default").reconstruct(events)
    numeric = ["dir_x", "dir_y", "dir_z", "energy", "angular_uncertainty_deg", "p_track"]
    np.testing.assert_allclose(exported[numeric].to_numpy(), eager[numeric].to_numpy(), rtol=1e-5, atol=1e-5)
