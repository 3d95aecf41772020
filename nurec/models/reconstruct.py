"""Inference: ``load_gnn("default" | path)`` -> a reconstructor with ``reconstruct(events)``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pandas as pd
import torch

from nurec.geometry import Geometry, get_geometry
from nurec.graph.features import FlatGraphs, events_to_graphs
from nurec.io.integrity import file_digest
from nurec.io.schema import empty_predictions, event_problems, finish_predictions, validate_events
from nurec.methods.contract import (
    ESTIMATES,
    MethodInfo,
    check_detector,
    detectors_of_record,
    energy_range_of_record,
)
from nurec.models.export import export_static_parts
from nurec.models.network import GraphNetwork
from nurec.models.serialize import load_network
from nurec.models.tasks import containment_radius_deg, kappa_of
from nurec.threads import torch_threads

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default"
DEFAULT_MODEL_FILE = DEFAULT_MODEL_DIR / "model.pt"
DEFAULT_MODEL_SHA256 = "b8fed5ae92ce4dedb3b80e36a600134cbd5ff271d4ae5168d1a1e11a3ebe67b3"
"""sha256 of the bundled model.pt: the package's own record, checked before the file is read."""
SMALL_BATCH_NODES = 2048
"""Batches with fewer nodes than this run on one thread: at batch 1 on a busy 2-core machine,
thread hand-offs made each call several times slower (5 vs 22 events/s, benchmarks/bench_gnn.py)."""


def resolve_model_path(model: str | os.PathLike) -> Path:
    """Return the file of a model given as "default", a model file, or a training run directory.

    The bundled model (by name or path) must match DEFAULT_MODEL_SHA256. Other files need no
    hash: they are read weights-only and checked (nurec.models.serialize), which runs no code.
    """
    if str(model) == "default":
        if not DEFAULT_MODEL_FILE.exists():
            raise FileNotFoundError(f"{DEFAULT_MODEL_FILE}: the bundled default model is missing")
        return _check_bundled(DEFAULT_MODEL_FILE)
    path = Path(model)
    if path.is_file() and path.resolve() == DEFAULT_MODEL_FILE:
        return _check_bundled(path)
    if path.is_dir():
        for name in ("model.pt", "best.pt", "last.pt"):
            if (path / name).exists():
                return path / name
        raise FileNotFoundError(f"{path}: no model.pt, best.pt or last.pt in this directory")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file")
    return path


def _check_bundled(path: Path) -> Path:
    if file_digest(path).sha256 != DEFAULT_MODEL_SHA256:
        raise ValueError(f"{path}: sha256 does not match the value nurec ships "
                         f"(nurec.models.reconstruct.DEFAULT_MODEL_SHA256); refusing to load it")
    return path


@torch.inference_mode()
def predict_outputs(network: GraphNetwork, graphs: FlatGraphs, batch_size: int = 512) -> np.ndarray:
    """Return the raw network outputs (n_events, 5) for graphs, in batches of events of similar size."""
    n = len(graphs.counts)
    outputs = np.zeros((n, 5), dtype=np.float32)
    order = np.argsort(graphs.counts, kind="stable")
    device = network.node_mean.device
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        batch = graphs.take(index)
        # Tiny batches run faster on one thread: thread hand-offs cost more than they save.
        with torch_threads(1 if len(batch.nodes) < SMALL_BATCH_NODES else None):
            out = network(*(torch.from_numpy(a).to(device) for a in (batch.nodes, batch.counts, batch.globals)))
        outputs[index] = out.cpu().numpy()
    return outputs


def outputs_to_columns(outputs: np.ndarray, kappa_scale: float) -> dict[str, np.ndarray]:
    """Return prediction columns (direction, energy, uncertainty, p_track, kappa) from raw outputs."""
    vector = torch.from_numpy(np.asarray(outputs[:, :3], dtype=np.float32))
    kappa = kappa_of(vector).numpy().astype(np.float64)
    direction = outputs[:, :3].astype(np.float64) / kappa[:, None]
    calibrated = kappa * kappa_scale
    return {
        "dir_x": direction[:, 0],
        "dir_y": direction[:, 1],
        "dir_z": direction[:, 2],
        "energy": np.power(10.0, outputs[:, 3].astype(np.float64)),
        "angular_uncertainty_deg": containment_radius_deg(calibrated),
        "p_track": 1.0 / (1.0 + np.exp(-outputs[:, 4].astype(np.float64))),
        "kappa": calibrated,
    }


OUTPUT_COLUMNS = ("dir_x", "dir_y", "dir_z", "energy", "angular_uncertainty_deg", "p_track", "kappa")


TRAINING_COMMAND = ("nurec simulate --detector {detector} --flavor nue numu nutau --interaction cc nc "
                    "--events 200000 --energy-range 100 1e6 --spectral-index 1 --seed 2026 --out DATA && "
                    "nurec train --data DATA --config nurec/models/default/train_config.toml --out RUN")
"""How a GNN is trained for a detector (the bundled model's recipe, MODEL_CARD.md)."""


class GnnReconstructor:
    """Graph neural network (DynEdge-style): direction with calibrated uncertainty, energy, track probability."""

    name = "gnn"

    def __init__(self, network: GraphNetwork, metadata: dict[str, Any], version: str, batch_size: int = 512,
                 threads: int | None = None, export: bool = False,
                 detector: Geometry | str | None = None):
        """``detector``: the detector the events come from; a model trained for another one refuses it."""
        self.metadata = metadata
        self.version = version
        if detector is not None:
            check_detector(self.describe(), get_geometry(detector) if isinstance(detector, str) else detector)
        self.network = network.eval()
        # Scripted static parts give the same outputs but measured no faster (benchmarks/bench_gnn.py), so off by default.
        self.inference_network = export_static_parts(self.network) if export else self.network
        self.batch_size = batch_size
        self.features = network.spec.features
        self.threads = threads  # torch threads while reconstructing (None: the process's), restored after

    def describe(self) -> MethodInfo:
        """Return what the model is and the detectors and energies it was trained for."""
        record = self.metadata.get("trained_for")
        summary = self.metadata.get("summary")
        validation = summary.get("val", {}) if isinstance(summary, dict) else {}
        return MethodInfo(
            self.name, self.version, (type(self).__doc__ or "").splitlines()[0], ESTIMATES,
            detectors_of_record(record), trained=True, training=TRAINING_COMMAND,
            energy_range_gev=energy_range_of_record(record),
            metrics={f"val.{k}": float(v) for k, v in validation.items() if isinstance(v, int | float)})

    def reconstruct(self, events: ak.Array) -> pd.DataFrame:
        """Return one prediction row per event; unusable events come back as failed rows."""
        validate_events(events)
        table = empty_predictions(ak.to_numpy(events.event_id), self.name)
        problems = event_problems(events)
        good = np.array([p is None for p in problems], dtype=bool)
        status = table["fit_status"].to_numpy(dtype=object)
        for i in np.flatnonzero(~good):
            status[i] = f"failed: {problems[i]}"
        columns = {name: np.full(len(events), np.nan) for name in OUTPUT_COLUMNS}
        if good.any():
            graphs = events_to_graphs(events[good] if not good.all() else events, self.features)
            with torch_threads(self.threads):
                outputs = predict_outputs(self.inference_network, graphs, self.batch_size)
            rows = np.flatnonzero(good)
            finite = np.all(np.isfinite(outputs), axis=1)
            for name, values in outputs_to_columns(outputs, float(self.network.kappa_scale)).items():
                columns[name][rows] = np.where(finite, values, np.nan)
            status[rows[~finite]] = "failed: network output is not finite"
        for name, values in columns.items():
            table[name] = values
        table["fit_status"] = status
        return finish_predictions(table)


def load_gnn(model: str | os.PathLike = "default", batch_size: int = 512, threads: int | None = None,
               export: bool = False, detector: Geometry | str | None = None) -> GnnReconstructor:
    """Return a GNN reconstructor for the bundled default model, a model file or a run directory.

    ``export``: run the TorchScript-frozen static parts (nurec.models.export). Same outputs; on 2 CPU
    threads it measured no faster than eager (benchmarks/bench_gnn.py), so the default is eager.
    """
    path = resolve_model_path(model)
    network, metadata = load_network(path)
    name = metadata.get("name", path.stem)
    return GnnReconstructor(network, metadata, f"{name}-{file_digest(path).sha256[:12]}", batch_size, threads, export, detector)
