"""Batched kNN graphs in plain torch against a brute-force reference."""

import numpy as np
import torch

from nurec.graph.knn import knn_neighbors, neighbors_to_edge_index


def brute_force_neighbors(points: np.ndarray, counts: np.ndarray, k: int) -> list[set[int]]:
    """Return, per node, the set of its k nearest other nodes in its graph (one graph at a time)."""
    result: list[set[int]] = []
    start = 0
    for n in counts:
        block = points[start : start + n]
        dist = ((block[:, None, :] - block[None, :, :]) ** 2).sum(-1)
        np.fill_diagonal(dist, np.inf)
        for row in dist:
            nearest = np.argsort(row)[: min(k, n - 1)]
            result.append({int(start + j) for j in nearest})
        start += n
    return result


def test_knn_matches_brute_force_including_graphs_smaller_than_k():
    rng = np.random.default_rng(3)
    counts = np.array([1, 2, 3, 5, 8, 9, 20, 57, 4, 1, 33, 12, 6, 9, 100, 2])
    points = rng.normal(size=(counts.sum(), 4)).astype(np.float32)
    k = 8
    neighbors = knn_neighbors(torch.from_numpy(points), torch.from_numpy(counts), k, group_size=3)
    assert neighbors.shape == (counts.sum(), k)
    expected = brute_force_neighbors(points, counts, k)
    for node, want in enumerate(expected):
        row = neighbors[node].tolist()
        assert {j for j in row if j >= 0} == want, f"node {node}"
        assert row.count(-1) == k - len(want)  # padding only where the graph is too small


def test_knn_never_links_nodes_of_different_graphs():
    counts = torch.tensor([4, 6, 3])
    graph_of_node = torch.repeat_interleave(torch.arange(3), counts)
    points = torch.zeros(13, 4)  # all nodes at one point: distance alone cannot separate graphs
    neighbors = knn_neighbors(points, counts, k=8)
    valid = neighbors >= 0
    source_graph = graph_of_node[neighbors.clamp(min=0)]
    assert torch.all(source_graph[valid] == graph_of_node[:, None].expand_as(neighbors)[valid])
    assert not torch.any(neighbors == torch.arange(13)[:, None])  # never itself


def test_edge_index_lists_one_edge_per_found_neighbour():
    counts = torch.tensor([3, 1])
    neighbors = knn_neighbors(torch.tensor([[0.0], [1.0], [3.0], [9.0]]), counts, k=2)
    edges = neighbors_to_edge_index(neighbors)
    assert edges.shape == (2, 6)
    assert set(map(tuple, edges.t().tolist())) == {(1, 0), (2, 0), (0, 1), (2, 1), (1, 2), (0, 2)}


def test_large_graphs_are_done_in_row_slices_with_the_same_neighbours(monkeypatch):
    """The distance block never exceeds MAX_DISTANCE_ELEMENTS (a 3,000-node graph would need 9 million)."""
    import nurec.graph.knn as knn

    rng = np.random.default_rng(4)
    counts = np.array([3_000, 40, 700, 1])
    points = rng.normal(size=(counts.sum(), 4)).astype(np.float32)
    largest: list[int] = []
    topk = torch.topk

    def recording_topk(values, *args, **kwargs):
        largest.append(values.numel())
        return topk(values, *args, **kwargs)

    monkeypatch.setattr(knn, "MAX_DISTANCE_ELEMENTS", 1 << 20)
    monkeypatch.setattr(torch, "topk", recording_topk)
    neighbors = knn_neighbors(torch.from_numpy(points), torch.from_numpy(counts), k=8, group_size=2)
    assert max(largest) <= 1 << 20 and len(largest) > 2
    expected = brute_force_neighbors(points[3_000:], counts[1:], 8)  # the small graphs in full
    for node, want in enumerate(expected):
        assert {j - 3_000 for j in neighbors[3_000 + node].tolist() if j >= 0} == want
    rows = rng.choice(3_000, 50, replace=False)  # and sampled rows of the large one
    dist = ((points[rows, None, :] - points[None, :3_000, :]) ** 2).sum(-1)
    dist[np.arange(50), rows] = np.inf
    for row, distances in zip(rows, dist, strict=True):
        assert set(neighbors[row].tolist()) == set(np.argsort(distances)[:8].tolist())
