"""Generation weights (OneWeight) integrate a flux to the analytic event rate."""

import numpy as np
import pytest

from nurec.geometry import get_geometry
from nurec.physics.interaction import NUCLEON_DENSITY_PER_CM3
from nurec.physics.medium import ICE
from sim.config import SimulationConfig
from sim.generator import generate_primaries

# Below 3 TeV the CC cross section is σ = c·E (nurec.physics.interaction).
SIGMA_PER_GEV_CM2 = {12: 0.677e-38, -12: 0.334e-38}


@pytest.mark.parametrize("generation_index", [1.0, 2.0])
def test_weights_integrate_a_flux_to_the_analytic_rate(generation_index):
    """Σ w Φ(E) / N_gen equals ∫ Φ σ n V Ω dE for Φ = Φ0 E^-2 and σ ∝ E (any generation spectrum)."""
    e_min, e_max, phi0 = 10.0, 3000.0, 1e-8
    config = SimulationConfig(detector="icecube-mini", flavors=("nue",), interactions=("CC",),
                              energy_min_gev=e_min, energy_max_gev=e_max, spectral_index=generation_index)
    n = 200_000
    primaries = generate_primaries(n, config, get_geometry("icecube-mini"), ICE, np.random.default_rng(2))
    volume_cm3 = primaries.generation_volume_m3[0] * 1e6
    assert np.allclose(primaries.generation_volume_m3, primaries.generation_volume_m3[0])  # no muon extension
    flux = phi0 * primaries.energy_gev ** -2.0
    estimate = np.sum(primaries.weight * flux) / n
    # ∫ Φ0 E^-2 · c E dE = Φ0 c ln(Emax/Emin), per type; 4π sr; nucleons per cm³.
    analytic = sum(phi0 * c * np.log(e_max / e_min) for c in SIGMA_PER_GEV_CM2.values())
    analytic *= NUCLEON_DENSITY_PER_CM3["ice"] * volume_cm3 * 4 * np.pi
    relative_error = np.std(primaries.weight * flux) / np.sqrt(n) / estimate
    assert estimate == pytest.approx(analytic, rel=4 * relative_error + 1e-3)
