"""``nurec inspect DIR``: summarise a dataset (events, hits, energies, flavours, detector).

A simulated dataset (OneWeight ``weight`` per event, ``n_generated`` in its metadata) also gets
its expected events per year under each flux of ``nurec.evaluate.fluxes.flux_models``.
Reading a nurec dataset checks every chunk against the SHA-256 its manifest records (a
damaged chunk stops the summary with a one-line error naming it); ``--verify`` checks
every file without summarising and reports each one's status.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any

import awkward as ak
import numpy as np

from nurec.io.parquet import UNVERIFIED, DatasetError, load_manifest, verify_dataset
from nurec.io.sources import detect_format, iter_events, source_metadata

PDG_NAMES = {12: "nu_e", -12: "nu_e_bar", 14: "nu_mu", -14: "nu_mu_bar", 16: "nu_tau", -16: "nu_tau_bar"}
_NEEDED = ["event_id", "hits.t", "hits.is_noise", "hits.trig", "truth.pdg", "truth.interaction", "truth.energy",
           "truth.is_track", "truth.zenith", "weight"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("inspect", help="summarise a dataset",
                                   description="Print a summary of a dataset or any supported event source.")
    parser.add_argument("path", help="dataset directory (or another event source)")
    parser.add_argument("--format", dest="fmt", help="source format (default: detected)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--verify", action="store_true",
                        help="only check every chunk and file of a nurec dataset against its recorded size and "
                             "SHA-256 and print each one's status (exit 1 if any is damaged or missing)")
    parser.set_defaults(func=run)


def summarize(path: str, fmt: str | None = None) -> dict[str, Any]:
    """Return a summary of the events at ``path``, reading them chunk by chunk."""
    fmt = fmt or detect_format(path)
    metadata = source_metadata(path, fmt)
    options = {"columns": _NEEDED} if fmt == "nurec" else {}
    n_hits, energies = [], []
    n_events = n_noise = n_total_hits = n_tracks = 0
    flavours: Counter = Counter()
    interactions: Counter = Counter()
    has_truth = noise_known = False
    n_trig = None
    rates_hz: dict[str, float] | None = None  # per flux model, once a chunk carries weights
    for chunk in iter_events(path, fmt, **options):
        n_events += len(chunk)
        counts = ak.to_numpy(ak.num(chunk.hits.t, axis=1))
        n_hits.append(counts)
        n_total_hits += int(counts.sum())
        if "is_noise" in chunk.hits.fields:
            noise_known = True
            n_noise += int(ak.sum(chunk.hits.is_noise))
        if "trig" in chunk.hits.fields:
            n_trig = (n_trig or 0) + int(ak.sum(chunk.hits.trig))
        if "truth" in chunk.fields and "energy" in chunk.truth.fields:
            has_truth = True
            energies.append(ak.to_numpy(chunk.truth.energy))
            if "pdg" in chunk.truth.fields:
                flavours.update(ak.to_numpy(chunk.truth.pdg).tolist())
            if "interaction" in chunk.truth.fields:
                interactions.update(str(x) for x in ak.to_list(chunk.truth.interaction))
            if "is_track" in chunk.truth.fields:
                n_tracks += int(ak.sum(chunk.truth.is_track))
            if "weight" in chunk.fields and "n_generated" in metadata and {"pdg", "zenith"} <= set(chunk.truth.fields):
                rates_hz = _add_rates_hz(rates_hz, chunk, metadata)
    hits = np.concatenate(n_hits) if n_hits else np.zeros(0, dtype=int)
    summary: dict[str, Any] = {
        "path": str(path),
        "format": fmt,
        "events": n_events,
        "detector": (metadata.get("detector") or {}).get("name") if isinstance(metadata.get("detector"), dict)
        else metadata.get("detector"),
        "hits_per_event": {f"p{q}": float(np.percentile(hits, q)) if len(hits) else None for q in (5, 25, 50, 75, 95)},
        "hits_total": n_total_hits,
        # Real data and official files say nothing about which hits are noise: unknown, not 0.
        "noise_fraction": (n_noise / n_total_hits) if n_total_hits and noise_known else None,
        "triggered_hit_fraction": (n_trig / n_total_hits) if n_total_hits and n_trig is not None else None,
    }
    detector = metadata.get("detector")
    if isinstance(detector, dict):
        summary["detector_hash"] = detector.get("hash")
        if detector.get("det_id") is not None:  # a converted KM3NeT file's own detector id
            summary["det_id"] = detector["det_id"]
    if fmt == "nurec":
        # Every chunk was checked while it was read above (iter_dataset), or the summary stopped.
        manifest = load_manifest(path)
        summary["checksums"] = (f"sha256 of {len(manifest.chunks)} chunks verified" if manifest.has_checksums
                                else f"none ({UNVERIFIED})")
    if "n_generated" in metadata:
        summary["generated"] = int(metadata["n_generated"])
        summary["triggered_fraction"] = n_events / metadata["n_generated"] if metadata["n_generated"] else None
    for key in ("seed", "simulator_version"):
        if key in metadata:
            summary[key] = metadata[key]
    if has_truth:
        energy = np.concatenate(energies)
        summary["energy_gev"] = {"min": float(energy.min()), "median": float(np.median(energy)),
                                 "max": float(energy.max())} if len(energy) else None
        summary["flavours"] = {PDG_NAMES.get(int(k), str(k)): v for k, v in sorted(flavours.items())}
        summary["interactions"] = dict(sorted(interactions.items()))
        summary["track_fraction"] = n_tracks / n_events if n_events else None
    if rates_hz is not None:
        summary.update(_rates_summary(rates_hz, metadata))
    return summary


def _add_rates_hz(rates_hz: dict[str, float] | None, chunk: ak.Array, metadata: dict[str, Any]) -> dict[str, float]:
    """Return the rates [1/s] so far plus those of one chunk's events, per flux model."""
    # Imported here: the flux tables and scipy are needed only for simulated datasets.
    import pandas as pd

    from nurec.evaluate.fluxes import flux_models
    from nurec.evaluate.weights import event_rates_hz

    table = pd.DataFrame({
        "weight": ak.to_numpy(ak.fill_none(chunk.weight, np.nan)).astype(np.float64),
        "energy": ak.to_numpy(chunk.truth.energy).astype(np.float64),
        "zenith": ak.to_numpy(chunk.truth.zenith).astype(np.float64),
        "pdg": ak.to_numpy(chunk.truth.pdg).astype(np.int64),
    })
    rates_hz = dict(rates_hz or {})
    for flux in flux_models():
        rates_hz[flux.name] = rates_hz.get(flux.name, 0.0) + float(event_rates_hz(table, metadata, flux).sum())
    return rates_hz


def _rates_summary(rates_hz: dict[str, float], metadata: dict[str, Any]) -> dict[str, Any]:
    """Return the summary entries of the expected events per year under each flux."""
    from nurec.evaluate.fluxes import flux_models
    from nurec.evaluate.weights import SECONDS_PER_YEAR, WeightError, generation

    try:
        covered = generation(metadata).describe()
    except WeightError:  # weights and n_generated, but no simulation config: say what is known
        covered = None
    return {
        "expected_events_per_year": {name: rate_hz * SECONDS_PER_YEAR for name, rate_hz in rates_hz.items()},
        "fluxes": {flux.name: flux.citation for flux in flux_models()},
        "weighted_types": covered,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """Return the summary as aligned text lines."""
    lines = [f"{summary['path']} ({summary['format']})"]
    about = [f"det_id {summary['det_id']}"] if "det_id" in summary else []
    about += [f"geometry hash {summary['detector_hash']}"] if summary.get("detector_hash") else []
    lines.append(f"  detector       {summary.get('detector') or 'unknown'}" + (f" ({', '.join(about)})" if about else ""))
    if "generated" in summary:
        frac = summary.get("triggered_fraction")
        lines.append(f"  events         {summary['events']} triggered of {summary['generated']} generated"
                     + (f" ({100 * frac:.2f}%)" if frac is not None else ""))
    else:
        lines.append(f"  events         {summary['events']}")
    h = summary["hits_per_event"]
    if h["p50"] is not None:
        lines.append("  hits/event     " + "  ".join(f"{k} {v:.0f}" for k, v in h.items()))
    if summary.get("noise_fraction") is not None:
        lines.append(f"  noise hits     {100 * summary['noise_fraction']:.1f}% of {summary['hits_total']}")
    else:
        lines.append(f"  noise hits     unknown (no simulation truth) of {summary['hits_total']}")
    if summary.get("triggered_hit_fraction") is not None:
        lines.append(f"  trigger hits   {100 * summary['triggered_hit_fraction']:.1f}%")
    if summary.get("energy_gev"):
        e = summary["energy_gev"]
        lines.append(f"  energy [GeV]   min {e['min']:.4g}  median {e['median']:.4g}  max {e['max']:.4g}")
    if summary.get("flavours"):
        total = sum(summary["flavours"].values())
        lines.append("  flavours       " + "  ".join(f"{k} {100 * v / total:.1f}%" for k, v in summary["flavours"].items()))
    if summary.get("interactions"):
        total = sum(summary["interactions"].values())
        lines.append("  interactions   " + "  ".join(f"{k} {100 * v / total:.1f}%" for k, v in summary["interactions"].items()))
    if summary.get("track_fraction") is not None:
        lines.append(f"  tracks         {100 * summary['track_fraction']:.1f}%")
    for i, (name, per_year) in enumerate(summary.get("expected_events_per_year", {}).items()):
        lines.append(f"  {'events/year' if i == 0 else '':<14} {per_year:<10.4g} {name}")
    if summary.get("expected_events_per_year"):
        covered = summary.get("weighted_types") or "the generated types"
        lines.append(f"  {'':<14} (triggered {covered} only; no oscillation, no absorption in the Earth)")
    for key in ("seed", "simulator_version", "checksums"):
        if key in summary:
            lines.append(f"  {key:<14} {summary[key]}")
    return "\n".join(lines)


def verify(path: str) -> dict[str, Any]:
    """Return the verification report of a nurec dataset: each file's status and whether all passed."""
    statuses = verify_dataset(path)
    return {"path": str(path), "checksums": load_manifest(path, check_files=False).has_checksums,
            "files": [{"file": name, "status": status} for name, status in statuses],
            "ok": all(status in ("ok", "unverified") for _, status in statuses)}


def format_verification(report: dict[str, Any]) -> str:
    """Return the verification report as aligned text lines."""
    width = max((len(f["file"]) for f in report["files"]), default=0)
    about = "sha256 and size of each file" if report["checksums"] else f"no checksums: {UNVERIFIED}"
    lines = [f"{report['path']} ({about})"]
    lines += [f"  {f['file']:<{width}}  {f['status']}" for f in report["files"]]
    return "\n".join(lines)


def run_verify(args: argparse.Namespace) -> int:
    fmt = args.fmt or detect_format(args.path)
    if fmt != "nurec":
        raise ValueError(f"--verify: {args.path} is a {fmt} source, not a nurec dataset (nothing records checksums)")
    report = verify(args.path)
    sys.stdout.write((json.dumps(report, indent=2) if args.json else format_verification(report)) + "\n")
    bad = [f for f in report["files"] if f["status"] not in ("ok", "unverified")]
    if bad:
        print(f"nurec inspect: error: {args.path}: {len(bad)} of {len(report['files'])} files failed verification "
              f"(first: {bad[0]['file']} is {bad[0]['status']})", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        if args.verify:
            return run_verify(args)
        summary = summarize(args.path, args.fmt)
    except DatasetError as err:
        print(f"nurec inspect: error: {err}", file=sys.stderr)
        return 1
    sys.stdout.write((json.dumps(summary, indent=2) if args.json else format_summary(summary)) + "\n")
    return 0
