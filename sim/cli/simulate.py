"""``nurec simulate``: simulate a dataset, chunk by chunk, in-process or through Dask."""

from __future__ import annotations

import argparse
import sys

from nurec.geometry import GeometryError
from nurec.io.parquet import DatasetError
from nurec.parallel import ParallelOptions
from sim.config import ConfigError, SimulationConfig
from sim.runner import run_simulation


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate", help="simulate neutrino events into a dataset directory",
        description="Simulate triggered neutrino events into a directory of Parquet chunks. Options "
                    "given on the command line override those of --config.",
    )
    parser.add_argument("--config", help="TOML file with a [simulation] table "
                                         "(default: the defaults of sim.config.SimulationConfig)")
    parser.add_argument("--detector", help="built-in detector name or geometry table (default icecube86)")
    parser.add_argument("--flavor", nargs="+", choices=["nue", "numu", "nutau"], help="default numu")
    parser.add_argument("--interaction", nargs="+", type=str.lower, choices=["cc", "nc"], help="default cc")
    parser.add_argument("--events", type=int, help="triggered events to write (default 1000)")
    parser.add_argument("--energy-range", nargs=2, type=float, metavar=("EMIN", "EMAX"),
                        help="neutrino energy range [GeV] (default 1e3 1e5)")
    parser.add_argument("--spectral-index", type=float, help="generate E^-index (default 2)")
    parser.add_argument("--directions", choices=["isotropic", "upgoing"], help="default isotropic")
    parser.add_argument("--no-noise", action="store_true", help="no dark-count / 40K noise hits")
    parser.add_argument("--seed", type=int, help="random seed (default 1)")
    parser.add_argument("--chunk-events", type=int, help="events per chunk / part file (default 10000)")
    parser.add_argument("--out", required=True, help="output dataset directory")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    parser.add_argument("--workers", type=int,
                        help="local Dask worker processes (default: one per core; 0 = in-process)")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                        help="use an existing Dask scheduler (its workers must see --out; default: none)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> SimulationConfig:
    """Return the simulation settings: --config file (or defaults) overridden by given options."""
    config = SimulationConfig.from_toml(args.config) if args.config else SimulationConfig()
    changes = {}
    if args.detector is not None:
        changes["detector"] = args.detector
    if args.flavor is not None:
        changes["flavors"] = tuple(args.flavor)
    if args.interaction is not None:
        changes["interactions"] = tuple(i.upper() for i in args.interaction)
    if args.events is not None:
        changes["n_events"] = args.events
    if args.energy_range is not None:
        changes["energy_min_gev"], changes["energy_max_gev"] = args.energy_range
    if args.spectral_index is not None:
        changes["spectral_index"] = args.spectral_index
    if args.directions is not None:
        changes["directions"] = args.directions
    if args.no_noise:
        changes["noise"] = False
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.chunk_events is not None:
        changes["chunk_events"] = args.chunk_events
    return config.with_updates(**changes)


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
        options = ParallelOptions(workers=args.workers, scheduler=args.scheduler, progress=not args.quiet)
        summary = run_simulation(config, args.out, options, overwrite=args.overwrite)
    except (ConfigError, GeometryError, DatasetError, OSError, RuntimeError) as err:
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"nurec simulate: error: {message}", file=sys.stderr)
        return 1
    print(f"wrote {summary.n_events} events ({summary.n_generated} generated, {summary.n_chunks} chunks) "
          f"to {summary.out_dir} in {summary.seconds:.1f} s ({summary.events_per_second:.0f} events/s)")
    return 0
