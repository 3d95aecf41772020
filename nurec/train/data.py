"""Training data: events with truth -> graphs + targets, and a train/validation split by event id."""

from __future__ import annotations

import os
from dataclasses import dataclass

import awkward as ak
import numpy as np

from nurec.graph.features import FeatureConfig, FlatGraphs, events_to_graphs
from nurec.io.schema import SchemaError, event_problems
from nurec.io.sources import iter_events, source_metadata
from nurec.methods.contract import trained_for_record
from nurec.methods.registry import resolve_detector


@dataclass
class TrainingSet:
    """Graphs of usable events with their targets.

    ``targets`` columns: direction of travel x, y, z; log10 energy [GeV]; is_track.
    """

    graphs: FlatGraphs
    targets: np.ndarray
    event_id: np.ndarray
    run_id: np.ndarray

    def __len__(self) -> int:
        return len(self.event_id)

    def subset(self, index: np.ndarray) -> TrainingSet:
        """Return the events ``index``."""
        return TrainingSet(self.graphs.take(index), self.targets[index], self.event_id[index], self.run_id[index])


def read_events(path: str | os.PathLike, max_events: int = 0) -> ak.Array:
    """Return up to ``max_events`` events (0 = all) of an event source, in file order."""
    chunks, n = [], 0
    for chunk in iter_events(path):
        if max_events:
            chunk = chunk[: max_events - n]
        chunks.append(chunk)
        n += len(chunk)
        if max_events and n >= max_events:
            break
    if not chunks:
        raise ValueError(f"{path}: no events")
    return chunks[0] if len(chunks) == 1 else ak.concatenate(chunks)


def make_training_set(events: ak.Array, features: FeatureConfig) -> TrainingSet:
    """Return graphs and targets of the events that have usable hits (others are skipped)."""
    if "truth" not in events.fields:
        raise SchemaError("truth: training needs simulated events with a truth record")
    good = np.array([p is None for p in event_problems(events)], dtype=bool)
    events = events[good]
    truth = events.truth
    direction = np.stack([ak.to_numpy(truth[f]) for f in ("dir_x", "dir_y", "dir_z")], axis=1)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    targets = np.column_stack(
        [direction, np.log10(ak.to_numpy(truth.energy)), ak.to_numpy(truth.is_track).astype(np.float64)]
    ).astype(np.float32)
    return TrainingSet(
        events_to_graphs(events, features), targets,
        ak.to_numpy(events.event_id).astype(np.int64), ak.to_numpy(events.run_id).astype(np.int64),
    )


FEATURE_CHUNK_EVENTS = 5000
"""Events turned into graphs at a time by load_training_set: bright PeV events carry tens of
thousands of pulses, and 100,000 events of an E^-1 spectrum at once needed > 20 GB."""


def load_training_set(path: str | os.PathLike, features: FeatureConfig, max_events: int = 0) -> TrainingSet:
    """Return the training set of up to ``max_events`` events (0 = all) of a source, in file order.

    Same result as ``make_training_set(read_events(path, max_events), features)``, built
    ``FEATURE_CHUNK_EVENTS`` events at a time so that only the graphs, not the pulses, of all
    events are held in memory.
    """
    parts, n = [], 0
    for chunk in iter_events(path):
        if max_events:
            chunk = chunk[: max_events - n]
        for start in range(0, len(chunk), FEATURE_CHUNK_EVENTS):
            parts.append(make_training_set(chunk[start : start + FEATURE_CHUNK_EVENTS], features))
        n += len(chunk)
        if max_events and n >= max_events:
            break
    if not parts:
        raise ValueError(f"{path}: no events")
    return concatenate_training_sets(parts)


def concatenate_training_sets(parts: list[TrainingSet]) -> TrainingSet:
    """Return the events of ``parts``, in order, as one training set."""
    graphs = FlatGraphs.concatenate([p.graphs for p in parts])
    return TrainingSet(graphs, np.concatenate([p.targets for p in parts]),
                       np.concatenate([p.event_id for p in parts]), np.concatenate([p.run_id for p in parts]))


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Return the splitmix64 hash of uint64 values (a fixed, well-mixed bijection)."""
    x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def is_validation(event_id: np.ndarray, run_id: np.ndarray, val_fraction: float) -> np.ndarray:
    """Return True for events in the validation split: a hash of (run_id, event_id), not their order."""
    with np.errstate(over="ignore"):
        key = event_id.astype(np.uint64) ^ _splitmix64(run_id.astype(np.uint64))
    unit = (_splitmix64(key) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return unit < val_fraction


def dataset_trained_for(data_dir: str | os.PathLike) -> dict:
    """Return the ``trained_for`` record (detector name and hash, energy range) of a training dataset.

    The detector comes from the dataset metadata; the energy range from its simulation
    settings when it has them. Every model trained on the dataset stores this record, so it
    refuses events of other detectors.
    """
    metadata = source_metadata(str(data_dir))
    detector = metadata.get("detector")
    if not detector:
        raise ValueError(f"{data_dir}: dataset metadata names no detector; a model must know what it was "
                         "trained for (simulate or convert the data with nurec, which records it)")
    config = metadata.get("config") if isinstance(metadata.get("config"), dict) else {}
    energies = (config.get("energy_min_gev"), config.get("energy_max_gev"))
    energy_range = (float(energies[0]), float(energies[1])) if None not in energies else None
    return trained_for_record(resolve_detector(detector), energy_range)
