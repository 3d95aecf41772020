"""CNN energy regressor: a small 2-D CNN on detector-aware images of the hits, predicting log10 E.

Images (cleaned hits, nurec.baselines.cleaning):
- IceCube family, "strings-depth": one pixel per optical module, rows = floor (depth),
  columns = string; channels: log(1 + charge), first-hit time, charge-weighted mean
  time (both relative to the event's charge-weighted mean time, in µs), log(1 + hits).
- KM3NeT family, "z-time" (as OrcaSong's z-t projection, Reck et al., JINST 16 (2021)
  C10011): rows = floor, columns = 25 ns time bins from 100 ns before the first cleaned
  hit; channels: log(1 + charge), log(1 + hits).
Two event scalars (log10 total charge, log10 hit modules) join the pooled CNN features.
Training: Adam on mean squared error of log10 E, validation split, early stopping.
Weights are a state_dict saved with torch.save and read with torch.load(weights_only=True),
which rebuilds tensors only and refuses any other pickled object, so a weights file cannot
run code (the torch version floor in pyproject.toml keeps that reader free of its known
holes); the tensors' names and shapes are checked against the network before use.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import awkward as ak
import numpy as np
import pandas as pd
import torch
from torch import nn

from nurec.baselines.artifacts import (
    PICKLE_SUFFIXES,
    TRAINING_COMMAND,
    ArtifactError,
    claim_artifact,
)
from nurec.baselines.cleaning import clean_hits
from nurec.baselines.common import (
    detector_setup,
    finish,
    start_predictions,
    trained_info,
    usable_hits,
)
from nurec.geometry import DEFAULT_DETECTOR, Geometry
from nurec.methods.contract import DetectorRef, MethodInfo
from nurec.safe_load import WeightsFileError, read_weights
from nurec.threads import torch_threads

ARTIFACT = "cnn_energy"
TIME_UNIT_NS = 1000.0
ZT_BIN_NS = 25.0
ZT_BINS = 40
ZT_START_NS = -100.0
TARGET_OFFSET = 4.0  # the network predicts log10(E / GeV) - 4


@dataclass(frozen=True)
class ImageSpec:
    """Shape and kind of the event images of one detector."""

    kind: str
    channels: int
    height: int
    width: int

    @classmethod
    def for_geometry(cls, geometry: Geometry) -> ImageSpec:
        floors = int(geometry.module_floor.max()) + 1
        if geometry.family == "icecube":
            return cls("strings-depth", 4, floors, len(np.unique(geometry.module_string)))
        return cls("z-time", 2, floors, ZT_BINS)


def event_images(events: ak.Array, geometry: Geometry, spec: ImageSpec,
                 medium_name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (images (n, C, H, W) float32, scalars (n, 2) float32, failure reasons)."""
    hits, reasons = usable_hits(events)
    known = np.isin(hits["sensor_id"], geometry.sensor_id)
    if not known.all():
        reasons[np.unique(hits.event_index[~known])] = f"hits.sensor_id: not in the {geometry.name} geometry"
        hits = hits.select(known & (reasons == "")[hits.event_index])
    hits = clean_hits(hits, medium_name)
    n, (c, h, w) = hits.n_events, (spec.channels, spec.height, spec.width)
    module = geometry.sensor_module_index[geometry.sensor_lookup(hits["sensor_id"])]
    row = geometry.module_floor[module]
    q = np.maximum(hits["charge"], 0.0)
    total_q = hits.segment_sum(q)
    images = np.zeros((n, c, h, w), dtype=np.float64)
    if spec.kind == "strings-depth":
        strings = np.unique(geometry.module_string)
        col = np.searchsorted(strings, geometry.module_string[module])
        with np.errstate(invalid="ignore", divide="ignore"):
            t_ref = hits.segment_sum(q * hits["t"]) / total_q
        t_rel = (hits["t"] - t_ref[hits.event_index]) / TIME_UNIT_NS
        pixel = (hits.event_index * h + row) * w + col
        size = n * h * w
        charge = np.bincount(pixel, weights=q, minlength=size)
        count = np.bincount(pixel, minlength=size).astype(float)
        first = np.full(size, np.inf)
        np.minimum.at(first, pixel, t_rel)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_t = np.bincount(pixel, weights=q * t_rel, minlength=size) / charge
        hit = count > 0
        images[:, 0] = np.log1p(charge).reshape(n, h, w)
        images[:, 1] = np.where(hit, first, 0.0).reshape(n, h, w)
        images[:, 2] = np.where(hit & np.isfinite(mean_t), mean_t, 0.0).reshape(n, h, w)
        images[:, 3] = np.log1p(count).reshape(n, h, w)
    else:
        t_first = hits.segment_min(hits["t"])
        col = np.floor((hits["t"] - t_first[hits.event_index] - ZT_START_NS) / ZT_BIN_NS).astype(int)
        inside = (col >= 0) & (col < w)
        pixel = ((hits.event_index * h + row) * w + col)[inside]
        size = n * h * w
        images[:, 0] = np.log1p(np.bincount(pixel, weights=q[inside], minlength=size)).reshape(n, h, w)
        images[:, 1] = np.log1p(np.bincount(pixel, minlength=size)).reshape(n, h, w)
    key = np.unique(hits.event_index.astype(np.int64) * (geometry.n_modules + 1) + module)
    n_modules = np.bincount(key // (geometry.n_modules + 1), minlength=n)
    with np.errstate(divide="ignore"):
        scalars = np.column_stack([np.log10(np.maximum(total_q, 1e-3)), np.log10(np.maximum(n_modules, 1))])
    return images.astype(np.float32), scalars.astype(np.float32), reasons


class EnergyCNN(nn.Module):
    """Small 2-D CNN: three 3×3 conv layers with two 2×2 poolings, mean+max pooling, MLP with scalars."""

    def __init__(self, in_channels: int, width: int = 16, n_scalars: int = 2):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Linear(4 * width + n_scalars, 64), nn.ReLU(), nn.Linear(64, 1))

    def forward(self, images: torch.Tensor, scalars: torch.Tensor) -> torch.Tensor:
        x = self.features(images)
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3)), scalars], dim=1)
        return self.head(pooled).squeeze(1)


@dataclass
class TrainSettings:
    """CNN training settings."""

    epochs: int = 40
    patience: int = 5
    batch_size: int = 64
    learning_rate: float = 2e-3
    validation_fraction: float = 0.2
    seed: int = 0
    width: int = 16
    threads: int = 2  # torch threads while training (restored afterwards)


def train_cnn(images: np.ndarray, scalars: np.ndarray, log10_energy: np.ndarray,
              settings: TrainSettings) -> tuple[EnergyCNN, dict]:
    """Return (the trained CNN with the best validation loss, training history and metrics).

    Runs on ``settings.threads`` torch threads; the caller's thread count is restored.
    """
    with torch_threads(settings.threads):
        return _train_cnn(images, scalars, log10_energy, settings)


def _train_cnn(images: np.ndarray, scalars: np.ndarray, log10_energy: np.ndarray,
               settings: TrainSettings) -> tuple[EnergyCNN, dict]:
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    order = rng.permutation(len(images))
    n_val = int(round(settings.validation_fraction * len(images)))
    val, train = order[:n_val], order[n_val:]
    x = torch.from_numpy(images)
    s = torch.from_numpy(scalars)
    y = torch.from_numpy((log10_energy - TARGET_OFFSET).astype(np.float32))
    model = EnergyCNN(images.shape[1], settings.width, scalars.shape[1])
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    history: list[dict] = []
    best_loss, best_state, stale = np.inf, None, 0
    for epoch in range(settings.epochs):
        model.train()
        permutation = train[rng.permutation(len(train))]
        train_loss = 0.0
        for start in range(0, len(permutation), settings.batch_size):
            batch = torch.from_numpy(permutation[start:start + settings.batch_size])
            optimiser.zero_grad()
            loss = nn.functional.mse_loss(model(x[batch], s[batch]), y[batch])
            loss.backward()
            optimiser.step()
            train_loss += float(loss.detach()) * len(batch)
        val_pred = predict_log10_energy(model, images[val], scalars[val])
        val_loss = float(np.mean((val_pred - log10_energy[val]) ** 2))
        history.append({"epoch": epoch, "train_mse": train_loss / len(train), "val_mse": val_loss})
        if val_loss < best_loss - 1e-5:
            best_loss, stale = val_loss, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= settings.patience:
                break
    model.load_state_dict(best_state)
    return model, {"history": history, "best_val_mse": best_loss, "n_train": int(len(train)),
                   "n_validation": int(n_val), "validation_index": val.tolist()}


@torch.no_grad()
def predict_log10_energy(model: EnergyCNN, images: np.ndarray, scalars: np.ndarray,
                         batch_size: int = 256) -> np.ndarray:
    """Return the model's log10 E [GeV] for each image."""
    model.eval()
    out = [model(torch.from_numpy(images[i:i + batch_size]), torch.from_numpy(scalars[i:i + batch_size]))
           for i in range(0, len(images), batch_size)]
    return (torch.cat(out).numpy().astype(np.float64) + TARGET_OFFSET) if out else np.zeros(0)


class CnnEnergy:
    """CNN energy regressor as a registry method (weights from nurec/baselines/trained by default)."""

    name = "cnn-energy"
    version = "1.0"

    def __init__(self, detector: str | Geometry = DEFAULT_DETECTOR, model: str | os.PathLike | None = None,
                 trained: bool = True, width: int = 16, threads: int | None = None):
        """``model``: weights written by save(); default: the shipped ones. ``threads``: torch
        threads while reconstructing (None: the process's setting), restored afterwards.

        Raises DetectorMismatch before loading if the weights are for another detector.
        """
        self.setup = detector_setup(detector)
        self.threads = threads
        self.spec = ImageSpec.for_geometry(self.setup.geometry)
        self.model = EnergyCNN(self.spec.channels, width)
        path = claim_artifact(self, ARTIFACT, model, trained, self.setup.geometry)
        if path is not None:
            self.load(path)

    def describe(self) -> MethodInfo:
        """Return what the regressor is and the detectors its weights are valid for."""
        return trained_info(self, ("energy",), self.trained_for, TRAINING_COMMAND)

    def images(self, events: ak.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (images, scalars, failure reasons) of ``events`` for this detector."""
        return event_images(events, self.setup.geometry, self.spec, self.setup.medium.name)

    def reconstruct(self, events: ak.Array) -> pd.DataFrame:
        """Return one prediction row per event with ``energy`` [GeV] from the CNN."""
        images, scalars, reasons = self.images(events)
        table = start_predictions(events, self.name, reasons)
        with torch_threads(self.threads):
            table["energy"] = 10.0 ** predict_log10_energy(self.model, images, scalars)
        return finish(table)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the state_dict (torch.save) and an image-spec JSON beside it; return the path."""
        path = Path(path)
        torch.save(self.model.state_dict(), path)
        path.with_suffix(".json").write_text(json.dumps({"spec": asdict(self.spec),
                                                         "detector": DetectorRef.of(self.setup.geometry).to_dict()},
                                                        indent=2))
        return path

    def load(self, path: str | os.PathLike) -> CnnEnergy:
        """Load a state_dict with torch.load(weights_only=True); return self.

        ArtifactError (one line naming the file) for a file that is not this network's weights;
        a pickle with other objects is refused by the weights-only reader before anything runs.
        """
        self.model.load_state_dict(load_state_dict(path, self.model))
        self.model.eval()
        return self


def load_state_dict(path: str | os.PathLike, model: nn.Module) -> dict[str, torch.Tensor]:
    """Return the state_dict in ``path`` (weights only) after checking its names and shapes against ``model``."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ArtifactError(f"{path}: pickle/joblib files are refused (loading one can run code)")
    if not path.is_file():
        raise ArtifactError(f"{path}: no such CNN weights file")
    try:
        state = read_weights(path)
    except WeightsFileError as err:
        raise ArtifactError(str(err)) from None
    expected = model.state_dict()
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ArtifactError(f"{path}: not a state_dict of tensors")
    if set(state) != set(expected):
        raise ArtifactError(f"{path}: tensor names differ from this CNN's "
                            f"(missing {sorted(set(expected) - set(state))[:3]}, "
                            f"unexpected {sorted(map(str, set(state) - set(expected)))[:3]})")
    for name, tensor in expected.items():
        if state[name].shape != tensor.shape or state[name].dtype != tensor.dtype:
            raise ArtifactError(f"{path}: {name} is {state[name].dtype} {tuple(state[name].shape)}, "
                                f"expected {tensor.dtype} {tuple(tensor.shape)}")
        if tensor.is_floating_point() and not torch.isfinite(state[name]).all():
            raise ArtifactError(f"{path}: {name} has non-finite values")
    return state


make_cnn_energy = CnnEnergy
"""Registry factory: CnnEnergy(detector=..., model=PATH or the shipped weights)."""
