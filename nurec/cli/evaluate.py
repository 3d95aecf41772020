"""``nurec evaluate``: compare methods' predictions with the truth and write the quality report."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TextIO

import awkward as ak
import pandas as pd

from nurec.cli.options import method_names_help, positive_int
from nurec.evaluate.fluxes import flux_names
from nurec.evaluate.quality import EvaluationSettings
from nurec.evaluate.report import build_report, load_method_predictions
from nurec.evaluate.truth import truth_table
from nurec.io.predictions import check_predictions_path
from nurec.io.sources import iter_events, source_metadata


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="compare reconstructions with the truth; write report/index.html and metrics.json",
        description="Evaluate prediction files (or run registered methods first) against simulated events.",
    )
    parser.add_argument("--data", required=True, help="events with truth (a nurec dataset directory or other source)")
    parser.add_argument("--format", default=None, help="source format of --data (default: detected)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--predictions", nargs="+", metavar="FILE",
                        help="prediction files (.parquet, .pq or .csv) or prediction directories")
    source.add_argument("--methods", help=method_names_help(default=None) + ", run on --data first")
    parser.add_argument("--out", required=True, help="report directory")
    parser.add_argument("--detector", default=None,
                        help="detector the --methods are built for (default: from the dataset metadata)")
    parser.add_argument("--max-events", type=positive_int, default=None, metavar="N",
                        help="evaluate only the first N events (default: all)")
    parser.add_argument("--batch-size", type=positive_int, default=256,
                        help="events per reconstruct call (with --methods)")
    parser.add_argument("--bins-per-decade", type=positive_int, default=2, help="energy bins per decade")
    parser.add_argument("--min-events-per-bin", type=int, default=20, help="bins with fewer events are flagged")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for median CIs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument("--energy-reference", choices=["energy", "visible_energy"], default="energy",
                        help="truth field E_true is taken from (default: neutrino energy)")
    parser.add_argument("--direction-reference", choices=["neutrino", "muon"], default="neutrino",
                        help="true direction: the neutrino's, or the muon's for events with a muon (default: neutrino)")
    parser.add_argument("--fluxes", default="all", metavar="NAMES",
                        help="fluxes for the flux-weighted metrics: all, none or a comma-separated list of "
                             f"{', '.join(flux_names())} (default: all; needs simulated events with OneWeight)")
    parser.set_defaults(func=run)


def load_events(path: str, fmt: str | None, max_events: int | None) -> ak.Array:
    """Return the events of a source as one array (the first ``max_events`` if given)."""
    chunks, count = [], 0
    for chunk in iter_events(path, fmt):
        if max_events is not None:
            chunk = chunk[: max(0, max_events - count)]
        chunks.append(chunk)
        count += len(chunk)
        if max_events is not None and count >= max_events:
            break
    if not chunks or count == 0:
        raise ValueError(f"{path}: no events")
    return chunks[0] if len(chunks) == 1 else ak.concatenate(chunks)


TERMINAL_LABELS = ["Method", "Version", "Events", "Failed", "Tracks: median angle [deg]",
                   "Cascades: median angle [deg]", "Tracks: log10 E res.", "Cascades: log10 E res.",
                   "68% coverage", "AUC", "Events/s per core"]


LEFT_ALIGNED = ("Method", "Version")


def format_table(labels: list[str], rows: list[list[str]], left: tuple[str, ...] = LEFT_ALIGNED) -> str:
    """Return ``rows`` under ``labels`` as plain text in aligned columns.

    Columns named in ``left`` are left-aligned, the others (numbers) right-aligned; a line of
    dashes separates the header from the rows.
    """
    widths = [max([len(label), *(len(row[i]) for row in rows)]) for i, label in enumerate(labels)]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(width) if label in left else cell.rjust(width)
                         for cell, width, label in zip(cells, widths, labels, strict=True)).rstrip()

    return "\n".join([line(labels), "  ".join("-" * width for width in widths), *map(line, rows)])


def print_summary(summary: pd.DataFrame, file: TextIO | None = None) -> None:
    """Print the summary table to the terminal as plain text (medians with 68% bootstrap CIs)."""
    from nurec.evaluate.report import summary_cells

    print("Reconstruction quality summary (see the report for definitions)", file=file or sys.stdout)
    print(format_table(TERMINAL_LABELS, summary_cells(summary)), file=file or sys.stdout)


def run(args: argparse.Namespace) -> int:
    from nurec.evaluate.run_methods import method_names, print_progress, reconstruct_all
    from nurec.evaluate.weighted import fluxes_by_name

    # A missing prediction file, an unknown suffix or method fails before the events are read.
    for path in args.predictions or []:
        check_predictions_path(path)
    fluxes = fluxes_by_name(args.fluxes)
    names = method_names([n.strip() for n in args.methods.split(",") if n.strip()]) if args.methods else []
    events = load_events(args.data, args.format, args.max_events)
    metadata = source_metadata(args.data, args.format)
    truth = truth_table(events)
    out = Path(args.out)
    skipped: dict[str, str] = {}
    if args.predictions:
        methods = [load_method_predictions(path) for path in args.predictions]
    else:
        runs, skipped = reconstruct_all(events, names, out / "predictions", batch_size=args.batch_size,
                                        skip_unready=False, progress=print_progress,
                                        detector=args.detector or metadata.get("detector"))
        if skipped:  # a method asked for by name that cannot run here (e.g. trained for another detector)
            name, reason = next(iter(skipped.items()))
            raise ValueError(reason if name in reason else f"{name}: {reason}")
        methods = [r.as_method_predictions() for r in runs]
    settings = EvaluationSettings(bins_per_decade=args.bins_per_decade, min_events_per_bin=args.min_events_per_bin,
                                  n_bootstrap=args.bootstrap, seed=args.seed,
                                  energy_reference=args.energy_reference,
                                  direction_reference=args.direction_reference)
    command = shlex.join(["nurec", *sys.argv[1:]]) if sys.argv[1:2] == ["evaluate"] else None
    report = build_report(truth, metadata, methods, out, settings, command=command, skipped=skipped,
                          fluxes=fluxes)
    print_summary(report.summary)
    print(f"report: {report.html_path}  metrics: {report.metrics_path}")
    return 0
