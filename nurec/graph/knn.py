"""Batched k-nearest-neighbour graphs in plain torch (PyG's knn_graph needs pyg-lib).

Graphs are stored as contiguous node blocks (``counts`` nodes each). Graphs are sorted by
size and processed in groups padded to the group's largest graph, with one batched
distance matrix and one ``topk`` per group: a loop over groups, never over graphs.
Memory is bounded: a group's distance block holds at most ``MAX_DISTANCE_ELEMENTS``
numbers (16 MB in float32; two such blocks live at once), so a large graph is done a slice
of rows at a time (a 20,000-node graph: 209 rows of 20,000 distances per slice, instead
of a 1.6 GB matrix). Graphs of the bundled model (at most 64 nodes) fit in one slice.
"""

from __future__ import annotations

import torch

MAX_DISTANCE_ELEMENTS = 1 << 22
"""Largest batched distance block (graphs x rows x nodes) computed at once."""


def graph_offsets(counts: torch.Tensor) -> torch.Tensor:
    """Return the index of each graph's first node."""
    return torch.cumsum(counts, 0) - counts


def knn_neighbors(x: torch.Tensor, counts: torch.Tensor, k: int, group_size: int = 32) -> torch.Tensor:
    """Return (n_nodes, k) indices of each node's k nearest other nodes in its graph.

    Distances are Euclidean in the columns of ``x``; a node never neighbours itself.
    Graphs with fewer than k + 1 nodes pad their rows with -1.
    """
    n_nodes = x.shape[0]
    neighbors = torch.full((n_nodes, k), -1, dtype=torch.long, device=x.device)
    if n_nodes == 0 or k == 0:
        return neighbors
    counts = counts.to(torch.long)
    offsets = graph_offsets(counts)
    order = torch.argsort(counts, stable=True)
    sorted_counts = counts[order].tolist()
    for start in range(0, len(sorted_counts), group_size):
        n_max = sorted_counts[min(start + group_size, len(sorted_counts)) - 1]
        if n_max <= 1:
            continue
        group = order[start : start + group_size]
        positions = torch.arange(n_max, device=x.device)
        valid = positions[None, :] < counts[group][:, None]  # (G, n_max)
        index = torch.where(valid, offsets[group][:, None] + positions[None, :], 0)
        points = x[index]  # (G, n_max, D)
        squared = (points * points).sum(-1)
        kk = min(k, n_max - 1)
        rows = max(1, MAX_DISTANCE_ELEMENTS // (len(group) * n_max))
        for first in range(0, n_max, rows):
            last = min(first + rows, n_max)
            # Squared distances of rows first:last to every node of their graph, (G, rows, n_max):
            # |a|² + |b|² - 2 a·b, computed in place (the same rounding as the plain expression).
            dist = squared[:, first:last, None] + squared[:, None, :]
            dist.sub_(torch.bmm(points[:, first:last], points.transpose(1, 2)).mul_(2.0))
            dist.masked_fill_(~valid[:, None, :], float("inf"))
            row = torch.arange(last - first, device=x.device)
            dist[:, row, row + first] = float("inf")  # never itself
            best, local = torch.topk(dist, kk, dim=-1, largest=False)  # (G, rows, kk)
            found = torch.gather(index[:, None, :].expand(-1, last - first, -1), 2, local)
            found = torch.where(torch.isfinite(best), found, -1)
            inside = valid[:, first:last]
            neighbors[index[:, first:last][inside], :kk] = found[inside]
    return neighbors


def neighbors_to_edge_index(neighbors: torch.Tensor) -> torch.Tensor:
    """Return the (2, n_edges) PyG edge_index (source=neighbour, target=node) of a neighbour table."""
    target = torch.arange(neighbors.shape[0], device=neighbors.device)[:, None].expand_as(neighbors)
    keep = neighbors >= 0
    return torch.stack([neighbors[keep], target[keep]])
