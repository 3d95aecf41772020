"""What the methods give on a detector's data, not on the generation spectrum: flux-weighted metrics and effective areas.

A simulated sample is drawn from a generation spectrum (E^-γ, flavours in equal shares) chosen for
statistics, so unweighted medians describe that spectrum. Weighting each event by its rate under a
physical flux (``nurec.evaluate.weights.event_rates_hz``: OneWeight × Φ / N_gen) gives the numbers a
year of data would show. Both sections need the simulator's OneWeight and ``n_generated``; for real
data or files from other tools they are reported as unavailable, with the reason.

Subsampled methods (slow fits run on the leading events only) see a fraction f of the events; their
effective area after cuts and their events per year are scaled by 1/f, which is unbiased as long as
the leading events are a random draw of the sample (the simulator writes events in generation order).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from nurec.evaluate.fluxes import FluxModel, flux_models
from nurec.evaluate.quality import (
    EVENT_WEIGHT_COLUMN,
    EvaluationSettings,
    EventBins,
    MethodResult,
    summary_row,
)
from nurec.evaluate.weights import (
    SECONDS_PER_YEAR,
    WeightError,
    effective_area_m2,
    event_rates_hz,
    generation,
)
from nurec.io.schema import FIT_OK

WEIGHTED_SUMMARY_COLUMNS = (
    "method", "events", "track_median_deg", "track_median_ci_low", "track_median_ci_high", "track_median_n",
    "cascade_median_deg", "cascade_median_ci_low", "cascade_median_ci_high", "cascade_median_n",
    "track_log10e_resolution", "track_log10e_n", "cascade_log10e_resolution", "cascade_log10e_n",
    "coverage_68", "coverage_68_n",
)
"""Columns of summary_row kept in a flux's weighted summary (no timing, no AUC: weights barely move it)."""


def fluxes_by_name(names: str) -> list[FluxModel]:
    """Return the flux models a comma-separated list names ("all": every one, "none": no weighting)."""
    known = {flux.name: flux for flux in flux_models()}
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    if wanted == ["all"]:
        return list(known.values())
    if wanted == ["none"]:
        return []
    unknown = [n for n in wanted if n not in known]
    if unknown or not wanted:
        raise ValueError(f"fluxes: '{unknown[0] if unknown else names}' is not all, none or one of {', '.join(known)}")
    return [known[n] for n in wanted]


def unavailable(reason: str) -> dict[str, Any]:
    """Return the section of a report that cannot be computed, with the one-line reason."""
    return {"available": False, "reason": reason}


def effective_sample_size(weights: np.ndarray) -> float:
    """Return Kish's effective number of events (Σw)² / Σw²: how many equal-weight events the weights are worth."""
    weights = np.asarray(weights, dtype=np.float64)
    total_sq = float(np.sum(weights**2))
    return float(np.sum(weights) ** 2 / total_sq) if total_sq > 0 else 0.0


def _subsample_fraction(result: MethodResult, n_events: int) -> float:
    return len(result.per_event) / n_events if n_events else 1.0


def _ok_mask(truth: pd.DataFrame, result: MethodResult) -> np.ndarray:
    """Return, per truth row, whether the method reconstructed that event (fit_status ok)."""
    ok_ids = result.per_event.loc[result.per_event["fit_status"] == FIT_OK, "event_id"]
    return truth["event_id"].isin(ok_ids).to_numpy()


def flux_weighted_metrics(
    truth: pd.DataFrame, metadata: Mapping[str, Any], results: Sequence[MethodResult],
    evaluate: Callable[[pd.DataFrame], Sequence[MethodResult]], settings: EvaluationSettings, fluxes: Sequence[FluxModel] | None = None,
) -> dict[str, Any]:
    """Return, per flux, the events per year (triggered and per method) and every method's weighted summary.

    ``evaluate(weighted_truth) -> list[MethodResult]`` re-evaluates the methods on the same events
    with EVENT_WEIGHT_COLUMN set (the report's own evaluation, so the weighted numbers are the
    same metrics, only weighted). Event counts in the summaries stay counts of events; ``n_effective``
    says how many equal-weight events the weights amount to.
    """
    fluxes = list(flux_models() if fluxes is None else fluxes)
    try:
        generation(metadata)
        rates = {flux.name: event_rates_hz(truth, metadata, flux) for flux in fluxes}
    except WeightError as error:
        return unavailable(str(error))
    sections = []
    for flux in fluxes:
        rates_hz = rates[flux.name]
        weighted = evaluate(truth.assign(**{EVENT_WEIGHT_COLUMN: rates_hz}))
        per_year, n_effective = {}, {}
        for result in results:
            ok = _ok_mask(truth, result)
            per_year[result.name] = float(rates_hz[ok].sum() * SECONDS_PER_YEAR
                                          / _subsample_fraction(result, len(truth)))
            n_effective[result.name] = effective_sample_size(rates_hz[ok])
        summary = [{key: row[key] for key in WEIGHTED_SUMMARY_COLUMNS}
                   for row in (summary_row(r, settings.min_events_per_bin) for r in weighted)]
        sections.append({
            "flux": flux.name, "citation": flux.citation,
            "events_per_year_triggered": float(rates_hz.sum() * SECONDS_PER_YEAR),
            "n_effective_triggered": effective_sample_size(rates_hz),
            "events_per_year_reconstructed": per_year,
            "n_effective_reconstructed": n_effective,
            "summary_table": summary,
        })
    return {"available": True, "livetime_s": SECONDS_PER_YEAR, "fluxes": sections}


def area_energy_edges(bins: EventBins, energy_min_gev: float, energy_max_gev: float) -> np.ndarray:
    """Return the report's energy bins clipped to the generated energies (outside them no area can be estimated)."""
    edges = np.asarray(bins.energy_edges_gev, dtype=np.float64)
    inside = edges[(edges > energy_min_gev) & (edges < energy_max_gev)]
    return np.unique(np.concatenate([[energy_min_gev], inside, [energy_max_gev]]))


def zenith_bands(cos_zenith_min: float, cos_zenith_max: float) -> list[tuple[str, tuple[float, ...]]]:
    """Return (label, cos-zenith edges) of the bands areas are given in: all directions, then up/down-going."""
    bands = [("all generated directions", (cos_zenith_min, cos_zenith_max))]
    if cos_zenith_min < 0.0 < cos_zenith_max:
        bands.append(("up-going / down-going", (cos_zenith_min, 0.0, cos_zenith_max)))
    return bands


def effective_areas(truth: pd.DataFrame, metadata: Mapping[str, Any], results: Sequence[MethodResult],
                    bins: EventBins) -> dict[str, Any]:
    """Return the effective area per flavour vs true energy and zenith band, at trigger level and per method.

    A method's area counts the events it reconstructed (fit_status ok, its quality cut); a
    subsampled method's is scaled by 1/f (module docstring). Rows as
    ``nurec.evaluate.weights.effective_area_m2`` plus ``selection`` ("trigger" or the method).
    """
    try:
        gen = generation(metadata)
        edges = area_energy_edges(bins, gen.energy_min_gev, gen.energy_max_gev)
        selections = [("trigger", None, 1.0)] + [
            (r.name, _ok_mask(truth, r), _subsample_fraction(r, len(truth))) for r in results]
        frames = []
        for name, mask, fraction in selections:
            for _, band_edges in zenith_bands(gen.cos_zenith_min, gen.cos_zenith_max):
                table = effective_area_m2(truth, metadata, edges, mask=mask, cos_zenith_edges=band_edges)
                table[["area_m2", "area_error_m2"]] /= fraction
                frames.append(table.assign(selection=name, subsample_fraction=fraction))
    except WeightError as error:
        return unavailable(str(error))
    rows = pd.concat(frames, ignore_index=True)
    columns = ["selection", *[c for c in rows.columns if c != "selection"]]
    return {"available": True, "energy_edges_gev": edges.tolist(), "generation": gen.describe(),
            "rows": rows[columns].to_dict(orient="records")}
