"""Boosted regression trees as plain arrays: exported from scikit-learn, predicted with numpy.

A trained ``HistGradientBoostingRegressor`` is a baseline plus a sequence of binary trees
whose nodes hold (feature, threshold, missing-goes-left, left child, right child, leaf
value). Stored as flat numeric arrays, a model file holds no Python objects at all, so
reading one cannot run code (unlike pickle/joblib), and any file is checked for shape
and structure before use.

Prediction walks all trees at once with numpy and adds the leaf values tree by tree in
scikit-learn's order (baseline first), so it returns bitwise the same float64 numbers as
``HistGradientBoostingRegressor.predict`` for numeric features with an identity link
(losses squared_error, absolute_error, quantile), including NaN routing: NaN follows
``missing_go_to_left``, any other value goes left when ``value <= threshold``
(sklearn/ensemble/_hist_gradient_boosting/_predictor.pyx).

Several forests (e.g. one per cross-validation fold) share one set of arrays:
``forest_start`` indexes ``tree_start``, which indexes the node arrays. A leaf has
``feature == -1``; an inner node's children come after it in its own tree, so a walk
ends after at most as many steps as the tree has nodes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ARRAY_KINDS = {
    "forest_start": "i", "tree_start": "i", "baseline": "f",
    "feature": "i", "threshold": "f", "missing_left": "b", "left": "i", "right": "i", "value": "f",
}
"""The arrays of a forest set and their numpy kinds (i: integer, f: float, b: bool)."""

ROWS_PER_BLOCK = 4096  # rows walked together: bounds the (trees x rows) index arrays


class TreeFormatError(ValueError):
    """Tree arrays that are not a valid forest set; the message says which array and why."""


@dataclass(frozen=True)
class Forests:
    """One or more boosted forests over the same ``n_features`` numeric features."""

    n_features: int
    forest_start: np.ndarray  # (n_forests + 1,) int64: tree index range of each forest
    tree_start: np.ndarray  # (n_trees + 1,) int64: node index range of each tree
    baseline: np.ndarray  # (n_forests,) float64: each forest's starting value
    feature: np.ndarray  # (n_nodes,) int64: split feature; -1 = leaf
    threshold: np.ndarray  # (n_nodes,) float64: go left if value <= threshold
    missing_left: np.ndarray  # (n_nodes,) bool: where NaN goes
    left: np.ndarray  # (n_nodes,) int64: global node index of the left child
    right: np.ndarray  # (n_nodes,) int64
    value: np.ndarray  # (n_nodes,) float64: leaf value (already scaled by the learning rate)

    @property
    def n_forests(self) -> int:
        return len(self.baseline)

    @property
    def max_tree_nodes(self) -> int:
        return int(np.diff(self.tree_start).max()) if len(self.tree_start) > 1 else 0

    @classmethod
    def from_sklearn(cls, regressors: Sequence[Any]) -> Forests:
        """Return the forests of fitted ``HistGradientBoostingRegressor``s (numeric features, one output).

        Raises TreeFormatError for what the array form does not cover (categorical splits,
        several trees per iteration, a non-identity link); the exported forests are then
        checked like a loaded file.
        """
        if not regressors:
            raise TreeFormatError("no regressors to export")
        n_features = int(regressors[0].n_features_in_)
        baselines, trees = [], []
        forest_start = [0]
        for number, model in enumerate(regressors):
            link = type(model._loss.link).__name__
            if link != "IdentityLink":
                raise TreeFormatError(f"regressor {number}: link {link} is not the identity")
            if int(model.n_trees_per_iteration_) != 1 or int(model.n_features_in_) != n_features:
                raise TreeFormatError(f"regressor {number}: not one tree per iteration over {n_features} features")
            baseline = np.asarray(model._baseline_prediction, dtype=np.float64).ravel()
            baselines.append(float(baseline[0]))
            for iteration in model._predictors:
                nodes = iteration[0].nodes
                if nodes["is_categorical"].any():
                    raise TreeFormatError(f"regressor {number}: categorical splits are not supported")
                trees.append(nodes)
            forest_start.append(len(trees))
        sizes = np.array([len(nodes) for nodes in trees], dtype=np.int64)
        tree_start = np.concatenate([[0], np.cumsum(sizes)])
        offset = np.repeat(tree_start[:-1], sizes)
        nodes = np.concatenate(trees)
        leaf = nodes["is_leaf"].astype(bool)
        forests = cls(
            n_features=n_features,
            forest_start=np.asarray(forest_start, dtype=np.int64),
            tree_start=tree_start.astype(np.int64),
            baseline=np.asarray(baselines, dtype=np.float64),
            feature=np.where(leaf, -1, nodes["feature_idx"]).astype(np.int64),
            threshold=np.where(leaf, 0.0, nodes["num_threshold"]).astype(np.float64),
            missing_left=(nodes["missing_go_to_left"] != 0) & ~leaf,
            left=np.where(leaf, -1, nodes["left"].astype(np.int64) + offset),
            right=np.where(leaf, -1, nodes["right"].astype(np.int64) + offset),
            value=np.where(leaf, nodes["value"], 0.0).astype(np.float64),
        )
        forests.check()
        return forests

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Return the numeric arrays that store these forests (ARRAY_KINDS names)."""
        return {name: np.ascontiguousarray(getattr(self, name)) for name in ARRAY_KINDS}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], n_features: int) -> Forests:
        """Return the forests stored in ``arrays``; TreeFormatError (one line) if they are not valid."""
        missing = sorted(set(ARRAY_KINDS) - set(arrays))
        if missing:
            raise TreeFormatError(f"missing arrays {missing}")
        fields: dict[str, np.ndarray] = {}
        for name, kind in ARRAY_KINDS.items():
            array = np.asarray(arrays[name])
            if array.ndim != 1:
                raise TreeFormatError(f"{name}: {array.ndim}-d array, expected 1-d")
            if array.dtype.kind != kind and not (kind == "i" and array.dtype.kind == "u"):
                raise TreeFormatError(f"{name}: dtype {array.dtype}, expected kind '{kind}'")
            target = {"i": np.int64, "f": np.float64, "b": np.bool_}[kind]
            fields[name] = array.astype(target)
        forests = cls(n_features=int(n_features), **fields)
        forests.check()
        return forests

    def check(self) -> None:
        """Raise TreeFormatError (one line, naming the array) unless the arrays form valid forests."""
        n_nodes = len(self.feature)
        for name in ("threshold", "missing_left", "left", "right", "value"):
            if len(getattr(self, name)) != n_nodes:
                raise TreeFormatError(f"{name}: {len(getattr(self, name))} entries, feature has {n_nodes}")
        n_trees = len(self.tree_start) - 1
        if self.n_features < 1:
            raise TreeFormatError(f"n_features: {self.n_features}, expected at least 1")
        _check_offsets("tree_start", self.tree_start, n_nodes)
        _check_offsets("forest_start", self.forest_start, n_trees)
        if len(self.baseline) != len(self.forest_start) - 1:
            raise TreeFormatError(f"baseline: {len(self.baseline)} values for {len(self.forest_start) - 1} forests")
        if not np.all(np.isfinite(self.baseline)):
            raise TreeFormatError("baseline: not finite")
        leaf = self.feature == -1
        inner = ~leaf
        if np.any(self.feature < -1) or np.any(self.feature >= self.n_features):
            raise TreeFormatError(f"feature: index outside -1..{self.n_features - 1}")
        if not np.all(np.isfinite(self.value[leaf])):
            raise TreeFormatError("value: a leaf value is not finite")
        if np.any(np.isnan(self.threshold[inner])):
            raise TreeFormatError("threshold: NaN at a split")
        # Children after their node and inside its tree: every walk moves forward and ends at a leaf.
        node = np.arange(n_nodes)
        tree_end = np.repeat(self.tree_start[1:], np.diff(self.tree_start))
        for name in ("left", "right"):
            child = getattr(self, name)
            if np.any(inner & ((child <= node) | (child >= tree_end))):
                raise TreeFormatError(f"{name}: a child index is not after its node inside the same tree")

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Return the (n_forests, n_rows) float64 predictions for a (n_rows, n_features) float64 array."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"features: shape {x.shape}, expected (n, {self.n_features})")
        out = np.empty((self.n_forests, len(x)), dtype=np.float64)
        for start in range(0, len(x), ROWS_PER_BLOCK):
            block = x[start:start + ROWS_PER_BLOCK]
            out[:, start:start + len(block)] = self._predict_block(block)
        return out

    def _predict_block(self, x: np.ndarray) -> np.ndarray:
        n_rows = len(x)
        # One walker per (tree, row); walkers that reach a leaf drop out of the active set.
        node = np.repeat(self.tree_start[:-1], n_rows)
        flat_x = x.ravel()
        active = np.arange(len(node))
        row_base = (active % n_rows) * self.n_features
        for _ in range(self.max_tree_nodes):
            at = node[active]
            feature = self.feature[at]
            inner = feature >= 0
            active, at, feature, row_base = active[inner], at[inner], feature[inner], row_base[inner]
            if not len(active):
                break
            value = flat_x[row_base + feature]
            go_left = np.where(np.isnan(value), self.missing_left[at], value <= self.threshold[at])
            node[active] = np.where(go_left, self.left[at], self.right[at])
        leaf_value = self.value[node].reshape(-1, n_rows)
        out = np.empty((self.n_forests, n_rows), dtype=np.float64)
        for forest in range(self.n_forests):
            # Sequential sum in sklearn's order (baseline, then each iteration): bitwise equal results.
            total = np.full(n_rows, self.baseline[forest])
            for tree in range(self.forest_start[forest], self.forest_start[forest + 1]):
                total += leaf_value[tree]
            out[forest] = total
        return out


def _check_offsets(name: str, offsets: np.ndarray, total: int) -> None:
    if len(offsets) < 2 or offsets[0] != 0 or offsets[-1] != total or np.any(np.diff(offsets) < 1):
        raise TreeFormatError(f"{name}: not increasing offsets from 0 to {total}")
