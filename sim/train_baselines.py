"""Train every classical method that needs training and write the artifacts plus their card.

    python -m sim.train_baselines --out nurec/baselines/trained

Simulates (seeded) an energy sample (all flavours, CC+NC, E^-1 from 1 TeV to 1 PeV) for
the charge calibration and the CNN, and a direction sample (νμ CC, E^-2, 1-100 TeV) for
the BDT angular-error estimator; writes charge_energy.json, cnn_energy.pt,
bdt_uncertainty.npz (trees as numeric arrays, no pickle) and card.json (command,
settings, validation metrics, sha256). Training into the bundled folder prints the new
``SHIPPED_SHA256`` table for nurec/baselines/artifacts.py: the package loads its bundled
artifacts only when their hashes match that table.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import awkward as ak
import numpy as np

from nurec.baselines.artifacts import TRAINED_DIR, read_card, update_card
from nurec.baselines.bdt_uncertainty import BdtUncertainty
from nurec.baselines.charge_energy import ChargeEnergy
from nurec.baselines.cnn_energy import CnnEnergy, TrainSettings, predict_log10_energy, train_cnn
from nurec.evaluate.metrics import coverage, resolution_and_bias
from nurec.geometry import get_geometry
from nurec.methods.contract import trained_for_record
from sim.config import SimulationConfig
from sim.simulate import simulate_events


def energy_sample_config(detector: str, n_events: int, seed: int) -> SimulationConfig:
    """Return the simulation settings of the energy training sample."""
    return SimulationConfig(detector=detector, flavors=("nue", "numu", "nutau"), interactions=("CC", "NC"),
                            energy_min_gev=1e3, energy_max_gev=1e6, spectral_index=1.0,
                            n_events=n_events, seed=seed)


def direction_sample_config(detector: str, n_events: int, seed: int) -> SimulationConfig:
    """Return the simulation settings of the BDT (direction) training sample."""
    return SimulationConfig(detector=detector, flavors=("numu",), interactions=("CC",),
                            energy_min_gev=1e3, energy_max_gev=1e5, spectral_index=2.0,
                            n_events=n_events, seed=seed)


def train_energy(out: Path, detector: str, n_events: int, seed: int, epochs: int, common: dict) -> dict:
    """Train the charge calibration and the CNN on one sample; return validation metrics."""
    config = energy_sample_config(detector, n_events, seed)
    events, _ = simulate_events(config)
    log10_e = np.log10(ak.to_numpy(events.truth.energy).astype(float))
    cnn = CnnEnergy(detector=detector, trained=False)
    start = time.perf_counter()
    images, scalars, reasons = cnn.images(events)
    ok = np.flatnonzero(reasons == "")
    model, info = train_cnn(images[ok], scalars[ok], log10_e[ok], TrainSettings(epochs=epochs, seed=seed))
    cnn.model = model
    cnn_seconds = time.perf_counter() - start
    validation = ok[np.asarray(info.pop("validation_index"), dtype=int)]
    train = np.setdiff1d(ok, validation)
    charge = ChargeEnergy(detector=detector, trained=False).fit(events[train])
    charge_log10, _ = charge.predict_log10_energy(events[validation])
    cnn_log10 = predict_log10_energy(model, images[validation], scalars[validation])
    metrics = {
        "validation_events": int(len(validation)),
        "charge_energy_log10_resolution": resolution_and_bias(charge_log10 - log10_e[validation])[0],
        "cnn_energy_log10_resolution": resolution_and_bias(cnn_log10 - log10_e[validation])[0],
    }
    sample = {"simulation": config.to_dict(), "n_train": int(len(train))}
    charge.save(out / "charge_energy.json")
    update_card(out, "charge_energy", "charge_energy.json", {**sample, "metrics": {
        "log10_resolution_validation": metrics["charge_energy_log10_resolution"]}}, common)
    cnn.save(out / "cnn_energy.pt")
    update_card(out, "cnn_energy", "cnn_energy.pt", {**sample, "training": info, "train_seconds": cnn_seconds,
                                                     "metrics": {"log10_resolution_validation":
                                                                 metrics["cnn_energy_log10_resolution"]}},
                common)
    return metrics


def train_bdt(out: Path, detector: str, n_events: int, seed: int, n_jobs: int | None, common: dict) -> dict:
    """Fit the likelihood on the direction sample, train and calibrate the BDT; return metrics."""
    config = direction_sample_config(detector, n_events, seed)
    events, _ = simulate_events(config)
    bdt = BdtUncertainty(detector=detector, trained=False, n_jobs=n_jobs, seed=seed)
    start = time.perf_counter()
    fits = bdt.likelihood.reconstruct(events)
    fit_seconds = time.perf_counter() - start
    metrics = bdt.fit(events, fits)
    sigma = bdt.predict_uncertainty_deg(events, fits)
    truth = np.column_stack([ak.to_numpy(events.truth[k]) for k in ("dir_x", "dir_y", "dir_z")])
    from nurec.evaluate.metrics import angular_distance_deg

    error = angular_distance_deg(fits[["dir_x", "dir_y", "dir_z"]].to_numpy(float), truth)
    metrics.update({"likelihood_fit_seconds": fit_seconds,
                    "likelihood_median_error_deg": float(np.nanmedian(error)),
                    "coverage_training_events_in_sample": coverage(error, sigma)})
    bdt.save(out / "bdt_uncertainty.npz")
    update_card(out, "bdt_uncertainty", "bdt_uncertainty.npz",
                {"simulation": config.to_dict(), "metrics": metrics,
                 "format": "nurec-bdt-uncertainty .npz: the boosted trees as numeric arrays "
                           "(nurec.baselines.trees) and a JSON header, read without pickle"}, common)
    return metrics


def main(argv: list[str] | None = None) -> int:
    """Train the requested artifacts into --out; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m sim.train_baselines", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(TRAINED_DIR))
    parser.add_argument("--detector", default="icecube86")
    parser.add_argument("--energy-events", type=int, default=4000)
    parser.add_argument("--direction-events", type=int, default=1200)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=101)
    parser.add_argument("--only", choices=["energy", "bdt"], default=None)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from nurec.version import __version__

    # Both samples span 1 TeV-1 PeV at most (energy_sample_config, direction_sample_config).
    trained = trained_for_record(get_geometry(args.detector), (1e3, 1e6))
    common = {"detector": args.detector, "trained_for": trained, "nurec_version": __version__,
              "python": platform.python_version(),
              "command": "python -m sim.train_baselines " + shlex.join(sys.argv[1:] if argv is None else argv)}
    if args.only in (None, "energy"):
        start = time.perf_counter()
        print("energy:", train_energy(out, args.detector, args.energy_events, args.seed, args.epochs, common),
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    if args.only in (None, "bdt"):
        start = time.perf_counter()
        print("bdt:", train_bdt(out, args.detector, args.direction_events, args.seed + 1, args.jobs, common),
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    if out.resolve() == TRAINED_DIR:
        table = {entry["file"]: entry["sha256"] for entry in read_card(out)["files"].values()}
        print("bundled artifacts changed: set SHIPPED_SHA256 in nurec/baselines/artifacts.py to",
              json.dumps(table, indent=4, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
