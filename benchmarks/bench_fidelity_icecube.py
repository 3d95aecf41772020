"""Low-energy IceCube: do nurec's DeepCore events look like IceCube's own, and how often do they trigger?

    python benchmarks/bench_fidelity_icecube.py [--events 100] [--seed 3]

1. The GraphNeT oscNext sample shipped with the tests (5 real-simulation νμ CC events at
   1.5-4.6 GeV, SRT-cleaned pulses) against nurec's icecube86 νμ CC events over the same energy
   range: photo-electron hits, DOMs and the share of hits in hard local coincidence per event
   (nurec's light only, since SRT cleaning removes most noise), with the percentile of each
   oscNext event within nurec's distribution.
2. νμ CC at 1-100 GeV (E^-1) on icecube86: triggered fraction, the share of events that only
   DeepCore's SMT3 triggers, and the trigger-level effective volume per energy band
   (V_eff = Σ V_gen(E) over triggered events / generated events in the band).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import awkward as ak
import numpy as np

from nurec.geometry import get_geometry
from nurec.io.sources import iter_events
from nurec.physics.medium import get_medium
from nurec.physics.response import ICECUBE_RESPONSE
from sim.config import SimulationConfig
from sim.generator import generation_radius_m, power_law_integral, track_extension_m
from sim.simulate import simulate_events
from sim.trigger import apply_trigger

OSCNEXT = (Path(__file__).resolve().parent.parent / "tests/data/graphnet/tests/sqlite/oscNext_genie_level7_v02/"
           "oscNext_genie_level7_v02_first_5_frames.db")
BANDS_GEV = [(1.0, 3.0), (3.0, 10.0), (10.0, 30.0), (30.0, 100.0)]


def per_event_counts(events: ak.Array, light_only: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (hits, distinct DOMs, percent of hits in hard local coincidence) per event, counting only
    the event's light where asked."""
    hits = events.hits[~events.hits.is_noise] if light_only else events.hits
    n_hits = ak.to_numpy(ak.num(hits, axis=1))
    n_doms = np.array([len(np.unique(ak.to_numpy(s))) for s in hits.sensor_id])
    hlc = 100 * ak.to_numpy(ak.sum(hits.hlc, axis=1)) / np.maximum(n_hits, 1)
    return n_hits, n_doms, hlc


def compare_with_oscnext(n_events: int, seed: int) -> None:
    official = ak.concatenate(list(iter_events(OSCNEXT, "graphnet-sqlite")))
    energy = ak.to_numpy(official.truth.energy)
    config = SimulationConfig(detector="icecube86", flavors=("numu",), interactions=("CC",), n_events=n_events,
                              energy_min_gev=float(energy.min()), energy_max_gev=float(energy.max()),
                              spectral_index=1.0, seed=seed, batch_events=4096)
    simulated, _ = simulate_events(config)
    official_hits, official_doms, official_hlc = per_event_counts(official, light_only=False)
    nurec_hits, nurec_doms, nurec_hlc = per_event_counts(simulated, light_only=True)
    print(f"1. oscNext ({len(official)} νμ CC, {energy.min():.1f}-{energy.max():.1f} GeV) vs nurec icecube86 "
          f"({len(simulated)} νμ CC, same range, light only)")
    for name, ours, theirs in (("hits/event", nurec_hits, official_hits), ("DOMs/event", nurec_doms, official_doms),
                               ("HLC hits %", nurec_hlc, official_hlc)):
        q = np.percentile(ours, [2.5, 16, 50, 84, 97.5])
        ranks = [float((ours < v).mean() + 0.5 * (ours == v).mean()) * 100 for v in theirs]
        print(f"   {name:11s} nurec 2.5/16/50/84/97.5%: {' / '.join(f'{v:.0f}' for v in q)};  oscNext: "
              + ", ".join(f"{v:.0f} (percentile {r:.0f})" for v, r in zip(theirs, ranks, strict=True)))


def deepcore_trigger(n_events: int, seed: int) -> None:
    config = SimulationConfig(detector="icecube86", flavors=("numu",), interactions=("CC",), n_events=n_events,
                              energy_min_gev=1.0, energy_max_gev=100.0, spectral_index=1.0, seed=seed,
                              batch_events=4096)
    events, metadata = simulate_events(config)
    geometry, medium = get_geometry("icecube86"), get_medium("ice")
    n_generated = metadata["n_generated"]
    hits = events.hits
    counts = ak.to_numpy(ak.num(hits, axis=1))
    event = np.repeat(np.arange(len(events)), counts)
    sensor = geometry.sensor_lookup(ak.to_numpy(ak.flatten(hits.sensor_id)))
    time_ns = ak.to_numpy(ak.flatten(hits.t)).astype(float)
    smt8, _ = apply_trigger(len(events), event, sensor, time_ns, geometry,
                            replace(ICECUBE_RESPONSE, subarray_trigger_threshold=0))
    print(f"\n2. νμ CC 1-100 GeV (E^-1) on icecube86: {len(events)} triggered of {n_generated} generated "
          f"({100 * len(events) / n_generated:.3f}%); {100 * (1 - smt8.mean()):.0f}% only by DeepCore's SMT3")
    energy = ak.to_numpy(events.truth.energy)
    radius = generation_radius_m(geometry, medium, config.volume_margin_m)
    volume = np.pi * radius**2 * (2 * radius + track_extension_m(energy, config, medium))
    total = power_law_integral(config.energy_min_gev, config.energy_max_gev, config.spectral_index)
    print("   trigger-level effective volume [Mt of ice]:")
    for low, high in BANDS_GEV:
        inside = (energy >= low) & (energy < high)
        generated = n_generated * power_law_integral(low, high, config.spectral_index) / total
        v_eff_m3 = volume[inside].sum() / generated
        print(f"     {low:5.0f}-{high:<5.0f} GeV: {v_eff_m3 * 0.917e-6:7.2f}  ({inside.sum()} events)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100, help="simulated events per comparison")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    compare_with_oscnext(args.events, args.seed)
    deepcore_trigger(3 * args.events, args.seed + 1)


if __name__ == "__main__":
    main()
