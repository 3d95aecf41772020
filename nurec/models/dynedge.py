"""DynEdge-style GNN (IceCube, JINST 17 P11003): EdgeConv layers with kNN rebuilt in latent space.

Layer 1 finds neighbours in standardised space-time (x, y, z, t); every later layer in the
features of the layer before. The input and all layer outputs are concatenated (skip
connections), passed through a per-node MLP, pooled over each graph (min/max/mean/sum),
joined with event-level features (hit counts, total charge) and read out by an MLP.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from nurec.graph.features import SPACE_TIME_COLUMNS
from nurec.graph.knn import knn_neighbors
from nurec.models.layers import POOLINGS, FactorizedEdgeConv, complete_neighbors, graph_pool, mlp


@dataclass(frozen=True)
class DynEdgeConfig:
    """Sizes of a DynEdge model; the defaults are the small CPU-friendly model."""

    k: int = 8
    conv_dims: tuple[int, ...] = (64, 64, 64)
    edge_layers: int = 2
    post_dims: tuple[int, ...] = (128,)
    readout_dims: tuple[int, ...] = (128, 64)
    poolings: tuple[str, ...] = POOLINGS
    knn_group_size: int = 32

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as JSON-able data."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DynEdgeConfig:
        """Build from a mapping; unknown keys are an error."""
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"model: unknown DynEdge setting '{sorted(unknown)[0]}'")
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        for name in data.get("poolings", ()):
            if name not in POOLINGS:
                raise ValueError(f"model.poolings: unknown pooling '{name}' (use {', '.join(POOLINGS)})")
        return cls(**data)


class DynEdge(nn.Module):
    """Map standardised node and event features to ``n_outputs`` numbers per event."""

    def __init__(self, config: DynEdgeConfig, n_node_features: int, n_global_features: int, n_outputs: int):
        super().__init__()
        self.config = config
        dims = [n_node_features, *config.conv_dims]
        self.convs = nn.ModuleList(
            FactorizedEdgeConv(dims[i], dims[i + 1], config.edge_layers) for i in range(len(config.conv_dims))
        )
        skip_dim = sum(dims)
        self.post = mlp([skip_dim, *config.post_dims])
        pooled_dim = (config.post_dims[-1] if config.post_dims else skip_dim) * len(config.poolings)
        self.readout = mlp([pooled_dim + n_global_features, *config.readout_dims])
        self.head = nn.Linear(config.readout_dims[-1] if config.readout_dims else pooled_dim + n_global_features,
                              n_outputs)

    def forward(self, nodes: torch.Tensor, counts: torch.Tensor, global_features: torch.Tensor) -> torch.Tensor:
        """Return (n_events, n_outputs)."""
        features = [nodes]
        h = nodes
        knn_input = nodes[:, :SPACE_TIME_COLUMNS]
        for conv in self.convs:
            neighbors = complete_neighbors(
                knn_neighbors(knn_input, counts, self.config.k, self.config.knn_group_size)
            )
            h = conv(h, neighbors)
            features.append(h)
            knn_input = h
        h = self.post(torch.cat(features, dim=1))
        pooled = graph_pool(h, counts, self.config.poolings)
        return self.head(self.readout(torch.cat([pooled, global_features], dim=1)))
