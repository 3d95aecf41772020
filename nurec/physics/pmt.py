"""The KM3NeT 3-inch PMT from the experiment's public software, reduced to nurec's sensor model.

Source: Jpp, ``JPhysics/KM3NeT.hh`` (photocathode area 45.4 cm²; quantum efficiency vs
wavelength including absorption in the glass sphere and optical gel, times a collection
efficiency of 0.9; angular acceptance vs the cosine of the photon's angle to the PMT axis),
as transcribed in KM3NeT's LumenManufaktur.jl (``src/LumenManufaktur.jl``, ``KM3NeTPMT``).

The water photon tables (nurec.physics.sensors, nurec.physics.tables) fold these into every
expected charge: the effective area over the Cherenkov spectrum and the acceptance per
photon arrival direction.
"""

from __future__ import annotations

import numpy as np

KM3NET_PHOTOCATHODE_AREA_M2 = 45.4e-4

_QE_WAVELENGTH_NM = np.array([270.0, *np.arange(275.0, 715.0, 5.0)])
_QE_PERCENT = np.array([
    0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.1, 0.9, 1.8, 4.6, 7.4, 11.0, 15.0, 18.0, 21.0, 22.0, 23.0, 24.0, 25.0,
    25.0, 26.0, 26.0, 26.0, 26.0, 27.0, 26.0, 26.0, 26.0, 26.0, 26.0, 25.0, 25.0, 25.0, 25.0, 24.0, 24.0,
    24.0, 23.0, 22.0, 22.0, 21.0, 20.0, 19.0, 19.0, 19.0, 18.0, 18.0, 18.0, 17.0, 16.0, 15.0, 14.0, 12.0,
    11.0, 10.0, 9.5, 8.7, 8.1, 7.6, 7.2, 6.8, 6.4, 6.0, 5.6, 5.1, 4.8, 4.4, 4.0, 3.6, 3.3, 3.0, 2.7, 2.3,
    2.1, 1.9, 1.7, 1.5, 1.4, 1.2, 1.0, 0.9, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0,
])
_COLLECTION_EFFICIENCY = 0.9

# Angular acceptance vs cos of the angle between photon direction and PMT axis (-1: head-on);
# zero beyond 0.4.
_ACCEPTANCE_COS = np.arange(-1.0, 0.4001, 0.05)
_ACCEPTANCE = np.array([
    1.621, 1.346, 1.193, 1.073, 0.973, 0.877, 0.790, 0.711, 0.640, 0.575, 0.517, 0.450, 0.396, 0.341, 0.295,
    0.249, 0.207, 0.166, 0.128, 0.095, 0.065, 0.038, 0.017, 0.006, 0.003, 0.002, 0.001, 0.001, 0.001,
])


def km3net_quantum_efficiency(wavelength_nm: np.ndarray) -> np.ndarray:
    """Return the KM3NeT PMT's detection efficiency (QE × glass/gel transmission × collection) at ``wavelength_nm``."""
    return np.interp(wavelength_nm, _QE_WAVELENGTH_NM, _QE_PERCENT * 0.01 * _COLLECTION_EFFICIENCY, left=0.0, right=0.0)


def km3net_angular_acceptance(cos_photon_axis: np.ndarray) -> np.ndarray:
    """Return the KM3NeT PMT's angular acceptance (Jpp normalisation) vs cos(photon direction, PMT axis)."""
    return np.interp(cos_photon_axis, _ACCEPTANCE_COS, _ACCEPTANCE, right=0.0)
