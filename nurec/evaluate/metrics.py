"""Reconstruction quality metrics: pure functions of arrays (no I/O, no plotting).

Conventions: angles in degrees where the name says ``_deg``; energies in GeV; every
random resampling takes a seed, so the same inputs give the same numbers.
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
@dataclass(frozen=True)
class MedianCI:
    """A median with its bootstrap confidence interval."""

    median: float
    low: float
    high: float
    n: int


def bootstrap_median_ci(
    values: np.ndarray, confidence: float = CONTAINMENT, n_boot: int = 1000, seed: int = 0
) -> MedianCI:
    """Return the median of the finite values and its percentile-bootstrap confidence interval.

    ``n_boot`` resamples with replacement from a generator seeded with ``seed``; the
    interval is the central ``confidence`` range of the resampled medians. Empty input
    gives NaNs; a single value gives a zero-width interval.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return MedianCI(np.nan, np.nan, np.nan, 0)
    median = float(np.median(x))
    if n == 1:
        return MedianCI(median, median, median, 1)
    rng = np.random.default_rng(seed)
    per_block = max(1, 2_000_000 // n)  # bound memory to ~16 MB of indices per block
    medians = np.empty(n_boot)
    for start in range(0, n_boot, per_block):
        stop = min(n_boot, start + per_block)
        idx = rng.integers(0, n, size=(stop - start, n))
        medians[start:stop] = np.median(x[idx], axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(medians, [tail, 1.0 - tail])
    return MedianCI(median, float(low), float(high), n)


def central_interval(values: np.ndarray, content: float = CONTAINMENT) -> tuple[float, float]:
    """Return the (low, high) quantiles enclosing the central ``content`` of the finite values."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return np.nan, np.nan
    tail = (1.0 - content) / 2.0
    low, high = np.quantile(x, [tail, 1.0 - tail])
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


def binned_quantiles(
    values: np.ndarray,
    energy_gev: np.ndarray,
    edges_gev: np.ndarray,
    min_events: int = 20,
    seed: int = 0,
    n_boot: int = 1000,
) -> pd.DataFrame:
    """Return one row per energy bin: n, median with bootstrap CI, 16/84% quantiles, low_stats flag.

    Columns: ``e_low_gev, e_high_gev, n, median, median_ci_low, median_ci_high, q16, q84,
    low_stats``. Values that are not finite are not counted. A bin with fewer than
    ``min_events`` values keeps its numbers but has ``low_stats`` True; quantiles of fewer
    than MIN_EVENTS_FOR_QUANTILES values are NaN (one value would claim a zero width).
    """
    v = np.asarray(values, dtype=np.float64)
    e = np.asarray(energy_gev, dtype=np.float64)
    keep = np.isfinite(v) & np.isfinite(e)
    v, e = v[keep], e[keep]
    which = np.digitize(e, edges_gev) - 1
    which[e == edges_gev[-1]] = len(edges_gev) - 2  # include the upper edge in the last bin
    rows = []
    for i in range(len(edges_gev) - 1):
        in_bin = v[which == i]
        ci = bootstrap_median_ci(in_bin, n_boot=n_boot, seed=seed + i)
        q16, q84 = central_interval(in_bin) if len(in_bin) >= MIN_EVENTS_FOR_QUANTILES else (np.nan, np.nan)
        rows.append(
            {
                "e_low_gev": float(edges_gev[i]),
                "e_high_gev": float(edges_gev[i + 1]),
                "n": int(len(in_bin)),
                "median": ci.median,
                "median_ci_low": ci.low,
                "median_ci_high": ci.high,
                "q16": q16,
                "q84": q84,
                "low_stats": bool(len(in_bin) < min_events),
            }
        )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- energy
def log_energy_ratio(energy_reco_gev: np.ndarray, energy_true_gev: np.ndarray) -> np.ndarray:
    """Return log10(E_reco / E_true); NaN where either energy is not finite and positive."""
    reco = np.asarray(energy_reco_gev, dtype=np.float64)
    true = np.asarray(energy_true_gev, dtype=np.float64)
    valid = np.isfinite(reco) & np.isfinite(true) & (reco > 0) & (true > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log10(np.where(valid, reco, 1.0) / np.where(valid, true, 1.0))
    return np.where(valid, ratio, np.nan)


def resolution_and_bias(log_ratio: np.ndarray) -> tuple[float, float]:
    """Return (resolution, bias) of log10(E_reco/E_true): half the 16-84% width, and the median.

    For a Gaussian smear of width s and offset b this gives (s, b).
    """
    low, high = central_interval(log_ratio)
    x = np.asarray(log_ratio, dtype=np.float64)
    x = x[np.isfinite(x)]
    bias = float(np.median(x)) if len(x) else np.nan
    return 0.5 * (high - low), bias


# ----------------------------------------------------------------------------- uncertainty calibration
def coverage(angular_error_deg: np.ndarray, radius_deg: np.ndarray) -> float:
    """Return the fraction of events whose true angular error is within the predicted radius.

    Only events where both numbers are finite count; NaN if there are none.
    """
    err = np.asarray(angular_error_deg, dtype=np.float64)
    radius = np.asarray(radius_deg, dtype=np.float64)
    valid = np.isfinite(err) & np.isfinite(radius)
    if not valid.any():
        return np.nan
    return float(np.mean(err[valid] <= radius[valid]))


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
def roc_auc(score: np.ndarray, is_positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Return (false-positive rates, true-positive rates, AUC) of a score; AUC NaN if one class is absent.

    Events with a non-finite score are left out (count them as failed elsewhere).
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    s = np.asarray(score, dtype=np.float64)
    y = np.asarray(is_positive, dtype=bool)
    valid = np.isfinite(s)
    s, y = s[valid], y[valid]
    if len(s) == 0 or y.all() or not y.any():
        return np.array([]), np.array([]), np.nan
    fpr, tpr, _ = roc_curve(y, s)
    return fpr, tpr, float(roc_auc_score(y, s))


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
