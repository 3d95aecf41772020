"""Helpers shared by the simulator tests."""

from types import SimpleNamespace

import numpy as np


def cascades_at(vertex, n: int, energy_gev: float) -> SimpleNamespace:
    """Return light sources (like sim.detector.LightSources) of n identical cascades at ``vertex``, no muon."""
    direction = np.tile([0.0, 0.0, 1.0], (n, 1))
    return SimpleNamespace(
        vertex=np.tile(vertex, (n, 1)).astype(float), direction=direction, muon_direction=direction,
        is_track=np.zeros(n, bool), track_length_m=np.zeros(n), muon_energy_gev=np.zeros(n),
        cascade_em_energy_gev=np.full(n, float(energy_gev)),
    )
