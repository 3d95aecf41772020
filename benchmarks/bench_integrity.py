"""What checking chunk checksums costs when a dataset is written and read.

    python benchmarks/bench_integrity.py [--events 100000] [--chunk-events 10000] [--repeat 3]

Builds a synthetic dataset (seeded: 60 hits per event, random positions, times and
charges; the hits of real events compress a little better) in a temporary directory
and prints, best of ``--repeat``:
- SHA-256 rate of this machine [GB/s] (hashlib on the chunk bytes in memory);
- write: ``write_dataset`` (which hashes each chunk in memory) against pyarrow alone;
- read: ``read_dataset`` as it is (size + SHA-256 of each chunk, then Parquet and the
  event checks) against the same with the chunk check switched off, and the extra in %;
- the same for an ``inspect``-style read of two columns, where hashing the whole file
  costs the most relative to what is decoded.
File reads come from the page cache after the first pass (the files were just written),
so the numbers are the CPU cost of checking, not the disk's.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

import awkward as ak
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from nurec.io import parquet
from nurec.io.parquet import events_from_hits_dataframe, load_manifest, read_dataset, write_dataset

HITS_PER_EVENT = 60
COLUMNS = ["event_id", "hits.t"]


def synthetic_events(n_events: int, seed: int) -> ak.Array:
    rng = np.random.default_rng(seed)
    n_hits = n_events * HITS_PER_EVENT
    hits = pd.DataFrame({
        "event_id": np.repeat(np.arange(n_events), HITS_PER_EVENT),
        "sensor_id": rng.integers(0, 5160, n_hits), "x": rng.normal(0, 300, n_hits),
        "y": rng.normal(0, 300, n_hits), "z": rng.normal(0, 500, n_hits),
        "t": rng.uniform(0, 20_000, n_hits), "charge": rng.exponential(1.0, n_hits),
    })
    return events_from_hits_dataframe(hits)


def best_of(repeat: int, func) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--chunk-events", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    events = synthetic_events(args.events, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "ds"
        write_s = best_of(args.repeat, lambda: write_dataset(data_dir, events, {}, overwrite=True,
                                                             chunk_events=args.chunk_events))
        plain_dir = Path(tmp) / "plain"
        plain_dir.mkdir()

        def write_plain() -> None:
            for i in range(0, len(events), args.chunk_events):
                table = ak.to_arrow_table(events[i:i + args.chunk_events], extensionarray=False)
                pq.write_table(table, plain_dir / f"part-{i // args.chunk_events:05d}.parquet", compression="zstd")

        plain_write_s = best_of(args.repeat, write_plain)
        paths = [data_dir / chunk.file for chunk in load_manifest(data_dir).chunks]
        blobs = [p.read_bytes() for p in paths]
        total_bytes = sum(len(b) for b in blobs)
        hash_s = best_of(args.repeat, lambda: [hashlib.sha256(b).digest() for b in blobs])
        checked_s = best_of(args.repeat, lambda: read_dataset(data_dir))
        checked_cols_s = best_of(args.repeat, lambda: read_dataset(data_dir, columns=COLUMNS))
        real_verify = parquet.verify_chunk
        parquet.verify_chunk = lambda directory, chunk: Path(directory) / chunk.file  # the check off
        try:
            unchecked_s = best_of(args.repeat, lambda: read_dataset(data_dir))
            unchecked_cols_s = best_of(args.repeat, lambda: read_dataset(data_dir, columns=COLUMNS))
        finally:
            parquet.verify_chunk = real_verify
    print(f"dataset: {args.events} events, {len(paths)} chunks, {total_bytes / 1e6:.1f} MB")
    print(f"sha256 in memory        {total_bytes / hash_s / 1e9:.2f} GB/s")
    print(f"write  with digests     {write_s:.3f} s   pyarrow alone {plain_write_s:.3f} s   "
          f"(+{100 * (write_s / plain_write_s - 1):.0f}%, includes validation)")
    print(f"read   checked          {checked_s:.3f} s   unchecked {unchecked_s:.3f} s   "
          f"(+{100 * (checked_s / unchecked_s - 1):.0f}%)")
    print(f"read   {len(COLUMNS)} columns checked {checked_cols_s:.3f} s   unchecked {unchecked_cols_s:.3f} s   "
          f"(+{100 * (checked_cols_s / unchecked_cols_s - 1):.0f}%)")


if __name__ == "__main__":
    main()
