"""Arrival times of capped sensors: k kept photo-electrons standing for N, with the first arrival exact.

A sensor (light component) that receives N photo-electrons keeps at most max_pe_per_sensor = k
of them to bound the work (sim/photons.py); each carries the charge of N/k. A pulse's leading
edge records the FIRST of all N arrivals, each the direct time plus a scattering delay D plus
the PMT's jitter J, so the kept ones must reproduce it. With F the CDF of D + J (D's CDF from
its quantile function on a probability grid, convolved with the Gaussian jitter by
Gauss–Hermite quadrature):

- the leading photo-electron takes the first of N arrivals: F(t) = 1 - (1 - U)^(1/N);
- the other k - 1 are a random subset of the remaining N - 1, which given the first are iid
  above it: F(t) uniform on (F(t_first), 1).

Both are exact up to the grids (interpolation in t and in probability, dense near 0 where the
first arrival lives). Jitter is included here: these photo-electrons get no further jitter.
"""

from __future__ import annotations

import numpy as np

# Probabilities where the delay quantile functions are evaluated: dense near 0, where the first
# of up to ~1e6 photo-electrons falls.
PROBABILITY_GRID = np.concatenate([np.geomspace(1e-8, 1e-2, 49)[:-1], np.linspace(0.01, 0.999, 100)])
_HERMITE_NODES, _HERMITE_WEIGHTS = np.polynomial.hermite_e.hermegauss(16)
_HERMITE_WEIGHTS = _HERMITE_WEIGHTS / _HERMITE_WEIGHTS.sum()
_JITTER_SPAN = 6.0  # the time grid reaches this many jitter widths below the earliest delay


def _row_interp(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Return np.interp(x[i], xp[i], fp[i]) for every row i (xp rows non-decreasing), clamped at the ends."""
    n, m = xp.shape
    span = 2.0 * (float(np.nanmax(np.abs(xp))) + float(np.nanmax(np.abs(x))) + 1.0)
    offset = span * np.arange(n)[:, None]
    index = np.searchsorted((xp + offset).ravel(), (x + offset).ravel(), side="right").reshape(x.shape)
    index = np.clip(index - m * np.arange(n)[:, None], 1, m - 1)
    x0, x1 = np.take_along_axis(xp, index - 1, axis=1), np.take_along_axis(xp, index, axis=1)
    y0, y1 = np.take_along_axis(fp, index - 1, axis=1), np.take_along_axis(fp, index, axis=1)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # nodes closer than rounding: clipped
        fraction = np.where(x1 > x0, (x - x0) / np.where(x1 > x0, x1 - x0, 1.0), 1.0)
    return y0 + np.clip(fraction, 0.0, 1.0) * (y1 - y0)


def arrival_cdf_grid(delay_quantiles_ns: np.ndarray, jitter_ns: float) -> tuple[np.ndarray, np.ndarray]:
    """Return (times [ns], CDF of delay + jitter at them) per row from delay quantiles at PROBABILITY_GRID."""
    quantiles = np.maximum.accumulate(delay_quantiles_ns, axis=1)
    below = quantiles[:, :1] + jitter_ns * np.linspace(-_JITTER_SPAN, 0.0, 13)[None, :-1]
    above = quantiles[:, -1:] + jitter_ns * np.linspace(0.0, _JITTER_SPAN, 13)[None, 1:]
    times = np.concatenate([below, quantiles, above], axis=1)
    cdf = np.zeros(times.shape)
    for node, weight in zip(_HERMITE_NODES, _HERMITE_WEIGHTS, strict=True):
        shifted = times - jitter_ns * node
        value = _row_interp(shifted, quantiles, np.broadcast_to(PROBABILITY_GRID, quantiles.shape))
        value = np.where(shifted < quantiles[:, :1], 0.0, value)
        cdf += weight * value
    return times, np.maximum.accumulate(cdf, axis=1)


def capped_groups(group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (index of one photo-electron per group, group number 0..G-1 of each photo-electron)."""
    _, first, index = np.unique(group, return_index=True, return_inverse=True)
    return first, index.ravel()


def capped_arrival_delays_ns(index: np.ndarray, leads: np.ndarray, represents: np.ndarray,
                             delay_quantiles_ns: np.ndarray, jitter_ns: float,
                             rng: np.random.Generator) -> np.ndarray:
    """Return delay + jitter [ns] after the direct time for photo-electrons of capped groups.

    ``index`` is each photo-electron's group number (capped_groups), ``leads`` marks one per group,
    ``represents`` is the group's real count N, and ``delay_quantiles_ns`` (groups, grid) holds each
    group's delay quantiles at PROBABILITY_GRID.
    """
    times, cdf = arrival_cdf_grid(delay_quantiles_ns, jitter_ns)
    n_groups = len(delay_quantiles_ns)
    u = rng.random(len(index))
    n_real = np.zeros(n_groups)
    n_real[index] = represents
    lead_level = -np.expm1(np.log1p(-u[leads]) / n_real[index[leads]])
    floor = np.zeros(n_groups)
    floor[index[leads]] = lead_level
    level = floor[index] + (1.0 - floor[index]) * u
    level[leads] = lead_level
    # Invert each group's CDF at its members' levels (one row per photo-electron).
    return _row_interp(level[:, None], cdf[index], times[index])[:, 0]
