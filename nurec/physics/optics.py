"""Optical properties of the detection media versus wavelength: absorption, scattering, dispersion.

Every function takes the medium's name ("water": Mediterranean sea water at the KM3NeT sites;
"ice": South Pole ice averaged over IceCube's instrumented depth) and wavelengths in nm, and is
vectorised over the wavelengths. An unknown medium raises a one-line ValueError.

Sea water (KM3NeT's Jpp, ``JPhysics/KM3NeT.hh``, as transcribed in KM3NeT's LumenManufaktur.jl,
``src/absorption.jl``, ``src/scattering.jl``, ``src/dispersion.jl``):
- absorption length: Jpp's table of measured deep-sea values, linearly interpolated;
- scattering length: the Kopelevich model of spectral volume scattering (pure sea water
  ∝ (550/λ)^4.3, small particles ∝ (550/λ)^1.7, large particles ∝ (550/λ)^0.3, with particle
  concentrations V_s = V_l = 0.0075 ppm; C. D. Mobley, "Light and Water", 1994, p. 119);
- phase function "p00075": a fraction 0.17 of Rayleigh-like scattering (1 + 0.835 cos²θ) and
  0.83 of Henyey–Greenstein with mean cosine 0.924;
- refractive index: the Quan & Fry form fitted by D. J. L. Bailey (PhD thesis, Oxford 2002),
  n(λ, P) = a0 + a1·P + a2/λ + a3/λ² + a4/λ³, at the ambient pressure of Jpp's default
  (240 atm, the ORCA site; ARCA's 350 atm raises n by 0.0015).

South Pole ice (IceCube, "Measurement of South Pole ice transparency with the IceCube LED
calibration system", NIM A 711 (2013) 73, the six-parameter model):
- effective scattering b_e(λ) = b_e(400) (λ/400)^-α, α = 0.898 (SPICE Mie fit);
- absorption a(λ) = a_dust(400) (λ/400)^-κ + A e^{-B/λ} (1 + 0.01 δτ), κ = 1.084,
  A = 6954.09 m⁻¹, B = 6617.75 nm, δτ the temperature difference to 1730 m depth;
- Henyey–Greenstein scattering with mean cosine g = 0.9 (the same paper; the geometric
  scattering coefficient is b = b_e / (1 - g));
- refractive indices: the fit of P. B. Price & K. Woschnagg, Astropart. Phys. 15 (2001) 97, to
  the ice data compiled by Price & Bergström, Appl. Opt. 36 (1997) 4181 (as in IceCube's ppc).
The depth-dependent values are replaced by one homogeneous ice: b_e(400) and a(400) are the
averages of the scattering and absorption coefficients (1/length) over the 110 layers of
1398-2488 m depth (IceCube's instrumented depth) of the SPICE Mie layer table of effective
scattering and absorption lengths at 400 nm, as distributed with GraphNeT (its
``ice_properties/ice_transparency`` table; its b_e agree with CLSim's
``resources/ice/spice_mie/icemodel.dat``, e.g. 26.7 m at 1948 m): b_e(400) = 0.04226 m⁻¹
(23.7 m) and a(400) = 0.01208 m⁻¹ (82.8 m), so the dust term a_dust(400) = a(400) - 4.78e-4 m⁻¹
(the pure-ice term at the layers' mean δτ = 5.2 K). These are the coefficients of a homogeneous
ice with the column's optical depth; the arithmetic means of the lengths are longer (35.0 m and
117 m), the dust layer at ~2050 m being short-lengthed. The table is not read at run time.
"""

from __future__ import annotations

import numpy as np

MEDIA = ("water", "ice")

# --- sea water ------------------------------------------------------------------------------
# Jpp JPhysics/KM3NeT.hh absorption length [m] vs wavelength [nm] (LumenManufaktur.jl
# src/absorption.jl); zero (opaque) below 290 nm and above 720 nm.
_WATER_ABSORPTION_NM = np.array(
    [290.0, 310.0, 330.0, 350.0, 375.0, 412.0, 440.0, 475.0, 488.0, 510.0, 532.0, 555.0, 650.0, 676.0, 715.0, 720.0])
_WATER_ABSORPTION_M = np.array(
    [0.0, 11.9, 16.4, 20.6, 29.5, 48.5, 67.5, 59.0, 55.1, 26.1, 19.9, 14.7, 2.8, 2.3, 1.0, 0.0])
# Kopelevich scattering (Jpp KM3NeT.hh; LumenManufaktur.jl src/scattering.jl; Mobley 1994 p. 119):
# coefficients [1/m] of pure sea water, small (< 1 µm) and large particles, particle
# concentrations [ppm] and the wavelength exponents.
_KOPELEVICH_PURE_PER_M = 0.0017
_KOPELEVICH_SMALL_PER_M_PPM = 1.340
_KOPELEVICH_LARGE_PER_M_PPM = 0.312
_KOPELEVICH_SMALL_PPM = 0.0075
_KOPELEVICH_LARGE_PPM = 0.0075
_KOPELEVICH_EXPONENTS = (4.3, 1.7, 0.3)
_KOPELEVICH_REFERENCE_NM = 550.0
# Jpp's p00075 phase function (KM3NeT.hh; LumenManufaktur.jl src/scattering.jl).
WATER_RAYLEIGH_FRACTION = 0.17
WATER_RAYLEIGH_ANISOTROPY = 0.835  # (1 + a cos²θ)
WATER_HG_MEAN_COS = 0.924
# Bailey's fit of the Quan & Fry index (LumenManufaktur.jl src/dispersion.jl, Jpp JPhysics/JDispersion):
# offset, dn/dP [1/atm], and the 1/λ, 1/λ², 1/λ³ coefficients (λ in nm).
_WATER_INDEX = (1.3201, 1.4e-5, 16.2566, -4383.0, 1.1455e6)
WATER_PRESSURE_ATM = 240.0

# --- ice --------------------------------------------------------------------------------------
ICE_ALPHA = 0.898  # NIM A 711 (2013) 73, SPICE Mie
ICE_KAPPA = 1.084
ICE_A_PER_M = 6954.09
ICE_B_NM = 6617.75
ICE_MEAN_COS = 0.9
ICE_DELTA_TAU_K = 5.20  # mean over 1398-2488 m of T(d + 6.53 m) - T(1730 m), T from the same paper
ICE_EFFECTIVE_SCATTERING_400_PER_M = 0.04226  # depth average, see the module docstring
ICE_ABSORPTION_400_PER_M = 0.01208
_ICE_PURE_400_PER_M = ICE_A_PER_M * np.exp(-ICE_B_NM / 400.0) * (1.0 + 0.01 * ICE_DELTA_TAU_K)
ICE_DUST_ABSORPTION_400_PER_M = ICE_ABSORPTION_400_PER_M - float(_ICE_PURE_400_PER_M)
# Price & Woschnagg (2001) phase index polynomial in λ [µm] and group-index factor.
_ICE_PHASE_POLY = (1.55749, -1.57988, 3.99993, -4.68271, 2.09354)
_ICE_GROUP_POLY = (1.227106, -0.954648, 1.42568, -0.711832)

# Wavelength band [nm] the tables simulate: where the sensors are efficient (pmt.py, sensors.py).
WAVELENGTH_BAND_NM = {"water": (300.0, 700.0), "ice": (265.0, 675.0)}


def check_medium(medium: str) -> str:
    """Return ``medium`` if it is a known optical medium, else raise a one-line ValueError."""
    if medium not in MEDIA:
        raise ValueError(f"unknown medium '{medium}' (known: {', '.join(MEDIA)})")
    return medium


def _wavelength(wavelength_nm) -> np.ndarray:
    return np.asarray(wavelength_nm, dtype=float)


def absorption_length_m(medium: str, wavelength_nm) -> np.ndarray:
    """Return the absorption length [m] at ``wavelength_nm`` (0 where the medium is opaque)."""
    lam = _wavelength(wavelength_nm)
    if check_medium(medium) == "water":
        return np.interp(lam, _WATER_ABSORPTION_NM, _WATER_ABSORPTION_M, left=0.0, right=0.0)
    coefficient = (ICE_DUST_ABSORPTION_400_PER_M * (lam / 400.0) ** -ICE_KAPPA
                   + ICE_A_PER_M * np.exp(-ICE_B_NM / lam) * (1.0 + 0.01 * ICE_DELTA_TAU_K))
    return 1.0 / coefficient


def scattering_length_m(medium: str, wavelength_nm) -> np.ndarray:
    """Return the geometric scattering length [m] (mean free path between scatters)."""
    lam = _wavelength(wavelength_nm)
    if check_medium(medium) == "water":
        x = _KOPELEVICH_REFERENCE_NM / lam
        pure, small, large = _KOPELEVICH_EXPONENTS
        coefficient = (_KOPELEVICH_PURE_PER_M * x**pure
                       + _KOPELEVICH_SMALL_PER_M_PPM * _KOPELEVICH_SMALL_PPM * x**small
                       + _KOPELEVICH_LARGE_PER_M_PPM * _KOPELEVICH_LARGE_PPM * x**large)
        return 1.0 / coefficient
    return (1.0 - ICE_MEAN_COS) / (ICE_EFFECTIVE_SCATTERING_400_PER_M * (lam / 400.0) ** -ICE_ALPHA)


def scattering_mean_cos(medium: str) -> float:
    """Return the mean cosine of the scattering angle of the medium's phase function."""
    if check_medium(medium) == "water":
        return (1.0 - WATER_RAYLEIGH_FRACTION) * WATER_HG_MEAN_COS  # the Rayleigh part is symmetric
    return ICE_MEAN_COS


def effective_scattering_length_m(medium: str, wavelength_nm) -> np.ndarray:
    """Return the effective scattering length λ_s / (1 - <cos θ>) [m]."""
    return scattering_length_m(medium, wavelength_nm) / (1.0 - scattering_mean_cos(medium))


def n_phase(medium: str, wavelength_nm, pressure_atm: float = WATER_PRESSURE_ATM) -> np.ndarray:
    """Return the phase refractive index at ``wavelength_nm`` (``pressure_atm`` for water only)."""
    lam = _wavelength(wavelength_nm)
    if check_medium(medium) == "water":
        a0, a1, a2, a3, a4 = _WATER_INDEX
        x = 1.0 / lam
        return a0 + a1 * pressure_atm + x * (a2 + x * (a3 + x * a4))
    return np.polynomial.polynomial.polyval(lam * 1e-3, _ICE_PHASE_POLY)


def n_group(medium: str, wavelength_nm, pressure_atm: float = WATER_PRESSURE_ATM) -> np.ndarray:
    """Return the group refractive index c / v_group at ``wavelength_nm``.

    Water: n - λ dn/dλ of the phase index (Jpp writes n / (1 + λ n'/n), equal to first order;
    they differ by 5e-4 at 470 nm). Ice: Price & Woschnagg's group-index fit.
    """
    lam = _wavelength(wavelength_nm)
    if check_medium(medium) == "water":
        _, _, a2, a3, a4 = _WATER_INDEX
        x = 1.0 / lam
        dn_dlam = -(x**2) * (a2 + x * (2.0 * a3 + x * 3.0 * a4))
        return n_phase(medium, lam, pressure_atm) - lam * dn_dlam
    return n_phase(medium, lam) * np.polynomial.polynomial.polyval(lam * 1e-3, _ICE_GROUP_POLY)


def henyey_greenstein_cos(mean_cos: float, uniform: np.ndarray) -> np.ndarray:
    """Return scattering-angle cosines of the Henyey–Greenstein distribution from uniform numbers."""
    g = mean_cos
    ratio = (1.0 - g * g) / (1.0 - g + 2.0 * g * uniform)
    return np.clip((1.0 + g * g - ratio * ratio) / (2.0 * g), -1.0, 1.0)


def rayleigh_like_cos(anisotropy: float, uniform: np.ndarray) -> np.ndarray:
    """Return cosines distributed as 1 + a·cos²θ on [-1, 1] from uniform numbers (Cardano's root)."""
    a = anisotropy
    # CDF ∝ x + a x³/3 + (1 + a/3); solve (a/3) x³ + x - target = 0, a single real root.
    target = (2.0 * uniform - 1.0) * (1.0 + a / 3.0)
    p = 1.0 / a
    q = 1.5 * target / a
    root = np.sqrt(q * q + p**3)
    return np.clip(np.cbrt(q + root) + np.cbrt(q - root), -1.0, 1.0)


def sample_scattering_cos(medium: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Return ``size`` scattering-angle cosines drawn from the medium's phase function."""
    if check_medium(medium) == "ice":
        return henyey_greenstein_cos(ICE_MEAN_COS, rng.random(size))
    uniform = rng.random(size)
    rayleigh = rng.random(size) < WATER_RAYLEIGH_FRACTION
    return np.where(rayleigh, rayleigh_like_cos(WATER_RAYLEIGH_ANISOTROPY, uniform),
                    henyey_greenstein_cos(WATER_HG_MEAN_COS, uniform))


def phase_function_pdf(medium: str, cos_theta) -> np.ndarray:
    """Return the scattering phase function per unit solid angle [1/sr] at ``cos_theta``."""
    x = np.asarray(cos_theta, dtype=float)

    def hg(g: float) -> np.ndarray:
        return (1.0 - g * g) / (4.0 * np.pi * (1.0 + g * g - 2.0 * g * x) ** 1.5)

    if check_medium(medium) == "ice":
        return hg(ICE_MEAN_COS)
    a = WATER_RAYLEIGH_ANISOTROPY
    rayleigh = (1.0 + a * x * x) / (4.0 * np.pi * (1.0 + a / 3.0))
    return WATER_RAYLEIGH_FRACTION * rayleigh + (1.0 - WATER_RAYLEIGH_FRACTION) * hg(WATER_HG_MEAN_COS)
