"""Neutrino interaction physics: cross sections, inelasticity, deep-inelastic kinematics, hadronic light."""

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


# Masses [GeV] (PDG 2022).
NUCLEON_MASS_GEV = 0.93827
PION_MASS_GEV = 0.13957
MUON_MASS_GEV = 0.10566
TAU_MASS_GEV = 1.77686

# Parton momentum distributions of the quark-parton model, as Beta densities in Bjorken x:
# valence x·q_v(x) ∝ x^0.5 (1 - x)^3 and sea x·q̄(x) ∝ (1 - x)^7 (the classic shapes,
# F. E. Close, An Introduction to Quarks and Partons, 1979, ch. 9; Halzen & Martin, Quarks
# and Leptons, 1984, §9.5). The sea carries ~15% of the quark momentum at a few GeV².
_VALENCE_BETA = (1.5, 4.0)
_SEA_BETA = (1.0, 8.0)
_SEA_FRACTION = 0.15
_X_CANDIDATES = 8  # kinematically allowed x is found among a fixed number of draws per event


def sample_bjorken_x(n_events: int, rng: np.random.Generator, candidates: int = _X_CANDIDATES) -> np.ndarray:
    """Return ``candidates`` Bjorken-x draws per event (shape n × candidates) from the valence + sea mixture."""
    sea = rng.random((n_events, candidates)) < _SEA_FRACTION
    valence_x = rng.beta(*_VALENCE_BETA, (n_events, candidates))
    sea_x = rng.beta(*_SEA_BETA, (n_events, candidates))
    return np.where(sea, sea_x, valence_x)


def lepton_cos_theta(energy_gev: np.ndarray, x: np.ndarray, y: np.ndarray, lepton_mass_gev: np.ndarray) -> np.ndarray:
    """Return cos of the angle between the outgoing lepton and the neutrino; NaN where kinematics forbid it.

    With Q² = 2 M x y E and the lepton's energy E_l = (1 - y) E and momentum p_l:
    Q² = 2 E (E_l - p_l cos θ) - m_l², so cos θ = (2 E E_l - m_l² - Q²) / (2 E p_l).
    Forbidden: E_l ≤ m_l, |cos θ| > 1, or a hadronic mass W below nucleon + pion, except for
    elastic scattering (x = 1, W = M: quasi-elastic, which dominates near 1 GeV).
    """
    energy, x, y, mass = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (energy_gev, x, y, lepton_mass_gev)))
    lepton_energy = (1.0 - y) * energy
    momentum = np.sqrt(np.maximum(lepton_energy**2 - mass**2, 0.0))
    q2 = 2.0 * NUCLEON_MASS_GEV * x * y * energy
    w2 = NUCLEON_MASS_GEV**2 + 2.0 * NUCLEON_MASS_GEV * y * energy * (1.0 - x)
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = (2.0 * energy * lepton_energy - mass**2 - q2) / (2.0 * energy * momentum)
    inelastic = w2 >= (NUCLEON_MASS_GEV + PION_MASS_GEV) ** 2
    allowed = (momentum > 0) & (np.abs(cos) <= 1.0) & (inelastic | (x == 1.0))
    return np.where(allowed, cos, np.nan)


def sample_lepton_cos_theta(energy_gev: np.ndarray, y: np.ndarray, lepton_mass_gev: np.ndarray,
                            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Return (Bjorken x, cos θ of the lepton to the neutrino) from deep-inelastic kinematics.

    x is drawn from the parton distributions; the first kinematically allowed of a fixed
    number of draws is kept (so the random stream does not depend on the outcome). Where
    none is allowed (below the inelastic threshold), the scattering is taken as elastic
    (x = 1, quasi-elastic); where even that is forbidden, the lepton goes forward (cos θ = 1).
    """
    n = len(np.asarray(energy_gev))
    candidates = np.concatenate([sample_bjorken_x(n, rng), np.ones((n, 1))], axis=1)
    cos = lepton_cos_theta(np.asarray(energy_gev)[:, None], candidates, np.asarray(y)[:, None],
                           np.asarray(lepton_mass_gev)[:, None])
    allowed = np.isfinite(cos)
    first = np.argmax(allowed, axis=1)
    found = allowed.any(axis=1)
    rows = np.arange(n)
    return np.where(found, candidates[rows, first], 1.0), np.where(found, cos[rows, first], 1.0)


# Hadronic cascades (π+ as the standard hadron): F(E) = 1 - (E/E0)^-m (1 - f0) with the
# relative spread σ_F/F = rms0 · ln(E/GeV)^-γ, E ≥ e (L. Rädel & C. Wiebusch, Astropart. Phys.
# 38 (2012) 53, with the hadron values as recalculated for IceCube's ppc and CLSim).
_HADRON_E0_GEV = 0.18791678
_HADRON_M = 0.16267529
_HADRON_F0 = 0.30974123
_HADRON_RMS0 = 0.95899551
_HADRON_GAMMA = 1.35589541


def hadronic_light_factor(energy_gev: np.ndarray) -> np.ndarray:
    """Return the mean light yield of a hadronic cascade relative to an EM one of equal energy."""
    energy = np.maximum(np.asarray(energy_gev, dtype=float), np.e)
    return 1.0 - (energy / _HADRON_E0_GEV) ** -_HADRON_M * (1.0 - _HADRON_F0)


def sample_hadronic_light_factor(energy_gev: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return hadronic light factors drawn around their mean with Rädel & Wiebusch's spread, within [0, 1.1].

    One normal deviate per cascade, redrawn (in order, for the few outside the range) until inside.
    """
    energy = np.maximum(np.asarray(energy_gev, dtype=float), np.e)
    mean = hadronic_light_factor(energy)
    spread = mean * _HADRON_RMS0 * np.log(energy) ** -_HADRON_GAMMA
    factor = mean + spread * rng.standard_normal(mean.shape)
    bad = np.flatnonzero((factor < 0.0) | (factor > 1.1))
    while len(bad):
        factor[bad] = mean[bad] + spread[bad] * rng.standard_normal(len(bad))
        bad = bad[(factor[bad] < 0.0) | (factor[bad] > 1.1)]
    return factor


# τ → μ ν ν branching ratio 17.4% (PDG); the muon carries on average ~1/3 of the τ energy.
TAU_TO_MUON_BRANCHING = 0.1739
