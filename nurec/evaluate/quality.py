"""Compare one method's predictions with the truth: per-event residuals and every reported number."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from nurec.evaluate import metrics as m
from nurec.io.schema import FIT_OK, direction_to_angles

NO_PREDICTION = "failed: no prediction for this event"
CLASSES = {"track": True, "cascade": False}

ENERGY_REFERENCES = {
    "energy": "the neutrino's energy (truth.energy)",
    "visible_energy": "the visible energy (truth.visible_energy: EM-equivalent cascade energy + muon energy)",
}
"""Truth columns E_true may be read from, and what each one is."""

DIRECTION_REFERENCES = {
    "neutrino": "the neutrino's direction of travel (truth.dir_*)",
    "muon": "the muon's initial direction of travel (truth.muon_dir_*) for events with a muon, "
            "the neutrino's (truth.dir_*) for the others",
}
"""What the true direction is, per EvaluationSettings.direction_reference."""

EVENT_WEIGHT_COLUMN = "event_weight"
"""Optional truth column of per-event weights (e.g. flux weights); absent: every event counts once.

Not the schema's ``weight`` (OneWeight, a generation weight in GeV cm^2 sr): a per-event
weight is what an event stands for, e.g. OneWeight x flux(E) x livetime / n_generated.
"""


@dataclass(frozen=True)
class EvaluationSettings:
    """How metrics are binned, resampled and referenced to the truth (stored in metrics.json).

    ``min_events_per_bin``: a number from fewer events is marked and never enters a verdict.
    ``energy_reference``: truth column E_true is read from (ENERGY_REFERENCES).
    ``direction_reference``: "neutrino" or "muon" (DIRECTION_REFERENCES).
    ``cos_zenith_edges``: bins of cos(true zenith) for resolution vs zenith (< 0: up-going).
    """

    bins_per_decade: int = 2
    min_events_per_bin: int = 20
    n_bootstrap: int = 1000
    confidence: float = m.CONTAINMENT
    seed: int = 0
    energy_reference: str = "energy"
    direction_reference: str = "neutrino"
    cos_zenith_edges: tuple[float, ...] = (-1.0, -0.5, 0.0, 0.5, 1.0)

    def __post_init__(self) -> None:
        if self.energy_reference not in ENERGY_REFERENCES:
            raise ValueError(f"energy_reference: '{self.energy_reference}' is not one of {', '.join(ENERGY_REFERENCES)}")
        if self.direction_reference not in DIRECTION_REFERENCES:
            raise ValueError(f"direction_reference: '{self.direction_reference}' is not one of "
                             f"{', '.join(DIRECTION_REFERENCES)}")

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as JSON-able data."""
        return asdict(self)


@dataclass(frozen=True)
class EventBins:
    """Bins shared by every method of a report (made from all events, so methods line up)."""

    energy_edges_gev: np.ndarray  # bins_per_decade bins of E_true
    decade_edges_gev: np.ndarray  # whole decades of E_true
    reco_edges_gev: np.ndarray  # reconstructed energy axis of the migration matrix
    sensor_edges: np.ndarray  # numbers of hit sensors, powers of two

    def to_dict(self) -> dict[str, Any]:
        """Return the bin edges as JSON-able lists."""
        return {key: np.asarray(value, float).tolist() for key, value in asdict(self).items()}


def event_bins(truth: pd.DataFrame, settings: EvaluationSettings) -> EventBins:
    """Return the bins of a report on ``truth``: energy (per bin and decade), migration, hit sensors."""
    energy = truth[settings.energy_reference]
    decades = m.energy_bin_edges(energy, 1)
    per_decade = settings.bins_per_decade
    low, high = np.log10(decades[0]) - 1.0, np.log10(decades[-1]) + 1.0
    reco = 10.0 ** np.linspace(low, high, int(round((high - low) * per_decade)) + 1)
    counts = truth["n_sensors"] if "n_sensors" in truth else truth.get("n_hits", pd.Series(dtype=float))
    return EventBins(m.energy_bin_edges(energy, per_decade), decades, reco, power_of_two_edges(counts))


def power_of_two_edges(counts: pd.Series | np.ndarray) -> np.ndarray:
    """Return edges 2^k covering the counts (at least one bin)."""
    c = np.asarray(counts, dtype=np.float64)
    c = c[np.isfinite(c) & (c > 0)]
    if len(c) == 0:
        return np.array([1.0, 2.0])
    low, high = int(np.floor(np.log2(c.min()))), int(np.floor(np.log2(c.max()))) + 1
    return 2.0 ** np.arange(low, high + 1)


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


def true_direction(truth: pd.DataFrame, reference: str = "neutrino") -> np.ndarray:
    """Return the true directions of travel, shape (n, 3), per ``reference`` (DIRECTION_REFERENCES).

    "muon" takes truth.muon_dir_* where it is finite and the neutrino's direction elsewhere.
    """
    neutrino = truth[["dir_x", "dir_y", "dir_z"]].to_numpy(np.float64, copy=True)
    if reference == "neutrino":
        return neutrino
    if reference != "muon":
        raise ValueError(f"direction_reference: '{reference}' is not one of {', '.join(DIRECTION_REFERENCES)}")
    if not {"muon_dir_x", "muon_dir_y", "muon_dir_z"} <= set(truth.columns):
        raise ValueError("direction_reference 'muon': the truth has no muon_dir_x/y/z")
    muon = truth[["muon_dir_x", "muon_dir_y", "muon_dir_z"]].to_numpy(np.float64)
    has_muon = np.all(np.isfinite(muon), axis=1)
    neutrino[has_muon] = muon[has_muon]
    return neutrino


def per_event_residuals(joined: pd.DataFrame, energy_reference: str = "energy",
                        direction_reference: str = "neutrino") -> pd.DataFrame:
    """Return per-event angular error [deg], zenith/azimuth residuals [deg], log10 energy ratio, pull.

    Outputs of events whose fit_status is not "ok" are set to NaN, so a failed fit
    cannot leak a number into a metric. Also carries what events are grouped by: class,
    E_true [GeV], cos of the true zenith, hit sensors, vertex containment (when the truth
    has them) and EVENT_WEIGHT_COLUMN (when the truth has it).
    """
    ok = (joined["reco_fit_status"] == FIT_OK).to_numpy()
    reco_dir = joined[["reco_dir_x", "reco_dir_y", "reco_dir_z"]].to_numpy(np.float64, copy=True)
    true_dir = true_direction(joined, direction_reference)
    true_zenith, true_azimuth = direction_to_angles(*true_dir.T)
    reco_dir[~ok] = np.nan
    d_zenith, d_azimuth = m.angle_residuals_deg(
        joined["reco_zenith"].to_numpy(float), joined["reco_azimuth"].to_numpy(float), true_zenith, true_azimuth,
    )
    energy_true = joined[energy_reference].to_numpy(np.float64)
    out = pd.DataFrame(
        {
            "event_id": joined["event_id"].to_numpy(),
            "is_track": joined["is_track"].to_numpy(bool),
            "energy_true_gev": energy_true,
            "cos_zenith_true": np.cos(true_zenith),
            "fit_status": joined["reco_fit_status"].to_numpy(object),
            "angular_error_deg": m.angular_distance_deg(reco_dir, true_dir),
            "zenith_residual_deg": np.where(ok, d_zenith, np.nan),
            "azimuth_residual_deg": np.where(ok, d_azimuth, np.nan),
            "log10_energy_ratio": np.where(
                ok, m.log_energy_ratio(joined["reco_energy"].to_numpy(float), energy_true), np.nan
            ),
            "angular_uncertainty_deg": np.where(ok, joined["reco_angular_uncertainty_deg"].to_numpy(float), np.nan),
            "p_track": np.where(ok, joined["reco_p_track"].to_numpy(float), np.nan),
            "energy_reco_gev": np.where(ok, joined["reco_energy"].to_numpy(float), np.nan),
        }
    )
    out["pull"] = m.angular_pulls(out["angular_error_deg"], out["angular_uncertainty_deg"])
    for column in ("n_sensors", "contained", EVENT_WEIGHT_COLUMN):
        if column in joined.columns:
            out[column] = joined[column].to_numpy()
    return out


def event_weights(per_event: pd.DataFrame, mask: np.ndarray | None = None) -> np.ndarray | None:
    """Return the per-event weights (EVENT_WEIGHT_COLUMN) of the masked events, or None if unweighted."""
    if EVENT_WEIGHT_COLUMN not in per_event.columns:
        return None
    weights = per_event[EVENT_WEIGHT_COLUMN].to_numpy(np.float64)
    return weights if mask is None else weights[mask]


def _median_summary(values: pd.Series, settings: EvaluationSettings, seed_offset: int,
                    weights: np.ndarray | None = None) -> dict[str, Any]:
    return m.quantile_summary(values, settings.min_events_per_bin, settings.seed + seed_offset, settings.n_bootstrap,
                              weights, settings.confidence)


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    return table.to_dict(orient="records")


def evaluate_method(
    name: str,
    version: str,
    truth: pd.DataFrame,
    predictions: pd.DataFrame,
    settings: EvaluationSettings | None = None,
    bins: EventBins | None = None,
    throughput: dict[str, Any] | None = None,
) -> MethodResult:
    """Return every metric of one method's predictions against ``truth`` (see metrics.json layout).

    Quantities a method does not estimate (all NaN among its ok fits) are reported as
    ``"estimated": false`` rather than as numbers. ``bins`` default to those of ``truth``.
    Timing (``throughput``) is kept beside the metrics, never in them.
    """
    settings = settings or EvaluationSettings()
    joined, bookkeeping = join_predictions(truth, predictions)
    per_event = per_event_residuals(joined, settings.energy_reference, settings.direction_reference)
    bins = bins or event_bins(truth, settings)
    counts = m.fit_status_counts(per_event["fit_status"])
    counts.update(bookkeeping)
    ok = (per_event["fit_status"] == FIT_OK).to_numpy()
    binned = _Binning(per_event, bins.energy_edges_gev, settings)
    result: dict[str, Any] = {
        "name": name, "version": version, "counts": counts,
        "direction": _direction_metrics(per_event, ok, settings, binned, bins),
        "energy": _energy_metrics(per_event, settings, binned, bins),
        "uncertainty": _uncertainty_metrics(per_event),
        "classification": _classification_metrics(per_event),
    }
    return MethodResult(name, version, per_event, result, dict(throughput or {}))


@dataclass(frozen=True)
class _Binning:
    """Quantiles of per-event values in bins of true energy, with seeded bootstrap intervals."""

    per_event: pd.DataFrame
    edges_gev: np.ndarray
    settings: EvaluationSettings

    def __call__(self, values: pd.Series, mask: np.ndarray, offset: int,
                 edges_gev: np.ndarray | None = None) -> list[dict[str, Any]]:
        return _records(m.binned_quantiles(values[mask], self.per_event["energy_true_gev"][mask],
                                           self.edges_gev if edges_gev is None else edges_gev,
                                           self.settings.min_events_per_bin, self.settings.seed + offset,
                                           self.settings.n_bootstrap, event_weights(self.per_event, mask)))

    def groups(self, values: pd.Series, mask: np.ndarray, groups: list[tuple[str, np.ndarray]],
               offset: int) -> list[dict[str, Any]]:
        """Return quantiles of ``values`` in each (label, mask) group, restricted to ``mask``."""
        return _records(m.grouped_quantiles(values, [(label, mask & g) for label, g in groups],
                                            self.settings.min_events_per_bin, self.settings.seed + offset,
                                            self.settings.n_bootstrap, event_weights(self.per_event)))


def zenith_groups(cos_zenith: np.ndarray, edges: tuple[float, ...]) -> list[tuple[str, np.ndarray]]:
    """Return (label, mask) per bin of cos(true zenith); cos < 0 is up-going (through the Earth)."""
    which = m.bin_index(cos_zenith, np.asarray(edges, float))
    return [(f"cos θ {lo:+.1f} to {hi:+.1f} ({'up' if hi <= 0 else 'down' if lo >= 0 else 'horizontal'}-going)",
             which == i) for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True))]


def sensor_groups(n_sensors: np.ndarray, edges: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Return (label, mask) per bin of the number of hit sensors."""
    which = m.bin_index(n_sensors, edges)
    return [(f"{int(lo)}-{int(hi) - 1} sensors", which == i)
            for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True))]


def containment_groups(contained: pd.Series) -> list[tuple[str, np.ndarray]]:
    """Return (label, mask) for vertices inside and outside the instrumented volume."""
    inside = contained.to_numpy(dtype=object)
    return [("vertex inside (starting / contained)", inside == True),  # noqa: E712 - None is neither
            ("vertex outside (through-going / uncontained)", inside == False)]  # noqa: E712


def _class_masks(per_event: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    """Return (class name, mask) for tracks and cascades."""
    return [(cls, (per_event["is_track"] == is_track).to_numpy()) for cls, is_track in CLASSES.items()]


def _direction_metrics(per_event: pd.DataFrame, ok: np.ndarray, settings: EvaluationSettings,
                       binned: _Binning, bins: EventBins) -> dict[str, Any]:
    """Return angular-error medians (per class, overall, per energy bin, vs zenith, hit sensors and
    containment) and zenith/azimuth residual widths."""
    err = per_event["angular_error_deg"]
    direction: dict[str, Any] = {"estimated": bool(np.isfinite(err).any()), "reference": settings.direction_reference}
    if not direction["estimated"]:
        return direction
    direction["n_ok_without_direction"] = int((ok & ~np.isfinite(err)).sum())
    breakdowns = _direction_breakdowns(per_event, settings, bins)
    for offset, (cls, mask) in enumerate(_class_masks(per_event)):
        direction[cls] = _median_summary(err[mask], settings, 100 * offset, event_weights(per_event, mask))
        direction[f"{cls}_vs_energy"] = binned(err, mask, 1000 + 100 * offset)
        for index, (key, groups) in enumerate(breakdowns.items()):
            direction.setdefault(key, {})[cls] = binned.groups(err, mask, groups, 4000 + 1000 * index + 100 * offset)
    direction["all"] = _median_summary(err, settings, 300, event_weights(per_event))
    for column in ("zenith_residual_deg", "azimuth_residual_deg"):
        q16, q84 = m.central_interval(per_event[column])
        values = per_event[column][np.isfinite(per_event[column])]
        direction[column] = {"n": int(len(values)), "median": float(np.median(values)) if len(values) else np.nan,
                             "q16": q16, "q84": q84, "half_width_68": 0.5 * (q84 - q16)}
    return direction


def _direction_breakdowns(per_event: pd.DataFrame, settings: EvaluationSettings,
                          bins: EventBins) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Return the event groups angular errors are broken down by: zenith, hit sensors, containment."""
    breakdowns = {"vs_zenith": zenith_groups(per_event["cos_zenith_true"].to_numpy(), settings.cos_zenith_edges)}
    if "n_sensors" in per_event.columns:
        breakdowns["vs_hit_sensors"] = sensor_groups(per_event["n_sensors"].to_numpy(float), bins.sensor_edges)
    if "contained" in per_event.columns and per_event["contained"].notna().any():
        breakdowns["vs_containment"] = containment_groups(per_event["contained"])
    return breakdowns


def _energy_table(binned: _Binning, ratio: pd.Series, mask: np.ndarray, offset: int,
                  edges_gev: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Return per-bin bias (median, with CI) and resolution (half 16-84% width) of log10(E_reco/E_true)."""
    table = pd.DataFrame(binned(ratio, mask, offset, edges_gev))
    table["resolution_log10"] = 0.5 * (table["q84"] - table["q16"])
    table = table.rename(columns={"median": "bias_log10", "median_ci_low": "bias_ci_low",
                                  "median_ci_high": "bias_ci_high"})
    return _records(table)


def _energy_metrics(per_event: pd.DataFrame, settings: EvaluationSettings, binned: _Binning,
                    bins: EventBins) -> dict[str, Any]:
    """Return log10(E_reco/E_true) resolution and bias per class, overall, per energy bin and per
    decade, and the migration matrix of reconstructed vs true energy."""
    ratio = per_event["log10_energy_ratio"]
    energy: dict[str, Any] = {"estimated": bool(np.isfinite(ratio).any()), "reference": settings.energy_reference}
    if not energy["estimated"]:
        return energy
    energy["by_decade"] = {}
    masks = [*_class_masks(per_event), ("all", np.ones(len(per_event), dtype=bool))]
    for offset, (cls, mask) in enumerate(masks):
        resolution, bias = m.resolution_and_bias(ratio[mask], event_weights(per_event, mask))
        energy[cls] = {"n": int(np.isfinite(ratio[mask]).sum()), "resolution_log10": resolution, "bias_log10": bias}
        if cls != "all":
            energy[f"{cls}_vs_energy"] = _energy_table(binned, ratio, mask, 2000 + 100 * offset)
        energy["by_decade"][cls] = _energy_table(binned, ratio, mask, 3000 + 100 * offset, bins.decade_edges_gev)
    energy["migration"] = m.migration_matrix(per_event["energy_true_gev"], per_event["energy_reco_gev"],
                                             bins.energy_edges_gev, bins.reco_edges_gev, event_weights(per_event))
    return energy


def _uncertainty_metrics(per_event: pd.DataFrame) -> dict[str, Any]:
    """Return the calibration of angular_uncertainty_deg: 68% coverage, miscalibration factor, the
    coverage curve, pulls."""
    err, unc = per_event["angular_error_deg"], per_event["angular_uncertainty_deg"]
    usable = np.isfinite(unc) & np.isfinite(err)
    calibration: dict[str, Any] = {"estimated": bool(usable.any())}
    if not calibration["estimated"]:
        return calibration
    weights = event_weights(per_event)
    calibration["coverage_68"] = m.coverage(err, unc, weights)
    calibration["miscalibration_factor"] = m.miscalibration_factor(err, unc, weights)
    calibration["n"] = int(usable.sum())
    for cls, mask in _class_masks(per_event):
        calibration[f"coverage_68_{cls}"] = m.coverage(err[mask], unc[mask], event_weights(per_event, mask))
        calibration[f"n_{cls}"] = int((usable & mask).sum())
    curve = m.coverage_curve(err, unc)
    calibration["coverage_curve"] = _records(curve[["nominal", "observed"]])
    pulls = per_event["pull"][np.isfinite(per_event["pull"])]
    calibration["pull_median"] = float(np.median(pulls))
    calibration["pull_median_expected"] = float(np.sqrt(2.0 * np.log(2.0)))  # Rayleigh(1) median
    return calibration


def _classification_metrics(per_event: pd.DataFrame) -> dict[str, Any]:
    """Return the track/cascade ROC AUC of p_track."""
    score = per_event["p_track"]
    _, _, auc = m.roc_auc(score, per_event["is_track"], event_weights(per_event))
    return {"estimated": bool(np.isfinite(score).any()), "auc": auc,
            "n": int(np.isfinite(score).sum()), "n_tracks": int(per_event["is_track"].sum())}


def summary_row(result: MethodResult, min_events: int = 20) -> dict[str, Any]:
    """Return the method's line of the summary table (numbers, NaN where not estimated).

    Each number has its event count (``*_n``); ``min_events`` is the count below which
    the table marks a number as from too few events.
    """
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
        "track_median_n": get(direction, "track", "n"),
        "cascade_median_deg": get(direction, "cascade", "median"),
        "cascade_median_ci_low": get(direction, "cascade", "median_ci_low"),
        "cascade_median_ci_high": get(direction, "cascade", "median_ci_high"),
        "cascade_median_n": get(direction, "cascade", "n"),
        "track_log10e_resolution": get(energy, "track", "resolution_log10"),
        "track_log10e_n": get(energy, "track", "n"),
        "cascade_log10e_resolution": get(energy, "cascade", "resolution_log10"),
        "cascade_log10e_n": get(energy, "cascade", "n"),
        "coverage_68": get(calibration, "coverage_68"),
        "coverage_68_n": get(calibration, "n"),
        "auc": classification["auc"],
        "auc_n": classification["n"] if classification["estimated"] else np.nan,
        "min_events": int(min_events),
        "events_per_s_per_core": result.throughput.get("events_per_s_per_core", np.nan),
        "events_per_s": result.throughput.get("events_per_s", np.nan),
    }


SUMMARY_TIMING_COLUMNS = ("events_per_s_per_core", "events_per_s")
"""Columns of summary_row that are timing (they vary from run to run); metrics.json keeps them
under "timing" only."""
