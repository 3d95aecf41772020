"""Quality report: evaluate methods on the same events, write index.html (self-contained) and metrics.json.

Layout of a report directory::

    index.html     summary table, then figures (PNG embedded as base64), then per-bin tables
    metrics.json   every number in the tables, dataset metadata, settings, methods' versions and throughput
    plots/*.png    the same figures as files (for README/papers)

The same inputs and settings give byte-identical metrics.json and figures (no timestamps).
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

from nurec import __version__
from nurec.evaluate import metrics as m
from nurec.evaluate.metrics import energy_bin_edges
from nurec.evaluate.plots import FIGURES, figure_png
from nurec.evaluate.quality import (
    CLASSES,
    EvaluationSettings,
    MethodResult,
    evaluate_method,
    summary_row,
)
from nurec.io.files import write_atomic
from nurec.io.predictions import read_predictions, read_predictions_metadata
from nurec.methods.run import Provenance

REPORT_FORMAT_VERSION = 1


@dataclass
class MethodPredictions:
    """One method's predictions with their provenance.

    ``subsample`` True means the method was deliberately run on only the events in its
    table (e.g. a slow fit in the demo): it is evaluated on those. Otherwise every event
    of the data set without a prediction row counts as failed.
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
    out = m.throughput(provenance.n_events, provenance.wall_s, provenance.cpu_s or None)
    out["source"] = "prediction metadata"
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
        "source_metadata": metadata,
    }


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


def evaluate_all(
    truth: pd.DataFrame, methods: Sequence[MethodPredictions], settings: EvaluationSettings
) -> list[MethodResult]:
    """Return every method evaluated on the same events with the same energy bins."""
    if len(truth) == 0:
        raise ValueError("data: no events to evaluate")
    names = [m.name for m in methods]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"predictions: method '{duplicates[0]}' given more than once")
    edges = energy_bin_edges(truth[settings.energy_reference], settings.bins_per_decade)
    results = []
    for method in methods:
        events = truth
        if method.subsample:
            events = truth[truth["event_id"].isin(method.predictions["event_id"])]
        results.append(evaluate_method(method.name, method.version, events, method.predictions, settings,
                                       edges, method.throughput))
    return results


def build_report(
    truth: pd.DataFrame,
    dataset_metadata: dict[str, Any],
    methods: Sequence[MethodPredictions],
    out_dir: str | os.PathLike,
    settings: EvaluationSettings | None = None,
    command: str | None = None,
    skipped: dict[str, str] | None = None,
) -> Report:
    """Evaluate ``methods`` against ``truth`` and write index.html, metrics.json and plots/ to ``out_dir``.

    ``skipped`` maps methods that could not run (e.g. untrained) to the reason; they are
    listed in both files so that no method disappears from a comparison unnoticed.
    """
    settings = settings or EvaluationSettings()
    out_dir = Path(out_dir)
    results = evaluate_all(truth, methods, settings)
    summary = pd.DataFrame([summary_row(r) for r in results])
    figures: dict[str, bytes] = {}
    for key, (_, function) in FIGURES.items():
        fig = function(results)
        if fig is not None:
            figures[key] = figure_png(fig)
    metrics = {
        "report_format": REPORT_FORMAT_VERSION,
        "nurec_version": __version__,
        "command": command,
        "dataset": dataset_summary(truth, dataset_metadata),
        "settings": settings.to_dict(),
        "energy_bins_gev": energy_bin_edges(truth[settings.energy_reference], settings.bins_per_decade).tolist(),
        "summary_table": summary.to_dict(orient="records"),
        "methods": {
            r.name: {**r.metrics, "subsample": next(m.subsample for m in methods if m.name == r.name)}
            for r in results
        },
        "skipped_methods": dict(skipped or {}),
        "figures": sorted(figures),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "plots").mkdir(exist_ok=True)
    for key, png in figures.items():
        write_atomic(out_dir / "plots" / f"{key}.png", png)
    write_atomic(out_dir / "metrics.json", (json.dumps(json_safe(metrics), indent=2, allow_nan=False) + "\n").encode())
    page = render_html(metrics, summary, results, figures)
    write_atomic(out_dir / "index.html", page.encode())
    return Report(results, summary, metrics, out_dir, figures)


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


def _ci(median: float, low: float, high: float) -> str:
    if not np.isfinite(median):
        return "&mdash;"
    return f"{_fmt(median)} <span class=ci>[{_fmt(low)}, {_fmt(high)}]</span>"


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


def summary_html(summary: pd.DataFrame) -> str:
    """Return the summary table as HTML (medians with 68% bootstrap CIs in brackets)."""
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in SUMMARY_HEADERS)
    rows = []
    for row in summary.to_dict(orient="records"):
        cells = []
        for key, _ in SUMMARY_HEADERS:
            if key in ("track_median_deg", "cascade_median_deg"):
                prefix = key.replace("_deg", "")
                cells.append(_ci(row[key], row[f"{prefix}_ci_low"], row[f"{prefix}_ci_high"]))
            elif key == "failed":
                share = row["failed"] / row["events"] if row["events"] else np.nan
                css = " class=bad" if row["failed"] else ""
                cells.append(f"<span{css}>{row['failed']} ({100 * share:.1f}%)</span>")
            elif key == "events_per_s_per_core":
                cells.append(_throughput_cell(row))
            else:
                cells.append(_fmt(row[key]))
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table class=summary><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _throughput_cell(row: dict[str, Any]) -> str:
    """Return events/s per core, or the wall-clock rate marked "(wall)" where only that is known."""
    per_core, wall = row.get("events_per_s_per_core", np.nan), row.get("events_per_s", np.nan)
    for value, suffix in ((per_core, ""), (wall, " (wall)")):
        if value is not None and np.isfinite(value):
            return (f"{value:,.0f}" if value >= 100 else f"{value:.3g}") + suffix
    return "&mdash;"


def summary_text(summary: pd.DataFrame) -> str:
    """Return the summary table as GitHub Markdown (plain text, for terminals and the README)."""
    labels = [label for _, label in SUMMARY_HEADERS]
    lines = ["| " + " | ".join(labels) + " |", "|" + "---|" * len(labels)]
    lines += ["| " + " | ".join(cells) + " |" for cells in summary_cells(summary)]
    return "\n".join(lines)


def summary_cells(summary: pd.DataFrame) -> list[list[str]]:
    """Return the summary table's cells as text, one list per method in SUMMARY_HEADERS order."""
    rows = []
    for row in summary.to_dict(orient="records"):
        row = {k: np.nan if v is None else v for k, v in row.items()}  # also rows read back from metrics.json
        cells = []
        for key, _ in SUMMARY_HEADERS:
            value = row[key]
            if key in ("track_median_deg", "cascade_median_deg"):
                prefix = key.replace("_deg", "")
                cells.append("—" if not np.isfinite(value) else
                             f"{value:.3g} [{row[f'{prefix}_ci_low']:.3g}, {row[f'{prefix}_ci_high']:.3g}]")
            elif key == "failed":
                cells.append(f"{value} of {row['events']}")
            elif key == "events_per_s_per_core":
                cells.append(_throughput_cell(row).replace("&mdash;", "—"))
            elif isinstance(value, float):
                cells.append("—" if not np.isfinite(value) else (f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"))
            else:
                cells.append(str(value))
        rows.append(cells)
    return rows


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
table.summary td:nth-child(4){white-space:nowrap}
.ci{color:#777;font-size:0.85em;white-space:nowrap}.bad{color:#b00020;font-weight:600}tr.lowstats td{color:#999}
figure{margin:1em 0 2em 0}figure img{max-width:100%;border:1px solid #eee}
.meta{font-size:0.85em;color:#444}code{background:#f4f4f4;padding:0 0.2em}
"""


def render_html(metrics: dict[str, Any], summary: pd.DataFrame, results: Sequence[MethodResult],
                figures: dict[str, bytes]) -> str:
    """Return the self-contained report page (figures embedded as base64 PNG, no scripts, no external files)."""
    dataset = metrics["dataset"]
    settings = metrics["settings"]
    energy_range = dataset.get("energy_range_gev") or [dataset["true_energy_min_gev"], dataset["true_energy_max_gev"]]
    facts = [
        ("Detector", dataset.get("detector")),
        ("Flavours", ", ".join(dataset.get("flavours") or dataset["events_per_flavour"])),
        ("Interactions", ", ".join(dataset.get("interactions") or dataset["events_per_interaction"])),
        ("Generated energy range [GeV]", " &ndash; ".join(_fmt(e) for e in energy_range)),
        ("Seed", html.escape(str(dataset.get("seed")))),
        ("Events", f"{dataset['n_events']} ({dataset['n_tracks']} tracks, {dataset['n_cascades']} cascades)"),
        ("Command", f"<code>{html.escape(metrics['command'] or 'library call')}</code>"),
        ("nurec version", metrics["nurec_version"]),
    ]
    facts_html = "".join(f"<tr><th>{k}</th><td>{v if isinstance(v, str) else _fmt(v)}</td></tr>" for k, v in facts)
    subsampled = [r.name for r in results if metrics["methods"][r.name].get("subsample")]
    notes = [
        "Medians are given with their 68% bootstrap confidence interval in brackets "
        f"({settings['n_bootstrap']} resamples, seed {settings['seed']}).",
        f"Energy resolution is half the 16&ndash;84% width of log10(E_reco/E_true), E_true = truth.{settings['energy_reference']}.",
        "Coverage is the fraction of events whose true angular error is within angular_uncertainty_deg (ideal 0.68).",
        "Failed fits are counted in every method's event total and listed below; they never enter a median.",
        "Throughput is events per CPU-second (one fully used core, worker processes included); "
        "\"(wall)\": only the wall-clock rate over all cores is known for that method.",
    ]
    if subsampled:
        notes.append("Run on a subsample of the events (to keep the run short): " + ", ".join(subsampled) + ".")
    figure_html = []
    for key, (title, function) in FIGURES.items():
        if key in figures:
            data = base64.b64encode(figures[key]).decode()
            caption = html.escape((function.__doc__ or "").strip().splitlines()[0].removeprefix("Return "))
            figure_html.append(f"<figure><h3>{html.escape(title)}</h3><img alt=\"{html.escape(title)}\" "
                               f"src=\"data:image/png;base64,{data}\"><figcaption>{caption}</figcaption></figure>")
        else:
            figure_html.append(f"<p class=meta>{html.escape(title)}: not shown, no evaluated method estimates it.</p>")
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
<h2>Summary</h2>
{summary_html(summary)}
<ul class=meta>{''.join(f'<li>{n}</li>' for n in notes)}</ul>
{_skipped_html(metrics["skipped_methods"])}
<h2>Data set</h2>
<table class=meta>{facts_html}</table>
<h2>Figures</h2>
{''.join(figure_html)}
<h2>Failed fits</h2>
{_failures_html(results)}
<h2>Tables per energy bin</h2>
<p class=meta>Rows in grey (events marked *) have fewer than {settings['min_events_per_bin']} events.</p>
{''.join(tables)}
<p class=meta>All numbers are in metrics.json next to this page.</p>
</body></html>
"""
