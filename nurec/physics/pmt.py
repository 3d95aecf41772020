"""The KM3NeT 3-inch PMT from the experiment's public software, reduced to nurec's sensor model.

Source: Jpp, ``JPhysics/KM3NeT.hh`` (photocathode area 45.4 cm²; quantum efficiency vs
wavelength including absorption in the glass sphere and optical gel, times a collection
efficiency of 0.9; angular acceptance vs the cosine of the photon's angle to the PMT axis),
as transcribed in KM3NeT's LumenManufaktur.jl (``src/LumenManufaktur.jl``, ``KM3NeTPMT``).

nurec's sensor model (nurec.physics.light) counts Cherenkov photons in the 300–500 nm band
and multiplies by an effective area at normal incidence and a relative acceptance
((1 + cos α)/2)^p. ``km3net_pmt_area_m2`` and ``km3net_acceptance_exponent`` are derived
from the tables above, not tuned: the area is photocathode × QE averaged over the Cherenkov
spectrum (∝ 1/λ²) relative to the photons counted in 300–500 nm, times the head-on
acceptance; the exponent is the least-squares fit of the acceptance shape with the
solid-angle integral of the table kept.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from scipy.optimize import minimize_scalar

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
_PHOTON_BAND_NM = (300.0, 500.0)  # the band nurec.physics.light.PHOTONS_PER_GEV counts


def km3net_quantum_efficiency(wavelength_nm: np.ndarray) -> np.ndarray:
    """Return the KM3NeT PMT's detection efficiency (QE × glass/gel transmission × collection) at ``wavelength_nm``."""
    return np.interp(wavelength_nm, _QE_WAVELENGTH_NM, _QE_PERCENT * 0.01 * _COLLECTION_EFFICIENCY, left=0.0, right=0.0)


def km3net_angular_acceptance(cos_photon_axis: np.ndarray) -> np.ndarray:
    """Return the KM3NeT PMT's angular acceptance (Jpp normalisation) vs cos(photon direction, PMT axis)."""
    return np.interp(cos_photon_axis, _ACCEPTANCE_COS, _ACCEPTANCE, right=0.0)


def cherenkov_weighted_efficiency(efficiency, band_nm: tuple[float, float] = _PHOTON_BAND_NM) -> float:
    """Return ∫ ε(λ) λ⁻² dλ / ∫_band λ⁻² dλ: detected photo-electrons per Cherenkov photon counted in ``band_nm``."""
    wavelength = np.linspace(250.0, 750.0, 20001)
    detected = np.trapezoid(efficiency(wavelength) / wavelength**2, wavelength)
    return float(detected / (1.0 / band_nm[0] - 1.0 / band_nm[1]))


@cache
def km3net_sensor_model() -> tuple[float, float]:
    """Return (effective area at normal incidence [m²], acceptance exponent p) of the KM3NeT PMT."""
    cos = np.linspace(-1.0, 1.0, 4001)
    table = km3net_angular_acceptance(cos)
    integral = np.trapezoid(table, cos)

    def shape(p: float) -> np.ndarray:
        power = ((1.0 - cos) / 2.0) ** p  # cos α = -cos(photon, axis)
        return integral / np.trapezoid(power, cos) * power

    fit = minimize_scalar(lambda p: float(np.mean((shape(p) - table) ** 2)), bounds=(0.5, 10.0), method="bounded")
    head_on = float(shape(fit.x)[0])
    area = KM3NET_PHOTOCATHODE_AREA_M2 * cherenkov_weighted_efficiency(km3net_quantum_efficiency) * head_on
    return area, float(fit.x)
