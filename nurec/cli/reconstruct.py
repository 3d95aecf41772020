"""``nurec reconstruct``: run one registered method over a dataset into a prediction file or directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from nurec.cli.options import check_predictions_out, methods_epilog, positive_int
from nurec.io.predictions import PREDICTION_SUFFIXES, write_predictions
from nurec.methods.dataset import reconstruct_chunks, reconstruct_source
from nurec.methods.registry import available_methods, method_accepts
from nurec.parallel import ParallelOptions


def register(subparsers: argparse._SubParsersAction) -> None:
    methods = ", ".join(spec.name for spec in available_methods())
    suffixes = "/".join(PREDICTION_SUFFIXES)
    parser = subparsers.add_parser(
        "reconstruct", help="reconstruct a dataset with one registered method",
        description="Reconstruct the events of a dataset with one registered method. In this process the "
                    f"predictions go to one file ({suffixes}: Parquet or CSV by suffix); with --workers or "
                    "--scheduler the chunks of a nurec dataset run on Dask and --out is a directory of part "
                    "files plus predictions.json.",
        epilog=methods_epilog())
    parser.add_argument("--method", required=True, help=f"registered method: {methods} (see below)")
    parser.add_argument("--data", required=True, help="dataset directory or experiment file")
    parser.add_argument("--out", required=True, help=f"predictions file ({suffixes}), or a directory with "
                                                     "--workers/--scheduler")
    parser.add_argument("--model", default=None, help="model file/name for trained methods, their 'model' option "
                                                       "(default: the method's own, e.g. the bundled model)")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes for per-event fits (default: all cores)")
    parser.add_argument("--format", default=None, help="source format (default: detected)")
    parser.add_argument("--detector", default=None, help="detector (default: from the dataset metadata)")
    parser.add_argument("--batch-size", type=positive_int, default=256, help="events per method call at most")
    parser.add_argument("--max-events", type=positive_int, default=None, metavar="N",
                        help="reconstruct only the first N events, in dataset order (default: all)")
    parser.add_argument("--workers", type=int, default=None,
                        help="reconstruct the dataset's chunks on a local Dask cluster of N worker processes "
                             "(default: in this process)")
    parser.add_argument("--scheduler", default=None, help="reconstruct the chunks on an existing Dask scheduler "
                                                          "(tcp://HOST:PORT; default: none)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (none is shown off a terminal)")
    parser.set_defaults(func=run)


def method_options(args: argparse.Namespace) -> dict:
    """Return the method options given on the command line that the method takes."""
    candidates = {"model": args.model, "n_jobs": args.jobs}
    options = {k: v for k, v in candidates.items() if v is not None and method_accepts(args.method, k)}
    if args.model is not None and "model" not in options:
        raise ValueError(f"--model: method '{args.method}' takes no model")
    return options


def check_out(args: argparse.Namespace) -> None:
    """Refuse an --out that the predictions cannot go to (before any work is done)."""
    on_dask = args.workers is not None or bool(args.scheduler)
    if on_dask and Path(args.out).suffix.lower() in PREDICTION_SUFFIXES:
        raise ValueError(f"--out: with --workers/--scheduler the predictions are a directory of part files, "
                         f"not the file {args.out}")
    if on_dask and args.max_events is not None:
        raise ValueError("--max-events: not with --workers/--scheduler (whole chunks are reconstructed)")
    if not on_dask:
        check_predictions_out(args.out)


def run(args: argparse.Namespace) -> int:
    check_out(args)
    options = method_options(args)
    if args.workers is not None or args.scheduler:
        parallel = ParallelOptions(workers=args.workers, scheduler=args.scheduler, progress=not args.quiet)
        provenance = reconstruct_chunks(args.method, args.data, args.out, options, args.detector, parallel,
                                        args.batch_size)
    else:
        table, provenance = reconstruct_source(args.method, args.data, options, args.detector, args.format,
                                               args.batch_size, args.max_events, not args.quiet)
        if table.empty:
            raise ValueError(f"{args.data}: no events to reconstruct")
        write_predictions(table, args.out, provenance.to_dict())
    rate = provenance.events_per_s or float("nan")
    done = f"{provenance.n_events} events"
    if provenance.extra.get("max_events") is not None:
        of = provenance.extra.get("source_n_events")
        done = f"the first {provenance.n_events}" + (f" of {of}" if of else "") + " events (--max-events)"
    print(f"{args.method}: {done} in {provenance.wall_s:.1f} s "
          f"({rate:.1f} events/s) on {provenance.detector['name']} -> {args.out}")
    return 0
