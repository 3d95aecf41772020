"""Expected photo-electrons at a sensor from a muon track or a point-like cascade, from the photon tables.

One source of truth for the simulator (sim/photons.py samples these expectations) and the fits
(nurec.baselines.cascade evaluates them): the medium's photon tables (``nurec.physics.tables``,
built by the photon Monte Carlo with the Cherenkov spectrum, chromatic absorption, forward-peaked
scattering and the sensor's effective area and angular acceptance), folded with the sensor on a
grid for speed (``nurec.physics.folded``).

- Cascade: a point EM cascade, per GeV of EM-equivalent energy (Rädel & Wiebusch's Cherenkov
  track length per GeV, in the tables); a cascade's anisotropy fades with distance as the
  medium's scattering makes it.
- Track: a bare β = 1 muon's Cherenkov light per its perpendicular distance ρ (the tables'
  infinite track), times ``track_light_factor(E)``: the light of its secondary electrons below
  the discrete-loss cut, 1 + max(0, 0.1880 + 0.0206 ln(E/GeV)) (L. Rädel & C. Wiebusch,
  Astropart. Phys. 38 (2012) 53, as in IceCube's ppc), plus its continuous radiative losses
  below the cut (bremsstrahlung, pair production, photonuclear with v < DISCRETE_LOSS_V_CUT,
  ``nurec.physics.muon_losses``), each GeV of which shines like an EM cascade (the tables'
  cascade track length per GeV). Losses above the cut are separate cascades (the simulator
  draws them; sim/detector.py). Radiative light is taken to follow the muon's Cherenkov cone,
  the usual approximation of averaged muon tables.
- Layered ice (``Medium.layered_absorption``): a bulk-ice expectation times the absorption
  correction along the straight line from where the light starts (the cascade vertex, or the
  track's Cherenkov emission point) to the sensor (``nurec.physics.ice_layers``).

A sensor's relative efficiency (``Geometry.efficiency``) multiplies the results; all arrays
broadcast, vectors with a last axis (x, y, z).
"""

from __future__ import annotations

from functools import cache

import numpy as np

from nurec.physics.folded import cascade_npe_per_gev as bulk_cascade_npe_per_gev
from nurec.physics.folded import folded_table, track_npe
from nurec.physics.ice_layers import max_correction_rate_per_m, path_absorption_correction
from nurec.physics.medium import Medium
from nurec.physics.muon_losses import MUON_MASS_GEV, RADIATIVE, energy_moment_per_g, get_material
from nurec.physics.photon_mc import cascade_track_length_m_per_gev

DISCRETE_LOSS_V_CUT = 0.05
"""Muon losses above this fraction of the muon's energy are separate cascades in the simulator
(PROPOSAL's usual relative cut); below it they are part of the track's light."""


def light_reach_m(medium: Medium) -> float:
    """Return the distance [m] beyond which the medium's tables hold no light from a source."""
    return max(folded_table(medium.name, source).distance_range_m[1] for source in ("cascade", "track"))


def absorption_correction(medium: Medium, source_pos, sensor_pos) -> np.ndarray | float:
    """Return the factor from the bulk to the layered medium for light from ``source_pos`` to ``sensor_pos`` (1 if homogeneous)."""
    if not medium.layered_absorption:
        return 1.0
    return path_absorption_correction(source_pos, sensor_pos)


def absorption_correction_rate_per_m(medium: Medium) -> float:
    """Return r with absorption_correction ≤ exp(r · distance): the bound the simulator's thinning needs."""
    return max_correction_rate_per_m() if medium.layered_absorption else 0.0


def cascade_npe_per_gev(sensor_pos, sensor_dir, vertex, direction, medium: Medium) -> tuple[np.ndarray, np.ndarray]:
    """Return (expected photo-electrons per GeV of EM energy, distance [m]) of the medium's sensors from a point cascade."""
    per_gev, distance = bulk_cascade_npe_per_gev(medium.name, sensor_pos, sensor_dir, vertex, direction)
    return per_gev * absorption_correction(medium, vertex, sensor_pos), distance


def expected_npe_cascade(sensor_pos, sensor_dir, vertex, direction, em_energy_gev, medium: Medium,
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Return (expected photo-electrons, distance [m]) of sensors from a point cascade of ``em_energy_gev``.

    ``em_energy_gev`` is the electromagnetic-equivalent energy (hadronic showers scaled by
    their light factor, nurec.physics.interaction).
    """
    per_gev, distance = cascade_npe_per_gev(sensor_pos, sensor_dir, vertex, direction, medium)
    return np.asarray(em_energy_gev) * per_gev, distance


@cache
def _continuous_radiative_table(medium_name: str, v_cut: float) -> tuple[np.ndarray, np.ndarray]:
    """Return (ln E grid, the mean radiative loss below the cut [GeV/m]) from 1 GeV to 100 PeV."""
    ln_energy = np.linspace(0.0, np.log(1e8), 161)
    energy = np.exp(ln_energy)
    per_g = energy * sum(energy_moment_per_g(p, energy, medium_name, v_hi=np.full_like(energy, v_cut))
                         for p in RADIATIVE)
    return ln_energy, per_g * get_material(medium_name).per_gram_to_per_m


def track_light_factor(energy_gev, medium: Medium, v_cut: float = DISCRETE_LOSS_V_CUT) -> np.ndarray:
    """Return a muon's light per metre relative to a bare β = 1 muon at energy ``energy_gev`` (non-decreasing in E)."""
    energy = np.maximum(np.asarray(energy_gev, dtype=float), MUON_MASS_GEV)
    secondaries = np.maximum(0.0, 0.1880 + 0.0206 * np.log(energy))
    ln_energy, radiative = _continuous_radiative_table(medium.name, float(v_cut))
    continuous = np.interp(np.log(np.maximum(energy, 1.0)), ln_energy, radiative)
    return 1.0 + secondaries + cascade_track_length_m_per_gev(medium.name) * continuous


def expected_npe_track(sensor_pos, sensor_dir, anchor, direction, emission_pos, energy_gev, medium: Medium,
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Return (expected photo-electrons, perpendicular distance ρ [m]) of sensors from a muon.

    The muon passes ``anchor`` along ``direction``; its light reaching each sensor directly is
    emitted at ``emission_pos`` where it has ``energy_gev``. The caller decides which sensors the
    (finite) track can light.
    """
    bare, rho = track_npe(medium.name, sensor_pos, sensor_dir, anchor, direction)
    light = bare * track_light_factor(energy_gev, medium)
    return light * absorption_correction(medium, emission_pos, sensor_pos), rho
