"""Continuous muon energy loss -dE/dx = a + bE: range and energy along the track."""

from __future__ import annotations

import numpy as np

from nurec.physics.medium import Medium


def muon_range_m(energy_gev: np.ndarray, medium: Medium) -> np.ndarray:
    """Return the muon range [m]: R = ln(1 + E b/a) / b for -dE/dx = a + bE."""
    a, b = medium.muon_loss_a_gev_per_m, medium.muon_loss_b_per_m
    return np.log1p(np.asarray(energy_gev) * b / a) / b


def muon_energy_at_m(energy_gev: np.ndarray, distance_m: np.ndarray, medium: Medium) -> np.ndarray:
    """Return the muon energy [GeV] after ``distance_m``: E(x) = (E0 + a/b) e^{-bx} - a/b, ≥ 0."""
    a, b = medium.muon_loss_a_gev_per_m, medium.muon_loss_b_per_m
    energy = (np.asarray(energy_gev) + a / b) * np.exp(-b * np.asarray(distance_m)) - a / b
    return np.maximum(energy, 0.0)


def muon_energy_loss_gev_per_m(energy_gev: np.ndarray, medium: Medium) -> np.ndarray:
    """Return the mean energy loss -dE/dx = a + bE [GeV/m] at muon energy ``energy_gev``."""
    return medium.muon_loss_a_gev_per_m + medium.muon_loss_b_per_m * np.asarray(energy_gev)
