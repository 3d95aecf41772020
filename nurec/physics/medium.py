"""Optical and muon-energy-loss properties of the detection media (ice, sea water)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPEED_OF_LIGHT_M_PER_NS = 0.299792458  # CODATA


@dataclass(frozen=True)
class Medium:
    """Bulk properties of a detection medium, averaged over depth and wavelength.

    Pandel parameters (tau, lambda, absorption) define the scattering delay pdf; the
    attenuation length sets how the expected charge falls with distance.
    """

    name: str
    refractive_index_phase: float
    refractive_index_group: float
    absorption_length_m: float
    effective_scattering_length_m: float
    attenuation_length_m: float
    pandel_tau_ns: float
    pandel_lambda_m: float
    pandel_absorption_m: float
    muon_loss_a_gev_per_m: float
    muon_loss_b_per_m: float
    # Depth-dependent absorption applied on top of the bulk tables (nurec.physics.ice_layers;
    # positions in IceCube coordinates).
    layered_absorption: bool = False

    @property
    def cherenkov_angle_rad(self) -> float:
        """Return the Cherenkov angle of a β=1 particle, arccos(1/n_phase) [rad]."""
        return float(np.arccos(1.0 / self.refractive_index_phase))

    @property
    def light_speed_m_per_ns(self) -> float:
        """Return the photon (group) speed c/n_group [m/ns]."""
        return SPEED_OF_LIGHT_M_PER_NS / self.refractive_index_group


# South Pole ice at ~400 nm.
# Refractive indices: n_phase = 1.3195, n_group = 1.35634 (Price & Bergström,
# Appl. Opt. 36 (1997) 4181), Cherenkov angle ≈ 40.7°.
# Pandel parameters tau = 557 ns, lambda = 33.3 m, lambda_a = 98 m (AMANDA,
# Ahrens et al., NIM A 524 (2004) 169, Table 1).
# Attenuation length: diffusion length sqrt(lambda_a * lambda_e / 3) with the same
# absorption and effective scattering lengths (≈ 33 m).
# Muon energy loss -dE/dx = a + bE with a = 0.26 GeV/m, b = 3.6e-4 /m
# (Chirkin & Rhode, hep-ph/0407075, fit for ice).
ICE = Medium(
    name="ice",
    refractive_index_phase=1.3195,
    refractive_index_group=1.35634,
    absorption_length_m=98.0,
    effective_scattering_length_m=33.3,
    attenuation_length_m=float(np.sqrt(98.0 * 33.3 / 3.0)),
    pandel_tau_ns=557.0,
    pandel_lambda_m=33.3,
    pandel_absorption_m=98.0,
    muon_loss_a_gev_per_m=0.26,
    muon_loss_b_per_m=3.6e-4,
    layered_absorption=True,
)

# Mediterranean sea water at ~470 nm.
# n_phase = 1.35 (Cherenkov angle 42.2°), n_group = 1.38 (KM3NeT LoI, J. Phys. G 43
# (2016) 084001). Absorption ~67 m, effective scattering ~265 m (ANTARES site
# measurements, Astropart. Phys. 23 (2005) 131); attenuation for direct light
# 1/(1/67 + 1/265) ≈ 53 m. Pandel delay parameters: lambda = effective scattering
# length, tau = 557 ns and lambda_a = absorption length (the ice form with water lengths).
# Muon loss from Jpp (JPHYSICS/JConstants.hh): a = 0.267*1.038 GeV/m,
# b = 3.40e-4*1.038 /m (the factor 1.038 is sea-water density).
WATER = Medium(
    name="water",
    refractive_index_phase=1.35,
    refractive_index_group=1.38,
    absorption_length_m=67.0,
    effective_scattering_length_m=265.0,
    attenuation_length_m=1.0 / (1.0 / 67.0 + 1.0 / 265.0),
    pandel_tau_ns=557.0,
    pandel_lambda_m=265.0,
    pandel_absorption_m=67.0,
    muon_loss_a_gev_per_m=0.267 * 1.038,
    muon_loss_b_per_m=3.40e-4 * 1.038,
)

MEDIA = {"ice": ICE, "water": WATER}


def get_medium(name: str) -> Medium:
    """Return the Medium called ``name`` ("ice" or "water")."""
    try:
        return MEDIA[name]
    except KeyError:
        raise ValueError(f"unknown medium '{name}' (known: {', '.join(MEDIA)})") from None
