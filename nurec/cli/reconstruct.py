"""``nurec reconstruct``: run one registered method over a dataset into a prediction file or directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from nurec.io.predictions import write_predictions
from nurec.methods.dataset import reconstruct_chunks, reconstruct_source
from nurec.methods.registry import available_methods, method_accepts
from nurec.parallel import ParallelOptions

OUT_SUFFIXES = (".parquet", ".csv")


def register(subparsers: argparse._SubParsersAction) -> None:
    methods = ", ".join(spec.name for spec in available_methods())
    parser = subparsers.add_parser(
        "reconstruct", help="reconstruct a dataset with one registered method",
        description=f"Reconstruct every event of a dataset with one method ({methods}). In this process the "
                    "predictions go to one file (.parquet or .csv); with --workers or --scheduler the chunks of a "
                    "nurec dataset run on Dask and --out is a directory of part files plus predictions.json.")
    parser.add_argument("--method", required=True, help=f"registered method: {methods}")
    parser.add_argument("--data", required=True, help="dataset directory or experiment file")
    parser.add_argument("--out", required=True, help="predictions file (.parquet or .csv), or a directory with "
                                                     "--workers/--scheduler")
    parser.add_argument("--model", default=None, help="model file/name for trained methods (their 'model' option)")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes for per-event fits (default: all cores)")
    parser.add_argument("--format", default=None, help="source format (default: detected)")
    parser.add_argument("--detector", default=None, help="detector (default: from the dataset metadata)")
    parser.add_argument("--batch-size", type=int, default=256, help="events per method call (default 256)")
    parser.add_argument("--max-events", type=int, default=None, help="reconstruct only the first N events")
    parser.add_argument("--workers", type=int, default=None,
                        help="reconstruct the dataset's chunks on a local Dask cluster of N worker processes")
    parser.add_argument("--scheduler", default=None, help="reconstruct the chunks on an existing Dask scheduler "
                                                          "(tcp://HOST:PORT)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def method_options(args: argparse.Namespace) -> dict:
    """Return the method options given on the command line that the method takes."""
    candidates = {"model": args.model, "n_jobs": args.jobs}
    options = {k: v for k, v in candidates.items() if v is not None and method_accepts(args.method, k)}
    if args.model is not None and "model" not in options:
        raise ValueError(f"--model: method '{args.method}' takes no model")
    return options


def run(args: argparse.Namespace) -> int:
    options = method_options(args)
    if args.workers is not None or args.scheduler:
        if args.max_events is not None:
            raise ValueError("--max-events: not with --workers/--scheduler (whole chunks are reconstructed)")
        parallel = ParallelOptions(workers=args.workers, scheduler=args.scheduler, progress=not args.quiet)
        provenance = reconstruct_chunks(args.method, args.data, args.out, options, args.detector, parallel,
                                        args.batch_size)
    else:
        if Path(args.out).suffix not in OUT_SUFFIXES:
            raise ValueError(f"--out: {args.out} must end in .parquet or .csv (or use --workers for a directory)")
        table, provenance = reconstruct_source(args.method, args.data, options, args.detector, args.format,
                                               args.batch_size, args.max_events, not args.quiet)
        if table.empty:
            raise ValueError(f"{args.data}: no events to reconstruct")
        write_predictions(table, args.out, provenance.to_dict())
    rate = provenance.events_per_s or float("nan")
    print(f"{args.method}: {provenance.n_events} events in {provenance.wall_s:.1f} s "
          f"({rate:.1f} events/s) on {provenance.detector['name']} -> {args.out}")
    return 0
