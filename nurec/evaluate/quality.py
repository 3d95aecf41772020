"""Compare one method's predictions with the truth: per-event residuals and every reported number."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from nurec.evaluate import metrics as m
from nurec.io.schema import FIT_OK

NO_PREDICTION = "failed: no prediction for this event"
CLASSES = {"track": True, "cascade": False}


@dataclass(frozen=True)
class EvaluationSettings:
    """How metrics are binned and resampled (stored in metrics.json)."""

    bins_per_decade: int = 2
    min_events_per_bin: int = 20
    n_bootstrap: int = 1000
    confidence: float = m.CONTAINMENT
    seed: int = 0
    energy_reference: str = "energy"  # truth column E_true is read from: "energy" (neutrino) or "visible_energy"

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as JSON-able data."""
        return asdict(self)


@dataclass
class MethodResult:
    """One method evaluated on one set of events."""

    name: str
    version: str
    per_event: pd.DataFrame
    metrics: dict[str, Any]
    throughput: dict[str, Any] = field(default_factory=dict)


def join_predictions(truth: pd.DataFrame, predictions: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Return (truth rows joined with their prediction, bookkeeping counts).

    Every truth event keeps its row: one without a prediction gets fit_status
    NO_PREDICTION and NaN outputs, so it is counted as failed, never dropped. Duplicate
    predictions for one event keep the first; predictions for unknown events are counted.
    """
    pred = predictions.copy()
    pred["event_id"] = pred["event_id"].astype(np.int64)
    n_duplicates = int(pred["event_id"].duplicated().sum())
    pred = pred.drop_duplicates("event_id", keep="first")
    n_unmatched = int((~pred["event_id"].isin(truth["event_id"])).sum())
    keep = [
        c for c in ("event_id", "dir_x", "dir_y", "dir_z", "zenith", "azimuth", "energy",
                    "angular_uncertainty_deg", "p_track", "fit_status") if c in pred.columns
    ]
    pred = pred[keep].rename(columns={c: f"reco_{c}" for c in keep if c != "event_id"})
    joined = truth.merge(pred, on="event_id", how="left")
    missing = joined["reco_fit_status"].isna()
    joined.loc[missing, "reco_fit_status"] = NO_PREDICTION
    return joined, {"n_duplicate_predictions": n_duplicates, "n_predictions_for_unknown_events": n_unmatched,
                    "n_missing_predictions": int(missing.sum())}


def per_event_residuals(joined: pd.DataFrame, energy_reference: str = "energy") -> pd.DataFrame:
    """Return per-event angular error [deg], zenith/azimuth residuals [deg], log10 energy ratio, pull.

    Outputs of events whose fit_status is not "ok" are set to NaN, so a failed fit
    cannot leak a number into a metric.
    """
    ok = (joined["reco_fit_status"] == FIT_OK).to_numpy()
    reco_dir = joined[["reco_dir_x", "reco_dir_y", "reco_dir_z"]].to_numpy(np.float64, copy=True)
    true_dir = joined[["dir_x", "dir_y", "dir_z"]].to_numpy(np.float64)
    reco_dir[~ok] = np.nan
    d_zenith, d_azimuth = m.angle_residuals_deg(
        joined["reco_zenith"].to_numpy(float), joined["reco_azimuth"].to_numpy(float),
        joined["zenith"].to_numpy(float), joined["azimuth"].to_numpy(float),
    )
    energy_true = joined[energy_reference].to_numpy(np.float64)
    out = pd.DataFrame(
        {
            "event_id": joined["event_id"].to_numpy(),
            "is_track": joined["is_track"].to_numpy(bool),
            "energy_true_gev": energy_true,
            "fit_status": joined["reco_fit_status"].to_numpy(object),
            "angular_error_deg": m.angular_distance_deg(reco_dir, true_dir),
            "zenith_residual_deg": np.where(ok, d_zenith, np.nan),
            "azimuth_residual_deg": np.where(ok, d_azimuth, np.nan),
            "log10_energy_ratio": np.where(
                ok, m.log_energy_ratio(joined["reco_energy"].to_numpy(float), energy_true), np.nan
            ),
            "angular_uncertainty_deg": np.where(ok, joined["reco_angular_uncertainty_deg"].to_numpy(float), np.nan),
            "p_track": np.where(ok, joined["reco_p_track"].to_numpy(float), np.nan),
        }
    )
    out["pull"] = m.angular_pulls(out["angular_error_deg"], out["angular_uncertainty_deg"])
    return out


def _median_summary(values: np.ndarray, settings: EvaluationSettings, seed_offset: int) -> dict[str, Any]:
    ci = m.bootstrap_median_ci(values, settings.confidence, settings.n_bootstrap, settings.seed + seed_offset)
    q16, q84 = m.central_interval(values)
    return {"n": ci.n, "median": ci.median, "median_ci_low": ci.low, "median_ci_high": ci.high,
            "q16": q16, "q84": q84}


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    return table.to_dict(orient="records")


def evaluate_method(
    name: str,
    version: str,
    truth: pd.DataFrame,
    predictions: pd.DataFrame,
    settings: EvaluationSettings | None = None,
    edges_gev: np.ndarray | None = None,
    throughput: dict[str, Any] | None = None,
) -> MethodResult:
    """Return every metric of one method's predictions against ``truth`` (see metrics.json layout).

    Quantities a method does not estimate (all NaN among its ok fits) are reported as
    ``"estimated": false`` rather than as numbers.
    """
    settings = settings or EvaluationSettings()
    joined, bookkeeping = join_predictions(truth, predictions)
    per_event = per_event_residuals(joined, settings.energy_reference)
    if edges_gev is None:
        edges_gev = m.energy_bin_edges(per_event["energy_true_gev"], settings.bins_per_decade)
    counts = m.fit_status_counts(per_event["fit_status"])
    counts.update(bookkeeping)
    ok = (per_event["fit_status"] == FIT_OK).to_numpy()
    binned = _Binning(per_event["energy_true_gev"], edges_gev, settings)
    result: dict[str, Any] = {
        "name": name, "version": version, "counts": counts,
        "direction": _direction_metrics(per_event, ok, settings, binned),
        "energy": _energy_metrics(per_event, settings, binned),
        "uncertainty": _uncertainty_metrics(per_event),
        "classification": _classification_metrics(per_event),
    }
    result["throughput"] = dict(throughput or {})
    return MethodResult(name, version, per_event, result, dict(throughput or {}))


@dataclass(frozen=True)
class _Binning:
    """Quantiles of per-event values in bins of true energy, with seeded bootstrap intervals."""

    energy_true_gev: pd.Series
    edges_gev: np.ndarray
    settings: EvaluationSettings

    def __call__(self, values: pd.Series, mask: np.ndarray, offset: int) -> list[dict[str, Any]]:
        return _records(m.binned_quantiles(values[mask], self.energy_true_gev[mask], self.edges_gev,
                                           self.settings.min_events_per_bin, self.settings.seed + offset,
                                           self.settings.n_bootstrap))


def _class_masks(per_event: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    """Return (class name, mask) for tracks and cascades."""
    return [(cls, (per_event["is_track"] == is_track).to_numpy()) for cls, is_track in CLASSES.items()]


def _direction_metrics(per_event: pd.DataFrame, ok: np.ndarray, settings: EvaluationSettings,
                       binned: _Binning) -> dict[str, Any]:
    """Return angular-error medians (per class, overall, per energy bin) and zenith/azimuth residual widths."""
    err = per_event["angular_error_deg"]
    direction: dict[str, Any] = {"estimated": bool(np.isfinite(err).any())}
    if not direction["estimated"]:
        return direction
    direction["n_ok_without_direction"] = int((ok & ~np.isfinite(err)).sum())
    for offset, (cls, mask) in enumerate(_class_masks(per_event)):
        direction[cls] = _median_summary(err[mask], settings, 100 * offset)
        direction[f"{cls}_vs_energy"] = binned(err, mask, 1000 + 100 * offset)
    direction["all"] = _median_summary(err, settings, 300)
    for column in ("zenith_residual_deg", "azimuth_residual_deg"):
        q16, q84 = m.central_interval(per_event[column])
        values = per_event[column][np.isfinite(per_event[column])]
        direction[column] = {"n": int(len(values)), "median": float(np.median(values)) if len(values) else np.nan,
                             "q16": q16, "q84": q84, "half_width_68": 0.5 * (q84 - q16)}
    return direction


def _energy_metrics(per_event: pd.DataFrame, settings: EvaluationSettings, binned: _Binning) -> dict[str, Any]:
    """Return log10(E_reco/E_true) resolution and bias per class, overall and per energy bin."""
    ratio = per_event["log10_energy_ratio"]
    energy: dict[str, Any] = {"estimated": bool(np.isfinite(ratio).any()), "reference": settings.energy_reference}
    if not energy["estimated"]:
        return energy
    for offset, (cls, mask) in enumerate(_class_masks(per_event)):
        resolution, bias = m.resolution_and_bias(ratio[mask])
        energy[cls] = {"n": int(np.isfinite(ratio[mask]).sum()), "resolution_log10": resolution, "bias_log10": bias}
        table = pd.DataFrame(binned(ratio, mask, 2000 + 100 * offset))
        table["resolution_log10"] = 0.5 * (table["q84"] - table["q16"])
        table = table.rename(columns={"median": "bias_log10", "median_ci_low": "bias_ci_low",
                                      "median_ci_high": "bias_ci_high"})
        energy[f"{cls}_vs_energy"] = _records(table)
    resolution, bias = m.resolution_and_bias(ratio)
    energy["all"] = {"n": int(np.isfinite(ratio).sum()), "resolution_log10": resolution, "bias_log10": bias}
    return energy


def _uncertainty_metrics(per_event: pd.DataFrame) -> dict[str, Any]:
    """Return the calibration of angular_uncertainty_deg: 68% coverage, the coverage curve, pulls."""
    err, unc = per_event["angular_error_deg"], per_event["angular_uncertainty_deg"]
    usable = np.isfinite(unc) & np.isfinite(err)
    calibration: dict[str, Any] = {"estimated": bool(usable.any())}
    if not calibration["estimated"]:
        return calibration
    calibration["coverage_68"] = m.coverage(err, unc)
    calibration["n"] = int(usable.sum())
    for cls, mask in _class_masks(per_event):
        calibration[f"coverage_68_{cls}"] = m.coverage(err[mask], unc[mask])
    curve = m.coverage_curve(err, unc)
    calibration["coverage_curve"] = _records(curve[["nominal", "observed"]])
    pulls = per_event["pull"][np.isfinite(per_event["pull"])]
    calibration["pull_median"] = float(np.median(pulls))
    calibration["pull_median_expected"] = float(np.sqrt(2.0 * np.log(2.0)))  # Rayleigh(1) median
    return calibration


def _classification_metrics(per_event: pd.DataFrame) -> dict[str, Any]:
    """Return the track/cascade ROC AUC of p_track."""
    score = per_event["p_track"]
    _, _, auc = m.roc_auc(score, per_event["is_track"])
    return {"estimated": bool(np.isfinite(score).any()), "auc": auc,
            "n": int(np.isfinite(score).sum()), "n_tracks": int(per_event["is_track"].sum())}


def summary_row(result: MethodResult) -> dict[str, Any]:
    """Return the method's line of the summary table (numbers, NaN where not estimated)."""
    metrics = result.metrics
    direction, energy = metrics["direction"], metrics["energy"]
    calibration, classification = metrics["uncertainty"], metrics["classification"]

    def get(section: dict, *keys: str) -> float:
        value: Any = section
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                return np.nan
            value = value[key]
        return value

    return {
        "method": result.name,
        "version": result.version,
        "events": metrics["counts"]["n"],
        "failed": metrics["counts"]["n_failed"],
        "track_median_deg": get(direction, "track", "median"),
        "track_median_ci_low": get(direction, "track", "median_ci_low"),
        "track_median_ci_high": get(direction, "track", "median_ci_high"),
        "cascade_median_deg": get(direction, "cascade", "median"),
        "cascade_median_ci_low": get(direction, "cascade", "median_ci_low"),
        "cascade_median_ci_high": get(direction, "cascade", "median_ci_high"),
        "track_log10e_resolution": get(energy, "track", "resolution_log10"),
        "cascade_log10e_resolution": get(energy, "cascade", "resolution_log10"),
        "coverage_68": get(calibration, "coverage_68"),
        "auc": classification["auc"],
        "events_per_s_per_core": result.throughput.get("events_per_s_per_core", np.nan),
        "events_per_s": result.throughput.get("events_per_s", np.nan),
    }
