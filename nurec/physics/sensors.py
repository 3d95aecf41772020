"""The optical sensors the photon tables are built for: wavelength efficiency and angular acceptance.

A sensor turns the photon fluence Φ [photons/m²] at its position into photo-electrons as
npe = ∫ Φ(λ, u) · effective_area_m2(λ) · acceptance(u·p) dλ dΩ, where ``effective_area_m2``
is the area × detection efficiency for a photon arriving head-on and ``acceptance`` the relative
response to a photon travelling along u onto a sensor facing p (cos = u·p = -1: head-on).

- KM3NeT 3-inch PMT (water): photocathode 45.4 cm² × QE(λ) (with glass, gel and a collection
  efficiency of 0.9), and the angular acceptance of Jpp (normalisation of Jpp, 1.621 head-on):
  ``nurec.physics.pmt``, from Jpp ``JPhysics/KM3NeT.hh``.
- IceCube DOM (ice): the DOM's effective area vs wavelength at normal incidence (glass + gel +
  10-inch PMT photocathode, 0-pe threshold; K. Hoshina, photonics ``lib/efficiency.h``, July 2007,
  as shipped in IceCube's CLSim ``GetIceCubeDOMAcceptance.py``), and the relative angular
  sensitivity without hole ice (a degree-10 polynomial in cos of the impact angle, ≈1 head-on;
  CLSim ``GetIceCubeDOMAngularSensitivity.py``, ``holeIce=False``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nurec.physics.optics import check_medium
from nurec.physics.pmt import (
    KM3NET_PHOTOCATHODE_AREA_M2,
    km3net_angular_acceptance,
    km3net_quantum_efficiency,
)

# IceCube DOM effective area [m²] at 260, 270, ..., 680 nm (photonics efficiency.h via CLSim).
_ICECUBE_AREA_NM = np.arange(260.0, 681.0, 10.0)
_ICECUBE_AREA_M2 = np.array([
    0.0000064522, 0.0000064522, 0.0000064522, 0.0000064522, 0.0000021980, 0.0001339040, 0.0005556810,
    0.0016953000, 0.0035997000, 0.0061340900, 0.0074592700, 0.0090579800, 0.0099246700, 0.0105769000,
    0.0110961000, 0.0114214000, 0.0114425000, 0.0111527000, 0.0108086000, 0.0104458000, 0.0099763100,
    0.0093102500, 0.0087516600, 0.0083225800, 0.0079767200, 0.0075625100, 0.0066377000, 0.0053335800,
    0.0043789400, 0.0037583500, 0.0033279800, 0.0029212500, 0.0025334900, 0.0021115400, 0.0017363300,
    0.0013552700, 0.0010546600, 0.0007201020, 0.0004843820, 0.0002911110, 0.0001782310, 0.0001144300,
    0.0000509155,
])
# Relative angular sensitivity, polynomial coefficients (x^0 ... x^10) in x = cos of the angle
# between the DOM axis and the direction the photon comes from (x = 1: head-on). CLSim, no hole ice.
_ICECUBE_ANGULAR_POLY = (0.26266, 0.47659, 0.15480, -0.14588, 0.17316, 1.3070, 0.44441, -2.3538, -1.3564,
                         1.2098, 0.81569)


def km3net_effective_area_m2(wavelength_nm) -> np.ndarray:
    """Return the KM3NeT PMT's head-on effective area [m²] (photocathode × QE × collection) vs wavelength."""
    return KM3NET_PHOTOCATHODE_AREA_M2 * km3net_quantum_efficiency(np.asarray(wavelength_nm, dtype=float))


def icecube_effective_area_m2(wavelength_nm) -> np.ndarray:
    """Return the IceCube DOM's head-on effective area [m²] vs wavelength (0 outside 260-680 nm)."""
    return np.interp(np.asarray(wavelength_nm, dtype=float), _ICECUBE_AREA_NM, _ICECUBE_AREA_M2,
                     left=0.0, right=0.0)


def icecube_angular_acceptance(cos_photon_axis) -> np.ndarray:
    """Return the IceCube DOM's relative acceptance vs cos(photon direction, DOM axis) (-1: head-on)."""
    x = -np.clip(np.asarray(cos_photon_axis, dtype=float), -1.0, 1.0)
    return np.maximum(np.polynomial.polynomial.polyval(x, _ICECUBE_ANGULAR_POLY), 0.0)


@dataclass(frozen=True)
class Sensor:
    """An optical sensor: head-on effective area vs wavelength and relative angular acceptance."""

    name: str
    effective_area_m2: Callable[[np.ndarray], np.ndarray]
    acceptance: Callable[[np.ndarray], np.ndarray]


KM3NET_PMT = Sensor("km3net-3inch-pmt", km3net_effective_area_m2, km3net_angular_acceptance)
ICECUBE_DOM = Sensor("icecube-dom", icecube_effective_area_m2, icecube_angular_acceptance)
SENSOR_OF_MEDIUM = {"water": KM3NET_PMT, "ice": ICECUBE_DOM}


def sensor_for(medium: str) -> Sensor:
    """Return the sensor the tables of ``medium`` are built for (water: KM3NeT PMT; ice: IceCube DOM)."""
    return SENSOR_OF_MEDIUM[check_medium(medium)]
