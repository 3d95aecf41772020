"""Neutrino interaction physics: cross sections, inelasticity, ν–μ angle, hadronic light."""

from __future__ import annotations

import numpy as np

AVOGADRO = 6.02214076e23  # 1/mol, CODATA
# Nucleon number density of ice (0.917 g/cm^3) and sea water (1.038 g/cm^3): rho * N_A.
NUCLEON_DENSITY_PER_CM3 = {"ice": 0.917 * AVOGADRO, "water": 1.038 * AVOGADRO}

# Charged-current cross sections per nucleon.
# Below ~3 TeV σ/E is constant: 0.677e-38 cm²/GeV (ν), 0.334e-38 cm²/GeV (ν̄)
# (PDG Review of Particle Physics, "Neutrino cross section measurements", 2022).
# Above 1e6 GeV the Gandhi et al. power laws (Phys. Rev. D 58 (1998) 093009):
# σ_CC(ν) = 2.69e-36 cm² (E/GeV)^0.402, σ_CC(ν̄) = 2.53e-36 cm² (E/GeV)^0.404.
# In between, the two are joined by log-log interpolation (the W propagator damping).
_CC_LINEAR_CM2_PER_GEV = {1: 0.677e-38, -1: 0.334e-38}
_CC_POWER = {1: (2.69e-36, 0.402), -1: (2.53e-36, 0.404)}
_LINEAR_MAX_GEV = 3.0e3
_POWER_MIN_GEV = 1.0e6
# NC/CC ratio ≈ 0.31 (ν) and 0.37 (ν̄) (Llewellyn Smith relations; PDG).
_NC_TO_CC = {1: 0.31, -1: 0.37}


def cross_section_cm2(energy_gev: np.ndarray, pdg: np.ndarray, interaction: np.ndarray) -> np.ndarray:
    """Return the neutrino–nucleon cross section [cm²] for CC ("CC") or NC ("NC") interactions."""
    energy = np.asarray(energy_gev, dtype=float)
    sign = np.where(np.asarray(pdg) > 0, 1, -1)
    sigma = np.empty_like(energy)
    for s in (1, -1):
        m = sign == s
        e = energy[m]
        linear = _CC_LINEAR_CM2_PER_GEV[s] * e
        norm, power = _CC_POWER[s]
        high = norm * e**power
        lo = np.log(_LINEAR_MAX_GEV)
        hi = np.log(_POWER_MIN_GEV)
        s_lo = np.log(_CC_LINEAR_CM2_PER_GEV[s] * _LINEAR_MAX_GEV)
        s_hi = np.log(norm * _POWER_MIN_GEV**power)
        frac = np.clip((np.log(e) - lo) / (hi - lo), 0.0, 1.0)
        middle = np.exp(s_lo + frac * (s_hi - s_lo))
        sigma[m] = np.where(e <= _LINEAR_MAX_GEV, linear, np.where(e >= _POWER_MIN_GEV, high, middle))
    is_nc = np.asarray(interaction) == "NC"
    nc_ratio = np.where(sign > 0, _NC_TO_CC[1], _NC_TO_CC[-1])
    return np.where(is_nc, sigma * nc_ratio, sigma)


def sample_inelasticity(pdg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return Bjorken y sampled from dσ/dy ∝ f_q + (1 - f_q)(1 - y)².

    Quark scattering gives a flat y distribution for ν and (1-y)² for ν̄; antiquarks the
    reverse. f_q = 0.8 (ν) / 0.2 (ν̄) approximates the valence-plus-sea mixture at
    10 GeV–1 PeV (mean y ≈ 0.45 / 0.3; cf. Gandhi et al. 1996, Astropart. Phys. 5, 81).
    """
    pdg = np.asarray(pdg)
    quark_fraction = np.where(pdg > 0, 0.8, 0.2)
    flat = rng.random(len(pdg)) < quark_fraction
    u = rng.random(len(pdg))
    # density 3(1-y)^2 on [0, 1] -> 1 - y = U^(1/3)
    return np.where(flat, u, 1.0 - np.cbrt(u))


def mean_kinematic_angle_deg(energy_gev: np.ndarray) -> np.ndarray:
    """Return the mean ν–μ angle [deg]: 0.6° / sqrt(E/TeV) (KM3NeT LoI, J. Phys. G 43 (2016) 084001)."""
    return 0.6 / np.sqrt(np.asarray(energy_gev) / 1.0e3)


def sample_kinematic_angle_rad(energy_gev: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return ν–μ opening angles [rad], Rayleigh-distributed with the parametrised mean.

    A 2D Gaussian scatter of the muon around the neutrino axis gives a Rayleigh
    distributed angle; its scale σ = mean / sqrt(π/2).
    """
    sigma = np.radians(mean_kinematic_angle_deg(energy_gev)) / np.sqrt(np.pi / 2)
    return rng.rayleigh(sigma)


def hadronic_light_factor(energy_gev: np.ndarray) -> np.ndarray:
    """Return the light yield of a hadronic cascade relative to an EM one of equal energy.

    F(E) = 1 - (E/E0)^-m (1 - f0) with E0 = 0.188 GeV, m = 0.163, f0 = 0.41
    (Kowalski, 2004; Rädel & Wiebusch, Astropart. Phys. 38 (2012) 53).
    """
    energy = np.maximum(np.asarray(energy_gev, dtype=float), 0.188)
    return 1.0 - (energy / 0.188) ** -0.163 * (1.0 - 0.41)


# τ → μ ν ν branching ratio 17.4% (PDG); the muon carries on average ~1/3 of the τ energy.
TAU_TO_MUON_BRANCHING = 0.1739
