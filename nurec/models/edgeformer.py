"""GNN + transformer hybrid (after the Kaggle "IceCube - Neutrinos in Deep Ice" winners).

EdgeConv layers on the space-time kNN graph give each node its local context; a
transformer encoder then lets every node attend to every other node of its event, which
reaches correlations across the whole detector that a few kNN hops do not. Masked
mean/max pooling, event features and an MLP readout follow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from nurec.graph.features import SPACE_TIME_COLUMNS
from nurec.graph.knn import knn_neighbors
from nurec.models.layers import FactorizedEdgeConv, complete_neighbors, mlp, to_dense


@dataclass(frozen=True)
class EdgeFormerConfig:
    """Sizes of the hybrid model."""

    k: int = 8
    conv_dims: tuple[int, ...] = (64,)
    edge_layers: int = 2
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    ff_dim: int = 128
    readout_dims: tuple[int, ...] = (128, 64)
    knn_group_size: int = 32

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as JSON-able data."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EdgeFormerConfig:
        """Build from a mapping; unknown keys are an error."""
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"model: unknown EdgeFormer setting '{sorted(unknown)[0]}'")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


class EdgeFormer(nn.Module):
    """Map standardised node and event features to ``n_outputs`` numbers per event."""

    def __init__(self, config: EdgeFormerConfig, n_node_features: int, n_global_features: int, n_outputs: int):
        super().__init__()
        self.config = config
        dims = [n_node_features, *config.conv_dims]
        self.convs = nn.ModuleList(
            FactorizedEdgeConv(dims[i], dims[i + 1], config.edge_layers) for i in range(len(config.conv_dims))
        )
        self.project = nn.Linear(sum(dims), config.d_model)
        layer = nn.TransformerEncoderLayer(
            config.d_model, config.n_heads, config.ff_dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.readout = mlp([2 * config.d_model + n_global_features, *config.readout_dims])
        self.head = nn.Linear(config.readout_dims[-1], n_outputs)

    def forward(self, nodes: torch.Tensor, counts: torch.Tensor, global_features: torch.Tensor) -> torch.Tensor:
        """Return (n_events, n_outputs)."""
        features = [nodes]
        h = nodes
        neighbors = complete_neighbors(
            knn_neighbors(nodes[:, :SPACE_TIME_COLUMNS], counts, self.config.k, self.config.knn_group_size)
        )
        for conv in self.convs:
            h = conv(h, neighbors)
            features.append(h)
        dense, padding = to_dense(self.project(torch.cat(features, dim=1)), counts)
        dense = self.encoder(dense, src_key_padding_mask=padding)
        keep = (~padding)[:, :, None]
        mean = (dense * keep).sum(1) / keep.sum(1).clamp(min=1)
        peak = dense.masked_fill(~keep, float("-inf")).max(1).values
        peak = torch.where(keep.any(1), peak, torch.zeros_like(peak))
        return self.head(self.readout(torch.cat([mean, peak, global_features], dim=1)))
