"""Run a simulation chunk by chunk (in-process or through Dask) into a dataset directory.

Each chunk is simulated from its own seed stream (sim.simulate.chunk_rng) and written by
whichever worker ran it to its own part file; the main process records the chunks and
writes the manifest (``dataset.json``) last, with the total number of generated events.
So the dataset is byte-identical for any number of workers, and a run that fails or is
interrupted leaves no directory that looks complete (its part files are removed).
With ``--scheduler`` the workers write the part files themselves, so the output
directory must be on a filesystem they share with this machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from nurec.io.integrity import FileDigest
from nurec.io.parquet import DatasetWriter, chunk_filename, write_chunk
from nurec.parallel import ParallelOptions, map_chunks
from sim.config import SimulationConfig
from sim.simulate import chunk_sizes, dataset_metadata, detector_setup, simulate_chunk


@dataclass(frozen=True)
class ChunkTask:
    """One chunk to simulate and where to write it."""

    config: SimulationConfig
    index: int
    out_dir: str


@dataclass(frozen=True)
class ChunkResult:
    """What a finished chunk reports back."""

    index: int
    n_events: int
    n_generated: int
    digest: FileDigest  # of the bytes the worker wrote, recorded in the manifest


@dataclass(frozen=True)
class RunSummary:
    """Totals of a finished simulation run."""

    out_dir: Path
    n_events: int
    n_generated: int
    n_chunks: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.n_events / self.seconds if self.seconds > 0 else float("nan")


def simulate_chunk_to_file(task: ChunkTask) -> ChunkResult:
    """Simulate chunk ``task.index`` and write it as its part file; return its counts."""
    events, n_generated = simulate_chunk(task.config, task.index)
    metadata = dataset_metadata(task.config, n_generated)
    metadata["chunk"] = {"index": task.index, "n_generated": int(n_generated)}
    entry = write_chunk(Path(task.out_dir) / chunk_filename(task.index), events, metadata)
    return ChunkResult(task.index, entry.events, int(n_generated), entry.digest)


def run_simulation(
    config: SimulationConfig,
    out_dir: str | Path,
    options: ParallelOptions | None = None,
    overwrite: bool = False,
) -> RunSummary:
    """Simulate ``config`` into the dataset directory ``out_dir``; return the run's totals."""
    config.validate()
    detector_setup(config)  # unknown detector or bad geometry: fail before touching out_dir
    out_dir = Path(out_dir)
    sizes = chunk_sizes(config)
    tasks = [ChunkTask(config, index, str(out_dir)) for index in range(len(sizes))]
    start = time.perf_counter()
    n_generated = 0
    with DatasetWriter(out_dir, dataset_metadata(config, 0), overwrite=overwrite) as writer:
        try:
            def record(_: int, result: ChunkResult) -> None:
                nonlocal n_generated
                writer.record_chunk(result.index, result.n_events, result.digest)
                n_generated += result.n_generated

            map_chunks(simulate_chunk_to_file, tasks, options, units=sizes, unit="ev",
                       description=f"simulate {config.detector}", on_result=record)
        except BaseException:
            # Chunks finished by workers but not yet recorded must not survive either.
            for index in range(len(sizes)):
                (out_dir / chunk_filename(index)).unlink(missing_ok=True)
            raise
        writer.metadata = dataset_metadata(config, n_generated)
    return RunSummary(out_dir, config.n_events, n_generated, len(sizes), time.perf_counter() - start)
