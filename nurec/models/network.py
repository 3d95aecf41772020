"""A complete network: feature standardisation + backbone (DynEdge or EdgeFormer) + calibration.

Everything a model needs at inference lives in its ``state_dict`` (weights, feature
means/stds, the kappa calibration factor) and its ``spec`` (plain JSON-able settings),
so a file holding both loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from nurec.graph.features import (
    GLOBAL_FEATURE_NAMES,
    SEED_FRAME_NAMES,
    FeatureConfig,
    FlatGraphs,
)
from nurec.models.dynedge import DynEdge, DynEdgeConfig
from nurec.models.edgeformer import EdgeFormer, EdgeFormerConfig
from nurec.models.tasks import N_OUTPUTS, TaskConfig
from nurec.settings import check_known, field_names

LOG_KAPPA_MIN, LOG_KAPPA_MAX = -7.0, 11.5
"""Range of the seed-frame log kappa: kappa from 1e-3 (no information) to ~1e5 (0.3 degrees)."""

ARCHITECTURES = {"dynedge": (DynEdge, DynEdgeConfig), "edgeformer": (EdgeFormer, EdgeFormerConfig)}


@dataclass(frozen=True)
class ModelSpec:
    """What a model is: architecture name, its sizes, node features and task weights.

    ``linefit_seed``: add the event's LineFit direction, times a learned concentration, to
    the direction output, so the network starts from the plane-wave fit and learns a
    correction (it also sees the fit among its inputs, so it can overrule it).

    With ``features.frame = "seed"`` the backbone instead predicts, in the event's LineFit
    frame, a point (u, v) of the plane that inverse stereographic projection maps onto the
    sphere, (2u, 2v, 1 - u² - v²) / (1 + u² + v²), and log kappa separately; the direction
    is rotated back to detector coordinates. (0, 0) is the seed, |(u, v)| = tan(tilt / 2)
    (0.035 for 4 degrees), every direction is reachable (reversal at infinity), and
    precision (kappa) no longer has to be encoded in the length of the direction vector.
    ``linefit_seed`` has no further effect there.
    """

    architecture: str = "dynedge"
    network: dict[str, Any] = field(default_factory=dict)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    tasks: TaskConfig = field(default_factory=TaskConfig)
    linefit_seed: bool = False

    def network_config(self) -> DynEdgeConfig | EdgeFormerConfig:
        """Return the architecture's size dataclass."""
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"model.architecture: unknown '{self.architecture}' (use {', '.join(ARCHITECTURES)})")
        return ARCHITECTURES[self.architecture][1].from_dict(self.network)

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as JSON-able data."""
        return {
            "architecture": self.architecture,
            "network": self.network_config().to_dict(),
            "features": self.features.to_dict(),
            "tasks": self.tasks.to_dict(),
            "linefit_seed": self.linefit_seed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """Build from a mapping (e.g. the [model] table of a training config)."""
        check_known(data, field_names(cls), "model")
        spec = cls(
            architecture=data.get("architecture", "dynedge"),
            network=dict(data.get("network", {})),
            features=FeatureConfig.from_dict(dict(data.get("features", {}))),
            tasks=TaskConfig.from_dict(dict(data.get("tasks", {}))),
            linefit_seed=bool(data.get("linefit_seed", False)),
        )
        spec.network_config()  # validate now
        return spec


class GraphNetwork(nn.Module):
    """Standardise raw features, run the backbone; outputs (n_events, N_OUTPUTS)."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        n_node = len(spec.features.feature_names)
        n_global = len(spec.features.global_feature_names)
        backbone_cls = ARCHITECTURES[spec.architecture][0]
        seed_frame = spec.features.frame == "seed"
        self.backbone = backbone_cls(spec.network_config(), n_node, n_global, N_OUTPUTS)
        self.register_buffer("node_mean", torch.zeros(n_node))
        self.register_buffer("node_std", torch.ones(n_node))
        self.register_buffer("global_mean", torch.zeros(n_global))
        self.register_buffer("global_std", torch.ones(n_global))
        self.register_buffer("kappa_scale", torch.ones(()))
        if spec.linefit_seed and not seed_frame:
            self.seed_kappa = nn.Parameter(torch.tensor(2.0))
        self.seed_columns = [GLOBAL_FEATURE_NAMES.index(f"linefit_dir_{c}") for c in "xyz"]
        self.frame_columns = [spec.features.global_feature_names.index(name) for name in SEED_FRAME_NAMES] \
            if seed_frame else []

    def set_statistics(self, graphs: FlatGraphs) -> None:
        """Store the offsets and scales that standardise the node and event features of ``graphs``.

        Features get mean 0 and standard deviation 1, except space-time: x, y, z share one
        length scale (their pooled standard deviation) and time is scaled by the light travel
        time over that length, so distances in the first kNN stay physical and isotropic.
        """
        for prefix, values in (("node", graphs.nodes), ("global", graphs.globals)):
            values = np.asarray(values, dtype=np.float64)
            mean, std = values.mean(axis=0), np.maximum(values.std(axis=0), 1e-3)
            if prefix == "node":
                length = float(np.sqrt(np.mean(std[:3] ** 2)))
                std[:3] = length
                mean[3], std[3] = 0.0, length / self.spec.features.light_speed_m_per_ns
            getattr(self, f"{prefix}_mean").copy_(torch.as_tensor(mean))
            getattr(self, f"{prefix}_std").copy_(torch.as_tensor(std))

    def forward(self, nodes: torch.Tensor, counts: torch.Tensor, global_features: torch.Tensor) -> torch.Tensor:
        """Return the raw outputs for raw (unstandardised) features."""
        seed = global_features[:, self.seed_columns]
        axes = global_features[:, self.frame_columns].reshape(-1, 3, 3) if self.frame_columns else None
        nodes = (nodes - self.node_mean) / self.node_std
        standardised = (global_features - self.global_mean) / self.global_std
        out = self.backbone(nodes, counts, standardised)
        direction = out[:, :3]
        if axes is not None:
            u, v = out[:, 0], out[:, 1]
            r2 = u * u + v * v
            unit = torch.stack([2 * u, 2 * v, 1 - r2], dim=1) / (1 + r2)[:, None]
            kappa = torch.exp(out[:, 2].clamp(LOG_KAPPA_MIN, LOG_KAPPA_MAX))
            direction = torch.einsum("nji,nj->ni", axes, unit) * kappa[:, None]  # frame -> detector (axes^T)
        elif self.spec.linefit_seed:
            direction = direction + self.seed_kappa * seed
        return torch.cat([direction, out[:, 3:]], dim=1)

    def n_parameters(self) -> int:
        """Return the number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
