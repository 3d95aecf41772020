"""Task heads and losses: direction (von Mises-Fisher), log10 energy (LogCosh), track/cascade (BCE).

A model emits ``N_OUTPUTS`` numbers per event: a 3-vector whose direction is the
predicted direction of travel and whose norm is the vMF concentration kappa, the log10
of the neutrino energy [GeV], and the logit of the track probability.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nurec.settings import settings_from_dict

N_OUTPUTS = 5
CONTAINMENT = 0.68
_SMALL_KAPPA = 1e-4


@dataclass(frozen=True)
class TaskConfig:
    """Loss weights of the combined objective (0 switches a task off)."""

    direction_weight: float = 1.0
    energy_weight: float = 1.0
    track_weight: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as JSON-able data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskConfig:
        """Build from a mapping; unknown keys are an error."""
        return settings_from_dict(cls, data, "tasks")


def log_sinhc_term(kappa: torch.Tensor) -> torch.Tensor:
    """Return log((1 - exp(-2 kappa)) / kappa), stable for kappa in [0, 1e5] (-> log 2 at 0)."""
    safe = torch.clamp(kappa, min=_SMALL_KAPPA)
    exact = torch.log(-torch.expm1(-2.0 * safe)) - torch.log(safe)
    series = math.log(2.0) - kappa + kappa * kappa / 6.0  # Taylor series at kappa -> 0
    return torch.where(kappa < _SMALL_KAPPA, series, exact)


def vmf3d_nll(kappa: torch.Tensor, kappa_cos: torch.Tensor) -> torch.Tensor:
    """Return the von Mises-Fisher (3D) negative log-likelihood per event.

    The density on the unit sphere is kappa / (4 pi sinh kappa) exp(kappa cos theta), so
    -log p = log(2 pi) + kappa - kappa cos theta + log((1 - exp(-2 kappa)) / kappa).
    ``kappa_cos`` is kappa * cos(theta) (the dot product of the output vector and the truth).
    """
    return math.log(2.0 * math.pi) + kappa - kappa_cos + log_sinhc_term(kappa)


def kappa_of(vector: torch.Tensor) -> torch.Tensor:
    """Return the norm of the direction output (the vMF kappa), differentiable at 0."""
    return torch.sqrt((vector * vector).sum(dim=-1) + 1e-12)


def log_cosh(x: torch.Tensor) -> torch.Tensor:
    """Return log(cosh(x)), stable for large |x|."""
    a = torch.abs(x)
    return a + torch.log1p(torch.exp(-2.0 * a)) - math.log(2.0)


def task_losses(outputs: torch.Tensor, targets: torch.Tensor, config: TaskConfig) -> dict[str, torch.Tensor]:
    """Return the mean loss of each task and their weighted sum under "loss".

    ``targets`` columns: direction of travel (3, unit), log10 energy, is_track (0/1).
    """
    vector = outputs[:, :3]
    kappa = kappa_of(vector)
    direction = vmf3d_nll(kappa, (vector * targets[:, :3]).sum(dim=1)).mean()
    energy = log_cosh(outputs[:, 3] - targets[:, 3]).mean()
    track = F.binary_cross_entropy_with_logits(outputs[:, 4], targets[:, 4])
    total = config.direction_weight * direction + config.energy_weight * energy + config.track_weight * track
    return {"loss": total, "direction": direction, "energy": energy, "track": track}


def containment_radius_deg(kappa: np.ndarray, quantile: float = CONTAINMENT) -> np.ndarray:
    """Return the angle [deg] around the mean direction holding ``quantile`` of a vMF(kappa).

    P(angle <= r) = (1 - exp(-kappa (1 - cos r))) / (1 - exp(-2 kappa)), so
    1 - cos r = -log(1 + q expm1(-2 kappa)) / kappa, and r = 2 asin(sqrt((1 - cos r) / 2)).
    """
    kappa = np.maximum(np.asarray(kappa, dtype=np.float64), 1e-12)
    one_minus_cos = -np.log1p(quantile * np.expm1(-2.0 * kappa)) / kappa
    return np.degrees(2.0 * np.arcsin(np.sqrt(np.clip(one_minus_cos / 2.0, 0.0, 1.0))))


def fit_kappa_scale(kappa: np.ndarray, angular_error_deg: np.ndarray, quantile: float = CONTAINMENT) -> float:
    """Return the factor s for which containment_radius_deg(s * kappa) covers ``quantile`` of the errors.

    Coverage falls monotonically as s grows, so s is found by bisection in log s.
    """
    kappa = np.asarray(kappa, dtype=np.float64)
    error = np.asarray(angular_error_deg, dtype=np.float64)
    good = np.isfinite(kappa) & np.isfinite(error)
    if good.sum() < 10:
        return 1.0
    kappa, error = kappa[good], error[good]
    lo, hi = math.log(1e-4), math.log(1e4)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        coverage = np.mean(error <= containment_radius_deg(math.exp(mid) * kappa, quantile))
        if coverage > quantile:
            lo = mid
        else:
            hi = mid
    return float(math.exp(0.5 * (lo + hi)))


def angular_error_deg(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Return the opening angle [deg] between rows of two (n, 3) direction arrays."""
    predicted = np.asarray(predicted, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    cos = np.sum(predicted * truth, axis=1) / (
        np.linalg.norm(predicted, axis=1) * np.linalg.norm(truth, axis=1)
    )
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
