"""Building blocks: factorised EdgeConv on neighbour tables, MLPs, and graph pooling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.utils import scatter


def mlp(dims: list[int], final_activation: bool = True) -> nn.Sequential:
    """Return Linear+LeakyReLU layers through ``dims`` (no activation after the last if asked)."""
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if final_activation or i < len(dims) - 2:
            layers.append(nn.LeakyReLU())
    return nn.Sequential(*layers)


class FactorizedEdgeConv(nn.Module):
    """EdgeConv h_i' = max_j MLP([h_i, h_j - h_i]) over the neighbours j of node i.

    The first linear layer W [h_i, h_j - h_i] = (W_a - W_b) h_i + W_b h_j is applied per
    node (``lin_self`` holds W_a - W_b and the bias, ``lin_neighbor`` W_b) and only
    gathered per edge, which saves one matmul over the edges. ``edge_layers`` = 2 adds a
    second linear layer per edge (DynEdge); its final LeakyReLU is applied after the max,
    which is the same because LeakyReLU is monotonic. With ``edge_layers`` = 1 the layer
    reduces exactly to a_i + max_j b_j. Every node needs exactly k neighbour slots with
    valid indices (see ``complete_neighbors``).
    """

    def __init__(self, in_dim: int, out_dim: int, edge_layers: int = 2):
        super().__init__()
        if edge_layers not in (1, 2):
            raise ValueError(f"edge_layers: must be 1 or 2, got {edge_layers}")
        self.lin_self = nn.Linear(in_dim, out_dim)
        self.lin_neighbor = nn.Linear(in_dim, out_dim, bias=False)
        self.lin_edge = nn.Linear(out_dim, out_dim) if edge_layers == 2 else None
        self.activation = nn.LeakyReLU()

    def forward(self, x: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
        """Return the new node features (n_nodes, out_dim) for a table from ``complete_neighbors``."""
        own = self.lin_self(x)
        other = self.lin_neighbor(x)
        if self.lin_edge is None:
            # max_j (a_i + b_j) = a_i + max_j b_j: no per-edge matmul at all.
            return self.activation(own + other[neighbors].amax(dim=1))
        if torch.is_grad_enabled():  # training: one (n_nodes, k, dim) block, fastest with autograd
            edge = own[:, None, :] + other[neighbors]
            return self.activation(self.lin_edge(self.activation(edge)).amax(dim=1))
        out = None
        for slot in range(neighbors.shape[1]):  # inference: one slot at a time, in place, cache-friendly
            edge = torch.index_select(other, 0, neighbors[:, slot])
            message = self.lin_edge(F.leaky_relu_(edge.add_(own)))
            out = message if out is None else torch.maximum(out, message, out=out)
        return self.activation(out)


def complete_neighbors(neighbors: torch.Tensor) -> torch.Tensor:
    """Return the neighbour table with every -1 replaced by a real index, so no masks are needed.

    A missing slot repeats the node's nearest neighbour (a max over a repeated neighbour is
    unchanged); a node with no neighbour at all (one-node graph) gets itself.
    """
    own = torch.arange(neighbors.shape[0], device=neighbors.device)
    first = torch.where(neighbors[:, 0] >= 0, neighbors[:, 0], own)
    return torch.where(neighbors >= 0, neighbors, first[:, None])


POOLINGS = ("min", "max", "mean", "sum")


def graph_pool(h: torch.Tensor, counts: torch.Tensor, reductions: tuple[str, ...]) -> torch.Tensor:
    """Return per-graph pooled features, the ``reductions`` concatenated (n_graphs, len * dim)."""
    n_graphs = counts.shape[0]
    batch = torch.repeat_interleave(torch.arange(n_graphs, device=h.device), counts)
    pooled = [scatter(h, batch, dim=0, dim_size=n_graphs, reduce=r) for r in reductions]
    return torch.cat(pooled, dim=1)


def to_dense(h: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (padded (n_graphs, n_max, dim) features, (n_graphs, n_max) True-where-padding mask)."""
    n_graphs = counts.shape[0]
    n_max = int(counts.max()) if n_graphs else 0
    batch = torch.repeat_interleave(torch.arange(n_graphs, device=h.device), counts)
    position = torch.arange(h.shape[0], device=h.device) - (torch.cumsum(counts, 0) - counts)[batch]
    dense = h.new_zeros((n_graphs, n_max, h.shape[1]))
    dense[batch, position] = h
    padding = torch.ones((n_graphs, n_max), dtype=torch.bool, device=h.device)
    padding[batch, position] = False
    return dense, padding
