"""Flat per-event truth tables from events in the nurec schema (the reference for every metric)."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pandas as pd

from nurec.io.schema import SchemaError

TRUTH_COLUMNS = (
    "event_id",
    "energy",
    "visible_energy",
    "dir_x",
    "dir_y",
    "dir_z",
    "zenith",
    "azimuth",
    "is_track",
    "pdg",
    "interaction",
    "n_hits",
    "weight",
)


def truth_table(events: ak.Array) -> pd.DataFrame:
    """Return one row per event with its true energy [GeV], direction of travel, angles [rad], class and hit count.

    ``weight`` is the simulation's OneWeight [GeV cm² sr], NaN where the events carry none (see
    ``nurec.evaluate.weights`` for rates and effective areas).

    Raises SchemaError if the events carry no ``truth`` record (real data cannot be evaluated).
    """
    if "truth" not in events.fields:
        raise SchemaError("truth: events have no 'truth' field; quality reports need simulated events")
    truth = events.truth
    table = {"event_id": ak.to_numpy(events.event_id).astype(np.int64)}
    for name in ("energy", "visible_energy", "dir_x", "dir_y", "dir_z", "zenith", "azimuth"):
        table[name] = ak.to_numpy(truth[name]).astype(np.float64)
    table["is_track"] = ak.to_numpy(truth.is_track).astype(bool)
    table["pdg"] = ak.to_numpy(truth.pdg).astype(np.int64)
    table["interaction"] = np.asarray(ak.to_list(truth.interaction), dtype=object)
    table["n_hits"] = ak.to_numpy(ak.num(events.hits, axis=1)).astype(np.int64)
    table["weight"] = (ak.to_numpy(ak.fill_none(events.weight, np.nan)).astype(np.float64)
                       if "weight" in events.fields else np.full(len(events), np.nan))
    return pd.DataFrame(table, columns=list(TRUTH_COLUMNS))
