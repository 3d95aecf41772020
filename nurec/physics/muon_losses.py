"""Muon energy losses and multiple scattering in ice and sea water from published parametrisations.

What is modelled (all for a muon of total energy E, fractional energy transfer v = ε/E):

- Bremsstrahlung on nuclei and atomic electrons: Kelner, Kokoulin & Petrukhin, MEPhI
  preprint 024-95 (1995), in the form used by MMC (D. Chirkin & W. Rhode, hep-ph/0407075, section on bremsstrahlung) and
  PROPOSAL: screening constants B = 183 (202.4 for hydrogen), B' = 1429 (446), nuclear
  form factor D_n = 1.54 A^0.27.
- e+e- pair production: Kokoulin & Petrukhin, Proc. 12th ICCR (1971) 2436, with the
  atomic-electron term ζ of Kelner, Kokoulin & Petrukhin, Phys. At. Nucl. 61 (1998) 448;
  the integral over the pair asymmetry ρ is a Gauss-Legendre quadrature in ln(1 - ρ).
- Photonuclear: Bezrukov & Bugaev, Sov. J. Nucl. Phys. 33 (1981) 635, soft (vector-meson)
  part with nuclear shadowing G(x) and the muon-mass terms of Chirkin & Rhode (hep-ph/0407075),
  σ_γN(ν) = 114.3 + 1.647 ln²(0.0213 ν/GeV) μb (Kokoulin's fit, as in MMC).
- Ionisation: Bethe formula with the maximum-transfer and spin-1/2 terms and Sternheimer's
  density correction (PDG Review, "Passage of particles through matter": stopping power,
  density effect; Groom, Mokhov & Striganov, At. Data Nucl. Data Tables 78 (2001) 183);
  knock-on electrons (δ rays) above the cut are stochastic losses with the spin-1/2 spectrum
  (PDG, "energetic knock-on electrons", with Groom's T²/2E² term), the restricted mean
  (PDG, "restricted energy loss rates") is the continuous part below it.
- Stochastic propagation (``sample_stochastic_losses``): losses above the cut
  min(v_cut·E, e_cut) are discrete, drawn from the total cross section above the cut; the
  mean loss below the cut is continuous (the MMC/PROPOSAL scheme, hep-ph/0407075).
- Multiple scattering: Gaussian projected angles with the Highland width (PDG Review,
  "multiple scattering through small angles") and the radiation length of water,
  X0 = 36.08 g/cm² (PDG atomic and nuclear properties).

Media: H2O at the densities the project uses (ice 0.9216 g/cm³, sea water 1.038 g/cm³,
``nurec.physics.photon_mc.DENSITY_G_CM3``); the salt of sea water (3.5 % by mass) is
neglected, as in Jpp's use of a density-scaled water. Ionisation uses the liquid-water
constants for both media (I = 79.7 eV and Sternheimer's parameters from the PDG table of
liquid water); the density correction for ice is then off by its density scaling, a shift
below 0.5 % of the ionisation loss at 10 GeV.

Not modelled: the LPM suppression of the muon's bremsstrahlung and pair production (small at
the energies tabulated here; PROPOSAL offers it as an option), the hard (QCD) component of the
photonuclear cross section, the bremsstrahlung of the knocked-on electrons (Groom et al.'s
radiative correction to ionisation, 0.8 % of it at 10 GeV, growing like ln³E),
shell and Barkas corrections (muons below ~10 MeV), fluctuations of the continuous part
below the cut (it is its mean), muon decay and the angular deflection in single losses.

Units: energies in GeV (total energy, including the muon mass, unless named kinetic),
lengths in m, angles in rad, microscopic cross sections in cm², mass-normalised coefficients
in cm²/g, rates in 1/m.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from nurec.physics.photon_mc import DENSITY_G_CM3, FINE_STRUCTURE

# --- constants --------------------------------------------------------------------------
MUON_MASS_GEV = 0.1056583755  # PDG 2022
ELECTRON_MASS_GEV = 0.51099895e-3  # CODATA 2018
CLASSICAL_ELECTRON_RADIUS_CM = 2.8179403262e-13  # CODATA 2018
AVOGADRO_PER_MOL = 6.02214076e23  # SI definition
PION_MASS_GEV = 0.13957039  # charged pion, PDG 2022
NUCLEON_MASS_GEV = 0.5 * (0.93827208816 + 0.93956542052)  # mean of proton and neutron, CODATA 2018
# K = 4π N_A r_e² m_e c² (PDG Table 34.1), per mole: K Z/A is a per-gram coefficient.
IONISATION_K_GEV_CM2_PER_MOL = 0.307075e-3
SQRT_E = float(np.exp(0.5))
CM_PER_M = 100.0
CM2_PER_MICROBARN = 1e-30

LOSS_TYPES = ("ionisation", "bremsstrahlung", "pair_production", "photonuclear")
RADIATIVE = LOSS_TYPES[1:]

# Defaults of the stochastic/continuous split: losses above min(v_cut E, e_cut) are discrete.
# v_cut = 0.05 is PROPOSAL's usual setting outside the detector; an absolute 1 GeV cut keeps
# every loss that makes a visible cascade discrete (PROPOSAL's in-detector e_cut is 0.5 GeV).
DEFAULT_V_CUT = 0.05
DEFAULT_E_CUT_GEV = 1.0
# Muons stop (are dropped) below this kinetic energy: their residual range is < 0.01 g/cm².
STOP_KINETIC_GEV = 1e-3
# The sampling tables reach 100 PeV of kinetic energy.
MAX_KINETIC_GEV = 1e8


@dataclass(frozen=True)
class Element:
    """One kind of atom in a molecule, with its radiation-logarithm constants.

    ``screening_b``/``screening_b_prime``: the Thomas-Fermi constants of the nuclear and
    atomic-electron screening logarithms, 183 and 1429, or 202.4 and 446 for hydrogen
    (Kelner, Kokoulin & Petrukhin 1995, as listed in hep-ph/0407075 and PROPOSAL).
    """

    symbol: str
    z: int
    a_g_per_mol: float
    atoms_per_molecule: int
    screening_b: float
    screening_b_prime: float


@dataclass(frozen=True)
class Material:
    """A medium: composition, density and the constants of its ionisation loss."""

    name: str
    density_g_cm3: float
    elements: tuple[Element, ...]
    z_over_a: float
    mean_excitation_gev: float
    # Sternheimer density-effect parameters: -C̄, x0, x1, a, k, δ0 (PDG table of the medium).
    sternheimer_c_bar: float
    sternheimer_x0: float
    sternheimer_x1: float
    sternheimer_a: float
    sternheimer_k: float
    sternheimer_delta0: float
    radiation_length_g_cm2: float

    @property
    def molecules_per_gram(self) -> float:
        """Return N_A / (molar mass of one molecule) [1/g]."""
        return AVOGADRO_PER_MOL / sum(e.atoms_per_molecule * e.a_g_per_mol for e in self.elements)

    @property
    def per_gram_to_per_m(self) -> float:
        """Return the factor that turns a coefficient in cm²/g into one per metre of track."""
        return self.density_g_cm3 * CM_PER_M


# Atomic weights as in the PDG tables of water (H 1.00794, O 15.9994).
HYDROGEN = Element("H", 1, 1.00794, 2, 202.4, 446.0)
OXYGEN = Element("O", 8, 15.9994, 1, 183.0, 1429.0)


def _water_like(name: str, density_g_cm3: float) -> Material:
    # PDG "Water (liquid)": <Z/A> = 0.55509, I = 79.7 eV, Sternheimer a = 0.09116,
    # k = 3.4773, x0 = 0.2400, x1 = 2.8004, C̄ = 3.5017, δ0 = 0; X0 = 36.08 g/cm².
    return Material(name=name, density_g_cm3=density_g_cm3, elements=(HYDROGEN, OXYGEN),
                    z_over_a=0.55509, mean_excitation_gev=79.7e-9, sternheimer_c_bar=3.5017,
                    sternheimer_x0=0.2400, sternheimer_x1=2.8004, sternheimer_a=0.09116,
                    sternheimer_k=3.4773, sternheimer_delta0=0.0, radiation_length_g_cm2=36.08)


MATERIALS = {name: _water_like(name, DENSITY_G_CM3[name]) for name in ("ice", "water")}


def get_material(medium_name: str) -> Material:
    """Return the Material of ``medium_name`` ("ice" or "water")."""
    try:
        return MATERIALS[medium_name]
    except KeyError:
        raise ValueError(f"unknown medium '{medium_name}' (known: {', '.join(MATERIALS)})") from None


# --- kinematics ---------------------------------------------------------------------------
def _beta_gamma_sq(energy_gev: np.ndarray) -> np.ndarray:
    gamma = energy_gev / MUON_MASS_GEV
    return np.maximum(gamma**2 - 1.0, 0.0)


def max_delta_ray_energy_gev(energy_gev: np.ndarray) -> np.ndarray:
    """Return the largest kinetic energy a muon gives a free electron, T_max (PDG Review)."""
    energy = np.asarray(energy_gev, dtype=float)
    gamma = energy / MUON_MASS_GEV
    mass_ratio = ELECTRON_MASS_GEV / MUON_MASS_GEV
    return 2.0 * ELECTRON_MASS_GEV * _beta_gamma_sq(energy) / (1.0 + 2.0 * gamma * mass_ratio + mass_ratio**2)


def _nuclear_v_max(energy_gev: np.ndarray, element: Element) -> np.ndarray:
    # Muon keeps at least (3/4)√e m Z^{1/3}: the end point of bremsstrahlung and pair production.
    return 1.0 - 0.75 * SQRT_E * MUON_MASS_GEV / energy_gev * element.z ** (1.0 / 3.0)


# Bremsstrahlung has no threshold: below this v its contribution to any moment is negligible.
BREMSSTRAHLUNG_V_FLOOR = 1e-12


def element_v_limits(process: str, energy_gev: np.ndarray, element: Element) -> tuple[np.ndarray, np.ndarray]:
    """Return the kinematic range (v_min, v_max) of a radiative ``process`` on ``element``.

    Limits as in hep-ph/0407075 and PROPOSAL: bremsstrahlung up to 1 - (3/4)√e (m/E) Z^{1/3};
    pair production from 4 m_e/E up to the same end point and 1 - 6 m²/E²; photonuclear from
    the pion threshold (m_π + m_π²/2M)/E up to 1 - M (1 + m²/M²)/2E and 1 - m/E.
    """
    energy = np.asarray(energy_gev, dtype=float)
    if process == "bremsstrahlung":
        v_min = np.full_like(energy, BREMSSTRAHLUNG_V_FLOOR)
        v_max = _nuclear_v_max(energy, element)
    elif process == "pair_production":
        v_min = 4.0 * ELECTRON_MASS_GEV / energy
        v_max = np.minimum(_nuclear_v_max(energy, element), 1.0 - 6.0 * MUON_MASS_GEV**2 / energy**2)
    elif process == "photonuclear":
        v_min = (PION_MASS_GEV + PION_MASS_GEV**2 / (2.0 * NUCLEON_MASS_GEV)) / energy
        recoil = NUCLEON_MASS_GEV * (1.0 + (MUON_MASS_GEV / NUCLEON_MASS_GEV) ** 2) / (2.0 * energy)
        v_max = np.minimum(1.0 - recoil, 1.0 - MUON_MASS_GEV / energy)
    else:
        raise ValueError(f"unknown radiative process '{process}' (known: {', '.join(RADIATIVE)})")
    return v_min, v_max


def _inside(v: np.ndarray, v_min: np.ndarray, v_max: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the mask of v strictly inside (v_min, v_max) and v with outside points set to a safe value."""
    inside = (v > v_min) & (v < v_max)
    lo, hi = np.clip(v_min, 0.0, 1.0), np.clip(v_max, 0.0, 1.0)
    return inside, np.where(inside, v, np.where(hi > lo, 0.5 * (lo + hi), 0.5))


# --- bremsstrahlung -----------------------------------------------------------------------
def bremsstrahlung_dsigma_dv(energy_gev: np.ndarray, v: np.ndarray, element: Element) -> np.ndarray:
    """Return dσ/dv [cm² per atom] of muon bremsstrahlung on the nucleus and electrons of ``element``.

    Kelner, Kokoulin & Petrukhin (1995) as written in hep-ph/0407075 (MMC):
    dσ/dv = α (2 Z r_e m_e/m)² (1/v) [4/3 (1 - v) + v²] Φ(δ), δ = m² v / (2E(1 - v)), with
    Φ = ln(m/δ) - 1/2 - Δ_a - Δ_n + (Δ_n [Z ≠ 1] + Φ_e)/Z: Δ_a is the atomic screening,
    Δ_n the nuclear size correction and Φ_e the bremsstrahlung on the atomic electrons.
    """
    energy, v = np.broadcast_arrays(np.asarray(energy_gev, dtype=float), np.asarray(v, dtype=float))
    _, v_max = element_v_limits("bremsstrahlung", energy, element)
    inside, v = _inside(v, 0.0, v_max)
    m, z = MUON_MASS_GEV, element.z
    delta = m**2 * v / (2.0 * energy * (1.0 - v))
    screening = element.screening_b * z ** (-1.0 / 3.0)
    delta_a = np.log1p(ELECTRON_MASS_GEV / (delta * SQRT_E * screening))
    form_factor = 1.54 * element.a_g_per_mol**0.27  # D_n
    delta_n = np.log(form_factor / (1.0 + delta * (form_factor * SQRT_E - 2.0) / m))
    phi = np.log(m / delta) - 0.5 - delta_a - delta_n
    phi = phi + (delta_n * (z != 1) + _brems_electron_phi(energy, v, delta, element)) / z
    prefactor = FINE_STRUCTURE * (2.0 * z * CLASSICAL_ELECTRON_RADIUS_CM * ELECTRON_MASS_GEV / m) ** 2
    sigma = prefactor / v * (4.0 / 3.0 * (1.0 - v) + v**2) * np.maximum(phi, 0.0)
    return np.where(inside, sigma, 0.0)


def _brems_electron_phi(energy: np.ndarray, v: np.ndarray, delta: np.ndarray, element: Element) -> np.ndarray:
    # Radiation on atomic electrons, allowed up to the largest transfer to a free electron:
    # v < m_e (E - m) / (E (E - p + m_e)).
    m = MUON_MASS_GEV
    energy_minus_momentum = m**2 / (energy + np.sqrt(np.maximum(energy**2 - m**2, 0.0)))  # no cancellation
    v_max = ELECTRON_MASS_GEV * (energy - m) / (energy * (energy_minus_momentum + ELECTRON_MASS_GEV))
    screening = element.screening_b_prime * element.z ** (-2.0 / 3.0)
    phi = (np.log((m / delta) / (delta * m / ELECTRON_MASS_GEV**2 + SQRT_E))
           - np.log1p(ELECTRON_MASS_GEV / (delta * SQRT_E * screening)))
    return np.where(v < v_max, np.maximum(phi, 0.0), 0.0)


# --- pair production ----------------------------------------------------------------------
# Gauss-Legendre nodes on [0, 1] for the integral over the pair asymmetry ρ.
_N_ASYMMETRY = 8
_GL_X, _GL_W = np.polynomial.legendre.leggauss(_N_ASYMMETRY)
_ASYMMETRY_NODES, _ASYMMETRY_WEIGHTS = 0.5 * (_GL_X + 1.0), 0.5 * _GL_W


def _atomic_electron_zeta(energy: np.ndarray, element: Element) -> np.ndarray:
    # Pair production on atomic electrons: Z² → Z(Z + ζ) (Kelner, Kokoulin & Petrukhin,
    # Phys. At. Nucl. 61 (1998) 448), γ1 = 1.95e-5, γ2 = 5.3e-5 (hydrogen 4.4e-5, 4.8e-5).
    gamma1, gamma2 = (4.4e-5, 4.8e-5) if element.z == 1 else (1.95e-5, 5.3e-5)
    lorentz = energy / MUON_MASS_GEV
    top = 0.073 * np.log(lorentz / (1.0 + gamma1 * element.z ** (2.0 / 3.0) * lorentz)) - 0.26
    bottom = 0.058 * np.log(lorentz / (1.0 + gamma2 * element.z ** (1.0 / 3.0) * lorentz)) - 0.14
    valid = (top > 0) & (bottom > 0)
    return np.where(valid, top / np.where(valid, bottom, 1.0), 0.0)


def _pair_integrand(energy, v, rho_sq, element: Element) -> np.ndarray:
    """Return Φ_e + (m_e/m)² Φ_μ of Kokoulin & Petrukhin at asymmetry ρ (arrays broadcast)."""
    m, me = MUON_MASS_GEV, ELECTRON_MASS_GEV
    z_third = element.z ** (1.0 / 3.0)
    screening = element.screening_b / z_third
    beta = v**2 / (2.0 * (1.0 - v))
    xi = (m * v / (2.0 * me)) ** 2 * (1.0 - rho_sq) / (1.0 - v)
    y_e = (5.0 - rho_sq + 4.0 * beta * (1.0 + rho_sq)) / (
        2.0 * (1.0 + 3.0 * beta) * np.log(3.0 + 1.0 / xi) - rho_sq - 2.0 * beta * (2.0 - rho_sq))
    y_mu = (4.0 + rho_sq + 3.0 * beta * (1.0 + rho_sq)) / (
        (1.0 + rho_sq) * (1.5 + 2.0 * beta) * np.log(3.0 + xi) + 1.0 - 1.5 * rho_sq)
    screen = 2.0 * me * SQRT_E * screening / (energy * v * (1.0 - rho_sq))
    spread_e = (1.0 + xi) * (1.0 + y_e)
    log_e = (np.log(screening * np.sqrt(spread_e) / (1.0 + screen * spread_e))
             - 0.5 * np.log1p((1.5 * me * z_third / m) ** 2 * spread_e))
    log_mu = np.log((m / me) * screening / (1.5 * z_third) / (1.0 + screen * (1.0 + xi) * (1.0 + y_mu)))
    return (np.where(log_e > 0, _pair_c_e(xi, rho_sq, beta) * log_e, 0.0)
            + (me / m) ** 2 * np.where(log_mu > 0, _pair_c_mu(xi, rho_sq, beta) * log_mu, 0.0))


def _pair_c_e(xi, rho_sq, beta) -> np.ndarray:
    exact = (((2.0 + rho_sq) * (1.0 + beta) + xi * (3.0 + rho_sq)) * np.log1p(1.0 / xi)
             + (1.0 - rho_sq - beta) / (1.0 + xi) - (3.0 + rho_sq))
    # Large ξ: the terms cancel to O(1/ξ); use the leading term of the expansion instead.
    asymptotic = (1.5 - 0.5 * rho_sq + beta * (1.0 + rho_sq)) / xi
    return np.where(xi > 1e5, asymptotic, exact)


def _pair_c_mu(xi, rho_sq, beta) -> np.ndarray:
    exact = (((1.0 + rho_sq) * (1.0 + 1.5 * beta) - (1.0 + 2.0 * beta) * (1.0 - rho_sq) / xi) * np.log1p(xi)
             + xi * (1.0 - rho_sq - beta) / (1.0 + xi) + (1.0 + 2.0 * beta) * (1.0 - rho_sq))
    # Small ξ: the constant terms cancel; leading term of the expansion.
    asymptotic = 0.5 * xi * (5.0 - rho_sq + beta * (3.0 + rho_sq))
    return np.where(xi < 1e-6, asymptotic, exact)


def pair_production_dsigma_dv(energy_gev: np.ndarray, v: np.ndarray, element: Element) -> np.ndarray:
    """Return dσ/dv [cm² per atom] of e+e- pair production by a muon on ``element``.

    Kokoulin & Petrukhin (1971), as in hep-ph/0407075 and PROPOSAL:
    dσ/dv = 4/(3π) Z (Z + ζ) (α r_e)² (1 - v)/v ∫_0^ρmax [Φ_e + (m_e/m)² Φ_μ] dρ,
    ρmax = [1 - 6 m²/(E²(1 - v))] sqrt(1 - 4 m_e/(E v)); the ρ integral is an 8-point
    Gauss-Legendre quadrature in ln(1 - ρ), which follows the integrand's rise near ρmax.
    """
    energy, v = np.broadcast_arrays(np.asarray(energy_gev, dtype=float), np.asarray(v, dtype=float))
    v_min, v_max = element_v_limits("pair_production", energy, element)
    inside, v = _inside(v, v_min, v_max)
    m = MUON_MASS_GEV
    # 1 - ρmax written without cancellation: α/(1 + √(1 - α)) + Δ √(1 - α).
    threshold = np.minimum(4.0 * ELECTRON_MASS_GEV / (energy * v), 1.0)
    root = np.sqrt(1.0 - threshold)
    recoil = 6.0 * m**2 / (energy**2 * (1.0 - v))
    log_gap = np.log(np.clip(threshold / (1.0 + root) + recoil * root, 1e-300, 1.0))  # ln(1 - ρmax) ≤ 0
    one_minus_rho = np.exp(log_gap[..., None] * _ASYMMETRY_NODES)
    rho_sq = (1.0 - one_minus_rho) ** 2
    integrand = _pair_integrand(energy[..., None], v[..., None], rho_sq, element)
    rho_integral = -log_gap * np.sum(_ASYMMETRY_WEIGHTS * one_minus_rho * integrand, axis=-1)
    z = element.z
    prefactor = 4.0 / (3.0 * np.pi) * z * (z + _atomic_electron_zeta(energy, element)) * (
        FINE_STRUCTURE * CLASSICAL_ELECTRON_RADIUS_CM) ** 2
    sigma = prefactor * (1.0 - v) / v * np.maximum(rho_integral, 0.0)
    return np.where(inside, sigma, 0.0)


# --- photonuclear -------------------------------------------------------------------------
# Vector-meson mass scales of the Bezrukov-Bugaev model [GeV²].
_BB_M1_SQ_GEV2 = 0.54
_BB_M2_SQ_GEV2 = 1.80


def photon_nucleon_cross_section_ub(photon_energy_gev: np.ndarray) -> np.ndarray:
    """Return σ_γN [μb] = 114.3 + 1.647 ln²(0.0213 ν/GeV) (Kokoulin's fit, used by MMC/PROPOSAL)."""
    return 114.3 + 1.647 * np.log(0.0213 * np.asarray(photon_energy_gev, dtype=float)) ** 2


def _shadowing(sigma_ub: np.ndarray, element: Element) -> np.ndarray:
    # Nuclear shadowing G(x) = 3/x³ (x²/2 - 1 + e^{-x}(1 + x)), x = 0.00282 A^{1/3} σ_γN[μb];
    # no shadowing on a free proton (Bezrukov & Bugaev 1981).
    if element.z == 1:
        return np.ones_like(sigma_ub)
    x = 0.00282 * element.a_g_per_mol ** (1.0 / 3.0) * sigma_ub
    return 3.0 / x**3 * (0.5 * x**2 - 1.0 + np.exp(-x) * (1.0 + x))


def photonuclear_dsigma_dv(energy_gev: np.ndarray, v: np.ndarray, element: Element) -> np.ndarray:
    """Return dσ/dv [cm² per atom] of the muon's photonuclear interaction with ``element``.

    Bezrukov & Bugaev (1981), soft part, with the muon-mass terms of hep-ph/0407075:
    dσ/dv = α/(2π) A σ_γN(vE) v {3/4 G [(κ + 4m²/m1²) ln(1 + m1²/t) - κ m1²/(m1² + t) - 2m²/t]
    + 1/4 [(κ + 2m²/m2²) ln(1 + m2²/t) - 2m²/t]
    + m²/(8t) [3G (m1² - 4t)/(m1² + t) + (m2²/t) ln(1 + t/m2²)]},
    t = m² v²/(1 - v), κ = 1 - 2/v + 2/v², m1² = 0.54 GeV², m2² = 1.80 GeV².
    """
    energy, v = np.broadcast_arrays(np.asarray(energy_gev, dtype=float), np.asarray(v, dtype=float))
    v_min, v_max = element_v_limits("photonuclear", energy, element)
    inside, v = _inside(v, v_min, v_max)
    m_sq, m1_sq, m2_sq = MUON_MASS_GEV**2, _BB_M1_SQ_GEV2, _BB_M2_SQ_GEV2
    sigma_ub = photon_nucleon_cross_section_ub(v * energy)
    shadow = _shadowing(sigma_ub, element)
    kappa = 1.0 - 2.0 / v + 2.0 / v**2
    t = m_sq * v**2 / (1.0 - v)
    rho_term = (kappa + 4.0 * m_sq / m1_sq) * np.log1p(m1_sq / t) - kappa * m1_sq / (m1_sq + t) - 2.0 * m_sq / t
    heavy_term = (kappa + 2.0 * m_sq / m2_sq) * np.log1p(m2_sq / t) - 2.0 * m_sq / t
    mass_term = m_sq / (8.0 * t) * (3.0 * shadow * (m1_sq - 4.0 * t) / (m1_sq + t) + m2_sq / t * np.log1p(t / m2_sq))
    bracket = 0.75 * shadow * rho_term + 0.25 * heavy_term + mass_term
    sigma = (FINE_STRUCTURE / (2.0 * np.pi) * element.a_g_per_mol * sigma_ub * CM2_PER_MICROBARN
             * v * bracket)
    return np.where(inside, np.maximum(sigma, 0.0), 0.0)


_ELEMENT_CROSS_SECTIONS = {
    "bremsstrahlung": bremsstrahlung_dsigma_dv,
    "pair_production": pair_production_dsigma_dv,
    "photonuclear": photonuclear_dsigma_dv,
}


# --- ionisation ---------------------------------------------------------------------------
def density_correction(energy_gev: np.ndarray, material: Material) -> np.ndarray:
    """Return Sternheimer's density-effect correction δ(βγ), x = log10(βγ) (PDG Review, density effect)."""
    x = 0.5 * np.log10(np.maximum(_beta_gamma_sq(np.asarray(energy_gev, dtype=float)), 1e-300))
    two_ln10 = 2.0 * np.log(10.0)
    high = two_ln10 * x - material.sternheimer_c_bar
    middle = high + material.sternheimer_a * np.clip(material.sternheimer_x1 - x, 0.0, None) ** material.sternheimer_k
    low = material.sternheimer_delta0 * 10.0 ** (2.0 * (x - material.sternheimer_x0))
    return np.where(x >= material.sternheimer_x1, high, np.where(x >= material.sternheimer_x0, middle, low))


def ionisation_loss_gev_cm2_per_g(energy_gev: np.ndarray, medium_name: str,
                                  max_transfer_gev: np.ndarray | None = None) -> np.ndarray:
    """Return the mean ionisation loss [GeV cm²/g], restricted to δ rays below ``max_transfer_gev``.

    Bethe formula for a spin-1/2 projectile, restricted form (PDG Review; Groom et al. 2001):
    K Z/A /β² [½ ln(2 m_e β²γ² T_up / I²) - β²/2 (1 + T_up/T_max) - δ/2 + T_up²/(8E²)],
    T_up = min(max_transfer_gev, T_max); without ``max_transfer_gev`` the full mean.
    """
    material = get_material(medium_name)
    energy = np.asarray(energy_gev, dtype=float)
    bg_sq = _beta_gamma_sq(energy)
    beta_sq = bg_sq / (1.0 + bg_sq)
    t_max = max_delta_ray_energy_gev(energy)
    t_up = t_max if max_transfer_gev is None else np.minimum(max_transfer_gev, t_max)
    t_up = np.maximum(t_up, 1e-300)
    bracket = (0.5 * np.log(2.0 * ELECTRON_MASS_GEV * bg_sq * t_up / material.mean_excitation_gev**2)
               - 0.5 * beta_sq * (1.0 + t_up / t_max) - 0.5 * density_correction(energy, material)
               + t_up**2 / (8.0 * energy**2))
    loss = IONISATION_K_GEV_CM2_PER_MOL * material.z_over_a / beta_sq * bracket
    return np.maximum(loss, 0.0)


def delta_ray_rate_per_g(energy_gev: np.ndarray, v: np.ndarray, medium_name: str) -> np.ndarray:
    """Return dN/(dX dv) [cm²/g] of knock-on electrons of kinetic energy T = vE.

    ½ K Z/A /β² E/T² [1 - β² T/T_max + T²/(2E²)] for T < T_max (PDG Review, knock-on
    electrons, with the spin-1/2 term); valid for T ≫ I, i.e. above any cut used here.
    """
    material = get_material(medium_name)
    energy, v = np.broadcast_arrays(np.asarray(energy_gev, dtype=float), np.asarray(v, dtype=float))
    bg_sq = _beta_gamma_sq(energy)
    beta_sq = bg_sq / (1.0 + bg_sq)
    t_max = max_delta_ray_energy_gev(energy)
    inside = (v > 0) & (v * energy < t_max)
    t = np.where(inside, v * energy, 0.5 * t_max)
    rate = (0.5 * IONISATION_K_GEV_CM2_PER_MOL * material.z_over_a / beta_sq * energy / t**2
            * (1.0 - beta_sq * t / t_max + t**2 / (2.0 * energy**2)))
    return np.where(inside, rate, 0.0)


# --- per-medium rates ---------------------------------------------------------------------
def v_limits(process: str, energy_gev: np.ndarray, medium_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Return the range (v_min, v_max) of ``process`` in the medium (widest over its elements).

    For ionisation v_min is 0: its low-v part is always handled by the restricted Bethe formula.
    """
    energy = np.asarray(energy_gev, dtype=float)
    if process == "ionisation":
        return np.zeros_like(energy), max_delta_ray_energy_gev(energy) / energy
    limits = [element_v_limits(process, energy, e) for e in get_material(medium_name).elements]
    return np.min([lo for lo, _ in limits], axis=0), np.max([hi for _, hi in limits], axis=0)


def differential_rate_per_g(process: str, energy_gev: np.ndarray, v: np.ndarray, medium_name: str) -> np.ndarray:
    """Return dN/(dX dv) [cm²/g] of ``process`` (one of LOSS_TYPES) in the medium, summed over atoms."""
    if process == "ionisation":
        return delta_ray_rate_per_g(energy_gev, v, medium_name)
    if process not in _ELEMENT_CROSS_SECTIONS:
        raise ValueError(f"unknown process '{process}' (known: {', '.join(LOSS_TYPES)})")
    material = get_material(medium_name)
    dsigma = _ELEMENT_CROSS_SECTIONS[process]
    per_molecule = sum(e.atoms_per_molecule * dsigma(energy_gev, v, e) for e in material.elements)
    return material.molecules_per_gram * per_molecule


def differential_rate_per_m(process: str, energy_gev: np.ndarray, v: np.ndarray, medium_name: str) -> np.ndarray:
    """Return dN/(dx dv) [1/m] of ``process`` in the medium at its density."""
    return differential_rate_per_g(process, energy_gev, v, medium_name) * get_material(medium_name).per_gram_to_per_m


# Composite Gauss-Legendre in ln v: panels × nodes per panel (each panel spans ≲ 1 decade).
_V_PANELS = 14
_V_NODES_PER_PANEL = 8


def _log_v_quadrature(v_lo: np.ndarray, v_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return nodes v (..., n) and weights w (..., n) with Σ w g(v) ≈ ∫_{v_lo}^{v_hi} g dv (0 if empty)."""
    x, w = np.polynomial.legendre.leggauss(_V_NODES_PER_PANEL)
    lo = np.log(np.asarray(v_lo, dtype=float))[..., None]
    hi = np.log(np.maximum(np.asarray(v_hi, dtype=float), np.asarray(v_lo, dtype=float)))[..., None]
    edges = lo + (hi - lo) * np.linspace(0.0, 1.0, _V_PANELS + 1)
    middle, half = 0.5 * (edges[..., 1:] + edges[..., :-1]), 0.5 * (edges[..., 1:] - edges[..., :-1])
    ln_v = (middle[..., None] + half[..., None] * x).reshape(*middle.shape[:-1], -1)
    weight = (half[..., None] * w).reshape(ln_v.shape)
    v = np.exp(ln_v)
    return v, weight * v


def energy_moment_per_g(process: str, energy_gev: np.ndarray, medium_name: str,
                        v_lo: np.ndarray | None = None, v_hi: np.ndarray | None = None) -> np.ndarray:
    """Return ∫ v dN/(dX dv) dv [cm²/g] over [v_lo, v_hi] ∩ kinematic range of ``process``.

    Times E it is the mean energy loss per g/cm² in that range of v; over the whole range it
    is the energy-loss coefficient b of the process.
    """
    energy = np.asarray(energy_gev, dtype=float)
    kin_lo, kin_hi = v_limits(process, energy, medium_name)
    hi = kin_hi if v_hi is None else np.minimum(kin_hi, v_hi)
    if process == "ionisation":  # the restricted Bethe formula integrates the δ-ray spectrum
        above = ionisation_loss_gev_cm2_per_g(energy, medium_name, hi * energy)
        if v_lo is None:
            return above / energy
        below = ionisation_loss_gev_cm2_per_g(energy, medium_name, np.minimum(v_lo, hi) * energy)
        return (above - below) / energy
    lo = kin_lo if v_lo is None else np.maximum(kin_lo, v_lo)
    v, w = _log_v_quadrature(lo, np.maximum(hi, lo))
    return np.sum(w * v * differential_rate_per_g(process, energy[..., None], v, medium_name), axis=-1)


def loss_coefficient_b_cm2_per_g(process: str, energy_gev: np.ndarray, medium_name: str) -> np.ndarray:
    """Return the radiative energy-loss coefficient b(E) = (1/E) ⟨-dE/dX⟩ [cm²/g] of ``process``."""
    if process not in RADIATIVE:
        raise ValueError(f"b is defined for the radiative processes {RADIATIVE}, not '{process}'")
    return energy_moment_per_g(process, energy_gev, medium_name)


def mean_energy_loss_gev_per_m(energy_gev: np.ndarray, medium_name: str) -> np.ndarray:
    """Return the mean total loss -dE/dx [GeV/m] (ionisation + the three radiative processes)."""
    energy = np.asarray(energy_gev, dtype=float)
    per_g = ionisation_loss_gev_cm2_per_g(energy, medium_name)
    per_g = per_g + energy * sum(loss_coefficient_b_cm2_per_g(p, energy, medium_name) for p in RADIATIVE)
    return per_g * get_material(medium_name).per_gram_to_per_m


def cut_v(energy_gev: np.ndarray, v_cut: float, e_cut_gev: float | None) -> np.ndarray:
    """Return the fractional cut min(v_cut, e_cut/E) above which losses are discrete."""
    energy = np.asarray(energy_gev, dtype=float)
    if e_cut_gev is None:
        return np.full_like(energy, float(v_cut))
    return np.minimum(float(v_cut), e_cut_gev / energy)


def continuous_loss_gev_per_m(energy_gev: np.ndarray, medium_name: str, v_cut: float,
                              e_cut_gev: float | None = DEFAULT_E_CUT_GEV) -> np.ndarray:
    """Return the mean loss below the cut [GeV/m]: the part propagated as continuous."""
    energy = np.asarray(energy_gev, dtype=float)
    cut = cut_v(energy, v_cut, e_cut_gev)
    per_g = ionisation_loss_gev_cm2_per_g(energy, medium_name, cut * energy)
    per_g = per_g + energy * sum(energy_moment_per_g(p, energy, medium_name, v_hi=cut) for p in RADIATIVE)
    return per_g * get_material(medium_name).per_gram_to_per_m


# --- sampling tables ----------------------------------------------------------------------
_TABLE_POINTS_PER_DECADE = 20
# Range and expected-count integrals grow like T where ionisation dominates: linear
# interpolation in ln T then misjudges local slopes by up to half a step, 0.06 % here.
_RANGE_POINTS_PER_DECADE = 2000
_V_TABLE_POINTS = 200
# Quantiles of the inverse-CDF tables, clustered towards both ends (Chebyshev-like).
_U_GRID = 0.5 * (1.0 - np.cos(np.pi * np.linspace(0.0, 1.0, 129)))


@dataclass(frozen=True)
class _SamplingTables:
    """Per (medium, v_cut, e_cut): everything the sampler interpolates, on a ln(kinetic) grid."""

    ln_kinetic: np.ndarray  # (n_e,)
    sigma_per_m: np.ndarray  # (n_proc, n_e): rate of losses above the cut
    inverse_cdf: np.ndarray  # (n_proc, n_e, n_u): x = ln(v/v_lo)/ln(v_hi/v_lo) at quantiles _U_GRID
    fine_ln_kinetic: np.ndarray  # (n_f,)
    range_m: np.ndarray  # (n_f,): ∫ dE / f(E) from the stopping energy, f = continuous loss
    expected_losses: np.ndarray  # (n_f,): ∫ λ(E) / f(E) dE, the mean number of losses on the way


def _sampling_v_limits(process: str, energy: np.ndarray, medium_name: str, cut: np.ndarray):
    """Return (v_lo, v_hi) of the discrete part of ``process``: above the cut, inside the kinematics."""
    kin_lo, kin_hi = v_limits(process, energy, medium_name)
    return np.maximum(cut, kin_lo), kin_hi


def _discrete_part(process: str, energy: np.ndarray, medium_name: str, cut: np.ndarray):
    """Return (σ [1/m], inverse CDF (n_e, n_u)) of the losses of ``process`` above the cut."""
    v_lo, v_hi = _sampling_v_limits(process, energy, medium_name, cut)
    open_ = v_hi > v_lo
    fraction = np.linspace(0.0, 1.0, _V_TABLE_POINTS)
    ln_lo, ln_span = np.log(v_lo), np.log(np.where(open_, v_hi / v_lo, 1.0))
    v = np.exp(ln_lo[:, None] + ln_span[:, None] * fraction)
    density = differential_rate_per_m(process, energy[:, None], v, medium_name) * v  # dN/dln v
    density[~open_] = 0.0
    steps = 0.5 * (density[:, 1:] + density[:, :-1]) * (ln_span[:, None] * np.diff(fraction))
    cumulative = np.concatenate([np.zeros((len(energy), 1)), np.cumsum(steps, axis=1)], axis=1)
    sigma = cumulative[:, -1]
    inverse = np.empty((len(energy), len(_U_GRID)))
    for k in range(len(energy)):
        if sigma[k] > 0:
            cdf = cumulative[k] / sigma[k]
            # Flat stretches (zero density) would make the inverse ambiguous: keep the first point.
            keep = np.concatenate([[True], np.diff(cdf) > 0])
            inverse[k] = np.interp(_U_GRID, cdf[keep], fraction[keep])
        else:
            inverse[k] = _U_GRID  # never drawn: σ = 0 here
    return sigma, inverse


def _cumulative_trapezoid(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(0.5 * (y[1:] + y[:-1]) * np.diff(x))])


@cache
def _sampling_tables(medium_name: str, v_cut: float, e_cut_gev: float | None) -> _SamplingTables:
    get_material(medium_name)
    decades = np.log10(MAX_KINETIC_GEV / STOP_KINETIC_GEV)
    ln_kinetic = np.linspace(np.log(STOP_KINETIC_GEV), np.log(MAX_KINETIC_GEV),
                             int(round(decades * _TABLE_POINTS_PER_DECADE)) + 1)
    energy = np.exp(ln_kinetic) + MUON_MASS_GEV
    cut = cut_v(energy, v_cut, e_cut_gev)
    parts = [_discrete_part(p, energy, medium_name, cut) for p in LOSS_TYPES]
    sigma = np.array([s for s, _ in parts])
    continuous = continuous_loss_gev_per_m(energy, medium_name, v_cut, e_cut_gev)
    # Range and expected number of losses on a finer grid, interpolating ln f and λ.
    fine = np.linspace(ln_kinetic[0], ln_kinetic[-1], int(round(decades * _RANGE_POINTS_PER_DECADE)) + 1)
    fine_kinetic = np.exp(fine)
    fine_loss = np.exp(np.interp(fine, ln_kinetic, np.log(continuous)))
    fine_rate = np.interp(fine, ln_kinetic, sigma.sum(axis=0))
    range_m = _cumulative_trapezoid(fine_kinetic / fine_loss, fine)  # dE = T dlnT
    expected = _cumulative_trapezoid(fine_kinetic * fine_rate / fine_loss, fine)
    # Strictly increasing, so that it can be inverted where no loss is possible (λ = 0).
    expected = expected + 1e-12 * np.arange(len(expected))
    return _SamplingTables(ln_kinetic, sigma, np.array([inv for _, inv in parts]), fine, range_m, expected)


# --- sampler ------------------------------------------------------------------------------
@dataclass(frozen=True)
class StochasticLosses:
    """Discrete losses of muons propagated over a segment, as flat columns plus offsets.

    Muon i owns the losses offsets[i]:offsets[i + 1], in the order they happened.
    ``position_m``: distance from the muon's start [m]; ``energy_gev``: energy given to the
    cascade (or δ electron) [GeV]; ``loss_type``: index into LOSS_TYPES. Per muon:
    ``initial_energy_gev``, ``final_energy_gev`` (the muon's mass if it stopped),
    ``distance_m`` travelled (< the segment if it stopped).
    """

    offsets: np.ndarray
    position_m: np.ndarray
    energy_gev: np.ndarray
    loss_type: np.ndarray
    initial_energy_gev: np.ndarray
    final_energy_gev: np.ndarray
    distance_m: np.ndarray

    @property
    def muon_index(self) -> np.ndarray:
        """Return the muon of each loss."""
        return np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))

    @property
    def discrete_loss_gev(self) -> np.ndarray:
        """Return the energy each muon lost in discrete losses [GeV]."""
        return np.bincount(self.muon_index, weights=self.energy_gev, minlength=len(self.offsets) - 1)

    @property
    def continuous_loss_gev(self) -> np.ndarray:
        """Return the energy each muon lost continuously (below the cut) [GeV]."""
        return self.initial_energy_gev - self.final_energy_gev - self.discrete_loss_gev

    @property
    def stopped(self) -> np.ndarray:
        """Return which muons came to rest inside the segment."""
        return self.final_energy_gev <= MUON_MASS_GEV


def _cell(grid: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the grid cell of each x and its linear weight towards the cell's upper node."""
    index = np.clip(np.searchsorted(grid, x) - 1, 0, len(grid) - 2)
    return index, np.clip((x - grid[index]) / (grid[index + 1] - grid[index]), 0.0, 1.0)


def _interp_rows(table: np.ndarray, ln_kinetic: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Linear interpolation of table (n_proc, n_e) at ln_kinetic → (n, n_proc)."""
    index, weight = _cell(grid, ln_kinetic)
    return (table[:, index] * (1.0 - weight) + table[:, index + 1] * weight).T


def _sample_fraction(tables: _SamplingTables, process: np.ndarray, ln_kinetic: np.ndarray,
                     u: np.ndarray) -> np.ndarray:
    """Return x ∈ [0, 1] at quantile u of ``process``'s v spectrum, bilinear in (ln T, u)."""
    ie, we = _cell(tables.ln_kinetic, ln_kinetic)
    iu, wu = _cell(_U_GRID, u)
    inv = tables.inverse_cdf
    low = inv[process, ie, iu] * (1.0 - wu) + inv[process, ie, iu + 1] * wu
    high = inv[process, ie + 1, iu] * (1.0 - wu) + inv[process, ie + 1, iu + 1] * wu
    return np.clip(low * (1.0 - we) + high * we, 0.0, 1.0)


def _draw_loss_fraction(tables, process, energy, ln_kinetic, u, medium_name, cut_args) -> np.ndarray:
    """Return v of the chosen processes: v_lo (v_hi/v_lo)^x with the limits at the loss energy."""
    cut = cut_v(energy, *cut_args)
    v_lo = np.empty_like(energy)
    v_hi = np.empty_like(energy)
    for code, name in enumerate(LOSS_TYPES):
        chosen = process == code
        if chosen.any():
            v_lo[chosen], v_hi[chosen] = _sampling_v_limits(name, energy[chosen], medium_name, cut[chosen])
    x = _sample_fraction(tables, process, ln_kinetic, u)
    return v_lo * np.exp(x * np.log(np.maximum(v_hi / v_lo, 1.0)))


def sample_stochastic_losses(energy_gev: np.ndarray, length_m: np.ndarray, medium_name: str, v_cut: float,
                             rng: np.random.Generator, e_cut_gev: float | None = DEFAULT_E_CUT_GEV,
                             ) -> StochasticLosses:
    """Propagate muons over at most ``length_m``, drawing their discrete losses.

    Losses with v above min(v_cut, e_cut_gev/E) (``e_cut_gev=None``: v_cut alone) are
    discrete; below the cut the muon loses its mean energy continuously, f(E) [GeV/m]. The
    distance to the next loss is drawn from the total rate above the cut λ(E) integrated
    along the continuous slowing-down (MMC's energy integral: ∫ λ/f dE = -ln ξ), so the energy
    dependence of λ between losses is exact; the process is drawn in proportion to its rate,
    v from its spectrum above the cut, both at the energy the muon has at that point.

    Each round draws three uniforms per muon still moving, in muon order, from ``rng``.
    Energies are total energies [GeV], with at most MAX_KINETIC_GEV of kinetic energy.
    """
    energy = np.atleast_1d(np.asarray(energy_gev, dtype=float)).ravel()
    length = np.broadcast_to(np.asarray(length_m, dtype=float), energy.shape).astype(float)
    if np.any(energy - MUON_MASS_GEV > MAX_KINETIC_GEV):
        raise ValueError(f"muon energies above {MAX_KINETIC_GEV:g} GeV are outside the tables")
    if np.any(length < 0):
        raise ValueError("length_m must be non-negative")
    if not 0.0 < v_cut <= 1.0 or (e_cut_gev is not None and e_cut_gev <= 0.0):
        raise ValueError(f"cuts must satisfy 0 < v_cut <= 1 and e_cut_gev > 0 (got {v_cut}, {e_cut_gev})")
    cut_args = (float(v_cut), None if e_cut_gev is None else float(e_cut_gev))
    tables = _sampling_tables(medium_name, *cut_args)
    fine, range_m, expected = tables.fine_ln_kinetic, tables.range_m, tables.expected_losses

    current = energy.copy()
    travelled = np.zeros_like(energy)
    records: list[tuple[np.ndarray, ...]] = []
    alive = np.flatnonzero((energy - MUON_MASS_GEV > STOP_KINETIC_GEV) & (length > 0))
    current[energy - MUON_MASS_GEV <= STOP_KINETIC_GEV] = MUON_MASS_GEV
    while alive.size:
        u = rng.random((alive.size, 3))
        ln_t = np.log(current[alive] - MUON_MASS_GEV)
        range_now = np.interp(ln_t, fine, range_m)
        # Target: the loss happens where the expected count has dropped by -ln ξ.
        target = np.interp(ln_t, fine, expected) + np.log(u[:, 0])
        ln_t_loss = np.interp(target, expected, fine)
        to_loss = range_now - np.interp(ln_t_loss, fine, range_m)
        left = length[alive] - travelled[alive]

        leaves = to_loss >= left
        exits = alive[leaves]
        ln_t_exit = np.interp(range_now[leaves] - left[leaves], range_m, fine)
        current[exits] = MUON_MASS_GEV + np.exp(ln_t_exit)
        travelled[exits] = length[exits]

        stops = ~leaves & (target <= expected[0])  # no loss before it comes to rest
        travelled[alive[stops]] += range_now[stops]
        current[alive[stops]] = MUON_MASS_GEV

        hit = ~leaves & ~stops
        muons, ln_t_hit, u_hit = alive[hit], ln_t_loss[hit], u[hit]
        energy_hit = MUON_MASS_GEV + np.exp(ln_t_hit)
        travelled[muons] += to_loss[hit]
        rates = _interp_rows(tables.sigma_per_m, ln_t_hit, tables.ln_kinetic)
        cumulative = np.cumsum(rates, axis=1)
        process = np.minimum((cumulative < (u_hit[:, 1] * cumulative[:, -1])[:, None]).sum(axis=1),
                             len(LOSS_TYPES) - 1)
        v = _draw_loss_fraction(tables, process, energy_hit, ln_t_hit, u_hit[:, 2], medium_name, cut_args)
        loss = v * energy_hit
        records.append((muons, travelled[muons].copy(), loss, process))
        current[muons] = energy_hit - loss
        at_rest = current[muons] - MUON_MASS_GEV <= STOP_KINETIC_GEV
        current[muons[at_rest]] = MUON_MASS_GEV
        moving = np.zeros(energy.shape, dtype=bool)
        moving[muons[~at_rest]] = True
        alive = np.flatnonzero(moving)
    return _collect(records, energy, current, travelled)


def _collect(records, energy, final, travelled) -> StochasticLosses:
    if records:
        muon, position, loss, process = (np.concatenate(c) for c in zip(*records, strict=True))
    else:
        muon, position, loss, process = (np.zeros(0, dtype=int), np.zeros(0), np.zeros(0), np.zeros(0, dtype=int))
    order = np.argsort(muon, kind="stable")  # rounds are chronological: stable keeps each muon's order
    offsets = np.zeros(len(energy) + 1, dtype=np.int64)
    np.cumsum(np.bincount(muon, minlength=len(energy)), out=offsets[1:])
    return StochasticLosses(offsets=offsets, position_m=position[order], energy_gev=loss[order],
                            loss_type=process[order].astype(np.int8), initial_energy_gev=energy,
                            final_energy_gev=final, distance_m=travelled)


# --- multiple scattering ------------------------------------------------------------------
def highland_theta0_rad(energy_gev: np.ndarray, step_m: np.ndarray, medium_name: str) -> np.ndarray:
    """Return the width θ0 [rad] of the projected scattering angle over ``step_m`` (Highland).

    θ0 = 13.6 MeV/(βcp) sqrt(x/X0) [1 + 0.038 ln(x/(X0 β²))] for a unit charge (PDG Review,
    multiple scattering); good to about 11 % for 1e-3 < x/X0 < 100.
    """
    material = get_material(medium_name)
    energy = np.asarray(energy_gev, dtype=float)
    momentum = np.sqrt(np.maximum(energy**2 - MUON_MASS_GEV**2, 0.0))
    beta = momentum / energy
    thickness = np.asarray(step_m, dtype=float) * CM_PER_M * material.density_g_cm3 / material.radiation_length_g_cm2
    return 0.0136 / (beta * momentum) * np.sqrt(thickness) * (1.0 + 0.038 * np.log(thickness / beta**2))


def sample_deflection(energy_gev: np.ndarray, step_m: np.ndarray, medium_name: str,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Return two Gaussian projected scattering angles [rad] of width θ0 (Highland) per muon."""
    theta0 = highland_theta0_rad(energy_gev, step_m, medium_name)
    normal = rng.standard_normal((2, *np.shape(theta0)))
    return normal[0] * theta0, normal[1] * theta0


def _perpendicular_frame(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # First axis: direction × z, or direction × x where the direction is (anti)parallel to z.
    reference = np.where(np.abs(direction[..., 2:3]) < 0.9, [0.0, 0.0, 1.0], [1.0, 0.0, 0.0])
    first = np.cross(direction, reference)
    first /= np.linalg.norm(first, axis=-1, keepdims=True)
    return first, np.cross(direction, first)


def deflect(direction: np.ndarray, theta_x_rad: np.ndarray, theta_y_rad: np.ndarray) -> np.ndarray:
    """Return the unit direction(s) tilted by projected angles in a frame perpendicular to ``direction``."""
    direction = np.asarray(direction, dtype=float)
    direction = direction / np.linalg.norm(direction, axis=-1, keepdims=True)
    first, second = _perpendicular_frame(direction)
    tan_x = np.tan(np.asarray(theta_x_rad, dtype=float))[..., None]
    tan_y = np.tan(np.asarray(theta_y_rad, dtype=float))[..., None]
    tilted = direction + tan_x * first + tan_y * second
    return tilted / np.linalg.norm(tilted, axis=-1, keepdims=True)


def scatter_along_track(direction: np.ndarray, energy_gev: np.ndarray, step_m: np.ndarray, medium_name: str,
                        rng: np.random.Generator) -> np.ndarray:
    """Return the muon direction after each step, shape (..., n_steps, 3).

    ``energy_gev`` (..., n_steps): the muon energy in each step (e.g. from the loss
    sampler), ``step_m`` the step lengths (broadcast); ``direction`` (..., 3) the initial
    direction. All angles are drawn at once (one standard-normal array), then applied in order.
    """
    energy = np.asarray(energy_gev, dtype=float)
    theta_x, theta_y = sample_deflection(energy, np.broadcast_to(step_m, energy.shape), medium_name, rng)
    current = np.broadcast_to(np.asarray(direction, dtype=float), (*energy.shape[:-1], 3))
    out = np.empty((*energy.shape, 3))
    for step in range(energy.shape[-1]):
        current = deflect(current, theta_x[..., step], theta_y[..., step])
        out[..., step, :] = current
    return out
