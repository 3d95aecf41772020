"""Simulate one chunk of a dataset: deterministic in (config, chunk index) alone.

Chunk i draws from its own seed stream (SeedSequence(seed).spawn(n_chunks)[i]) and keeps
generating batches until it has its quota of triggered events, so a dataset is
byte-identical however many workers produce it.
"""

from __future__ import annotations

from dataclasses import replace

import awkward as ak
import numpy as np

from nurec.geometry import Geometry, get_geometry
from nurec.physics.medium import Medium, get_medium
from nurec.physics.response import RESPONSES, DetectorResponse
from nurec.ragged import RaggedEvents
from sim.config import SimulationConfig
from sim.detector import simulate_hit_columns
from sim.generator import generate_primaries

SIMULATOR_VERSION = "0.1.0"


def chunk_sizes(config: SimulationConfig) -> list[int]:
    """Return the number of triggered events each chunk must produce."""
    full, rest = divmod(config.n_events, config.chunk_events)
    return [config.chunk_events] * full + ([rest] if rest else [])


def chunk_rng(config: SimulationConfig, chunk_index: int) -> np.random.Generator:
    """Return the independent random generator of chunk ``chunk_index``."""
    return np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(chunk_index,)))


def detector_setup(config: SimulationConfig) -> tuple[Geometry, Medium, DetectorResponse]:
    """Return the geometry, medium and sensor response the config asks for."""
    geometry = get_geometry(config.detector)
    response = replace(RESPONSES[geometry.family], **config.response_overrides)
    return geometry, get_medium(geometry.medium), response


def simulate_chunk(config: SimulationConfig, chunk_index: int) -> tuple[ak.Array, int]:
    """Return (triggered events of chunk ``chunk_index`` with ids, number generated)."""
    quota = chunk_sizes(config)[chunk_index]
    geometry, medium, response = detector_setup(config)
    rng = chunk_rng(config, chunk_index)
    pieces: list[RaggedEvents] = []
    n_triggered = 0
    n_generated = 0
    max_batches = 10_000  # guards against settings that never trigger
    for _ in range(max_batches):
        primaries = generate_primaries(config.batch_events, config, geometry, medium, rng)
        events, source_index = simulate_hit_columns(primaries, geometry, medium, response, rng, noise=config.noise)
        needed = quota - n_triggered
        if len(events) >= needed:
            events = events.take(np.arange(needed))
            # Count generated events up to and including the last one kept.
            n_generated += int(source_index[needed - 1]) + 1 if needed > 0 else 0
            pieces.append(events)
            n_triggered += needed
            break
        n_generated += len(primaries)
        pieces.append(events)
        n_triggered += len(events)
    else:
        raise RuntimeError(
            f"chunk {chunk_index}: only {n_triggered} of {quota} events triggered after "
            f"{max_batches * config.batch_events} generated; check energy range and detector"
        )
    columns = RaggedEvents.concatenate(pieces)
    first_id = chunk_index * config.chunk_events
    event_id = np.arange(first_id, first_id + len(columns), dtype=np.int64)
    run_id = np.full(len(columns), config.seed, dtype=np.int64)
    truth = [name for name in columns.event_columns if name.startswith("truth.")]
    events = columns.with_event_columns(event_id=event_id, run_id=run_id)
    return events.to_awkward("hits", event_fields=["event_id", "run_id", "hits", *truth, "weight"]), n_generated


def dataset_metadata(config: SimulationConfig, n_generated: int) -> dict:
    """Return the metadata stored with a simulated dataset."""
    geometry, medium, response = detector_setup(config)
    return {
        "source": "nurec-sim",
        "simulator_version": SIMULATOR_VERSION,
        "detector": geometry.describe(),
        "medium": medium.name,
        "config": config.to_dict(),
        "response": response.__dict__,
        "seed": config.seed,
        "n_generated": int(n_generated),
        "n_events": int(config.n_events),
        "weight_convention": (
            "OneWeight [GeV cm^2 sr]: expected events = sum(weight * flux(E) * livetime) / n_generated"
        ),
    }


def simulate_events(config: SimulationConfig) -> tuple[ak.Array, dict]:
    """Return (all triggered events of ``config`` in memory, dataset metadata). For small samples."""
    config.validate()
    chunks, n_generated = [], 0
    for index in range(len(chunk_sizes(config))):
        events, generated = simulate_chunk(config, index)
        chunks.append(events)
        n_generated += generated
    events = ak.concatenate(chunks) if len(chunks) > 1 else chunks[0]
    return events, dataset_metadata(config, n_generated)
