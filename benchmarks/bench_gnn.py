"""GNN speed and quality: prints inference and training events/s, and a held-out quality table.

Speed (default): the model's inference events/s at batch sizes 1, 64 and 512 on
``--threads`` CPU threads for simulated icecube86 events of 1-100 TeV (all flavours, CC+NC),
end to end (events -> predictions table) and network only, plus training events/s.

    python benchmarks/bench_gnn.py                       # default model, 2 threads
    python benchmarks/bench_gnn.py --model runs/NAME     # a trained run

Quality (``--quality DIR``): median angular error per true-energy decade for numu CC
tracks and for cascades, log10 E resolution, track/cascade AUC and the 68% coverage of
``angular_uncertainty_deg`` on a dataset, for the GNN and any ``--baselines`` (each on all
events or on the first N with NAME:N; the GNN is then also shown on those N).

    python benchmarks/bench_gnn.py --quality data/gnn/test --baselines linefit likelihood:400
"""

from __future__ import annotations

import argparse
import time

import awkward as ak
import numpy as np
import pandas as pd
import torch

from nurec.evaluate.metrics import (
    angular_distance_deg,
    coverage,
    log_energy_ratio,
    resolution_and_bias,
    roc_auc,
)
from nurec.models.export import export_static_parts
from nurec.models.reconstruct import load_gnn, predict_outputs
from nurec.models.tasks import task_losses
from nurec.train.data import make_training_set


def simulated_events(n_events: int, seed: int) -> ak.Array:
    """Return icecube86 events of 1-100 TeV, all flavours, CC and NC (E^-2)."""
    from sim.config import SimulationConfig
    from sim.simulate import simulate_events

    config = SimulationConfig(detector="icecube86", flavors=("nue", "numu", "nutau"), interactions=("CC", "NC"),
                              n_events=n_events, energy_min_gev=1e3, energy_max_gev=1e5, seed=seed)
    return simulate_events(config)[0]


def time_inference(model, events: ak.Array, batch_size: int, max_events: int) -> tuple[float, float, float]:
    """Return (end-to-end, network-only eager, network-only exported) events/s over up to ``max_events`` events."""
    from nurec.graph.features import events_to_graphs

    events = events[:max_events]
    model.reconstruct(events[:batch_size])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(events), batch_size):
        model.reconstruct(events[i : i + batch_size])
    end_to_end = len(events) / (time.perf_counter() - start)
    graphs = events_to_graphs(events, model.features)
    rates = []
    for network in (model.network, export_static_parts(model.network)):
        start = time.perf_counter()
        for i in range(0, len(events), batch_size):
            index = np.arange(i, min(i + batch_size, len(events)))
            predict_outputs(network, graphs.take(index), batch_size)
        rates.append(len(events) / (time.perf_counter() - start))
    return end_to_end, rates[0], rates[1]


def time_training(model, events: ak.Array, batch_size: int, steps: int) -> float:
    """Return training events/s (forward, backward, AdamW step) of a fresh copy of the model's network."""
    from nurec.models.network import GraphNetwork

    network = GraphNetwork(model.network.spec)
    network.load_state_dict(model.network.state_dict())
    network.train()
    data = make_training_set(events, network.spec.features)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    seen, start = 0, None
    for step in range(steps + 1):
        if step == 1:
            seen, start = 0, time.perf_counter()  # step 0 is warm-up
        batch = data.subset(rng.choice(len(data), batch_size, replace=False))
        g = batch.graphs
        out = network(torch.from_numpy(g.nodes), torch.from_numpy(g.counts), torch.from_numpy(g.globals))
        loss = task_losses(out, torch.from_numpy(batch.targets), network.spec.tasks)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += batch_size
    return seen / (time.perf_counter() - start)


def speed(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    model = load_gnn(args.model)
    events = simulated_events(args.events, args.seed)
    n_hits = ak.to_numpy(ak.num(events.hits))
    print(f"model {model.version} ({model.network.n_parameters()} parameters), {args.threads} threads, "
          f"{len(events)} icecube86 events of 1-100 TeV (median {np.median(n_hits):.0f} pulses)")
    print("| batch | events timed | end-to-end events/s | network-only events/s, eager | network-only, exported |")
    print("| --- | --- | --- | --- | --- |")
    for batch_size, max_events in ((1, 200), (64, len(events)), (512, len(events))):
        e2e, eager, exported = time_inference(model, events, batch_size, max_events)
        print(f"| {batch_size} | {min(max_events, len(events))} | {e2e:.0f} | {eager:.0f} | {exported:.0f} |")
    rate = time_training(model, events, args.train_batch, args.train_steps)
    print(f"training: {rate:.0f} events/s (batch {args.train_batch}, {args.train_steps} steps, AdamW)")


def truth_table(events: ak.Array) -> pd.DataFrame:
    """Return per-event truth: direction of travel, energy, is_track, flavour/interaction."""
    t = events.truth
    return pd.DataFrame({
        "event_id": ak.to_numpy(events.event_id),
        "dir_x": ak.to_numpy(t.dir_x), "dir_y": ak.to_numpy(t.dir_y), "dir_z": ak.to_numpy(t.dir_z),
        "energy": ak.to_numpy(t.energy), "is_track": ak.to_numpy(t.is_track).astype(bool),
        "pdg": np.abs(ak.to_numpy(t.pdg)), "interaction": ak.to_list(t.interaction),
    })


def quality_rows(name: str, truth: pd.DataFrame, pred: pd.DataFrame, seconds: float) -> list[str]:
    """Return markdown rows of one method's quality on ``truth``'s events."""
    ok = (pred["fit_status"] == "ok").to_numpy()
    error = angular_distance_deg(pred[["dir_x", "dir_y", "dir_z"]].to_numpy(), truth[["dir_x", "dir_y", "dir_z"]].to_numpy())
    error = np.where(ok, error, np.nan)
    numu_cc = truth["is_track"].to_numpy()
    decade = np.floor(np.log10(truth["energy"].to_numpy())).astype(int)
    cells = []
    for selection in (numu_cc, ~numu_cc):
        for d in range(2, 6):
            e = error[selection & (decade == d)]
            e = e[np.isfinite(e)]
            cells.append(f"{np.median(e):.1f} ({len(e)})" if len(e) >= 3 else "–")
    resolution, bias = resolution_and_bias(np.where(ok, log_energy_ratio(pred["energy"], truth["energy"]), np.nan))
    auc = roc_auc(np.where(ok, pred["p_track"], np.nan), numu_cc)[2]
    cov = coverage(error, np.where(ok, pred["angular_uncertainty_deg"], np.nan))
    fmt = lambda x, f: "–" if not np.isfinite(x) else format(x, f)  # noqa: E731
    return [f"| {name} | {len(truth)} | {ok.mean():.3f} | " + " | ".join(cells)
            + f" | {fmt(resolution, '.3f')} | {fmt(auc, '.3f')} | {fmt(cov, '.3f')} | {len(truth) / seconds:.0f} |"]


def quality(args: argparse.Namespace) -> None:
    from nurec.io.parquet import read_dataset
    from nurec.methods.registry import build_method

    torch.set_num_threads(args.threads)
    events = read_dataset(args.quality)
    if args.subset != "all":
        t = events.truth
        high_energy_track = ak.to_numpy(t.is_track).astype(bool) & (ak.to_numpy(t.energy) >= 1e4)
        cascade = ~ak.to_numpy(t.is_track).astype(bool)
        events = events[high_energy_track if args.subset == "tracks-above-10tev" else cascade]
    if args.max_events:
        events = events[: args.max_events]
    truth = truth_table(events)
    decades = [f"1e{d}-1e{d + 1}" for d in range(2, 6)]
    print(f"{len(events)} held-out events from {args.quality} (subset: {args.subset}); "
          "cells: median angular error [deg] (events)")
    header = (["method", "events", "ok"] + [f"numu CC {d}" for d in decades] + [f"cascade {d}" for d in decades]
              + ["log10E res", "track AUC", "68% coverage", "events/s"])
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    model = load_gnn(args.model)
    start = time.perf_counter()
    gnn = model.reconstruct(events)
    seconds = time.perf_counter() - start
    for line in quality_rows("gnn", truth, gnn, seconds):
        print(line, flush=True)
    done = set()
    for spec in args.baselines:
        name, _, count = spec.partition(":")
        n_base = min(int(count) if count else len(events), len(events))
        if n_base < len(events) and n_base not in done:
            done.add(n_base)
            share = seconds * n_base / len(events)
            for line in quality_rows(f"gnn (first {n_base})", truth.iloc[:n_base], gnn.iloc[:n_base], share):
                print(line, flush=True)
        method = build_method(name)
        start = time.perf_counter()
        pred = method.reconstruct(events[:n_base])
        label = name if n_base == len(events) else f"{name} (first {n_base})"
        for line in quality_rows(label, truth.iloc[:n_base], pred, time.perf_counter() - start):
            print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--events", type=int, default=2048, help="simulated events for the speed test")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--train-batch", type=int, default=256)
    parser.add_argument("--train-steps", type=int, default=4)
    parser.add_argument("--quality", default=None, help="dataset directory for the quality table")
    parser.add_argument("--max-events", type=int, default=0)
    parser.add_argument("--subset", choices=("all", "tracks-above-10tev", "cascades"), default="all",
                        help="quality table on these held-out events only (so slow baselines run on the events that matter)")
    parser.add_argument("--baselines", nargs="*", default=[], metavar="NAME[:N]",
                        help="registered methods to compare, each on all events or its first N")
    args = parser.parse_args()
    if args.quality:
        quality(args)
    else:
        speed(args)


if __name__ == "__main__":
    main()
