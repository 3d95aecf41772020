"""The client half of the protocol codec: nurec events -> request messages, result messages -> predictions.

The server half (requests -> events with per-event validation, predictions -> results)
lives in ``services.codec`` and builds on the wire constants defined here.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import awkward as ak
import numpy as np
import pandas as pd

from nurec.io.schema import FIT_OK, HIT_FIELDS, PREDICTION_COLUMNS
from nurec.protocol import pb

DIR_FIELDS = ("dir_x", "dir_y", "dir_z")
WIRE_DTYPES = {name: np.dtype("<i4") if dtype == "int32" else np.dtype("<f4")
               for name, dtype in HIT_FIELDS.items()}
"""Little-endian wire dtype of each hit field in RawHits."""
FLOAT_OUTPUTS = [name for name, dtype in PREDICTION_COLUMNS.items() if dtype == "float64"]
"""The float prediction columns that travel as fields of EventReconstruction."""


def encode_events(events: ak.Array, detector: str = "", encoding: str = "raw",
                  send_directions: bool = True) -> list[pb.Event]:
    """Return one Event message per event of a nurec events array.

    ``encoding`` "raw" (fast, little-endian bytes) or "packed" (repeated fields).
    ``send_directions`` False leaves PMT directions for the server to take from the geometry.
    """
    if encoding not in ("raw", "packed"):
        raise ValueError(f"encoding: '{encoding}' is not raw or packed")
    counts = ak.to_numpy(ak.num(events.hits, axis=1)).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    names = [n for n in WIRE_DTYPES if send_directions or n not in DIR_FIELDS]
    flat = {n: ak.to_numpy(ak.flatten(events.hits[n])).astype(WIRE_DTYPES[n]) for n in names}
    event_ids = ak.to_numpy(events.event_id).astype(np.int64).tolist()
    run_ids = (ak.to_numpy(events.run_id).astype(np.int64).tolist() if "run_id" in events.fields
               else [0] * len(event_ids))
    messages = []
    if encoding == "raw":
        buffers = {n: flat[n].tobytes() for n in names}
        for i, (event_id, run_id) in enumerate(zip(event_ids, run_ids, strict=True)):
            lo, hi = offsets[i] * 4, offsets[i + 1] * 4
            raw = pb.RawHits(**{n: buffers[n][lo:hi] for n in names})
            messages.append(pb.Event(event_id=event_id, run_id=run_id, detector=detector, raw=raw))
    else:
        lists = {n: flat[n].tolist() for n in names}
        for i, (event_id, run_id) in enumerate(zip(event_ids, run_ids, strict=True)):
            lo, hi = offsets[i], offsets[i + 1]
            packed = pb.PackedHits(**{n: lists[n][lo:hi] for n in names})
            messages.append(pb.Event(event_id=event_id, run_id=run_id, detector=detector, packed=packed))
    return messages



def decode_results(results: Sequence[pb.EventReconstruction]) -> pd.DataFrame:
    """Return a prediction table (PREDICTION_COLUMNS, then model_version, error_code, extras)."""
    table: dict[str, object] = {"event_id": np.fromiter((r.event_id for r in results), np.int64, len(results))}
    for name in FLOAT_OUTPUTS:
        table[name] = np.fromiter((getattr(r, name) for r in results), np.float64, len(results))
    table["method"] = [r.method for r in results]
    table["fit_status"] = [r.fit_status or FIT_OK for r in results]
    table["model_version"] = [r.model_version for r in results]
    table["error_code"] = [pb.Code.Name(r.error.code) if r.HasField("error") else "" for r in results]
    extra_names = sorted(set(itertools.chain.from_iterable(r.extra.keys() for r in results)))
    for name in extra_names:
        table[name] = np.fromiter((r.extra.get(name, math.nan) for r in results), np.float64, len(results))
    frame = pd.DataFrame(table)
    return frame.astype({k: v for k, v in PREDICTION_COLUMNS.items() if v != "object"})
