"""Reconstruction quality metrics: pure functions of arrays (no I/O, no plotting).

Conventions: angles in degrees where the name says ``_deg``; energies in GeV; every
random resampling takes a seed, so the same inputs give the same numbers.

Weights: the functions that summarise events take optional per-event ``weights`` (e.g. flux
weights: expected events per event); None, the default, counts every event once and uses
numpy's own quantiles. Event counts ``n`` are always raw counts of events, never weight sums.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nurec.io.schema import FIT_OK

CONTAINMENT = 0.68
"""Probability content of ``angular_uncertainty_deg`` (nurec.io.schema.PREDICTION_COLUMNS)."""

RAYLEIGH_68_FACTOR = float(np.sqrt(-2.0 * np.log(1.0 - CONTAINMENT)))
"""r68 / sigma for a 2D Gaussian (Rayleigh-distributed opening angle): sqrt(-2 ln 0.32) = 1.5096.

For a von Mises-Fisher distribution with large concentration kappa the opening angle is
Rayleigh with sigma = 1/sqrt(kappa) (small-angle limit), so the same factor applies.
"""


# ----------------------------------------------------------------------------- directions
def angular_distance_deg(dir_a: np.ndarray, dir_b: np.ndarray) -> np.ndarray:
    """Return the opening angle in degrees between rows of two (n, 3) direction arrays.

    Uses atan2(|a x b|, a . b), which stays accurate near 0 and near 180 degrees where
    arccos of the dot product loses half the significant digits. Inputs need not be
    normalised; rows with a non-finite or zero vector give NaN.
    """
    a = np.asarray(dir_a, dtype=np.float64).reshape(-1, 3)
    b = np.asarray(dir_b, dtype=np.float64).reshape(-1, 3)
    cross = np.linalg.norm(np.cross(a, b), axis=1)
    dot = np.einsum("ij,ij->i", a, b)
    angle = np.degrees(np.arctan2(cross, dot))
    valid = (
        np.all(np.isfinite(a), axis=1)
        & np.all(np.isfinite(b), axis=1)
        & (np.linalg.norm(a, axis=1) > 0)
        & (np.linalg.norm(b, axis=1) > 0)
    )
    return np.where(valid, angle, np.nan)


def wrap_angle_deg(angle_deg: np.ndarray) -> np.ndarray:
    """Return angles wrapped into [-180, 180) degrees (for azimuth residuals)."""
    return np.mod(np.asarray(angle_deg, dtype=np.float64) + 180.0, 360.0) - 180.0


def angle_residuals_deg(
    zenith_reco: np.ndarray, azimuth_reco: np.ndarray, zenith_true: np.ndarray, azimuth_true: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return (zenith residual, wrapped azimuth residual) in degrees, reco minus true, inputs in rad."""
    d_zenith = np.degrees(np.asarray(zenith_reco, float) - np.asarray(zenith_true, float))
    d_azimuth = wrap_angle_deg(np.degrees(np.asarray(azimuth_reco, float) - np.asarray(azimuth_true, float)))
    return d_zenith, d_azimuth


# ----------------------------------------------------------------------------- statistics
def weighted_quantile(values: np.ndarray, q: float | np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Return the ``q`` quantiles of ``values`` (finite values only; NaN if none).

    Without weights this is numpy's linear quantile. With weights it is the inverted
    weighted CDF: the smallest value whose cumulative weight reaches q of the total, so an
    event of integer weight k counts exactly as k copies of it (numpy's "inverted_cdf" for
    the copies); events with zero, negative or non-finite weight are left out.
    """
    x = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(x)
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        keep &= np.isfinite(w) & (w > 0)
    if not keep.any():
        return np.full(np.shape(q), np.nan)
    if weights is None:
        return np.quantile(x[keep], q)
    x, w = x[keep], w[keep]
    order = np.argsort(x, kind="stable")
    x, cumulative = x[order], np.cumsum(w[order])
    index = np.searchsorted(cumulative, np.asarray(q, dtype=np.float64) * cumulative[-1], side="left")
    return x[np.minimum(index, len(x) - 1)]


def weighted_median(values: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Return the (weighted) median of the finite values; NaN if there are none."""
    return float(weighted_quantile(values, 0.5, weights))


@dataclass(frozen=True)
class MedianCI:
    """A median with its bootstrap confidence interval."""

    median: float
    low: float
    high: float
    n: int


def bootstrap_resamples(n_events: int, n_boot: int, seed: int, max_indices: int = 2_000_000):
    """Yield blocks of resampled event indices, shape (resamples in block, n_events), seeded.

    The blocks together hold ``n_boot`` resamples with replacement; a block holds at most
    ``max_indices`` indices (~16 MB), so large samples do not exhaust memory.
    """
    rng = np.random.default_rng(seed)
    per_block = max(1, max_indices // max(n_events, 1))
    for start in range(0, n_boot, per_block):
        yield rng.integers(0, n_events, size=(min(n_boot, start + per_block) - start, n_events))


def bootstrap_median_ci(
    values: np.ndarray, confidence: float = CONTAINMENT, n_boot: int = 1000, seed: int = 0,
    weights: np.ndarray | None = None,
) -> MedianCI:
    """Return the median of the finite values and its percentile-bootstrap confidence interval.

    ``n_boot`` resamples with replacement from a generator seeded with ``seed``; the
    interval is the central ``confidence`` range of the resampled medians. Empty input
    gives NaNs; a single value gives a zero-width interval. With ``weights`` the medians
    are weighted (events are resampled with their weights).
    """
    x = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(x)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)[keep]
    x = x[keep]
    n = len(x)
    if n == 0:
        return MedianCI(np.nan, np.nan, np.nan, 0)
    median = weighted_median(x, w)
    if n == 1:
        return MedianCI(median, median, median, 1)
    medians = np.concatenate([
        np.median(x[idx], axis=1) if w is None else np.array([weighted_median(x[i], w[i]) for i in idx])
        for idx in bootstrap_resamples(n, n_boot, seed)
    ])
    low, high = percentile_interval(medians, confidence)
    return MedianCI(median, low, high, n)


def percentile_interval(resampled: np.ndarray, confidence: float = CONTAINMENT) -> tuple[float, float]:
    """Return the central ``confidence`` range of bootstrap replicas (non-finite replicas ignored)."""
    r = np.asarray(resampled, dtype=np.float64)
    r = r[np.isfinite(r)]
    if len(r) == 0:
        return np.nan, np.nan
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(r, [tail, 1.0 - tail])
    return float(low), float(high)


def central_interval(values: np.ndarray, content: float = CONTAINMENT,
                     weights: np.ndarray | None = None) -> tuple[float, float]:
    """Return the (low, high) quantiles enclosing the central ``content`` of the finite values."""
    tail = (1.0 - content) / 2.0
    low, high = weighted_quantile(values, [tail, 1.0 - tail], weights)
    return float(low), float(high)


# ----------------------------------------------------------------------------- energy binning
MIN_EVENTS_FOR_QUANTILES = 3
def energy_bin_edges(energy_gev: np.ndarray, bins_per_decade: int = 2) -> np.ndarray:
    """Return log-spaced bin edges [GeV] on whole fractions of a decade that cover the energies."""
    e = np.asarray(energy_gev, dtype=np.float64)
    e = e[np.isfinite(e) & (e > 0)]
    if len(e) == 0:
        raise ValueError("energy: no finite positive true energies to bin")
    lo = np.floor(np.log10(e.min()) * bins_per_decade) / bins_per_decade
    hi = np.ceil(np.log10(e.max()) * bins_per_decade) / bins_per_decade
    if hi <= lo:
        hi = lo + 1.0 / bins_per_decade
    n_bins = int(round((hi - lo) * bins_per_decade))
    return 10.0 ** np.linspace(lo, hi, n_bins + 1)


def quantile_summary(values: np.ndarray, min_events: int = 20, seed: int = 0, n_boot: int = 1000,
                     weights: np.ndarray | None = None, confidence: float = CONTAINMENT) -> dict:
    """Return ``n, median, median_ci_low, median_ci_high, q16, q84, low_stats`` of the finite values.

    ``low_stats`` is True below ``min_events`` values; quantiles of fewer than
    MIN_EVENTS_FOR_QUANTILES values are NaN (one value would claim a zero width).
    """
    v = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(v)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)[keep]
    v = v[keep]
    ci = bootstrap_median_ci(v, confidence, n_boot, seed, w)
    q16, q84 = central_interval(v, weights=w) if len(v) >= MIN_EVENTS_FOR_QUANTILES else (np.nan, np.nan)
    return {"n": int(len(v)), "median": ci.median, "median_ci_low": ci.low, "median_ci_high": ci.high,
            "q16": q16, "q84": q84, "low_stats": bool(len(v) < min_events)}


def bin_index(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Return the bin of each value (-1 or len(edges) - 1 outside; the upper edge is in the last bin)."""
    x = np.asarray(x, dtype=np.float64)
    which = np.digitize(x, edges) - 1
    which[x == edges[-1]] = len(edges) - 2
    return which


def binned_quantiles(
    values: np.ndarray,
    energy_gev: np.ndarray,
    edges_gev: np.ndarray,
    min_events: int = 20,
    seed: int = 0,
    n_boot: int = 1000,
    weights: np.ndarray | None = None,
) -> pd.DataFrame:
    """Return one row per energy bin: n, median with bootstrap CI, 16/84% quantiles, low_stats flag.

    Columns: ``e_low_gev, e_high_gev, n, median, median_ci_low, median_ci_high, q16, q84,
    low_stats``. Values that are not finite are not counted. A bin with fewer than
    ``min_events`` values keeps its numbers but has ``low_stats`` True; quantiles of fewer
    than MIN_EVENTS_FOR_QUANTILES values are NaN (one value would claim a zero width).
    """
    v = np.asarray(values, dtype=np.float64)
    e = np.asarray(energy_gev, dtype=np.float64)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=np.float64)
    keep = np.isfinite(v) & np.isfinite(e)
    v, e, w = v[keep], e[keep], w[keep]
    which = bin_index(e, edges_gev)
    rows = []
    for i in range(len(edges_gev) - 1):
        in_bin = which == i
        summary = quantile_summary(v[in_bin], min_events, seed + i, n_boot, None if weights is None else w[in_bin])
        rows.append({"e_low_gev": float(edges_gev[i]), "e_high_gev": float(edges_gev[i + 1]), **summary})
    return pd.DataFrame(rows)


def grouped_quantiles(
    values: np.ndarray,
    groups: list[tuple[str, np.ndarray]],
    min_events: int = 20,
    seed: int = 0,
    n_boot: int = 1000,
    weights: np.ndarray | None = None,
) -> pd.DataFrame:
    """Return one row per (label, mask) group: ``group`` and the columns of quantile_summary."""
    v = np.asarray(values, dtype=np.float64)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    rows = [{"group": label, **quantile_summary(v[mask], min_events, seed + i, n_boot, None if w is None else w[mask])}
            for i, (label, mask) in enumerate(groups)]
    return pd.DataFrame(rows, columns=["group", "n", "median", "median_ci_low", "median_ci_high", "q16", "q84",
                                       "low_stats"])


# ----------------------------------------------------------------------------- energy
def log_energy_ratio(energy_reco_gev: np.ndarray, energy_true_gev: np.ndarray) -> np.ndarray:
    """Return log10(E_reco / E_true); NaN where either energy is not finite and positive."""
    reco = np.asarray(energy_reco_gev, dtype=np.float64)
    true = np.asarray(energy_true_gev, dtype=np.float64)
    valid = np.isfinite(reco) & np.isfinite(true) & (reco > 0) & (true > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log10(np.where(valid, reco, 1.0) / np.where(valid, true, 1.0))
    return np.where(valid, ratio, np.nan)


def resolution_and_bias(log_ratio: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float]:
    """Return (resolution, bias) of log10(E_reco/E_true): half the 16-84% width, and the median.

    For a Gaussian smear of width s and offset b this gives (s, b).
    """
    low, high = central_interval(log_ratio, weights=weights)
    return 0.5 * (high - low), weighted_median(log_ratio, weights)


def migration_matrix(energy_true_gev: np.ndarray, energy_reco_gev: np.ndarray, true_edges_gev: np.ndarray,
                     reco_edges_gev: np.ndarray, weights: np.ndarray | None = None) -> dict:
    """Return the energy migration matrix: events per (reconstructed bin, true bin).

    Keys: ``true_edges_gev``, ``reco_edges_gev``, ``counts`` (rows: reconstructed bins,
    columns: true bins; weight sums if ``weights``), ``reco_below`` / ``reco_above`` (per
    true bin, reconstructed outside the reco edges) and ``n`` (events with both energies
    finite and positive, inside the true edges). Events failed or without an estimate are
    not in it (count them as failed elsewhere).
    """
    true = np.asarray(energy_true_gev, dtype=np.float64)
    reco = np.asarray(energy_reco_gev, dtype=np.float64)
    w = np.ones_like(true) if weights is None else np.asarray(weights, dtype=np.float64)
    column = bin_index(true, true_edges_gev)
    keep = np.isfinite(reco) & (reco > 0) & (column >= 0) & (column < len(true_edges_gev) - 1)
    row = bin_index(reco[keep], reco_edges_gev)
    column, w = column[keep], w[keep]
    n_true, n_reco = len(true_edges_gev) - 1, len(reco_edges_gev) - 1
    inside = (row >= 0) & (row < n_reco)
    counts = np.zeros((n_reco, n_true))
    np.add.at(counts, (row[inside], column[inside]), w[inside])
    return {
        "true_edges_gev": np.asarray(true_edges_gev, float).tolist(),
        "reco_edges_gev": np.asarray(reco_edges_gev, float).tolist(),
        "counts": counts.tolist(),
        "reco_below": np.bincount(column[row < 0], w[row < 0], minlength=n_true).tolist(),
        "reco_above": np.bincount(column[row >= n_reco], w[row >= n_reco], minlength=n_true).tolist(),
        "n": int(keep.sum()),
    }


# ----------------------------------------------------------------------------- uncertainty calibration
def coverage(angular_error_deg: np.ndarray, radius_deg: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Return the fraction of events whose true angular error is within the predicted radius.

    Only events where both numbers are finite count; NaN if there are none.
    """
    err = np.asarray(angular_error_deg, dtype=np.float64)
    radius = np.asarray(radius_deg, dtype=np.float64)
    valid = np.isfinite(err) & np.isfinite(radius)
    if not valid.any():
        return np.nan
    w = None if weights is None else np.asarray(weights, dtype=np.float64)[valid]
    return float(np.average(err[valid] <= radius[valid], weights=w))


def miscalibration_factor(angular_error_deg: np.ndarray, radius68_deg: np.ndarray,
                          weights: np.ndarray | None = None) -> float:
    """Return max(s, 1/s), s = 68% quantile of error / predicted 68% radius: 1 when calibrated.

    s is the factor the predicted radii would need to contain 68% of the events; the
    factor says by how much they are off, too small or too large alike.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.asarray(angular_error_deg, float) / np.asarray(radius68_deg, float)
    s = float(weighted_quantile(ratio, CONTAINMENT, weights))
    return max(s, 1.0 / s) if s > 0 else np.nan


def containment_radius_deg(radius68_deg: np.ndarray, probability: float) -> np.ndarray:
    """Return the radius containing ``probability`` given the 68% radius, for a Rayleigh opening angle.

    r_p = sigma * sqrt(-2 ln(1 - p)) with sigma = r68 / RAYLEIGH_68_FACTOR (2D Gaussian /
    large-kappa von Mises-Fisher approximation).
    """
    if not 0.0 < probability < 1.0:
        raise ValueError(f"probability: must be in (0, 1), got {probability}")
    sigma = np.asarray(radius68_deg, dtype=np.float64) / RAYLEIGH_68_FACTOR
    return sigma * np.sqrt(-2.0 * np.log(1.0 - probability))


def coverage_curve(
    angular_error_deg: np.ndarray, radius68_deg: np.ndarray, nominal: np.ndarray | None = None
) -> pd.DataFrame:
    """Return observed vs nominal coverage: columns ``nominal, observed, n``.

    For each nominal probability p the predicted 68% radius is rescaled to the p
    containment radius (containment_radius_deg) and the observed fraction of events
    inside it is counted. A calibrated estimator lies on the diagonal.
    """
    if nominal is None:
        nominal = np.round(np.arange(0.05, 0.96, 0.05), 2)
    err = np.asarray(angular_error_deg, dtype=np.float64)
    radius = np.asarray(radius68_deg, dtype=np.float64)
    valid = np.isfinite(err) & np.isfinite(radius)
    observed = [
        float(np.mean(err[valid] <= containment_radius_deg(radius[valid], p))) if valid.any() else np.nan
        for p in nominal
    ]
    return pd.DataFrame({"nominal": np.asarray(nominal, float), "observed": observed, "n": int(valid.sum())})


def angular_pulls(angular_error_deg: np.ndarray, radius68_deg: np.ndarray) -> np.ndarray:
    """Return error / sigma with sigma = r68 / RAYLEIGH_68_FACTOR; Rayleigh(1)-distributed if calibrated."""
    err = np.asarray(angular_error_deg, dtype=np.float64)
    radius = np.asarray(radius68_deg, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        pull = err / (radius / RAYLEIGH_68_FACTOR)
    return np.where(np.isfinite(pull), pull, np.nan)


def rayleigh_pdf(x: np.ndarray) -> np.ndarray:
    """Return the unit Rayleigh density x exp(-x^2/2), the pull distribution of a calibrated estimator."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x >= 0, x * np.exp(-0.5 * x**2), 0.0)


# ----------------------------------------------------------------------------- classification
def roc_auc(score: np.ndarray, is_positive: np.ndarray,
            weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Return (false-positive rates, true-positive rates, AUC) of a score; AUC NaN if one class is absent.

    Events with a non-finite score are left out (count them as failed elsewhere).
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    s = np.asarray(score, dtype=np.float64)
    y = np.asarray(is_positive, dtype=bool)
    valid = np.isfinite(s)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)[valid]
    s, y = s[valid], y[valid]
    if len(s) == 0 or y.all() or not y.any():
        return np.array([]), np.array([]), np.nan
    fpr, tpr, _ = roc_curve(y, s, sample_weight=w)
    return fpr, tpr, float(roc_auc_score(y, s, sample_weight=w))


def rank_auc(score: np.ndarray, is_positive: np.ndarray) -> np.ndarray:
    """Return the AUC of each row of ``score`` (shape (..., n)) from ranks (Mann-Whitney U, ties halved).

    Vectorised over leading axes, for bootstrap replicas; NaN where a row lacks a class.
    """
    from scipy.stats import rankdata

    s = np.asarray(score, dtype=np.float64)
    y = np.asarray(is_positive, dtype=bool)
    ranks = rankdata(s, axis=-1)
    n_pos = y.sum(axis=-1)
    n_neg = y.shape[-1] - n_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = ((ranks * y).sum(axis=-1) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


# ----------------------------------------------------------------------------- bookkeeping
def fit_status_counts(fit_status: pd.Series | np.ndarray) -> dict:
    """Return {'n', 'n_ok', 'n_failed', 'failure_reasons': {reason: count}} from fit_status strings.

    Anything other than exactly "ok" is a failure; the reason is the text after "failed:".
    Missing statuses (None/NaN) count as failed with reason "no status".
    """
    status = pd.Series(np.asarray(fit_status, dtype=object))
    status = status.where(status.notna(), "failed: no status").astype(str)
    ok = status == FIT_OK
    reasons = status[~ok].str.replace(r"^failed:\s*", "", regex=True).replace("", "no reason given")
    counts = reasons.value_counts()
    return {
        "n": int(len(status)),
        "n_ok": int(ok.sum()),
        "n_failed": int((~ok).sum()),
        "failure_reasons": {str(k): int(v) for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))},
    }


def throughput(n_events: int, wall_s: float, cpu_s: float | None = None) -> dict:
    """Return events/s on the wall clock and per CPU-core second (n / CPU time, NaN if unknown).

    Events per CPU-second is the throughput of one fully used core; it does not depend on
    how many threads or processes a method spreads itself over.
    """
    wall = float(wall_s)
    per_wall = n_events / wall if wall > 0 else np.nan
    per_core = n_events / float(cpu_s) if cpu_s is not None and cpu_s > 0 else np.nan
    return {
        "n_events": int(n_events),
        "wall_s": wall,
        "cpu_s": float(cpu_s) if cpu_s is not None else np.nan,
        "events_per_s": float(per_wall),
        "events_per_s_per_core": float(per_core),
    }
