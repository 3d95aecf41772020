"""ν–μ kinematic angle: the simulated muons follow the published parametrisation."""

import numpy as np
import pytest

from nurec.geometry import get_geometry
from nurec.physics.interaction import mean_kinematic_angle_deg
from nurec.physics.medium import ICE
from sim.config import SimulationConfig
from sim.detector import LightSources
from sim.generator import generate_primaries


@pytest.mark.parametrize("energy_gev, expected_deg", [(1e3, 0.6), (1e5, 0.06)])
def test_mean_neutrino_muon_angle_matches_parametrisation(energy_gev, expected_deg):
    config = SimulationConfig(detector="icecube-mini", energy_min_gev=energy_gev,
                              energy_max_gev=energy_gev * (1 + 1e-6))
    rng = np.random.default_rng(5)
    primaries = generate_primaries(20_000, config, get_geometry("icecube-mini"), ICE, rng)
    sources = LightSources(primaries, ICE, rng)
    cos = np.clip(np.sum(sources.muon_direction * primaries.direction, axis=1), -1, 1)
    mean_angle = np.degrees(np.arccos(cos)).mean()
    assert mean_kinematic_angle_deg(energy_gev) == pytest.approx(expected_deg)
    assert mean_angle == pytest.approx(expected_deg, rel=0.03)
    assert np.allclose(np.linalg.norm(sources.muon_direction, axis=1), 1.0)
