"""``nurec reconstruct``: run one registered method over a dataset, chunk by chunk, into a prediction file."""

from __future__ import annotations

import argparse
import importlib
import inspect
import time
from typing import Any

import pandas as pd

from nurec import __version__
from nurec.io.predictions import write_predictions
from nurec.io.sources import iter_events, source_metadata
from nurec.registry import available_methods, get_method


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("reconstruct", help="reconstruct a dataset with one registered method")
    parser.add_argument("--method", required=True, help="registered method name (see nurec.registry)")
    parser.add_argument("--data", required=True, help="dataset directory or file")
    parser.add_argument("--out", required=True, help="predictions file (.parquet or .csv)")
    parser.add_argument("--model", default=None, help="model file/name for trained methods (passed as model=...)")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes for per-event fits (default: all cores)")
    parser.add_argument("--format", default=None, help="source format (default: detected)")
    parser.add_argument("--detector", default=None, help="detector (default: from the dataset metadata)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def accepted_options(method: str, candidates: dict[str, Any]) -> dict[str, Any]:
    """Return the ``candidates`` (not None) that the method's factory accepts as keyword arguments."""
    spec = next((s for s in available_methods() if s.name == method), None)
    if spec is None:
        return {k: v for k, v in candidates.items() if v is not None}
    module_name, attribute = spec.target.split(":")
    factory = getattr(importlib.import_module(module_name), attribute)
    parameters = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    return {k: v for k, v in candidates.items() if v is not None and (takes_any or k in parameters)}


def reconstruct_dataset(method: str, data: str, options: dict[str, Any], fmt: str | None = None,
                        progress: bool = True) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Return (predictions of every event of ``data``, provenance metadata with timing)."""
    from tqdm import tqdm

    source = source_metadata(data, fmt)
    start = time.perf_counter()
    reconstructor = get_method(method, **options)
    load_s = time.perf_counter() - start
    total = source.get("n_events")
    tables, n_events = [], 0
    bar = tqdm(total=total, desc=method, unit=" events", disable=not progress, smoothing=0.1)
    start = time.perf_counter()
    cpu_start = time.process_time()
    try:
        for events in iter_events(data, fmt):
            tables.append(reconstructor.reconstruct(events))
            n_events += len(events)
            bar.update(len(events))
    finally:
        bar.close()
    wall_s = time.perf_counter() - start
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    metadata = {
        "method": method, "version": getattr(reconstructor, "version", "unknown"),
        "nurec_version": __version__, "data": str(data), "format": fmt or source.get("source", "nurec"),
        "options": {k: str(v) for k, v in options.items()}, "n_events": n_events,
        "load_s": load_s, "wall_s": wall_s, "events_per_s": n_events / wall_s if wall_s > 0 else None,
        "main_process_cpu_s": time.process_time() - cpu_start,
    }
    return table, metadata


def run(args: argparse.Namespace) -> int:
    from nurec.baselines.common import detector_from_metadata

    detector = args.detector or detector_from_metadata(source_metadata(args.data, args.format))
    options = accepted_options(args.method, {"detector": detector, "model": args.model, "n_jobs": args.jobs})
    if args.model is not None and "model" not in options:
        raise ValueError(f"--model: method '{args.method}' takes no model")
    table, metadata = reconstruct_dataset(args.method, args.data, options, args.format, not args.quiet)
    if table.empty:
        raise ValueError(f"{args.data}: no events to reconstruct")
    write_predictions(table, args.out, metadata)
    ok = int((table["fit_status"] == "ok").sum())
    rate = metadata["events_per_s"] or float("nan")
    print(f"{args.method}: {len(table)} events ({ok} ok) in {metadata['wall_s']:.1f} s "
          f"({rate:.1f} events/s) -> {args.out}")
    return 0
