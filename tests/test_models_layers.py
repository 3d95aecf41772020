"""The factorised EdgeConv against a plain per-edge MLP on [x_i, x_j - x_i]."""

import pytest
import torch
from torch import nn

from nurec.graph.knn import knn_neighbors
from nurec.models.layers import FactorizedEdgeConv, complete_neighbors, graph_pool, to_dense


def reference_edgeconv(conv: FactorizedEdgeConv, x: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
    """Return max_j MLP([x_i, x_j - x_i]) with the MLP rebuilt from the factorised weights, edge by edge."""
    w_b = conv.lin_neighbor.weight
    w_a = conv.lin_self.weight + w_b
    first = nn.Linear(2 * x.shape[1], w_a.shape[0])
    first.weight.data = torch.cat([w_a, w_b], dim=1)
    first.bias.data = conv.lin_self.bias.data
    act = nn.LeakyReLU()
    out = []
    for i in range(x.shape[0]):
        js = [j for j in neighbors[i].tolist() if j >= 0] or [i]
        messages = []
        for j in js:
            h = act(first(torch.cat([x[i], x[j] - x[i]])))
            if conv.lin_edge is not None:
                h = act(conv.lin_edge(h))
            messages.append(h)
        out.append(torch.stack(messages).max(dim=0).values)
    return torch.stack(out)


@pytest.mark.parametrize("edge_layers", [1, 2])
@pytest.mark.parametrize("grad", [True, False])
def test_factorized_edgeconv_equals_edge_mlp_on_concatenated_features(edge_layers, grad):
    torch.manual_seed(0)
    counts = torch.tensor([1, 3, 12])
    x = torch.randn(int(counts.sum()), 5)
    neighbors = knn_neighbors(x, counts, k=4)
    conv = FactorizedEdgeConv(5, 7, edge_layers)
    with torch.set_grad_enabled(grad):
        fast = conv(x, complete_neighbors(neighbors))
    with torch.no_grad():
        slow = reference_edgeconv(conv, x, neighbors)
    assert torch.allclose(fast, slow, atol=1e-5)


def test_graph_pool_and_dense_padding_follow_graph_boundaries():
    h = torch.tensor([[1.0], [2.0], [3.0], [10.0]])
    counts = torch.tensor([3, 1])
    pooled = graph_pool(h, counts, ("min", "max", "mean", "sum"))
    assert pooled.tolist() == [[1.0, 3.0, 2.0, 6.0], [10.0, 10.0, 10.0, 10.0]]
    dense, padding = to_dense(h, counts)
    assert dense[:, :, 0].tolist() == [[1.0, 2.0, 3.0], [10.0, 0.0, 0.0]]
    assert padding.tolist() == [[False, False, False], [False, True, True]]


def test_linefit_seed_starts_the_direction_at_the_plane_wave_fit():
    from nurec.graph.features import GLOBAL_FEATURE_NAMES, FeatureConfig
    from nurec.models.network import GraphNetwork, ModelSpec

    spec = ModelSpec(network={"conv_dims": [8], "post_dims": [8], "readout_dims": [8]},
                     features=FeatureConfig(max_nodes=16), linefit_seed=True)
    network = GraphNetwork(spec)
    torch.nn.init.zeros_(network.backbone.head.weight)
    torch.nn.init.zeros_(network.backbone.head.bias)
    counts = torch.tensor([3, 2])
    glob = torch.zeros(2, len(GLOBAL_FEATURE_NAMES))
    seed = torch.tensor([[0.0, 0.6, 0.8], [1.0, 0.0, 0.0]])
    glob[:, GLOBAL_FEATURE_NAMES.index("linefit_dir_x"):GLOBAL_FEATURE_NAMES.index("linefit_dir_z") + 1] = seed
    out = network(torch.randn(5, len(spec.features.feature_names)), counts, glob)
    assert torch.allclose(out[:, :3], network.seed_kappa * seed)
