"""Photon arrival times: direct Cherenkov geometry and the Pandel scattering-delay pdf.

The Pandel function (D. Pandel, diploma thesis, Humboldt-Universität Berlin, 1996; used
by AMANDA/IceCube, Ahrens et al., NIM A 524 (2004) 169) gives the delay t of a photon
after the direct (unscattered) arrival time, at distance d from its emitter, as a gamma
distribution with shape d/λ and rate 1/τ + c_medium/λ_a:

    p(t | d) = ρ^{d/λ} t^{d/λ - 1} e^{-ρ t} / Γ(d/λ),   ρ = 1/τ + c_medium/λ_a.

``arrival_time_pdf`` convolves it with the Gaussian PMT jitter in closed form
(parabolic cylinder function; cf. van Eijndhoven et al., Astropart. Phys. 28 (2007) 456).
The simulator samples these delays; the likelihood fits evaluate exactly these pdfs.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from nurec.physics.medium import Medium

_MIN_SHAPE = 1e-3  # keeps Γ(d/λ) finite for sensors right at the emitter


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the dot products of the vectors along the last axis (broadcasting)."""
    return np.einsum("...i,...i->...", a, b)


def pandel_shape_rate(distance_m: np.ndarray, medium: Medium) -> tuple[np.ndarray, float]:
    """Return the Pandel gamma shape d/λ and rate ρ = 1/τ + c_medium/λ_a [1/ns]."""
    shape = np.maximum(np.asarray(distance_m, dtype=float) / medium.pandel_lambda_m, _MIN_SHAPE)
    rate = 1.0 / medium.pandel_tau_ns + medium.light_speed_m_per_ns / medium.pandel_absorption_m
    return shape, rate


def pandel_pdf(delay_ns: np.ndarray, distance_m: np.ndarray, medium: Medium) -> np.ndarray:
    """Return the Pandel pdf [1/ns] of the scattering delay ``delay_ns`` at ``distance_m``."""
    shape, rate = pandel_shape_rate(distance_m, medium)
    delay = np.asarray(delay_ns, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_pdf = shape * np.log(rate) + (shape - 1) * np.log(delay) - rate * delay - special.gammaln(shape)
    return np.where(delay > 0, np.exp(log_pdf), 0.0)


def sample_pandel_delay_ns(distance_m: np.ndarray, medium: Medium, rng: np.random.Generator) -> np.ndarray:
    """Return scattering delays [ns] drawn from the Pandel pdf at each distance."""
    shape, rate = pandel_shape_rate(distance_m, medium)
    return rng.gamma(shape, 1.0 / rate)


def log_arrival_time_pdf(
    time_residual_ns: np.ndarray, distance_m: np.ndarray, medium: Medium, jitter_ns: float
) -> np.ndarray:
    """Return log of the Pandel pdf convolved with a Gaussian jitter of width ``jitter_ns``.

    Closed form: p(t) = ρ^k σ^{k-1}/√(2π) · exp(-t²/2σ² + z²/4) · D_{-k}(z), z = ρσ - t/σ,
    with k = d/λ. Far in the tail (t > 8σ) the jitter no longer matters and the plain
    Pandel pdf is used, which also avoids overflow of D_{-k}.
    """
    t = np.asarray(time_residual_ns, dtype=float)
    shape, rate = pandel_shape_rate(distance_m, medium)
    shape, t = np.broadcast_arrays(shape, t)
    sigma = float(jitter_ns)
    z = rate * sigma - t / sigma
    tail = t > 8.0 * sigma
    z_core = np.where(tail, 0.0, z)
    d_value, _ = special.pbdv(-shape, z_core)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_core = (
            shape * np.log(rate)
            + (shape - 1) * np.log(sigma)
            - 0.5 * np.log(2 * np.pi)
            - 0.5 * (t / sigma) ** 2
            + 0.25 * z_core**2
            + np.log(np.maximum(d_value, 1e-300))
        )
        log_tail = shape * np.log(rate) + (shape - 1) * np.log(np.where(tail, t, 1.0)) - rate * t - special.gammaln(shape)
    return np.where(tail, log_tail, log_core)


def log_first_arrival_pdf(
    time_residual_ns: np.ndarray, distance_m: np.ndarray, n_pe: np.ndarray, medium: Medium, jitter_ns: float
) -> np.ndarray:
    """Return log of the pdf of the FIRST of ``n_pe`` photo-electrons' time residuals (MPE).

    p₁(t) = N p(t) (1 - F(t))^{N-1}, p the Pandel ⊗ jitter pdf (log_arrival_time_pdf) and F the
    Pandel cdf (a regularised incomplete gamma; the jitter is neglected in F). A bright sensor's
    first pulse comes early in the single-photon pdf: fitting it with p(t) alone pulls the
    vertex time early.
    """
    log_p = log_arrival_time_pdf(time_residual_ns, distance_m, medium, jitter_ns)
    n_pe = np.maximum(np.asarray(n_pe, dtype=float), 1.0)
    shape, rate = pandel_shape_rate(distance_m, medium)
    survival = special.gammaincc(shape, rate * np.maximum(np.asarray(time_residual_ns, dtype=float), 0.0))
    with np.errstate(divide="ignore"):
        return log_p + np.log(n_pe) + (n_pe - 1) * np.log(np.maximum(survival, 1e-300))


def arrival_time_pdf(
    time_residual_ns: np.ndarray, distance_m: np.ndarray, medium: Medium, jitter_ns: float
) -> np.ndarray:
    """Return the pdf [1/ns] of a photon's time residual (Pandel ⊗ Gaussian jitter)."""
    return np.exp(log_arrival_time_pdf(time_residual_ns, distance_m, medium, jitter_ns))


def track_geometry(
    sensor_pos: np.ndarray,
    track_pos: np.ndarray,
    track_dir: np.ndarray,
    medium: Medium,
) -> dict[str, np.ndarray]:
    """Return the Cherenkov geometry of sensors seen from an infinite track.

    Arrays broadcast over leading axes; the last axis is (x, y, z). Returns
    ``along_m`` (projection of the sensor on the track from ``track_pos``),
    ``perpendicular_m`` (closest-approach distance ρ), ``emission_m`` (position along the
    track of the Cherenkov emission point, l - ρ/tanθc), ``distance_m`` (photon path
    ρ/sinθc), ``delay_ns`` (direct arrival time after the muon passed ``track_pos``:
    (l - ρ/tanθc)/c + ρ/(sinθc·c_medium)), and ``photon_dir`` (unit vector of the direct
    photon at the sensor).
    """
    theta_c = medium.cherenkov_angle_rad
    rel = sensor_pos - track_pos
    along = _dot(rel, track_dir)
    perp_vec = rel - along[..., None] * track_dir
    perp = np.sqrt(np.maximum(_dot(perp_vec, perp_vec), 1e-12))
    emission = along - perp / np.tan(theta_c)
    distance = perp / np.sin(theta_c)
    delay = emission / 0.299792458 + distance / medium.light_speed_m_per_ns
    photon_dir = (np.cos(theta_c) * track_dir + np.sin(theta_c) * perp_vec / perp[..., None])
    return {
        "along_m": along,
        "perpendicular_m": perp,
        "emission_m": emission,
        "distance_m": distance,
        "delay_ns": delay,
        "photon_dir": photon_dir,
    }


def cascade_direct_delay_ns(distance_m: np.ndarray, medium: Medium) -> np.ndarray:
    """Return the direct (unscattered) photon travel time [ns] from a point source."""
    return np.asarray(distance_m) / medium.light_speed_m_per_ns
