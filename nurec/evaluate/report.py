"""Quality report: evaluate methods on the same events, write index.html (self-contained) and metrics.json.

Layout of a report directory::

    index.html     verdicts, summary table, energy per decade, then figures (PNG embedded as
                   base64), paired comparisons, breakdowns, timing and per-bin tables
    summary.md     the verdicts, the summary table and energy per decade as text
    metrics.json   every number in the tables, dataset metadata, settings, methods' versions;
                   timing (build, warm-up, throughput) only under the key TIMING_KEY
    plots/*.png    the same figures as files (for README/papers)

The same inputs and settings give byte-identical metrics.json and figures (no timestamps);
only ``metrics["timing"]`` (and the throughput figure and cells drawn from it) changes when
the same methods run again on the same events.

metrics.json layout (REPORT_FORMAT_VERSION 2)::

    report_format, nurec_version, command
    dataset          detector, flavours, energies, seed, counts, source metadata, ν-μ angle
    settings         EvaluationSettings (bins, bootstrap, seed, energy/direction references)
    references       {"energy": what E_true is, "direction": what the true direction is}
    weighting        {"column": EVENT_WEIGHT_COLUMN, "weighted": bool}
    bins             EventBins: energy_edges_gev, decade_edges_gev, reco_edges_gev, sensor_edges
    energy_bins_gev  = bins.energy_edges_gev
    verdicts         {task: best, best_loss, runner_up, ratio, ratio_ci_low/high, n_events_compared,
                      decisive, excluded, candidates, selection, loss_definition, statement}
    paired_comparisons {task: [{method_a (the better), method_b, n_events, loss_a, loss_b,
                      ratio_b_to_a, ratio_ci_low/high, low_stats, decisive}]}
    summary_table    one record per method (medians with CI and n; no timing)
    methods          {name: counts, direction (per class, vs energy, vs_zenith, vs_hit_sensors,
                      vs_containment), energy (per class, vs energy, by_decade, migration),
                      uncertainty, classification, subsample, events_evaluated}
    skipped_methods  {name: why it did not run}
    figures          figure keys (plots/<key>.png)
    weighted_metrics {available, reason if not, livetime_s, fluxes: [{flux, citation,
                      events_per_year_triggered, n_effective_triggered, events_per_year_reconstructed
                      {method: ..}, n_effective_reconstructed, summary_table (weighted medians)}]}
    effective_areas  {available, reason if not, energy_edges_gev, generation, rows: [{selection
                      (trigger or method), flavour, interactions, cos_zenith_low/high, e_low/high_gev,
                      n_events, area_m2, area_error_m2, subsample_fraction}]}
    timing           {name: load_s, warmup_s, warmup_events, n_events (timed), wall_s, cpu_s,
                      events_per_s, events_per_s_per_core}: the only run-dependent numbers
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nurec.evaluate import metrics as m
from nurec.evaluate.compare import TASKS, TaskOutcome, judge_all
from nurec.evaluate.fluxes import FluxModel
from nurec.evaluate.plots import EFFECTIVE_AREA_FIGURE, FIGURES, figure_png, plot_effective_area
from nurec.evaluate.quality import (
    CLASSES,
    DIRECTION_REFERENCES,
    ENERGY_REFERENCES,
    EVENT_WEIGHT_COLUMN,
    SUMMARY_TIMING_COLUMNS,
    EvaluationSettings,
    EventBins,
    MethodResult,
    evaluate_method,
    event_bins,
    summary_row,
    true_direction,
)
from nurec.evaluate.weighted import effective_areas, flux_weighted_metrics, unavailable
from nurec.io.files import write_atomic
from nurec.io.predictions import read_predictions, read_predictions_metadata
from nurec.methods.registry import resolve_detector
from nurec.methods.run import Provenance
from nurec.version import __version__

REPORT_FORMAT_VERSION = 2

TIMING_KEY = "timing"
"""The one key of metrics.json whose numbers change from run to run (build, warm-up, throughput)."""


def without_timing(metrics: dict[str, Any]) -> dict[str, Any]:
    """Return metrics.json content without its timing: what the same inputs must reproduce exactly."""
    return {key: value for key, value in metrics.items() if key != TIMING_KEY}


@dataclass
class MethodPredictions:
    """One method's predictions with their provenance.

    ``subsample`` True means the method was deliberately run on only the events in its
    table (e.g. a slow fit in the demo): it is evaluated on those. Otherwise every event
    of the data set without a prediction row counts as failed. ``throughput``: timing of
    the run (nurec.evaluate.metrics.throughput, plus ``load_s``, ``warmup_s``,
    ``warmup_events`` where known); it goes to metrics.json's TIMING_KEY only.
    """

    name: str
    version: str
    predictions: pd.DataFrame
    metadata: dict[str, Any] = field(default_factory=dict)
    throughput: dict[str, Any] = field(default_factory=dict)
    subsample: bool = False


def throughput_from_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Return the throughput numbers of a prediction file's provenance (nurec.methods.run.Provenance).

    Files without that provenance (written by other tools) have none.
    """
    try:
        provenance = Provenance.from_dict(metadata)
    except ValueError:
        return {}
    if provenance.wall_s <= 0:
        return {}
    extra = provenance.extra
    out = m.throughput(int(extra.get("timed_events", provenance.n_events)), provenance.wall_s,
                       provenance.cpu_s or None)
    out.update(load_s=provenance.load_s, warmup_s=extra.get("warmup_s"), warmup_events=extra.get("warmup_events"),
               source="prediction metadata")
    return out


def load_method_predictions(path: str | os.PathLike) -> MethodPredictions:
    """Return predictions and provenance read from a file written by nurec.io.predictions.write_predictions."""
    path = Path(path)
    table = read_predictions(path)
    metadata = read_predictions_metadata(path) if path.suffix != ".csv" else {}
    methods = table["method"].dropna().unique()
    name = str(metadata.get("method") or (methods[0] if len(methods) else path.stem))
    version = str(metadata.get("version") or "unknown")
    return MethodPredictions(name, version, table, metadata, throughput_from_metadata(metadata),
                             bool(metadata.get("subsample", False)))


def dataset_summary(truth: pd.DataFrame, metadata: dict[str, Any]) -> dict[str, Any]:
    """Return detector, flavours, energy range, seed and counts of the evaluated events (plus raw metadata)."""
    config = metadata.get("config", {}) if isinstance(metadata.get("config"), dict) else {}
    detector = metadata.get("detector")
    flavour_names = {12: "nue", 14: "numu", 16: "nutau"}
    pdg_counts = truth["pdg"].abs().map(lambda p: flavour_names.get(int(p), str(p))).value_counts()
    interactions = truth["interaction"].astype(str).value_counts()
    return {
        "detector": detector.get("name") if isinstance(detector, dict) else detector,
        "flavours": config.get("flavors"),
        "interactions": config.get("interactions"),
        "energy_range_gev": [config.get("energy_min_gev"), config.get("energy_max_gev")] if config else None,
        "spectral_index": config.get("spectral_index"),
        "seed": metadata.get("seed", config.get("seed")),
        "n_events": int(len(truth)),
        "n_tracks": int(truth["is_track"].sum()),
        "n_cascades": int((~truth["is_track"]).sum()),
        "events_per_flavour": {str(k): int(v) for k, v in sorted(pdg_counts.items())},
        "events_per_interaction": {str(k): int(v) for k, v in sorted(interactions.items())},
        "true_energy_min_gev": float(truth["energy"].min()) if len(truth) else None,
        "true_energy_max_gev": float(truth["energy"].max()) if len(truth) else None,
        "n_contained": int((truth["contained"] == True).sum()) if "contained" in truth else None,  # noqa: E712
        "median_neutrino_muon_angle_deg": neutrino_muon_angle_deg(truth),
        "source_metadata": metadata,
    }


def neutrino_muon_angle_deg(truth: pd.DataFrame) -> float | None:
    """Return the median angle between the neutrino and its muon over events with a muon (None: none).

    With the neutrino as the true direction, this much of a track's angular error is physics
    (the interaction's kinematics), not reconstruction.
    """
    if "muon_dir_x" not in truth:
        return None
    has_muon = truth[["muon_dir_x", "muon_dir_y", "muon_dir_z"]].notna().all(axis=1).to_numpy()
    if not has_muon.any():
        return None
    angle = m.angular_distance_deg(truth.loc[has_muon, ["dir_x", "dir_y", "dir_z"]].to_numpy(float),
                                   true_direction(truth[has_muon], "muon"))
    return float(np.median(angle))


def vertex_containment(truth: pd.DataFrame, metadata: dict[str, Any]) -> pd.Series | None:
    """Return per event whether the true vertex is inside the detector's instrumented volume.

    None when the truth has no vertices or the detector of ``metadata`` cannot be loaded
    (a geometry file that is not at hand): the report then has no containment breakdown.
    Events without a finite vertex get None.
    """
    columns = ["vertex_x", "vertex_y", "vertex_z"]
    if not set(columns) <= set(truth.columns) or truth[columns].isna().all().all():
        return None
    try:
        geometry = resolve_detector(metadata.get("detector"))
    except (ValueError, OSError, KeyError):
        return None
    vertex = truth[columns].to_numpy(float)
    finite = np.all(np.isfinite(vertex), axis=1)
    inside = np.full(len(truth), None, dtype=object)
    inside[finite] = geometry.contains(vertex[finite]).astype(bool)
    return pd.Series(inside, index=truth.index, name="contained")


def prepare_truth(truth: pd.DataFrame, metadata: dict[str, Any]) -> pd.DataFrame:
    """Return ``truth`` with the ``contained`` column (see vertex_containment) when it can be computed."""
    if "contained" in truth.columns:
        return truth
    contained = vertex_containment(truth, metadata)
    return truth if contained is None else truth.assign(contained=contained)


@dataclass
class Report:
    """What build_report made: the evaluated methods, the summary table and the files written."""

    results: list[MethodResult]
    summary: pd.DataFrame
    metrics: dict[str, Any]
    out_dir: Path
    figures: dict[str, bytes]

    @property
    def html_path(self) -> Path:
        """Return the path of index.html."""
        return self.out_dir / "index.html"

    @property
    def metrics_path(self) -> Path:
        """Return the path of metrics.json."""
        return self.out_dir / "metrics.json"

    @property
    def text_path(self) -> Path:
        """Return the path of summary.md (verdicts, summary table, energy per decade as text)."""
        return self.out_dir / "summary.md"

    def verdicts_text(self) -> str:
        """Return the verdicts, one sentence per task (for a terminal, above the summary table)."""
        return verdicts_text(self.metrics)


def evaluate_all(
    truth: pd.DataFrame, methods: Sequence[MethodPredictions], settings: EvaluationSettings,
    bins: EventBins | None = None,
) -> list[MethodResult]:
    """Return every method evaluated on the same events with the same bins."""
    if len(truth) == 0:
        raise ValueError("data: no events to evaluate")
    names = [m.name for m in methods]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"predictions: method '{duplicates[0]}' given more than once")
    bins = bins or event_bins(truth, settings)
    results = []
    for method in methods:
        events = truth
        if method.subsample:
            events = truth[truth["event_id"].isin(method.predictions["event_id"])]
        results.append(evaluate_method(method.name, method.version, events, method.predictions, settings,
                                       bins, method.throughput))
    return results


def references(settings: EvaluationSettings) -> dict[str, str]:
    """Return what the truth is, in words: E_true and the true direction."""
    return {"energy": ENERGY_REFERENCES[settings.energy_reference],
            "direction": DIRECTION_REFERENCES[settings.direction_reference]}


def build_report(
    truth: pd.DataFrame,
    dataset_metadata: dict[str, Any],
    methods: Sequence[MethodPredictions],
    out_dir: str | os.PathLike,
    settings: EvaluationSettings | None = None,
    command: str | None = None,
    skipped: dict[str, str] | None = None,
    fluxes: Sequence[FluxModel] | None = None,
) -> Report:
    """Evaluate ``methods`` against ``truth`` and write index.html, metrics.json and plots/ to ``out_dir``.

    ``skipped`` maps methods that could not run (e.g. untrained) to the reason; they are
    listed in both files so that no method disappears from a comparison unnoticed. If
    ``truth`` has an EVENT_WEIGHT_COLUMN, every metric is weighted by it. ``fluxes`` (default:
    ``nurec.evaluate.fluxes.flux_models()``; empty: none) add a flux-weighted summary per flux,
    and effective areas are given whenever the events carry OneWeight (``nurec.evaluate.weighted``).
    """
    settings = settings or EvaluationSettings()
    out_dir = Path(out_dir)
    truth = prepare_truth(truth, dataset_metadata)
    bins = event_bins(truth, settings)
    results = evaluate_all(truth, methods, settings, bins)
    subsampled = {p.name: len(p.predictions) for p in methods if p.subsample}
    outcomes = judge_all(results, settings, subsampled, len(truth))
    summary = pd.DataFrame([summary_row(r, settings.min_events_per_bin) for r in results])
    if fluxes is None or len(fluxes):
        weighted = flux_weighted_metrics(truth, dataset_metadata, results,
                                         lambda weighted_truth: evaluate_all(weighted_truth, methods, settings, bins),
                                         settings, fluxes)
    else:
        weighted = unavailable("no flux chosen")
    areas = effective_areas(truth, dataset_metadata, results, bins)
    figures = render_figures(results)
    area_figure = plot_effective_area(areas)
    if area_figure is not None:
        figures[EFFECTIVE_AREA_FIGURE] = figure_png(area_figure)
    metrics = report_metrics(truth, dataset_metadata, methods, results, outcomes, summary, settings, bins,
                             command, skipped, figures)
    metrics.update(weighted_metrics=weighted, effective_areas=areas)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "plots").mkdir(exist_ok=True)
    for key, png in figures.items():
        write_atomic(out_dir / "plots" / f"{key}.png", png)
    write_atomic(out_dir / "metrics.json", (json.dumps(json_safe(metrics), indent=2, allow_nan=False) + "\n").encode())
    write_atomic(out_dir / "summary.md", (report_text(metrics, summary) + "\n").encode())
    page = render_html(metrics, summary, results, figures)
    write_atomic(out_dir / "index.html", page.encode())
    return Report(results, summary, metrics, out_dir, figures)


def render_figures(results: Sequence[MethodResult]) -> dict[str, bytes]:
    """Return {figure key: PNG bytes} of every figure some method has data for."""
    figures: dict[str, bytes] = {}
    for key, (_, function) in FIGURES.items():
        fig = function(results)
        if fig is not None:
            figures[key] = figure_png(fig)
    return figures


def report_metrics(truth: pd.DataFrame, dataset_metadata: dict[str, Any], methods: Sequence[MethodPredictions],
                   results: Sequence[MethodResult], outcomes: dict[str, TaskOutcome], summary: pd.DataFrame,
                   settings: EvaluationSettings, bins: EventBins, command: str | None,
                   skipped: dict[str, str] | None, figures: dict[str, bytes]) -> dict[str, Any]:
    """Return the content of metrics.json (layout: module docstring); run-dependent numbers only under TIMING_KEY."""
    subsample = {p.name: p.subsample for p in methods}
    return {
        "report_format": REPORT_FORMAT_VERSION,
        "nurec_version": __version__,
        "command": command,
        "dataset": dataset_summary(truth, dataset_metadata),
        "settings": settings.to_dict(),
        "references": references(settings),
        "weighting": {"column": EVENT_WEIGHT_COLUMN, "weighted": EVENT_WEIGHT_COLUMN in truth.columns},
        "bins": bins.to_dict(),
        "energy_bins_gev": np.asarray(bins.energy_edges_gev, float).tolist(),
        "verdicts": {key: outcome.verdict for key, outcome in outcomes.items()},
        "paired_comparisons": {key: outcome.comparisons for key, outcome in outcomes.items()},
        "summary_table": summary.drop(columns=list(SUMMARY_TIMING_COLUMNS)).to_dict(orient="records"),
        "methods": {r.name: {**r.metrics, "subsample": subsample[r.name], "events_evaluated": int(len(r.per_event))}
                    for r in results},
        "skipped_methods": dict(skipped or {}),
        "figures": sorted(figures),
        TIMING_KEY: {r.name: dict(r.throughput) for r in results},
    }


def json_safe(value: Any) -> Any:
    """Return ``value`` with numpy scalars as Python numbers and NaN/inf as None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, str | int):
        return value
    return str(value)


# ----------------------------------------------------------------------------- HTML
def _fmt(value: Any) -> str:
    """Return a number for a table cell: thousands separators above 1000, 3 significant digits below."""
    if value is None:
        return "&mdash;"
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        value = float(value)
        if not np.isfinite(value):
            return "&mdash;"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 1 or value == 0:
            return f"{value:.3g}"
        if abs(value) >= 1e-3:
            return f"{value:.3f}"
        return f"{value:.2e}"
    return html.escape(str(value))


def _finite(value: Any) -> bool:
    return value is not None and isinstance(value, int | float | np.integer | np.floating) and bool(np.isfinite(value))


def _ci(median: float, low: float, high: float) -> str:
    if not _finite(median):
        return "&mdash;"
    return f"{_fmt(median)} <span class=ci>[{_fmt(low)}, {_fmt(high)}]</span>"


def _counted(text: str, n: Any, min_events: int) -> str:
    """Return a cell's HTML with its event count; marked (grey, *) when from fewer than ``min_events`` events."""
    if text == "&mdash;" or not _finite(n):
        return text
    low = int(n) < min_events
    cell = f"{text} <span class=n>(n={int(n):,}{'*' if low else ''})</span>"
    return f"<span class=lowstats title=\"fewer than {min_events} events\">{cell}</span>" if low else cell


def _event_count(n: int, min_events: int) -> str:
    """Return an event count for a cell, grey and marked * below ``min_events``."""
    if n >= min_events:
        return f"{n:,}"
    return f"<span class=lowstats title=\"fewer than {min_events} events\">{n:,}*</span>"


def _counted_text(text: str, n: Any, min_events: int) -> str:
    """Return a cell's text with its event count, ``*`` when from fewer than ``min_events`` events."""
    if text == "—" or not _finite(n):
        return text
    return f"{text} (n={int(n)}{'*' if int(n) < min_events else ''})"


SUMMARY_HEADERS = [
    ("method", "Method"),
    ("version", "Version"),
    ("events", "Events"),
    ("failed", "Failed fits"),
    ("track_median_deg", "Median angular error, tracks [deg]"),
    ("cascade_median_deg", "Median angular error, cascades [deg]"),
    ("track_log10e_resolution", "log10 E resolution, tracks [dex]"),
    ("cascade_log10e_resolution", "log10 E resolution, cascades [dex]"),
    ("coverage_68", "68% coverage of uncertainty"),
    ("auc", "Track/cascade AUC"),
    ("events_per_s_per_core", "Throughput [events/s per core]"),
]

SUMMARY_COUNTS = {
    "track_median_deg": "track_median_n", "cascade_median_deg": "cascade_median_n",
    "track_log10e_resolution": "track_log10e_n", "cascade_log10e_resolution": "cascade_log10e_n",
    "coverage_68": "coverage_68_n", "auc": "auc_n",
}
"""Summary column -> the column holding the number of events it was computed from."""


def _row_threshold(row: dict[str, Any]) -> int:
    value = row.get("min_events")
    return int(value) if _finite(value) else EvaluationSettings().min_events_per_bin


def summary_html(summary: pd.DataFrame) -> str:
    """Return the summary table as HTML (medians with 68% bootstrap CIs in brackets, event counts, few events marked)."""
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in SUMMARY_HEADERS)
    rows = []
    for row in summary.to_dict(orient="records"):
        cells = []
        for key, _ in SUMMARY_HEADERS:
            if key in ("track_median_deg", "cascade_median_deg"):
                prefix = key.replace("_deg", "")
                cell = _ci(row[key], row[f"{prefix}_ci_low"], row[f"{prefix}_ci_high"])
            elif key == "failed":
                share = row["failed"] / row["events"] if row["events"] else np.nan
                css = " class=bad" if row["failed"] else ""
                cell = f"<span{css}>{row['failed']} ({100 * share:.1f}%)</span>"
            elif key == "events_per_s_per_core":
                cell = _throughput_cell(row)
            else:
                cell = _fmt(row[key])
            if key in SUMMARY_COUNTS:
                cell = _counted(cell, row.get(SUMMARY_COUNTS[key]), _row_threshold(row))
            cells.append(cell)
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table class=summary><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _throughput_cell(row: dict[str, Any]) -> str:
    """Return events/s per core, or the wall-clock rate marked "(wall)" where only that is known."""
    per_core, wall = row.get("events_per_s_per_core", np.nan), row.get("events_per_s", np.nan)
    for value, suffix in ((per_core, ""), (wall, " (wall)")):
        if value is not None and np.isfinite(value):
            return (f"{value:,.0f}" if value >= 100 else f"{value:.3g}") + suffix
    return "&mdash;"


def _markdown(labels: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(labels) + " |", "|" + "---|" * len(labels)]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in rows])


def summary_text(summary: pd.DataFrame) -> str:
    """Return the summary table as GitHub Markdown (plain text, for terminals and the README)."""
    return _markdown([label for _, label in SUMMARY_HEADERS], summary_cells(summary))


def summary_cells(summary: pd.DataFrame) -> list[list[str]]:
    """Return the summary table's cells as text, one list per method in SUMMARY_HEADERS order.

    Numbers carry their event count, ``(n=12*)`` marking fewer events than the report's minimum.
    """
    rows = []
    for row in summary.to_dict(orient="records"):
        row = {k: np.nan if v is None else v for k, v in row.items()}  # also rows read back from metrics.json
        cells = []
        for key, _ in SUMMARY_HEADERS:
            value = row.get(key, np.nan)
            if key in ("track_median_deg", "cascade_median_deg"):
                prefix = key.replace("_deg", "")
                cell = ("—" if not np.isfinite(value) else
                        f"{value:.3g} [{row[f'{prefix}_ci_low']:.3g}, {row[f'{prefix}_ci_high']:.3g}]")
            elif key == "failed":
                cell = f"{value} of {row['events']}"
            elif key == "events_per_s_per_core":
                cell = _throughput_cell(row).replace("&mdash;", "—")
            elif isinstance(value, float):
                cell = "—" if not np.isfinite(value) else (f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}")
            else:
                cell = str(value)
            if key in SUMMARY_COUNTS:
                cell = _counted_text(cell, row.get(SUMMARY_COUNTS[key]), _row_threshold(row))
            cells.append(cell)
        rows.append(cells)
    return rows


# ----------------------------------------------------------------------------- verdicts (HTML and text)
VERDICT_HEADERS = ["Task", "Best method", "Its loss (events)", "Runner-up", "Runner-up / best [CI]",
                   "Events compared", "Selection", "Not judged"]


def _ratio_text(value: Any, low: Any, high: Any) -> str:
    if not _finite(value):
        return "—"
    return f"{value:.2f}x [{low:.2f}, {high:.2f}]" if _finite(low) and _finite(high) else f"{value:.2f}x"


def verdict_cells(verdict: dict[str, Any]) -> list[str]:
    """Return one verdict's row as text cells, in VERDICT_HEADERS order."""
    unit = f" {verdict['unit']}" if verdict.get("unit") else ""
    best = verdict.get("best")
    loss = f"{verdict['loss']} {verdict['best_loss']:.3g}{unit} (n={verdict['best_n_events']})" if best else "—"
    ratio = _ratio_text(verdict.get("ratio"), verdict.get("ratio_ci_low"), verdict.get("ratio_ci_high"))
    if best and verdict.get("runner_up") and not verdict.get("decisive"):
        ratio += " (not a clear win)"
    excluded = "; ".join(f"{k}: {v}" for k, v in verdict.get("excluded", {}).items()) or "—"
    return [verdict["title"], best or "no verdict", loss, verdict.get("runner_up") or "—", ratio,
            str(verdict.get("n_events_compared", "—")) if verdict.get("runner_up") else "—",
            verdict["selection"], excluded]


def verdicts_html(metrics: dict[str, Any]) -> str:
    """Return the verdict table and sentences (the top of the report)."""
    verdicts = metrics["verdicts"]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in VERDICT_HEADERS)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in verdict_cells(v)) + "</tr>"
                   for v in verdicts.values())
    sentences = "".join(f"<li>{html.escape(v['statement'])}</li>" for v in verdicts.values())
    settings = metrics["settings"]
    note = (f"Best: the method that wins most paired comparisons (ratio of the task's loss on the events both "
            f"reconstructed); the interval is the {round(100 * settings['confidence'])}% percentile bootstrap of "
            f"that ratio ({settings['n_bootstrap']} paired resamples, seeded). Methods and comparisons with fewer "
            f"than {settings['min_events_per_bin']} events are not judged. Losses: "
            + "; ".join(f"{t.title}: {t.loss_definition}" for t in TASKS) + ".")
    return (f"<table class=verdicts><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
            f"<ul class=verdict>{sentences}</ul><p class=meta>{html.escape(note)}</p>")


def verdicts_text(metrics: dict[str, Any]) -> str:
    """Return the verdicts as text: one sentence per task."""
    return "\n".join(f"- {v['statement']}" for v in metrics["verdicts"].values())


# ----------------------------------------------------------------------------- energy per decade
def _energy_label(low_gev: float, high_gev: float) -> str:
    """Return an energy range as text in GeV, TeV or PeV ("1-10 TeV")."""
    for unit, scale in (("PeV", 1e6), ("TeV", 1e3), ("GeV", 1.0)):
        if low_gev >= scale:
            return f"{low_gev / scale:.3g}-{high_gev / scale:.3g} {unit}"
    return f"{low_gev:.3g}-{high_gev:.3g} GeV"


CLASS_LABELS = {"track": "tracks", "cascade": "cascades", "all": "all"}


def decade_rows(metrics: dict[str, Any]) -> tuple[list[str], list[tuple[str, str, list[dict[str, Any]]]]]:
    """Return (decade labels, [(method, class label, per-decade records)]) of the methods that estimate energy."""
    edges = metrics["bins"]["decade_edges_gev"]
    labels = [_energy_label(lo, hi) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    rows = []
    for name, method in metrics["methods"].items():
        energy = method["energy"]
        if not energy.get("estimated"):
            continue
        for cls, label in CLASS_LABELS.items():
            rows.append((name, label, energy["by_decade"][cls]))
    return labels, rows


def _decade_cell(record: dict[str, Any]) -> str:
    bias, resolution = record.get("bias_log10"), record.get("resolution_log10")
    if not _finite(bias):
        return "—"
    return f"{bias:+.2f} / " + (f"{resolution:.2f}" if _finite(resolution) else "—")


def decades_html(metrics: dict[str, Any]) -> str:
    """Return the table of bias / resolution of log10(E_reco/E_true) per decade of E_true."""
    labels, rows = decade_rows(metrics)
    if not rows:
        return "<p class=meta>No evaluated method estimates the energy.</p>"
    threshold = metrics["settings"]["min_events_per_bin"]
    head = "<th>Method</th><th>Class</th>" + "".join(f"<th>{html.escape(label)}</th>" for label in labels)
    body = []
    for name, cls, records in rows:
        cells = [_counted(html.escape(_decade_cell(r)) if _decade_cell(r) != "—" else "&mdash;", r["n"], threshold)
                 for r in records]
        body.append(f"<tr><td>{html.escape(name)}</td><td>{cls}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (f"<table class=decades><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            "<p class=meta>Each cell: bias (median of log10(E_reco/E_true)) / resolution (half the 16&ndash;84% "
            f"width) in dex, (n=events); E_true = {html.escape(metrics['references']['energy'])}.</p>")


def decades_text(metrics: dict[str, Any]) -> str:
    """Return the per-decade bias / resolution table as Markdown."""
    labels, rows = decade_rows(metrics)
    threshold = metrics["settings"]["min_events_per_bin"]
    cells = [[name, cls, *(_counted_text(_decade_cell(r), r["n"], threshold) for r in records)]
             for name, cls, records in rows]
    return _markdown(["Method", "Class", *labels], cells)


# ----------------------------------------------------------------------------- flux-weighted metrics, effective areas
WEIGHTED_HEADERS = [
    ("track_median_deg", "Median angular error, tracks [deg]"),
    ("cascade_median_deg", "Median angular error, cascades [deg]"),
    ("track_log10e_resolution", "log10 E resolution, tracks [dex]"),
    ("cascade_log10e_resolution", "log10 E resolution, cascades [dex]"),
    ("coverage_68", "68% coverage of uncertainty"),
]


def _per_year(value: Any) -> str:
    return "—" if not _finite(value) else (f"{value:,.0f}" if value >= 100 else f"{value:.3g}")


def weighted_rows(metrics: dict[str, Any]) -> list[tuple[dict[str, Any], list[list[str]]]]:
    """Return (flux section, text cells per method) of the flux-weighted summaries."""
    section = metrics["weighted_metrics"]
    threshold = metrics["settings"]["min_events_per_bin"]
    out = []
    for flux in section.get("fluxes", []) if section.get("available") else []:
        rows = []
        for row in flux["summary_table"]:
            name = row["method"]
            cells = [name, f"{_per_year(flux['events_per_year_reconstructed'][name])} "
                           f"(n_eff={flux['n_effective_reconstructed'][name]:.0f})"]
            for key, _ in WEIGHTED_HEADERS:
                value = row.get(key)
                if key.endswith("_median_deg") and _finite(value):
                    prefix = key.replace("_deg", "")
                    cell = f"{value:.3g} [{row[f'{prefix}_ci_low']:.3g}, {row[f'{prefix}_ci_high']:.3g}]"
                else:
                    cell = f"{value:.3g}" if _finite(value) else "—"
                cells.append(_counted_text(cell, row.get(SUMMARY_COUNTS[key]), threshold))
            rows.append(cells)
        out.append((flux, rows))
    return out


WEIGHTED_LABELS = ["Method", "Events per year reconstructed", *(label for _, label in WEIGHTED_HEADERS)]


def weighted_html(metrics: dict[str, Any]) -> str:
    """Return one weighted summary table per flux, with the flux named and cited, or why there is none."""
    section = metrics["weighted_metrics"]
    if not section.get("available"):
        return f"<p class=meta>Not available: {html.escape(section['reason'])}.</p>"
    parts = []
    head = "".join(f"<th>{html.escape(label)}</th>" for label in WEIGHTED_LABELS)
    for flux, rows in weighted_rows(metrics):
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" for cells in rows)
        parts.append(
            f"<h3>Weighted by {html.escape(flux['flux'])}</h3><p class=meta>{html.escape(flux['citation'])}. "
            f"Triggered: {html.escape(_per_year(flux['events_per_year_triggered']))} events per year "
            f"(n_eff={flux['n_effective_triggered']:.0f}).</p>"
            f"<table class=weighted><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    return "".join(parts) + (
        "<p class=meta>Each event weighted by its rate under the flux (OneWeight &times; flux / events generated); "
        "a year is 365.25 days of livetime; n is the number of events behind a number, n_eff = (&Sigma;w)&sup2;/&Sigma;w&sup2; "
        "the number of equal-weight events the weights amount to. No oscillations, no absorption in the Earth.</p>")


def weighted_text(metrics: dict[str, Any]) -> str:
    """Return the flux-weighted summaries as Markdown, or why there are none."""
    section = metrics["weighted_metrics"]
    if not section.get("available"):
        return f"Flux-weighted metrics: not available ({section['reason']})."
    return "\n\n".join(
        f"Weighted by {flux['flux']} ({_per_year(flux['events_per_year_triggered'])} triggered events per year):\n\n"
        + _markdown(WEIGHTED_LABELS, rows) for flux, rows in weighted_rows(metrics))


def area_table(metrics: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Return (header, rows) of effective areas [m²] in the all-directions band: a row per selection and flavour."""
    areas = pd.DataFrame(metrics["effective_areas"]["rows"])
    areas = areas[(areas["cos_zenith_low"] == areas["cos_zenith_low"].min())
                  & (areas["cos_zenith_high"] == areas["cos_zenith_high"].max())]
    edges = metrics["effective_areas"]["energy_edges_gev"]
    labels = ["Selection", "Flavour", *(_energy_label(lo, hi) for lo, hi in zip(edges[:-1], edges[1:], strict=True))]
    rows = []
    for (selection, flavour), group in areas.groupby(["selection", "flavour"], sort=False):
        rows.append([selection, flavour, *(f"{a:.3g} ({n})" if n else "0"
                                            for a, n in zip(group["area_m2"], group["n_events"], strict=True))])
    return labels, rows


def effective_area_html(metrics: dict[str, Any], figures: dict[str, bytes]) -> str:
    """Return the effective-area figure and table, or why there is none."""
    areas = metrics["effective_areas"]
    if not areas.get("available"):
        return f"<p class=meta>Not available: {html.escape(areas['reason'])}.</p>"
    labels, rows = area_table(metrics)
    head = "".join(f"<th>{html.escape(label)}</th>" for label in labels)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" for cells in rows)
    figure = ""
    if EFFECTIVE_AREA_FIGURE in figures:
        data = base64.b64encode(figures[EFFECTIVE_AREA_FIGURE]).decode()
        figure = f"<figure><img alt=\"Effective area\" src=\"data:image/png;base64,{data}\"></figure>"
    return (f"{figure}<table class=areas><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"<p class=meta>{html.escape(areas['generation'])}: area [m&sup2;] (events) per bin of true energy, "
            "&nu; and &nu;&#772; averaged, all generated directions (up- and down-going bands in metrics.json). "
            "trigger: every triggered event; a method: the events it reconstructed (fit_status ok); methods run on "
            "the leading events only are scaled by the fraction they saw.</p>")


def report_text(metrics: dict[str, Any], summary: pd.DataFrame) -> str:
    """Return the text summary (summary.md): verdicts, the summary table, energy per decade, references."""
    refs = metrics["references"]
    return "\n\n".join([
        "# Reconstruction quality summary",
        f"Verdicts (paired comparisons on the events both methods reconstructed; {round(100 * metrics['settings']['confidence'])}% "
        f"bootstrap intervals; (n=k*) marks numbers from fewer than {metrics['settings']['min_events_per_bin']} events):",
        verdicts_text(metrics),
        summary_text(summary),
        "Energy bias / resolution of log10(E_reco/E_true) per decade of E_true [dex]:",
        decades_text(metrics),
        weighted_text(metrics),
        f"E_true: {refs['energy']}. True direction: {refs['direction']}.",
    ])


# ----------------------------------------------------------------------------- comparisons and breakdowns
def comparisons_html(metrics: dict[str, Any]) -> str:
    """Return one table of paired comparisons per task."""
    threshold = metrics["settings"]["min_events_per_bin"]
    parts = []
    for task in TASKS:
        comparisons = metrics["paired_comparisons"].get(task.key) or []
        if not comparisons:
            continue
        unit = f" [{task.unit}]" if task.unit else ""
        body = []
        for c in comparisons:
            ratio = html.escape(_ratio_text(c["ratio_b_to_a"], c["ratio_ci_low"], c["ratio_ci_high"]))
            body.append(f"<tr><td>{html.escape(c['method_a'])}</td><td>{html.escape(c['method_b'])}</td>"
                        f"<td>{_event_count(c['n_events'], threshold)}</td><td>{_fmt(c['loss_a'])}</td>"
                        f"<td>{_fmt(c['loss_b'])}</td><td>{ratio}</td></tr>")
        parts.append(f"<h3>{html.escape(task.title)}: {html.escape(task.loss_name)}{html.escape(unit)}</h3>"
                     "<table class=paired><thead><tr><th>Better</th><th>Worse</th><th>Events both reconstructed</th>"
                     "<th>Better's loss</th><th>Worse's loss</th><th>Worse / better [CI]</th></tr></thead>"
                     f"<tbody>{''.join(body)}</tbody></table>")
    return "".join(parts) or "<p class=meta>No two methods estimate the same quantity.</p>"


BREAKDOWNS = {
    "vs_zenith": "Angular error vs true zenith",
    "vs_hit_sensors": "Angular error vs number of hit sensors",
    "vs_containment": "Angular error, contained vs through-going (true vertex inside the instrumented volume or not)",
}


def breakdowns_html(metrics: dict[str, Any]) -> str:
    """Return median angular error per event group (zenith, hit sensors, containment): methods x groups."""
    threshold = metrics["settings"]["min_events_per_bin"]
    parts = []
    for key, title in BREAKDOWNS.items():
        for cls in CLASSES:
            shown = {name: method["direction"][key][cls] for name, method in metrics["methods"].items()
                     if method["direction"].get("estimated") and key in method["direction"]}
            if not shown:
                continue
            groups = [row["group"] for row in next(iter(shown.values()))]
            head = "<th>Method</th>" + "".join(f"<th>{html.escape(g)}</th>" for g in groups)
            body = "".join(
                f"<tr><td>{html.escape(name)}</td>"
                + "".join(f"<td>{_counted(_ci(r['median'], r['median_ci_low'], r['median_ci_high']), r['n'], threshold)}</td>"
                          for r in rows) + "</tr>"
                for name, rows in shown.items())
            parts.append(f"<h3>{html.escape(title)}, {cls}s [deg]</h3>"
                         f"<table class=breakdown><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    return "".join(parts)


def timing_html(metrics: dict[str, Any]) -> str:
    """Return the timing table: build, warm-up and timed reconstruction per method."""
    rows = []
    for name, t in metrics[TIMING_KEY].items():
        cells = [html.escape(name), _fmt(t.get("load_s")), _fmt(t.get("warmup_s")), _fmt(t.get("warmup_events")),
                 _fmt(t.get("n_events")), _fmt(t.get("wall_s")), _fmt(t.get("cpu_s")), _fmt(t.get("events_per_s")),
                 _fmt(t.get("events_per_s_per_core"))]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("Method", "Build [s]", "Warm-up [s]", "Warm-up events", "Timed events",
                                              "Wall [s]", "CPU [s]", "Events/s", "Events/s per core"))
    return (f"<table class=timing><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            "<p class=meta>Build: constructing the method (loading a model). Warm-up: its first call, on the first "
            "event(s), untimed in the throughput (lazy imports, thread pools, caches). Throughput: the timed events "
            "after it, per wall-clock second and per CPU-second (worker processes included).</p>")


def _binned_html(title: str, results: Sequence[MethodResult], section: str, key: str, columns: list[tuple[str, str]]) -> str:
    parts = []
    for r in results:
        data = r.metrics[section]
        if not data.get("estimated") or key not in data:
            continue
        head = "".join(f"<th>{html.escape(label)}</th>" for _, label in columns)
        body = []
        for row in data[key]:
            cls = " class=lowstats" if row["low_stats"] else ""
            cells = []
            for col, _ in columns:
                if col == "energy":
                    cells.append(f"{_fmt(row['e_low_gev'])} &ndash; {_fmt(row['e_high_gev'])}")
                elif col == "median":
                    cells.append(_ci(row["median"], row["median_ci_low"], row["median_ci_high"]))
                elif col == "bias_log10":
                    cells.append(_ci(row["bias_log10"], row["bias_ci_low"], row["bias_ci_high"]))
                elif col == "n":
                    cells.append(f"{row['n']}{' *' if row['low_stats'] else ''}")
                else:
                    cells.append(_fmt(row[col]))
            body.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        parts.append(f"<h4>{html.escape(r.name)}</h4><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
    if not parts:
        return ""
    return f"<h3>{html.escape(title)}</h3>" + "".join(parts)


def _failures_html(results: Sequence[MethodResult]) -> str:
    rows = []
    for r in results:
        counts = r.metrics["counts"]
        reasons = counts["failure_reasons"] or {"(none)": 0}
        for reason, n in reasons.items():
            rows.append(f"<tr><td>{html.escape(r.name)}</td><td>{html.escape(reason)}</td><td>{n}</td></tr>")
    return ("<table><thead><tr><th>Method</th><th>Failure reason</th><th>Events</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _skipped_html(skipped: dict[str, str]) -> str:
    if not skipped:
        return ""
    items = "".join(f"<li><b>{html.escape(n)}</b>: {html.escape(r)}</li>" for n, r in skipped.items())
    return f"<h3>Methods not run</h3><ul class=meta>{items}</ul>"


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:0.5em 0 1.5em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:0.3em 0.6em;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}td:first-child{white-space:nowrap}
table.summary td:nth-child(4){white-space:nowrap}table.verdicts td{text-align:left}
.ci,.n{color:#777;font-size:0.85em;white-space:nowrap}.bad{color:#b00020;font-weight:600}
tr.lowstats td,.lowstats{color:#999}ul.verdict li{margin:0.3em 0}
figure{margin:1em 0 2em 0}figure img{max-width:100%;border:1px solid #eee}
.meta{font-size:0.85em;color:#444}code{background:#f4f4f4;padding:0 0.2em}
"""


def _facts_html(metrics: dict[str, Any]) -> str:
    dataset = metrics["dataset"]
    energy_range = dataset.get("energy_range_gev") or [dataset["true_energy_min_gev"], dataset["true_energy_max_gev"]]
    angle = dataset.get("median_neutrino_muon_angle_deg")
    facts = [
        ("Detector", dataset.get("detector")),
        ("Flavours", ", ".join(dataset.get("flavours") or dataset["events_per_flavour"])),
        ("Interactions", ", ".join(dataset.get("interactions") or dataset["events_per_interaction"])),
        ("Generated energy range [GeV]", " &ndash; ".join(_fmt(e) for e in energy_range)),
        ("Seed", html.escape(str(dataset.get("seed")))),
        ("Events", f"{dataset['n_events']} ({dataset['n_tracks']} tracks, {dataset['n_cascades']} cascades"
                   + (f"; {dataset['n_contained']} with the vertex inside the detector" if dataset.get("n_contained")
                      is not None else "") + ")"),
        ("Median angle between neutrino and muon [deg]", _fmt(angle) if angle is not None else "&mdash;"),
        ("Command", f"<code>{html.escape(metrics['command'] or 'library call')}</code>"),
        ("nurec version", metrics["nurec_version"]),
    ]
    return "".join(f"<tr><th>{k}</th><td>{v if isinstance(v, str) else _fmt(v)}</td></tr>" for k, v in facts)


def _notes(metrics: dict[str, Any], results: Sequence[MethodResult]) -> list[str]:
    settings, refs = metrics["settings"], metrics["references"]
    notes = [
        f"<b>E_true</b> = {html.escape(refs['energy'])} (setting energy_reference = "
        f"<code>{html.escape(settings['energy_reference'])}</code>).",
        f"<b>True direction</b> = {html.escape(refs['direction'])} (setting direction_reference = "
        f"<code>{html.escape(settings['direction_reference'])}</code>).",
        "Medians are given with their 68% bootstrap confidence interval in brackets "
        f"({settings['n_bootstrap']} resamples, seed {settings['seed']}); (n=...) is the number of events behind "
        f"each number, and numbers from fewer than {settings['min_events_per_bin']} events are grey and marked *.",
        "Energy resolution is half the 16&ndash;84% width of log10(E_reco/E_true), bias its median.",
        "Coverage is the fraction of events whose true angular error is within angular_uncertainty_deg (ideal 0.68).",
        "Failed fits are counted in every method's event total and listed below; they never enter a median.",
        "Throughput is events per CPU-second (one fully used core, worker processes included) after a warm-up "
        "call; building the method is timed separately (Timing, below). \"(wall)\": only the wall-clock rate over "
        "all cores is known for that method.",
    ]
    if metrics["weighting"]["weighted"]:
        notes.append(f"Every number is weighted by the per-event column <code>{metrics['weighting']['column']}</code>; "
                     "event counts are counts of events.")
    subsampled = [f"{r.name} ({len(r.per_event)} events)" for r in results if metrics["methods"][r.name].get("subsample")]
    if subsampled:
        notes.append("Run on the leading events only (a fixed count, the same events for each of them): "
                     + ", ".join(subsampled) + ".")
    return notes


def _figures_html(figures: dict[str, bytes]) -> str:
    parts = []
    for key, (title, function) in FIGURES.items():
        if key in figures:
            data = base64.b64encode(figures[key]).decode()
            caption = html.escape((function.__doc__ or "").strip().splitlines()[0].removeprefix("Return "))
            parts.append(f"<figure><h3>{html.escape(title)}</h3><img alt=\"{html.escape(title)}\" "
                         f"src=\"data:image/png;base64,{data}\"><figcaption>{caption}</figcaption></figure>")
        else:
            parts.append(f"<p class=meta>{html.escape(title)}: not shown, no evaluated method estimates it.</p>")
    return "".join(parts)


def render_html(metrics: dict[str, Any], summary: pd.DataFrame, results: Sequence[MethodResult],
                figures: dict[str, bytes]) -> str:
    """Return the self-contained report page (figures embedded as base64 PNG, no scripts, no external files)."""
    settings = metrics["settings"]
    angular_cols = [("energy", "E_true [GeV]"), ("n", "Events"), ("median", "Median [deg]"),
                    ("q16", "16% [deg]"), ("q84", "84% [deg]")]
    energy_cols = [("energy", "E_true [GeV]"), ("n", "Events"), ("resolution_log10", "Resolution [dex]"),
                   ("bias_log10", "Bias [dex]")]
    tables = []
    for cls in CLASSES:
        tables.append(_binned_html(f"Angular error vs energy, {cls}s", results, "direction", f"{cls}_vs_energy", angular_cols))
    for cls in CLASSES:
        tables.append(_binned_html(f"log10(E_reco/E_true) vs energy, {cls}s", results, "energy", f"{cls}_vs_energy", energy_cols))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>nurec reconstruction quality report</title><style>{CSS}</style></head>
<body>
<h1>Reconstruction quality report</h1>
<h2>Verdicts</h2>
{verdicts_html(metrics)}
<h2>Summary</h2>
{summary_html(summary)}
<ul class=meta>{''.join(f'<li>{n}</li>' for n in _notes(metrics, results))}</ul>
{_skipped_html(metrics["skipped_methods"])}
<h2>Energy per decade</h2>
{decades_html(metrics)}
<h2>Flux-weighted metrics</h2>
{weighted_html(metrics)}
<h2>Effective area</h2>
{effective_area_html(metrics, figures)}
<h2>Data set</h2>
<table class=meta>{_facts_html(metrics)}</table>
<h2>Figures</h2>
{_figures_html(figures)}
<h2>Paired comparisons</h2>
<p class=meta>Each pair of methods on the events both reconstructed; the ratio's interval is the
{round(100 * settings['confidence'])}% percentile bootstrap over those events (paired resamples).</p>
{comparisons_html(metrics)}
<h2>Direction by event type</h2>
{breakdowns_html(metrics)}
<h2>Timing</h2>
{timing_html(metrics)}
<h2>Failed fits</h2>
{_failures_html(results)}
<h2>Tables per energy bin</h2>
<p class=meta>Rows in grey (events marked *) have fewer than {settings['min_events_per_bin']} events.</p>
{''.join(tables)}
<p class=meta>All numbers are in metrics.json next to this page.</p>
</body></html>
"""
