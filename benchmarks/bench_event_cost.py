"""Cost of one large event: peak memory and time per stage at 1,000 / 5,000 / 20,000 hits.

Stages: the noise cleaning (nurec.baselines.cleaning), graph building and the first kNN
with the bundled GNN's features (node cap 64) and with one node per pulse and no cap (the
worst case: 20,000 nodes, whose padded distance matrix alone would be 1.6 GB), and two
whole methods through the run loop (LineFit and the bundled GNN). Each measurement runs in
a fresh process on one synthetic icecube86 event (seeded: half the hits on sensors within
150 m of a muon track, with causal times, half noise on any sensor over 20 us), after a
warm-up on a small event. Memory: the tracemalloc peak (numpy and Python allocations) and
the growth of the peak resident set (torch allocations too) during the call. Target
(issue 14): at most 50 MB per event at 20,000 hits. Times on a busy machine are only
indicative; the memory is what the table is for.

    python benchmarks/bench_event_cost.py                          # every stage at 1k, 5k, 20k hits
    python benchmarks/bench_event_cost.py --hits 20000 --stages cleaning linefit
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import awkward as ak
import numpy as np

STAGES = ("cleaning", "graph-gnn", "graph-pulses", "linefit", "gnn")
TARGET_MB = 50.0
DETECTOR = "icecube86"


def synthetic_event(n_hits: int, seed: int = 1) -> ak.Array:
    """Return one icecube86 event (nurec schema) of ``n_hits`` hits: half along a muon track, half noise."""
    from nurec.geometry import get_geometry
    from nurec.io.schema import HIT_FIELDS
    from nurec.ragged import RaggedEvents

    geometry = get_geometry(DETECTOR)
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    relative = geometry.position - geometry.position.mean(axis=0)
    along = relative @ direction
    perpendicular = np.linalg.norm(relative - along[:, None] * direction, axis=1)
    near = np.flatnonzero(perpendicular < 150.0)
    n_signal = n_hits // 2
    sensor = np.concatenate([rng.choice(near, n_signal), rng.integers(0, geometry.n_sensors, n_hits - n_signal)])
    # Light speed in vacuum 0.2998 m/ns; a rough delay for the distance from the track in ice.
    signal_t = along[sensor[:n_signal]] / 0.2998 + perpendicular[sensor[:n_signal]] / 0.22 + rng.exponential(30.0, n_signal)
    t = np.concatenate([signal_t, rng.uniform(-10_000.0, 10_000.0, n_hits - n_signal)])
    columns = {
        "sensor_id": geometry.sensor_id[sensor], "x": geometry.position[sensor, 0], "y": geometry.position[sensor, 1],
        "z": geometry.position[sensor, 2], "t": t, "charge": rng.exponential(1.0, n_hits) + 0.25,
        "dir_x": geometry.direction[sensor, 0], "dir_y": geometry.direction[sensor, 1],
        "dir_z": geometry.direction[sensor, 2],
    }
    columns = {name: np.asarray(values).astype(HIT_FIELDS[name]) for name, values in columns.items()}
    ragged = RaggedEvents.from_counts(np.array([n_hits]), columns,
                                      {"event_id": np.array([seed], np.int64), "run_id": np.array([0], np.int64)})
    return ragged.to_awkward("hits", list(HIT_FIELDS), ["event_id", "run_id", "hits"])


def stage_call(stage: str) -> Callable[[ak.Array], object]:
    """Return the function that runs ``stage`` on an events array (built once, outside the measurement)."""
    if stage == "cleaning":
        from nurec.baselines.cleaning import CLEANING, isolated_hit_mask
        from nurec.baselines.common import fit_columns, hit_columns

        def clean(events: ak.Array) -> object:
            return isolated_hit_mask(fit_columns(hit_columns(events)), CLEANING["ice"])
        return clean
    if stage in ("graph-gnn", "graph-pulses"):
        import torch

        from nurec.graph.features import SPACE_TIME_COLUMNS, FeatureConfig, events_to_graphs
        from nurec.graph.knn import knn_neighbors
        from nurec.models.reconstruct import load_gnn

        features = load_gnn(detector=DETECTOR).features
        if stage == "graph-pulses":
            features = FeatureConfig(**{**features.to_dict(), "max_nodes": 0, "per_sensor": False})

        def graphs(events: ak.Array) -> object:
            built = events_to_graphs(events, features)
            nodes = torch.from_numpy(built.nodes[:, :SPACE_TIME_COLUMNS])
            return knn_neighbors(nodes, torch.from_numpy(built.counts), k=8)
        return graphs
    from nurec.methods.registry import build_method
    from nurec.methods.run import reconstruct_batch

    method = build_method(stage, DETECTOR)
    return lambda events: reconstruct_batch(method, events)


def _status_kb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return float(line.split()[1])
    return float("nan")


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: reset VmHWM to the current RSS
        return True
    except OSError:
        return False


def measure(stage: str, n_hits: int) -> dict[str, float | str | int]:
    """Return time and memory of ``stage`` on one event of ``n_hits`` hits (run in a fresh process)."""
    import torch

    torch.set_num_threads(1)
    call = stage_call(stage)
    event = synthetic_event(n_hits)
    call(synthetic_event(200, seed=2))  # warm-up: lazy imports, caches
    gc.collect()
    resettable = _reset_peak_rss()
    rss_before = _status_kb("VmRSS")
    start = time.perf_counter()
    result = call(event)
    seconds = time.perf_counter() - start
    rss_delta_mb = (_status_kb("VmHWM") - rss_before) / 1024 if resettable else float("nan")
    del result
    gc.collect()
    tracemalloc.start()
    call(event)
    traced_mb = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    n_sensors = len(np.unique(ak.to_numpy(ak.flatten(event.hits.sensor_id))))
    return {"stage": stage, "hits": n_hits, "sensors": n_sensors, "seconds": seconds,
            "traced_mb": traced_mb, "rss_delta_mb": rss_delta_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hits", type=int, nargs="+", default=[1_000, 5_000, 20_000])
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--child", nargs=2, metavar=("STAGE", "HITS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]))))
        return
    print(f"{'stage':<16}{'hits':>8}{'sensors':>9}{'time s':>9}{'traced MB':>11}{'RSS+ MB':>9}  <= {TARGET_MB:.0f} MB")
    for stage in args.stages:
        for n_hits in args.hits:
            done = subprocess.run([sys.executable, __file__, "--child", stage, str(n_hits)],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(f"{stage:<16}{n_hits:>8}  failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            worst = max(row["traced_mb"], row["rss_delta_mb"] if np.isfinite(row["rss_delta_mb"]) else 0.0)
            print(f"{stage:<16}{row['hits']:>8,}{row['sensors']:>9,}{row['seconds']:>9.3f}{row['traced_mb']:>11.1f}"
                  f"{row['rss_delta_mb']:>9.1f}  {'yes' if worst <= TARGET_MB else 'NO'}")


if __name__ == "__main__":
    main()
