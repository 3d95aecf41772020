"""``nurec convert``: read an experiment's file (KM3NeT, GraphNeT, Kaggle) into a nurec dataset."""

from __future__ import annotations

import argparse
import sys
import time

from nurec.io.parquet import DatasetError
from nurec.io.sources import SOURCE_FORMATS, convert_source

FORMATS = [f for f in SOURCE_FORMATS if f != "nurec"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert KM3NeT / GraphNeT / Kaggle files into a nurec dataset directory",
        description="Convert a real-data file into a nurec dataset (streamed chunk by chunk). "
                    "Writes DIR/part-*.parquet, DIR/dataset.json, DIR/event_keys.parquet (event_id -> "
                    "the source's own event keys) and, for KM3NeT, DIR/reference_km3net-jmuon.parquet and (without "
                    "--detx) DIR/geometry.parquet, the PMTs the file's hits show.",
    )
    parser.add_argument("source", metavar="SRC", help="input file or directory")
    parser.add_argument("--from", dest="fmt", choices=FORMATS, default=None,
                        help="input format (default: guessed from suffix and content)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output dataset directory")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset in DIR")
    km3net = parser.add_argument_group("km3net-offline")
    km3net.add_argument("--detx", metavar="FILE", help="detector file for positions/directions/t0 "
                        "(needed when the ROOT file stores no hit positions; without it the "
                        "geometry is built from the hits; default: none)")
    km3net.add_argument("--triggered-only", action="store_true", help="keep only triggered hits (trig != 0)")
    graphnet = parser.add_argument_group("graphnet-sqlite / graphnet-parquet")
    graphnet.add_argument("--pulses", metavar="TABLE", help="pulse table (default: the only one with dom_time)")
    graphnet.add_argument("--truth", metavar="TABLE", default="truth", help="truth table (default: truth)")
    graphnet.add_argument("--no-truth", action="store_true", help="the source has no truth table (real data)")
    kaggle = parser.add_argument_group("kaggle")
    kaggle.add_argument("--meta", metavar="FILE", help="meta table (default: <split>_meta.parquet)")
    kaggle.add_argument("--geometry", metavar="FILE", help="sensor geometry (default: sensor_geometry.csv)")
    kaggle.add_argument("--drop-auxiliary", action="store_true", help="drop pulses flagged auxiliary")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def _options(args: argparse.Namespace, fmt: str | None) -> dict:
    if fmt == "km3net-offline":
        return {"detx": args.detx, "triggered_only": args.triggered_only}
    if fmt in ("graphnet-sqlite", "graphnet-parquet"):
        return {"pulses": args.pulses, "truth": None if args.no_truth else args.truth}
    if fmt == "kaggle":
        return {"meta": args.meta, "geometry": args.geometry, "drop_auxiliary": args.drop_auxiliary}
    return {}


def run(args: argparse.Namespace) -> int:
    from nurec.io.sources import detect_format

    fmt = args.fmt or detect_format(args.source)
    start = time.perf_counter()
    try:
        summary = convert_source(args.source, args.out, fmt=fmt, overwrite=args.overwrite,
                                 progress=not args.quiet, **_options(args, fmt))
    except DatasetError as err:  # output directory problems are the user's to fix: one line
        print(f"nurec convert: error: {err}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - start
    line = f"converted {summary['n_events']} events ({summary['n_hits']} hits) from {fmt} to {args.out} in {elapsed:.1f} s"
    if summary["reference"]:
        line += f"; reference reconstruction in {summary['reference']}"
    print(line)
    return 0
