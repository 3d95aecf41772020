"""``nurec tables build|ice-layers|check``: build the photon tables of a medium or the ice layer
table, or check the shipped ones."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from nurec.physics import ice_layers
from nurec.physics.optics import MEDIA
from nurec.physics.photon_mc import SOURCES
from nurec.physics.tables import (
    DEFAULT_PHOTONS,
    DEFAULT_SEED,
    TABLE_DIR,
    SensorGeometry,
    build_medium,
    expected_npe,
    load_table,
    read_manifest,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tables", help="build or check the photon tables",
                                   description="Photon tables (expected charge and delay distributions from "
                                               "the photon Monte Carlo) for water and ice.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    build = actions.add_parser("build", help="build one medium's tables (cascade and track)")
    build.add_argument("--medium", required=True, choices=MEDIA)
    build.add_argument("--out", default=str(TABLE_DIR), help="directory for {medium}.npz and tables.json "
                                                             "(default: the package's)")
    build.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    build.add_argument("--photons", type=int, help="photons per source, a multiple of 100000 "
                                                   f"(default: {DEFAULT_PHOTONS})")
    build.set_defaults(func=run_build)
    layers = actions.add_parser("ice-layers", help="write the ice layer table from GraphNeT's ice_transparency.parquet",
                                description="Copy SPICE Mie's depth-dependent ice (GraphNeT's table) into the "
                                            "package, with its SHA-256 in tables.json (nurec.physics.ice_layers).")
    layers.add_argument("--from", dest="source", required=True,
                        help=f"the source table (in the repository: {ice_layers.SOURCE_HINT})")
    layers.add_argument("--out", default=str(TABLE_DIR), help=f"directory for {ice_layers.LAYER_FILE} and "
                                                              "tables.json (default: the package's)")
    layers.set_defaults(func=run_ice_layers)
    check = actions.add_parser("check", help="verify the tables' hashes and print a summary")
    check.add_argument("--dir", default=str(TABLE_DIR), help="table directory (default: the package's)")
    check.set_defaults(func=run_check)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def run_build(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    path = build_medium(args.medium, args.out, args.seed, args.photons,
                        progress=lambda line: print(line, file=sys.stderr, flush=True))
    entry = read_manifest(args.out)[args.medium]
    print(f"{path}: {entry['bytes'] / 1e6:.2f} MB, sha256 {entry['sha256']}, "
          f"built in {time.perf_counter() - started:.0f} s")
    return 0


def run_ice_layers(args: argparse.Namespace) -> int:
    path = ice_layers.build_layers(args.source, args.out)
    entry = read_manifest(args.out)[ice_layers.MANIFEST_KEY]
    print(f"{path}: {entry['layers']} layers, {entry['bytes']} bytes, sha256 {entry['sha256']}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    failed = 0
    manifest = read_manifest(args.dir)
    for medium in MEDIA:
        try:
            tables = [load_table(medium, source, args.dir) for source in SOURCES]
        except (OSError, ValueError) as err:
            print(f"{medium}: FAILED: {err}")
            failed += 1
            continue
        entry = manifest[medium]
        head_on = np.array([-1.0, 0.0, 0.0])  # facing the direct light
        cascade = float(expected_npe(tables[0], SensorGeometry(np.array([50.0]), np.array([0.75]), head_on))[0])
        track = float(expected_npe(tables[1], SensorGeometry(np.array([50.0]), np.array([0.0]), head_on))[0])
        print(f"{medium}: ok, {entry['file']} {entry['bytes'] / 1e6:.2f} MB, sha256 {entry['sha256'][:16]}…, "
              f"{entry['photons_per_source']} photons/source, seed {entry['seed']}, sensor {entry['sensor']}; "
              f"head-on at 50 m: cascade on the cone {cascade:.3g} pe/GeV, track {track:.3g} pe")
    try:
        layers = ice_layers.load_layers(args.dir)
    except (OSError, ValueError) as err:
        print(f"ice layers: FAILED: {err}")
        return 1
    print(f"ice layers: ok, {len(layers.depth_m)} layers {layers.depth_m[0]:g}-{layers.depth_m[-1]:g} m, "
          f"sha256 {manifest[ice_layers.MANIFEST_KEY]['sha256'][:16]}…")
    return 1 if failed else 0
