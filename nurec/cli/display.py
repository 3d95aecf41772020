"""``nurec display DIR --event ID --out event.png``: draw one event in 3D."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import awkward as ak
import numpy as np

from nurec.evaluate.truth import interaction_label
from nurec.geometry import Geometry, GeometryError, get_geometry
from nurec.io.parquet import DatasetError
from nurec.io.sources import detect_format, iter_events, source_metadata


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("display", help="draw one event in 3D to an image",
                                   description="Draw one event: sensors, hits coloured by time and sized "
                                               "by charge, and the true track or cascade.")
    parser.add_argument("path", help="dataset directory (or another event source)")
    parser.add_argument("--event", type=int, required=True, help="event_id to draw")
    parser.add_argument("--out", default="event.png", help="image file (.png, .pdf or .svg)")
    parser.add_argument("--format", dest="fmt", help="source format (default: detected)")
    parser.add_argument("--no-noise", action="store_true", help="leave out hits flagged as noise (simulation)")
    parser.set_defaults(func=run)


def find_event(path: str, event_id: int, fmt: str | None = None) -> ak.Record:
    """Return the event with ``event_id`` (scanning the source chunk by chunk)."""
    for chunk in iter_events(path, fmt):
        ids = ak.to_numpy(chunk.event_id)
        match = np.flatnonzero(ids == event_id)
        if len(match):
            return chunk[int(match[0])]
    raise ValueError(f"event {event_id}: not in {path}")


def draw_event(event: ak.Record, out: str | Path, sensors: np.ndarray | None = None,
               title: str = "", show_noise: bool = True) -> Path:
    """Draw ``event`` to the image file ``out`` and return its path.

    ``sensors`` (n, 3) [m] are drawn as faint points; hits are coloured by time and sized
    by charge (hits flagged as noise in simulation truth: small grey crosses); the true
    muon track is drawn where it crosses the volume, the true direction as an arrow at
    the point of the track closest to the detector centre (at the vertex for cascades).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hits = event["hits"]
    x, y, z = (ak.to_numpy(hits[k]).astype(float) for k in ("x", "y", "z"))
    t, q = ak.to_numpy(hits["t"]).astype(float), ak.to_numpy(hits["charge"]).astype(float)
    noise = ak.to_numpy(hits["is_noise"]) if "is_noise" in hits.fields else np.zeros(len(x), dtype=bool)
    if not show_noise:
        x, y, z, t, q, noise = x[~noise], y[~noise], z[~noise], t[~noise], q[~noise], noise[~noise]
    box = sensors if sensors is not None and len(sensors) else np.column_stack([x, y, z])
    low, high = (box.min(axis=0), box.max(axis=0)) if len(box) else (np.full(3, -100.0), np.full(3, 100.0))
    pad = 0.1 * (high - low) + 10.0
    low, high = low - pad, high + pad
    span = float(np.max(high - low))

    fig = plt.figure(figsize=(9, 8))
    ax = fig.add_subplot(projection="3d")
    if sensors is not None and len(sensors):
        ax.scatter(*sensors.T, s=1, c="0.75", alpha=0.25, linewidths=0, depthshade=False)
    if noise.any():  # simulation truth: noise hits drawn small and grey
        ax.scatter(x[noise], y[noise], z[noise], s=10, marker="x", c="0.45", alpha=0.6, linewidths=0.8,
                   depthshade=False, label="noise hits (truth)")
    light = ~noise
    if light.any():
        # Several hits on one sensor overlap; draw the earliest on top.
        order = np.flatnonzero(light)[np.argsort(-t[light])]
        points = ax.scatter(x[order], y[order], z[order], c=t[order], cmap="viridis_r",
                            s=12 + 40 * np.sqrt(np.clip(q[order], 0, None)), alpha=0.9,
                            edgecolors="k", linewidths=0.2, depthshade=False)
        fig.colorbar(points, ax=ax, shrink=0.6, pad=0.1, label="hit time [ns]")
    if "truth" in event.fields:
        truth = event["truth"]
        vertex = np.array([truth["vertex_x"], truth["vertex_y"], truth["vertex_z"]], dtype=float)
        direction = np.array([truth["dir_x"], truth["dir_y"], truth["dir_z"]], dtype=float)
        is_track = bool(truth["is_track"]) if "is_track" in truth.fields else False
        length = float(truth["track_length"]) if is_track and "track_length" in truth.fields else 0.0
        if length > 0:
            # The part of the muon track inside the drawn volume.
            with np.errstate(divide="ignore", invalid="ignore"):
                s1, s2 = (low - vertex) / direction, (high - vertex) / direction
            enter = np.nanmax(np.where(direction != 0, np.minimum(s1, s2), -np.inf))
            leave = np.nanmin(np.where(direction != 0, np.maximum(s1, s2), np.inf))
            enter, leave = max(enter, 0.0), min(leave, length)
            if enter < leave:
                ax.plot(*np.column_stack([vertex + enter * direction, vertex + leave * direction]),
                        color="crimson", lw=1.5, label="true muon track")
            centre = 0.5 * (low + high)
            s_arrow = float(np.clip(np.dot(centre - vertex, direction), 0.0, length))
        else:
            s_arrow = 0.0
        anchor = vertex + s_arrow * direction
        ax.quiver(*anchor, *(direction * 0.25 * span), color="crimson", arrow_length_ratio=0.2, lw=2.5,
                  label="true direction")
        if np.all((vertex >= low) & (vertex <= high)):
            ax.scatter(*vertex, marker="*", s=150, c="crimson", label="vertex")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set_zlim(low[2], high[2])
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.set_zlabel("z [m]")
    ax.set_title(title, fontsize=10)
    out = Path(out)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def format_energy(gev: float) -> str:
    """Return an energy in the unit physicists would say it in: "850 GeV", "12.3 TeV", "2.1 PeV"."""
    for scale, unit in ((1e6, "PeV"), (1e3, "TeV")):
        if abs(gev) >= scale:
            return f"{gev / scale:.3g} {unit}"
    return f"{gev:.3g} GeV"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def hit_counts(event: ak.Record, geometry: Geometry | None = None, show_noise: bool = True) -> str:
    """Return what the display draws of an event's hits: "12 hits on 7 DOMs, 3 noise".

    DOMs (optical modules) come from ``geometry`` (several PMTs of a KM3NeT DOM count once);
    without it, or if a hit's sensor is not in it, distinct sensors are counted. Noise
    (simulation truth) is counted where the hits say; with ``show_noise`` False the noise
    hits are not drawn, and the text says how many were left out.
    """
    hits = event["hits"]
    sensors = ak.to_numpy(hits["sensor_id"]).astype(np.int64)
    noise = ak.to_numpy(hits["is_noise"]).astype(bool) if "is_noise" in hits.fields else None
    drawn = np.ones(len(sensors), dtype=bool) if noise is None or show_noise else ~noise
    word, units = "sensor", sensors[drawn]
    if geometry is not None:
        rows, known = geometry.sensor_rows(units)
        if len(geometry.sensor_id) and known.all():
            word, units = "DOM", geometry.module_id[rows]
    text = f"{_plural(int(drawn.sum()), 'hit')} on {_plural(len(np.unique(units)), word)}"
    if noise is not None and show_noise:
        text += f", {int(noise.sum())} noise"
    elif noise is not None:
        text += f" ({_plural(int(noise.sum()), 'noise hit')} not drawn)"
    return text


def event_title(event: ak.Record, geometry: Geometry | None = None, show_noise: bool = True) -> str:
    """Return the figure title: the event and its true type, energy and zenith; then what is drawn.

    E.g. "event 7: $\\nu_\\mu$ CC, E = 12.3 TeV, zenith 97.2°" over "12 hits on 7 DOMs, 3 noise"
    (the type in matplotlib mathtext, see nurec.evaluate.truth.interaction_label).
    """
    parts = []
    if "truth" in event.fields:
        truth = event["truth"]
        label = interaction_label(int(truth["pdg"]) if "pdg" in truth.fields else None,
                                  str(truth["interaction"]) if "interaction" in truth.fields else None,
                                  mathtext=True)
        parts += [label] if label else []
        if "energy" in truth.fields and np.isfinite(float(truth["energy"])):
            parts.append(f"E = {format_energy(float(truth['energy']))}")
        if "zenith" in truth.fields and np.isfinite(float(truth["zenith"])):
            parts.append(f"zenith {np.degrees(float(truth['zenith'])):.1f}°")
    head = f"event {int(event['event_id'])}" + (f": {', '.join(parts)}" if parts else "")
    return f"{head}\n{hit_counts(event, geometry, show_noise)}"


def run(args: argparse.Namespace) -> int:
    try:
        fmt = args.fmt or detect_format(args.path)
        event = find_event(args.path, args.event, fmt)
        metadata = source_metadata(args.path, fmt)
    except DatasetError as err:
        print(f"nurec display: error: {err}", file=sys.stderr)
        return 1
    geometry = None
    detector = metadata.get("detector")
    name = detector.get("name") if isinstance(detector, dict) else detector
    if name:
        try:
            geometry = get_geometry(name)
        except GeometryError:
            geometry = None  # a user geometry that is not at hand: draw the hits only
    sensors = geometry.module_position if geometry is not None else None
    title = event_title(event, geometry, show_noise=not args.no_noise)
    out = draw_event(event, args.out, sensors, title, show_noise=not args.no_noise)
    print(f"wrote {out}")
    return 0
