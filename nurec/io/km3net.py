"""KM3NeT offline-format ROOT files (the ``E`` tree of ``Evt`` objects) as nurec events.

Read with ``uproot`` + ``awkward`` (both already dependencies, see pyproject.toml), not
``km3io``: km3io is not a declared dependency and pulls numba/llvmlite (large compiled
packages) for a few helpers that are short vectorised awkward expressions here (best-track
selection, CC flag); its reading is uproot underneath anyway.

Mapping to the nurec event schema (``nurec/io/schema.py``):

hits     one per ``Evt.hits`` entry (``triggered_only=True``: only those with ``trig != 0``).
         ``x, y, z`` and PMT ``dir_*`` from the file (``hits.pos``/``hits.dir``) or, where the
         file stores none (uncalibrated files, positions all zero), from a ``.detx`` file
         looked up by (``dom_id``, ``channel_id``); then the detx ``t0`` is added to the hit
         time, as a calibration does. ``t`` is stored relative to the earliest hit of the
         event (``source.t_offset_ns`` holds that offset: absolute time = t + t_offset_ns),
         because KM3NeT times (up to 1e8 ns within a 100 ms timeslice) do not fit float32.
         ``tot_ns`` is the file's time over threshold and ``charge`` its photo-electron
         estimate from the same ToT model the simulator records hits with
         (nurec.physics.tot, single-pe ToT ``spe_tot_ns`` = ``KM3NET_SPE_TOT_NS``), so
         converted and simulated charges share one scale. ``trig`` flags the hits the
         experiment's trigger fired on (``hits.trig != 0``).
         ``sensor_id``: the detx PMT id when a detx file is used, else the file's
         ``hits.pmt_id`` when set, else ``(dom_id mod 2^23) * 32 + channel_id``.
detector ``FileDetector`` holds the file's ``det_id`` (a file of several is refused) and,
         without a detx file, the geometry the hits show: one row per PMT hit at least once
         (all hits, not only triggered ones), module = ``dom_id``; offline files store no
         string (DU) or floor, so both come from positions
         (``nurec.geometry.strings_of_modules``, ``floors_by_height``).
truth    from ``mc_tracks[0]`` (the neutrino): ``type`` -> pdg, ``E``, ``dir`` (KM3NeT ``dir``
         is already the direction of TRAVEL) -> dir_* (zenith/azimuth derived, IceCube
         convention), ``pos`` -> vertex. CC/NC from the GENIE interaction code (2 = weak CC,
         3 = weak NC): the ``cc`` usr value of ``mc_tracks[0]`` in older files, else
         ``w2list[10]`` (``W2LIST_GSEAGEN_CC``); Bjorken y likewise (``by`` / ``w2list[8]``).
         ``t0`` = vertex time in the hits' time frame minus ``t_offset_ns``, assuming MC times
         count from ``mc_t`` and hit times from the start of timeslice ``frame_index - 1``;
         checked on the v9.2 km3net-testdata sample (first triggered hit 12 ns to 6 us after
         t0); in the older mcv6.0 sample some first triggered hits come up to 250 ns before
         it, so treat t0 as approximate for older productions.
         ``muon_energy`` and ``muon_dir_*`` from the first muon among ``mc_tracks`` (NaN
         where there is none), the simulator's fields of the same names.
         Files without MC tracks give events without ``truth``.
event    ``event_id`` = entry number in the file (0-based), ``run_id`` = ``Evt.run_id``,
         ``source`` = {entry, km3net_id (``Evt.id``), det_id, frame_index, trigger_counter,
         mc_id, t_offset_ns}.

The file's own reconstruction is returned as a prediction table (``method="km3net-jmuon"``):
per event the best JMUON track by KM3NeT's rule (km3io ``best_jmuon``): among tracks with
``rec_type`` 4000 (JPP_RECONSTRUCTION_TYPE) whose ``rec_stages`` all lie in the JMUON range
[JMUONBEGIN=0, JMUONEND=99], the longest reconstruction chain, then the highest ``lik``
(constants from the KM3NeT dataformat definitions, ``reconstruction.csv``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np
import pandas as pd

from nurec.geometry import Geometry, GeometryError, SensorCollector
from nurec.io.detx import DetxDetector, parse_detx
from nurec.io.reader import SourceError, zip_columns
from nurec.io.schema import (
    HIT_FIELDS,
    OPTIONAL_HIT_FIELDS,
    angles_to_direction,
    direction_to_angles,
    finish_predictions,
)
from nurec.physics.tot import ToTModel, charge_from_tot_pe

# KM3NeT dataformat, definitions/reconstruction.csv.
JPP_RECONSTRUCTION_TYPE = 4000
JMUONBEGIN = 0
JMUONEND = 99
# KM3NeT dataformat, definitions/w2list_gseagen.csv: Bjorken y and the CC flag.
W2LIST_GSEAGEN_BY = 8
W2LIST_GSEAGEN_CC = 10
# GENIE interaction type codes used for the CC flag (gSeaGen documentation: 2 weak CC, 3 weak NC).
GENIE_WEAK_CC = 2
GENIE_WEAK_NC = 3
# KM3NeT DAQ timeslice (frame) length: 100 ms; Evt.frame_index counts frames from 1.
KM3NET_TIMESLICE_NS = 1e8
# Nominal time-over-threshold of a single photo-electron: KM3NeT tunes PMT high voltages on
# the single-pe ToT distribution to this value (B. Jung et al., "PMT gain calibration and
# monitoring based on highly compressed hit information in KM3NeT", arXiv:2108.11467).
KM3NET_SPE_TOT_NS = 26.4

JMUON_METHOD_NAME = "km3net-jmuon"
DEFAULT_STEP_EVENTS = 1000

_HIT_BRANCHES = ["hits.dom_id", "hits.channel_id", "hits.t", "hits.tot", "hits.trig",
                 "hits.pos.x", "hits.pos.y", "hits.pos.z", "hits.dir.x", "hits.dir.y", "hits.dir.z"]
_EVENT_BRANCHES = ["id", "run_id", "det_id", "frame_index", "trigger_counter", "mc_id", "mc_t", "w2list"]
_MC_BRANCHES = ["mc_trks.type", "mc_trks.E", "mc_trks.t", "mc_trks.pos.x", "mc_trks.pos.y",
                "mc_trks.pos.z", "mc_trks.dir.x", "mc_trks.dir.y", "mc_trks.dir.z"]
_MC_USR_BRANCHES = ["mc_trks.usr", "mc_trks.usr_names"]
_TRK_BRANCHES = ["trks.rec_type", "trks.rec_stages", "trks.lik", "trks.E", "trks.dir.x", "trks.dir.y",
                 "trks.dir.z", "trks.fitinf"]


@dataclass(frozen=True)
class KM3NeTOptions:
    """How to read a KM3NeT offline file."""

    detx: str | os.PathLike | None = None
    triggered_only: bool = False
    spe_tot_ns: float = KM3NET_SPE_TOT_NS
    step_events: int = DEFAULT_STEP_EVENTS


class FileDetector:
    """The detector a KM3NeT offline file shows while it is read: its det_id and the PMTs its hits carry.

    Filled chunk by chunk by ``iter_km3net_chunks(..., seen=)``. The geometry holds only PMTs
    that recorded at least one hit (official MC files have noise hits on nearly every PMT;
    short files or real-data excerpts may miss some), and its floors count the modules seen.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.det_ids: set[int] = set()
        self.sensors = SensorCollector()

    def add_det_ids(self, det_id: np.ndarray) -> None:
        """Record the det_id of a chunk's events; raise SourceError if the file mixes detectors."""
        self.det_ids.update(int(d) for d in np.unique(det_id))
        if len(self.det_ids) > 1:
            first, second = sorted(self.det_ids)[:2]
            raise SourceError(f"{self.path}: events of several detectors (det_id {first} and {second}); "
                              "convert them separately")

    def add_hits(self, sensor_id: np.ndarray, dom_id: np.ndarray, position: np.ndarray,
                 direction: np.ndarray) -> None:
        """Record the PMTs of a chunk's hits; raise SourceError naming a PMT whose hits disagree."""
        try:
            self.sensors.add(sensor_id, dom_id, position, direction)
        except GeometryError as err:
            raise SourceError(f"{self.path}: hits disagree on the detector: {err}") from err

    @property
    def det_id(self) -> int | None:
        """Return the file's det_id (None if its events carry none)."""
        return next(iter(self.det_ids), None)

    @property
    def name(self) -> str:
        """Return the detector's name as KM3NeT spells it (``KM3NeT_00000049``), or the file's stem."""
        if self.det_id is None:
            return self.path.stem
        return f"KM3NeT_{'-' if self.det_id < 0 else ''}{abs(self.det_id):08d}"

    def geometry(self) -> Geometry | None:
        """Return the geometry of the PMTs seen in hits (None if no hit carried a position)."""
        if self.sensors.n_sensors == 0:
            return None
        try:
            return self.sensors.geometry(self.name, "km3net")
        except GeometryError as err:
            raise SourceError(f"{self.path}: {err}") from err


def _open_tree(path: Path):
    import uproot

    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    _check_root_header(path)
    try:
        handle = uproot.open(path)
    except Exception as err:  # uproot raises many types for damaged files
        raise SourceError(f"{path}: cannot open as a ROOT file ({_first_line(err)})") from err
    try:
        tree = handle["E"]
    except Exception as err:
        raise SourceError(f"{path}: no readable 'E' tree, not a KM3NeT offline file ({_first_line(err)})") from err
    missing = [b for b in _HIT_BRANCHES + ["id", "run_id", "frame_index"] if b not in tree]
    if missing:
        raise SourceError(f"{path}: E tree has no branch '{missing[0]}'")
    return tree


def _check_root_header(path: Path) -> None:
    """Raise SourceError if ``path`` is not a ROOT file or is shorter than its header says."""
    with open(path, "rb") as handle:
        header = handle.read(21)
    if header[:4] != b"root" or len(header) < 21:
        raise SourceError(f"{path}: not a ROOT file (no 'root' signature)")
    # ROOT file header: "root", fVersion, fBEGIN, then fEND (int32, or int64 when fVersion >= 1000000).
    version = int.from_bytes(header[4:8], "big")
    end = int.from_bytes(header[12:20] if version >= 1_000_000 else header[12:16], "big")
    size = path.stat().st_size
    if size < end:
        raise SourceError(f"{path}: truncated ROOT file (header says {end} bytes, file has {size})")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def iter_km3net_chunks(
    path: str | os.PathLike, options: KM3NeTOptions | None = None, seen: FileDetector | None = None
) -> Iterator[tuple[ak.Array, pd.DataFrame]]:
    """Yield (events, reference JMUON predictions) chunk by chunk, streaming the file.

    ``seen``, if given, collects the file's det_id and, without a detx file, the PMTs the
    hits show, so a converter can record the detector without a second pass over the file.
    """
    options = options or KM3NeTOptions()
    path = Path(path)
    tree = _open_tree(path)
    detector = parse_detx(options.detx) if options.detx is not None else None
    has_mc = "mc_trks.type" in tree and _file_has_mc(tree, path)
    has_trks = all(b in tree for b in _TRK_BRANCHES)
    branches = _HIT_BRANCHES + [b for b in ["hits.pmt_id", *_EVENT_BRANCHES] if b in tree]
    if has_mc:
        branches += _MC_BRANCHES + [b for b in _MC_USR_BRANCHES if b in tree]
    if has_trks:
        branches += _TRK_BRANCHES
    entry = 0
    produced = False
    try:
        chunks = tree.iterate(branches, step_size=options.step_events, library="ak")
        for raw in _guarded(chunks, path):
            n = len(raw)
            if seen is not None and "det_id" in raw.fields:
                seen.add_det_ids(ak.to_numpy(raw["det_id"]))
            events = _build_events(raw, np.arange(entry, entry + n), path, detector, options, has_mc, seen)
            reference = _best_jmuon(raw, events) if has_trks else _no_reference(events, "no reconstructed tracks in file")
            entry += n
            produced = True
            yield events, reference
    finally:
        tree.file.close()
    if not produced:
        events = _empty_events(has_mc)
        yield events, _no_reference(events, "")


def _guarded(chunks, path: Path):
    while True:
        try:
            raw = next(chunks)
        except StopIteration:
            return
        except Exception as err:  # decompression / deserialisation errors of damaged files
            raise SourceError(f"{path}: cannot read events ({_first_line(err)})") from err
        yield raw


def _file_has_mc(tree, path: Path) -> bool:
    try:
        counts = ak.num(tree["mc_trks.type"].array(library="ak"), axis=1)
    except Exception as err:
        raise SourceError(f"{path}: cannot read mc_trks ({_first_line(err)})") from err
    return bool(len(counts)) and bool(ak.any(counts > 0))


def iter_km3net_offline(
    path: str | os.PathLike,
    detx: str | os.PathLike | None = None,
    triggered_only: bool = False,
    spe_tot_ns: float = KM3NET_SPE_TOT_NS,
    step_events: int = DEFAULT_STEP_EVENTS,
) -> Iterator[ak.Array]:
    """Yield chunks of nurec events read from a KM3NeT offline ROOT file."""
    options = KM3NeTOptions(detx, triggered_only, spe_tot_ns, step_events)
    for events, _ in iter_km3net_chunks(path, options):
        yield events


def read_km3net_reference(path: str | os.PathLike, **options) -> pd.DataFrame:
    """Return the file's best-JMUON reconstruction as one prediction table (method km3net-jmuon)."""
    tables = [ref for _, ref in iter_km3net_chunks(path, KM3NeTOptions(**options))]
    return pd.concat(tables, ignore_index=True)


# --- events -------------------------------------------------------------------------------

def _flat(array: ak.Array, dtype) -> np.ndarray:
    return ak.to_numpy(ak.flatten(array, axis=None)).astype(dtype, copy=False)


def _build_events(raw: ak.Array, entries: np.ndarray, path: Path, detector: DetxDetector | None,
                  options: KM3NeTOptions, has_mc: bool, seen: FileDetector | None = None) -> ak.Array:
    counts_all = ak.to_numpy(ak.num(raw["hits.dom_id"], axis=1))
    n_events = len(counts_all)
    event_index = np.repeat(np.arange(n_events), counts_all)
    dom_id = _flat(raw["hits.dom_id"], np.int64)
    channel = _flat(raw["hits.channel_id"], np.int64)
    t_raw = _flat(raw["hits.t"], np.float64)
    pos = np.column_stack([_flat(raw[f"hits.pos.{c}"], np.float64) for c in "xyz"])
    pmt_dir = np.column_stack([_flat(raw[f"hits.dir.{c}"], np.float64) for c in "xyz"])
    if detector is not None:
        rows, found = detector.lookup(dom_id, channel)
        if not np.all(found):
            bad = int(np.flatnonzero(~found)[0])
            raise SourceError(
                f"{path}: hit on DOM {dom_id[bad]} channel {channel[bad]} (event entry "
                f"{entries[event_index[bad]]}) is absent from detx file {detector.path}"
            )
        calibrated = bool(np.any(pos != 0))
        pos = detector.position[rows]
        pmt_dir = detector.direction[rows]
        if not calibrated:
            t_raw = t_raw + detector.t0[rows]
        sensor_id = detector.sensor_id[rows]
    else:
        if len(pos) and not np.any(pos != 0):
            raise SourceError(f"{path}: hits carry no positions (uncalibrated file); pass the detector file with --detx")
        pmt_id = _flat(raw["hits.pmt_id"], np.int64) if "hits.pmt_id" in raw.fields else np.zeros(0, np.int64)
        use_pmt_id = len(pmt_id) == len(dom_id) and len(pmt_id) and np.all(pmt_id > 0)
        sensor_id = pmt_id if use_pmt_id else (dom_id % (1 << 23)) * 32 + channel
        if seen is not None:
            seen.add_hits(sensor_id, dom_id, pos, pmt_dir)

    t_offset = np.zeros(n_events)
    if len(t_raw):
        first = np.full(n_events, np.inf)
        np.minimum.at(first, event_index, t_raw)
        t_offset = np.where(np.isfinite(first), first, 0.0)
    keep = _flat(raw["hits.trig"], np.int64) != 0 if options.triggered_only else np.ones(len(t_raw), bool)
    tot = _flat(raw["hits.tot"], np.float64)[keep]
    counts = np.bincount(event_index[keep], minlength=n_events)
    columns = {
        "sensor_id": sensor_id[keep],
        "x": pos[keep, 0], "y": pos[keep, 1], "z": pos[keep, 2],
        "t": (t_raw - t_offset[event_index])[keep],
        "charge": charge_from_tot_pe(tot, ToTModel(spe_tot_ns=options.spe_tot_ns)),
        "dir_x": pmt_dir[keep, 0], "dir_y": pmt_dir[keep, 1], "dir_z": pmt_dir[keep, 2],
        "tot_ns": tot,
        "trig": _flat(raw["hits.trig"], np.int64)[keep] != 0,
    }
    columns = {k: np.asarray(v).astype({**HIT_FIELDS, **OPTIONAL_HIT_FIELDS}[k]) for k, v in columns.items()}
    hits = ak.unflatten(ak.zip(columns, depth_limit=1), counts)
    source = {
        "entry": entries.astype(np.int64),
        "km3net_id": _event_column(raw, "id", n_events, np.int64),
        "det_id": _event_column(raw, "det_id", n_events, np.int64),
        "frame_index": _event_column(raw, "frame_index", n_events, np.int64),
        "trigger_counter": _event_column(raw, "trigger_counter", n_events, np.int64),
        "mc_id": _event_column(raw, "mc_id", n_events, np.int64),
        "t_offset_ns": t_offset,
    }
    record = {
        "event_id": entries.astype(np.int64),
        "run_id": _event_column(raw, "run_id", n_events, np.int64),
        "hits": hits,
    }
    if has_mc:
        record["truth"] = _truth(raw, t_offset)
    record["source"] = ak.zip(source, depth_limit=1)
    return ak.zip(record, depth_limit=1)


def _event_column(raw: ak.Array, name: str, n: int, dtype) -> np.ndarray:
    if name not in raw.fields:
        return np.zeros(n, dtype=dtype)
    return ak.to_numpy(raw[name]).astype(dtype)


def _first(array: ak.Array, fill: float) -> np.ndarray:
    return ak.to_numpy(ak.fill_none(ak.firsts(array, axis=1), fill)).astype(np.float64)


def _usr_value(raw: ak.Array, name: str) -> np.ndarray:
    """Return the usr value ``name`` of mc_tracks[0] per event (NaN where absent)."""
    if "mc_trks.usr_names" not in raw.fields or "mc_trks.usr" not in raw.fields:
        return np.full(len(raw), np.nan)
    names = ak.firsts(raw["mc_trks.usr_names"], axis=1)
    values = ak.firsts(raw["mc_trks.usr"], axis=1)
    names = ak.fill_none(names, [], axis=0)
    values = ak.fill_none(values, [], axis=0)
    selected = values[names == name]
    return ak.to_numpy(ak.fill_none(ak.firsts(selected, axis=1), np.nan)).astype(np.float64)


def _w2list_value(raw: ak.Array, index: int) -> np.ndarray:
    if "w2list" not in raw.fields:
        return np.full(len(raw), np.nan)
    w2list = raw["w2list"]
    padded = ak.pad_none(w2list, index + 1, axis=1)
    return ak.to_numpy(ak.fill_none(padded[:, index], np.nan)).astype(np.float64)


def _truth(raw: ak.Array, t_offset: np.ndarray) -> ak.Array:
    n = len(raw)
    pdg = _first(raw["mc_trks.type"], 0).astype(np.int32)
    energy = _first(raw["mc_trks.E"], np.nan)
    direction = np.column_stack([_first(raw[f"mc_trks.dir.{c}"], np.nan) for c in "xyz"])
    norm = np.linalg.norm(direction, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        direction = direction / norm[:, None]
    zenith, azimuth = direction_to_angles(direction[:, 0], direction[:, 1], direction[:, 2])
    vertex = np.column_stack([_first(raw[f"mc_trks.pos.{c}"], np.nan) for c in "xyz"])
    cc_code = _usr_value(raw, "cc")
    cc_code = np.where(np.isfinite(cc_code), cc_code, _w2list_value(raw, W2LIST_GSEAGEN_CC))
    interaction = np.where(cc_code == GENIE_WEAK_CC, "CC", np.where(cc_code == GENIE_WEAK_NC, "NC", ""))
    bjorken_y = _usr_value(raw, "by")
    bjorken_y = np.where(np.isfinite(bjorken_y), bjorken_y, _w2list_value(raw, W2LIST_GSEAGEN_BY))
    # MC times count from mc_t, the event's place in the run; hits count from the start of
    # their timeslice, which begins at (frame_index - 1) * 100 ms.
    mc_t = _event_column(raw, "mc_t", n, np.float64)
    frame = _event_column(raw, "frame_index", n, np.float64)
    t0 = _first(raw["mc_trks.t"], np.nan) + mc_t - (frame - 1) * KM3NET_TIMESLICE_NS - t_offset
    muon = np.abs(raw["mc_trks.type"]) == 13  # the first muon among the MC tracks: the CC muon
    muon_energy = ak.to_numpy(ak.fill_none(ak.firsts(raw["mc_trks.E"][muon]), np.nan)).astype(float)
    muon_direction = np.column_stack([ak.to_numpy(ak.fill_none(ak.firsts(raw[f"mc_trks.dir.{c}"][muon]), np.nan))
                                      for c in "xyz"]).astype(float)
    return zip_columns({
        "pdg": pdg,
        "interaction": ak.Array(interaction.astype(str)),
        "energy": energy,
        "dir_x": direction[:, 0], "dir_y": direction[:, 1], "dir_z": direction[:, 2],
        "zenith": zenith, "azimuth": azimuth,
        "vertex_x": vertex[:, 0], "vertex_y": vertex[:, 1], "vertex_z": vertex[:, 2],
        "t0": t0,
        "inelasticity": bjorken_y,
        "track_length": np.full(n, np.nan),
        "is_track": (np.abs(pdg) == 14) & (interaction == "CC"),
        "visible_energy": np.full(n, np.nan),
        "muon_energy": muon_energy,
        "muon_dir_x": muon_direction[:, 0], "muon_dir_y": muon_direction[:, 1], "muon_dir_z": muon_direction[:, 2],
    })


def _empty_events(has_mc: bool) -> ak.Array:
    """Return a zero-length events array with the full KM3NeT event layout."""
    hits = ak.unflatten(ak.zip({k: np.zeros(0, dtype=v) for k, v in HIT_FIELDS.items()}, depth_limit=1),
                        np.zeros(0, dtype=np.int64))
    record = {"event_id": np.zeros(0, np.int64), "run_id": np.zeros(0, np.int64), "hits": hits}
    if has_mc:
        zero = np.zeros(0)
        direction = angles_to_direction(zero, zero)
        record["truth"] = ak.zip({
            "pdg": np.zeros(0, np.int32), "interaction": ak.Array(np.zeros(0, dtype="U2")),
            "energy": zero, "dir_x": direction[:, 0], "dir_y": direction[:, 1], "dir_z": direction[:, 2],
            "zenith": zero, "azimuth": zero, "vertex_x": zero, "vertex_y": zero, "vertex_z": zero,
            "t0": zero, "inelasticity": zero, "track_length": zero, "is_track": np.zeros(0, bool),
            "visible_energy": zero, "muon_energy": zero, "muon_dir_x": zero, "muon_dir_y": zero, "muon_dir_z": zero,
        }, depth_limit=1)
    record["source"] = ak.zip({name: np.zeros(0, np.int64) for name in (
        "entry", "km3net_id", "det_id", "frame_index", "trigger_counter", "mc_id")}
        | {"t_offset_ns": np.zeros(0)}, depth_limit=1)
    return ak.zip(record, depth_limit=1)


# --- the reference reconstruction ---------------------------------------------------------

def _no_reference(events: ak.Array, reason: str) -> pd.DataFrame:
    n = len(events)
    table = pd.DataFrame({
        "event_id": ak.to_numpy(events.event_id).astype(np.int64),
        "dir_x": np.full(n, np.nan), "dir_y": np.full(n, np.nan), "dir_z": np.full(n, np.nan),
        "zenith": np.full(n, np.nan), "azimuth": np.full(n, np.nan), "energy": np.full(n, np.nan),
        "angular_uncertainty_deg": np.full(n, np.nan), "p_track": np.full(n, np.nan),
        "method": np.full(n, JMUON_METHOD_NAME, dtype=object),
        "fit_status": np.full(n, f"failed: {reason}", dtype=object),
        "likelihood": np.full(n, np.nan), "n_rec_stages": np.zeros(n, np.int64),
        "jgandalf_beta0_deg": np.full(n, np.nan),
    })
    return _with_keys(finish_predictions(table), events)


def _with_keys(table: pd.DataFrame, events: ak.Array) -> pd.DataFrame:
    table["run_id"] = ak.to_numpy(events.run_id)
    for name in ("frame_index", "trigger_counter", "km3net_id"):
        table[name] = ak.to_numpy(events.source[name])
    return table


def _best_jmuon(raw: ak.Array, events: ak.Array) -> pd.DataFrame:
    """Return the best JMUON track of each event as a prediction table (NaN + failed where none)."""
    stages = raw["trks.rec_stages"]
    n_stages = ak.num(stages, axis=2)
    in_range = ak.all((stages >= JMUONBEGIN) & (stages <= JMUONEND), axis=2)
    is_jmuon = (raw["trks.rec_type"] == JPP_RECONSTRUCTION_TYPE) & (n_stages > 0) & in_range
    chain = ak.where(is_jmuon, n_stages, -1)
    longest = ak.fill_none(ak.max(chain, axis=1), -1)
    candidate = is_jmuon & (chain == longest)
    lik = ak.where(candidate, raw["trks.lik"], -np.inf)
    best = ak.argmax(lik, axis=1, keepdims=True)
    has_best = ak.to_numpy(ak.fill_none(ak.any(candidate, axis=1), False))

    def pick(array: ak.Array, fill: float) -> np.ndarray:
        return ak.to_numpy(ak.fill_none(ak.firsts(array[best], axis=1), fill)).astype(np.float64)

    fitinf = ak.fill_none(ak.firsts(raw["trks.fitinf"][best], axis=1), [], axis=0)
    beta0 = ak.to_numpy(ak.fill_none(ak.firsts(fitinf, axis=1), np.nan)).astype(np.float64)
    table = pd.DataFrame({
        "event_id": ak.to_numpy(events.event_id).astype(np.int64),
        "dir_x": pick(raw["trks.dir.x"], np.nan),
        "dir_y": pick(raw["trks.dir.y"], np.nan),
        "dir_z": pick(raw["trks.dir.z"], np.nan),
        "zenith": np.nan, "azimuth": np.nan,
        "energy": pick(raw["trks.E"], np.nan),
        "angular_uncertainty_deg": np.nan,
        "p_track": np.nan,
        "method": JMUON_METHOD_NAME,
        "fit_status": np.where(has_best, "ok", "failed: no JMUON track in event"),
        "likelihood": pick(raw["trks.lik"], np.nan),
        "n_rec_stages": np.where(has_best, pick(chain, 0), 0).astype(np.int64),
        "jgandalf_beta0_deg": np.degrees(np.where(has_best, beta0, np.nan)),  # fitinf[0] = JGANDALF_BETA0_RAD
    })
    for name in ("dir_x", "dir_y", "dir_z", "energy", "likelihood"):
        table.loc[~has_best, name] = np.nan
    return _with_keys(finish_predictions(table), events)



__all__ = [
    "KM3NET_SPE_TOT_NS",
    "FileDetector",
    "KM3NeTOptions",
    "JMUON_METHOD_NAME",
    "iter_km3net_chunks",
    "iter_km3net_offline",
    "read_km3net_reference",
]
