"""``nurec simulate``: simulate a dataset (serial for now; chunked/Dask runner to come)."""

from __future__ import annotations

import argparse
import time

from nurec.io.parquet import DatasetWriter
from sim.config import SimulationConfig
from sim.simulate import chunk_sizes, dataset_metadata, simulate_chunk


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("simulate", help="simulate neutrino events into a dataset directory")
    parser.add_argument("--detector", default="icecube86")
    parser.add_argument("--flavor", nargs="+", default=["numu"], choices=["nue", "numu", "nutau"])
    parser.add_argument("--interaction", nargs="+", default=["cc"], type=str.lower, choices=["cc", "nc"])
    parser.add_argument("--events", type=int, default=1000, help="triggered events to write")
    parser.add_argument("--energy-range", nargs=2, type=float, default=[1e3, 1e5], metavar=("EMIN", "EMAX"))
    parser.add_argument("--spectral-index", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", required=True)
    parser.add_argument("--overwrite", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = SimulationConfig(
        detector=args.detector, flavors=tuple(args.flavor),
        interactions=tuple(i.upper() for i in args.interaction), n_events=args.events,
        energy_min_gev=args.energy_range[0], energy_max_gev=args.energy_range[1],
        spectral_index=args.spectral_index, seed=args.seed,
    ).validate()
    start = time.perf_counter()
    n_generated = 0
    with DatasetWriter(args.out, {}, overwrite=args.overwrite) as writer:
        for index in range(len(chunk_sizes(config))):
            events, generated = simulate_chunk(config, index)
            n_generated += generated
            writer.metadata = dataset_metadata(config, n_generated)
            writer.write(events, index)
    elapsed = time.perf_counter() - start
    print(f"wrote {config.n_events} events ({n_generated} generated) to {args.out} in {elapsed:.1f} s")
    return 0
