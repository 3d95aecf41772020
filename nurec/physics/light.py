"""Expected photo-electrons at a sensor from a muon track or a point-like cascade.

Model (per sensor, vectorised over any leading axes):
- Track light yield: an electromagnetic cascade emits ~1.0e5 Cherenkov photons per GeV in the
  300–500 nm band of the PMTs (Rädel & Wiebusch, Astropart. Phys. 38 (2012) 53, Table 2:
  ~1.2e5 per GeV for 300–600 nm). A muon emits the same per GeV of energy it loses,
  so photons/m = yield × (a + bE).
- Track light reaches a sensor along the Cherenkov cone: the photon flux through a
  cylinder of radius ρ falls as 1/(2πρ) per metre of track, times exp(-d/λ_att) with
  d = ρ/sinθc the photon path.
- Cascade light comes from the medium's photon tables (``nurec.physics.tables``, folded with
  the sensor in ``nurec.physics.folded``): the photon Monte Carlo carries the Cherenkov angular
  distribution, chromatic absorption and forward-peaked scattering, so the anisotropy of a
  cascade fades with distance as the medium makes it, and the tables' sensor (effective area
  and acceptance) replaces the PMT area and acceptance exponent below.
- Track light: PMT angular acceptance ((1 + cos α)/2)^p for a photon arriving at angle α to the PMT
  axis, a smooth form of the measured DOM acceptance; scattering makes arrival
  directions isotropic, so the photon direction's weight decays as exp(-d/λ_e).
"""

from __future__ import annotations

import numpy as np

from nurec.physics.folded import cascade_npe_per_gev
from nurec.physics.medium import Medium

PHOTONS_PER_GEV = 1.0e5
_MIN_DISTANCE_M = 1.0  # regularises the flux for sensors touching the emitter


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the dot products of the vectors along the last axis (broadcasting)."""
    return np.einsum("...i,...i->...", a, b)


def pmt_acceptance(cos_alpha: np.ndarray, exponent: float = 1.5) -> np.ndarray:
    """Return the relative PMT acceptance ((1 + cos α)/2)^exponent, 0 from behind, 1 head-on."""
    return np.clip(0.5 * (1.0 + np.asarray(cos_alpha)), 0.0, 1.0) ** exponent


def arrival_cos_alpha(photon_dir: np.ndarray, pmt_dir: np.ndarray, distance_m: np.ndarray,
                      medium: Medium) -> np.ndarray:
    """Return the effective cos of the angle between the arriving photon and the PMT axis.

    A photon travelling along ``photon_dir`` enters a PMT facing ``pmt_dir`` head-on when
    they are antiparallel. Scattering randomises directions: the direct term's weight
    is exp(-d/λ_e), the rest averages to 0.
    """
    cos_direct = -_dot(photon_dir, pmt_dir)
    return cos_direct * np.exp(-np.asarray(distance_m) / medium.effective_scattering_length_m)


def expected_npe_cascade(
    sensor_pos: np.ndarray,
    sensor_dir: np.ndarray,
    vertex: np.ndarray,
    direction: np.ndarray,
    em_energy_gev: np.ndarray,
    medium: Medium,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (expected photo-electrons, source distance [m]) of the medium's standard sensors from a point cascade.

    From the medium's photon tables folded with its sensor (``nurec.physics.folded``): the
    Cherenkov yield of Rädel & Wiebusch, the medium's wavelength-dependent absorption and
    scattering, and the sensor's effective area and angular acceptance. ``em_energy_gev`` is
    the electromagnetic-equivalent energy (hadronic showers scaled by hadronic_light_factor);
    a sensor's relative efficiency (``Geometry.efficiency``) multiplies the result. Arrays
    broadcast; last axis of vectors is (x, y, z).
    """
    per_gev, distance = cascade_npe_per_gev(medium.name, sensor_pos, sensor_dir, vertex, direction)
    return np.asarray(em_energy_gev) * per_gev, distance


def expected_npe_track(
    perpendicular_m: np.ndarray,
    distance_m: np.ndarray,
    photons_per_m: np.ndarray,
    cos_alpha: np.ndarray,
    medium: Medium,
    pmt_area_m2: float,
    acceptance_exponent: float = 1.5,
) -> np.ndarray:
    """Return expected photo-electrons at sensors from a track segment seen on its Cherenkov cone.

    ``perpendicular_m`` is the closest-approach distance ρ, ``distance_m`` the photon path
    ρ/sinθc, ``photons_per_m`` the track's light per metre at the emission point, and
    ``cos_alpha`` the effective arrival angle cosine at the PMT (arrival_cos_alpha).
    """
    rho = np.maximum(perpendicular_m, _MIN_DISTANCE_M)
    flux_per_m = np.exp(-distance_m / medium.attenuation_length_m) / (2 * np.pi * rho)
    return photons_per_m * flux_per_m * pmt_area_m2 * pmt_acceptance(cos_alpha, acceptance_exponent)
