"""Simulator speed: triggered events per second on ONE core.

Runs sim.simulate.simulate_chunk in this process (no Dask) for
  - icecube86, numu CC, 1 TeV - 100 TeV, E^-2, with noise (target: >= 2,000 events/s/core)
  - km3net-orca, numu CC, 10 GeV - 1 TeV, E^-2, with noise
and prints wall-clock and CPU-time rates. Pin it to one core for a per-core number:

    taskset -c 0 python benchmarks/bench_sim.py            # ~30-60 s
    taskset -c 0 python benchmarks/bench_sim.py --quick    # ~10 s

Each case is seeded (same events every run) and bounded by its event count. The
first, small chunk warms caches (imports, geometry, column structure) and is not timed.
"""

from __future__ import annotations

import argparse
import os
import time

import awkward as ak

from sim.config import SimulationConfig
from sim.simulate import simulate_chunk

CASES = {
    "icecube86 numu CC 1-100 TeV": dict(detector="icecube86", energy_min_gev=1e3, energy_max_gev=1e5),
    "km3net-orca numu CC 10 GeV-1 TeV": dict(detector="km3net-orca", energy_min_gev=10.0, energy_max_gev=1e3),
}
EVENTS = {"icecube86 numu CC 1-100 TeV": 10_000, "km3net-orca numu CC 10 GeV-1 TeV": 1_000}


def measure(name: str, n_events: int, repeats: int) -> dict:
    """Return the best wall and CPU rates [triggered events/s] of ``repeats`` timed chunks."""
    base = SimulationConfig(flavors=("numu",), interactions=("CC",), spectral_index=2.0, noise=True,
                            seed=7, n_events=n_events, chunk_events=n_events, **CASES[name])
    simulate_chunk(base.with_updates(n_events=50, chunk_events=50), 0)  # warm-up
    best = None
    for repeat in range(repeats):
        config = base.with_updates(seed=7 + repeat)
        wall, cpu = time.perf_counter(), time.process_time()
        events, generated = simulate_chunk(config, 0)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        result = {"events": len(events), "generated": generated, "wall_s": wall, "cpu_s": cpu,
                  "hits_per_event": float(ak.mean(ak.num(events.hits, axis=1)))}
        if best is None or wall < best["wall_s"]:
            best = result
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the events, one repeat")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"cores available to this process: {affinity} (use taskset -c 0 for a per-core number); "
          f"load average {os.getloadavg()[0]:.1f}")
    for name in CASES:
        n = EVENTS[name] // (10 if args.quick else 1)
        r = measure(name, n, 1 if args.quick else args.repeats)
        print(f"{name:34s} {r['events']:6d} triggered of {r['generated']:7d} generated, "
              f"{r['hits_per_event']:6.1f} hits/event: "
              f"{r['events'] / r['wall_s']:8.0f} events/s wall, {r['events'] / r['cpu_s']:8.0f} events/s CPU")


if __name__ == "__main__":
    main()
