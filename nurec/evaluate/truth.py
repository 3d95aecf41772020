"""Flat per-event truth tables from events in the nurec schema (the reference for every metric)."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pandas as pd

from nurec.io.schema import SchemaError

_PARTICLES: dict[int, tuple[str, str]] = {
    12: ("νe", r"$\nu_e$"), -12: ("ν̄e", r"$\bar{\nu}_e$"),
    14: ("νμ", r"$\nu_\mu$"), -14: ("ν̄μ", r"$\bar{\nu}_\mu$"),
    16: ("ντ", r"$\nu_\tau$"), -16: ("ν̄τ", r"$\bar{\nu}_\tau$"),
    11: ("e⁻", r"$e^-$"), -11: ("e⁺", r"$e^+$"),
    13: ("μ⁻", r"$\mu^-$"), -13: ("μ⁺", r"$\mu^+$"),
}
"""PDG code -> (Unicode name, matplotlib mathtext name) of the primaries events carry."""


def interaction_label(pdg: int | None, interaction: str | None = None, mathtext: bool = False) -> str:
    """Return the event type as physicists write it: "νμ CC", "ν̄e NC", "μ⁻" ("" if nothing is known).

    ``pdg`` is the primary's PDG code (0 or None: unknown), ``interaction`` "CC"/"NC" (any
    case; "" or None: unknown). ``mathtext`` gives matplotlib's form ("$\\bar{\\nu}_e$ NC"),
    which draws the antineutrino bar properly in figures. Unknown codes read "PDG 2212".
    """
    code = int(pdg) if pdg is not None and np.isfinite(pdg) else 0
    names = _PARTICLES.get(code)
    particle = (names[1] if mathtext else names[0]) if names else (f"PDG {code}" if code else "")
    kind = str(interaction or "").strip()
    kind = kind.upper() if kind.upper() in ("CC", "NC") else kind
    return " ".join(part for part in (particle, kind) if part)


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
    "n_sensors",
    "weight",
)

OPTIONAL_TRUTH_COLUMNS = (
    "vertex_x",
    "vertex_y",
    "vertex_z",
    "muon_dir_x",
    "muon_dir_y",
    "muon_dir_z",
    "cascade_dir_x",
    "cascade_dir_y",
    "cascade_dir_z",
    "muon_length_in_detector",
)
"""Truth fields copied when the events have them (NaN otherwise): vertex [m], the muon's and the
cascade's directions of travel (muon NaN for events without one), the muon's path inside the
instrumented volume [m]."""


def truth_table(events: ak.Array) -> pd.DataFrame:
    """Return one row per event: true energy [GeV], direction of travel, angles [rad], class, hit and
    hit-sensor counts, and the OPTIONAL_TRUTH_COLUMNS.

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
    table["n_sensors"] = sensors_hit(events)
    table["weight"] = (ak.to_numpy(ak.fill_none(events.weight, np.nan)).astype(np.float64)
                       if "weight" in events.fields else np.full(len(events), np.nan))
    for name in OPTIONAL_TRUTH_COLUMNS:
        table[name] = (ak.to_numpy(truth[name]).astype(np.float64) if name in truth.fields
                       else np.full(len(events), np.nan))
    return pd.DataFrame(table, columns=[*TRUTH_COLUMNS, *OPTIONAL_TRUTH_COLUMNS])


def sensors_hit(events: ak.Array) -> np.ndarray:
    """Return the number of distinct sensors (sensor_id) with at least one hit, per event."""
    per_event = ak.to_numpy(ak.num(events.hits, axis=1)).astype(np.int64)
    event = np.repeat(np.arange(len(per_event), dtype=np.int64), per_event)
    sensor = ak.to_numpy(ak.flatten(events.hits.sensor_id)).astype(np.int64)
    pairs = np.unique(np.column_stack([event, sensor]), axis=0) if len(event) else np.empty((0, 2), np.int64)
    return np.bincount(pairs[:, 0], minlength=len(per_event)).astype(np.int64)
