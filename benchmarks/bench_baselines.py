"""Speed and quality of the classical baselines on fixed, seeded simulated samples.

    python benchmarks/bench_baselines.py [--events 5000] [--fit-events 200] [--cascade-events 60]

Samples (icecube86, E^-1 from 1 TeV to 1 PeV so every decade is populated):
- tracks: νμ CC, ``--events`` events (seed 777) for LineFit, charge energy and the CNN;
  the first ``--fit-events`` of them for the likelihood fits (SPE, MPE; the BDT
  uncertainty is evaluated on the SPE fits);
- all flavours CC+NC, ``--events`` events (seed 778) for the energy estimators;
- νe CC, ``--cascade-events`` events (seed 779) for the cascade fit.
Every method runs in ONE process with one thread (n_jobs=1, torch threads 1), so
events/s is per core. Quality: median angular error [deg] and log10 E resolution (half
the 16-84% width of log10(E_reco/E_true), true neutrino energy; the cascade fit against
the deposited EM-equivalent energy) per decade of true energy.
"""

from __future__ import annotations

import argparse
import time

import awkward as ak
import numpy as np
import torch

from nurec.baselines.common import truth_directions
from nurec.evaluate.metrics import (
    angular_distance_deg,
    coverage,
    log_energy_ratio,
    resolution_and_bias,
)
from nurec.methods.registry import build_method
from sim.config import SimulationConfig
from sim.simulate import simulate_events

DECADES = [(1e3, 1e4), (1e4, 1e5), (1e5, 1e6)]


def sample(flavors, interactions, n_events, seed):
    config = SimulationConfig(detector="icecube86", flavors=flavors, interactions=interactions,
                              energy_min_gev=1e3, energy_max_gev=1e6, spectral_index=1.0,
                              n_events=n_events, seed=seed)
    return simulate_events(config)[0]


def timed(name, events, **options):
    method = build_method(name, **options)
    start = time.perf_counter()
    predictions = method.reconstruct(events)
    return predictions, len(events) / (time.perf_counter() - start)


def per_decade(energy, values, statistic):
    out = []
    for lo, hi in DECADES:
        inside = (energy >= lo) & (energy < hi) & np.isfinite(values)
        out.append(statistic(values[inside]) if inside.sum() >= 5 else np.nan)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--fit-events", type=int, default=200)
    parser.add_argument("--cascade-events", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []

    tracks = sample(("numu",), ("CC",), args.events, 777)
    track_energy = ak.to_numpy(tracks.truth.energy)
    track_truth = truth_directions(tracks)

    def direction_row(name, predictions, rate, events, energy, truth, extra=""):
        error = angular_distance_deg(predictions[["dir_x", "dir_y", "dir_z"]].to_numpy(float), truth)
        rows.append((name, len(events), rate, "median ang. err [deg]",
                     per_decade(energy, error, np.median), extra))
        return error

    predictions, rate = timed("linefit", tracks)
    direction_row("linefit", predictions, rate, tracks, track_energy, track_truth)
    fit_sample = tracks[: args.fit_events]
    spe, rate = timed("likelihood", fit_sample, n_jobs=1)
    error = direction_row("likelihood", spe, rate, fit_sample, track_energy[: args.fit_events],
                          track_truth[: args.fit_events])
    bdt = build_method("bdt-uncertainty", n_jobs=1)
    start = time.perf_counter()
    sigma = bdt.predict_uncertainty_deg(fit_sample, spe)
    bdt_rate = 1.0 / (1.0 / rate + (time.perf_counter() - start) / len(fit_sample))
    rows.append(("bdt-uncertainty", len(fit_sample), bdt_rate, "68% coverage",
                 per_decade(track_energy[: args.fit_events], np.where(np.isfinite(sigma), error <= sigma, np.nan),
                            np.mean), f"all: {coverage(error, sigma):.2f}"))
    mpe, rate = timed("likelihood-mpe", fit_sample, n_jobs=1)
    direction_row("likelihood-mpe", mpe, rate, fit_sample, track_energy[: args.fit_events],
                  track_truth[: args.fit_events])

    mixed = sample(("nue", "numu", "nutau"), ("CC", "NC"), args.events, 778)
    mixed_energy = ak.to_numpy(mixed.truth.energy)
    for name in ("charge-energy", "cnn-energy"):
        for label, events, energy in (("all flavours", mixed, mixed_energy), ("numu CC", tracks, track_energy)):
            predictions, rate = timed(name, events)
            ratio = log_energy_ratio(predictions.energy, energy)
            rows.append((f"{name} ({label})", len(events), rate, "log10 E resolution",
                         per_decade(energy, ratio, lambda x: resolution_and_bias(x)[0]), ""))

    cascades = sample(("nue",), ("CC",), args.cascade_events, 779)
    cascade_energy = ak.to_numpy(cascades.truth.energy)
    predictions, rate = timed("cascade-likelihood", cascades, n_jobs=1)
    direction_row("cascade-likelihood", predictions, rate, cascades, cascade_energy, truth_directions(cascades))
    ratio = log_energy_ratio(predictions.energy, ak.to_numpy(cascades.truth.visible_energy))
    rows.append(("cascade-likelihood", len(cascades), rate, "log10 E_dep resolution",
                 per_decade(cascade_energy, ratio, lambda x: resolution_and_bias(x)[0]), ""))

    header = f"{'method':32s} {'events':>6s} {'ev/s/core':>9s}  {'metric':24s} " + " ".join(
        f"{f'{lo:.0e}-{hi:.0e}':>12s}" for lo, hi in DECADES)
    print(header)
    print("-" * len(header))
    for name, n, rate, metric, values, extra in rows:
        cells = " ".join(f"{v:12.3f}" for v in values)
        print(f"{name:32s} {n:6d} {rate:9.1f}  {metric:24s} {cells}  {extra}")


if __name__ == "__main__":
    main()
