"""Node features of events: awkward events -> flat numpy arrays, vectorised over all hits.

A node is one pulse, or (``per_sensor=True``) one sensor with its pulses summarised
(first time, total charge, pulse count, charge-weighted time spread). Events with more
nodes than ``max_nodes`` keep the brightest (or earliest) ones; the choice is part of the
config stored with every model. Times are relative to the charge-weighted mean time of
the kept nodes, so the arbitrary trigger-time offset never reaches the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import awkward as ak
import numpy as np

from nurec.baselines.cleaning import CLEANING, clean_hits, isolated_hit_mask
from nurec.baselines.common import fit_columns, hit_columns
from nurec.baselines.linefit import linefit_flat
from nurec.physics.medium import get_medium
from nurec.physics.timing import track_geometry
from nurec.ragged import RaggedEvents, offsets_from_counts, segment_sum
from nurec.settings import settings_from_dict

NODE_SELECTIONS = ("brightest", "earliest")
LINEFIT_KINDS = ("plane_wave", "improved")
FRAMES = ("detector", "seed")


@dataclass(frozen=True)
class FeatureConfig:
    """How events become nodes.

    ``max_nodes``: cap per event (0 = no cap: cost then grows with the event, bounded by the
    run loop's EventLimits, and the kNN works in row slices of bounded memory,
    nurec.graph.knn). ``node_selection``: which nodes survive the cap. ``per_sensor``: one node per sensor instead of per pulse. ``pmt_direction``:
    add the PMT pointing (use for multi-PMT detectors such as KM3NeT). ``time_window_ns``:
    if > 0, drop nodes further than this from the event's charge-weighted mean time before
    the cap (a noise cleaning; events with no node inside keep all). ``linefit``: which
    LineFit gives the event's ``linefit_dir_*``/``linefit_speed`` features: "plane_wave"
    (charge-weighted fit of the kept nodes) or "improved" (the baseline LineFit of
    nurec.baselines.linefit on all pulses after its noise cleaning for ``linefit_medium``).
    ``frame``: "detector" gives node positions in detector coordinates; "seed" gives them
    in the event's LineFit frame (origin at the charge centre of gravity, third axis along
    the LineFit direction), so the network learns a local correction to the seed; its
    direction output is then in that frame and the model rotates it back
    (``SEED_FRAME_NAMES``). ``seed_residuals``: add each node's Cherenkov time residual and
    distance to the seed track (LineFit direction through the centre of gravity).
    ``detector_coordinates``: with ``frame = "seed"``, also give the node positions in detector
    coordinates (the seed frame hides which way is up: strings are vertical, the ice layered).
    ``cleaning_flag``: add a node feature that is 1 where the sensor has a causally close
    partner (the baselines' noise cleaning for ``linefit_medium``) and 0 for isolated,
    noise-like sensors; the node cap then drops isolated sensors first. ``linefit_medium``
    is the detector's medium ("ice" or "water"): it sets the noise cleaning, the Cherenkov
    geometry of the seed residuals and the light speed that scales node times.
    """

    per_sensor: bool = True
    max_nodes: int = 128
    node_selection: str = "brightest"
    pmt_direction: bool = False
    time_window_ns: float = 0.0
    linefit: str = "plane_wave"
    linefit_medium: str = "ice"
    frame: str = "detector"
    seed_residuals: bool = False
    detector_coordinates: bool = False
    cleaning_flag: bool = False

    @property
    def light_speed_m_per_ns(self) -> float:
        """Return the group speed of light in the detector's medium [m/ns] (nurec.physics.medium)."""
        return get_medium(self.linefit_medium).light_speed_m_per_ns

    def validate(self) -> FeatureConfig:
        """Return self if valid, else raise ValueError naming the setting."""
        if self.node_selection not in NODE_SELECTIONS:
            raise ValueError(f"features.node_selection: '{self.node_selection}' is not one of {NODE_SELECTIONS}")
        if self.linefit not in LINEFIT_KINDS:
            raise ValueError(f"features.linefit: '{self.linefit}' is not one of {LINEFIT_KINDS}")
        if self.linefit_medium not in CLEANING:
            raise ValueError(f"features.linefit_medium: '{self.linefit_medium}' is not one of {sorted(CLEANING)}")
        if self.frame not in FRAMES:
            raise ValueError(f"features.frame: '{self.frame}' is not one of {FRAMES}")
        if self.detector_coordinates and self.frame != "seed":
            raise ValueError("features.detector_coordinates: only with frame = \"seed\" (detector frame has them)")
        if self.max_nodes < 0:
            raise ValueError(f"features.max_nodes: must be >= 0, got {self.max_nodes}")
        return self

    @property
    def feature_names(self) -> list[str]:
        """Return the node feature names, in column order."""
        names = ["x", "y", "z", "t", "log10_charge"]
        if self.per_sensor:
            names += ["log10_n_pulses", "t_spread"]
        if self.pmt_direction:
            names += ["dir_x", "dir_y", "dir_z"]
        if self.seed_residuals:
            names += ["seed_time_residual_ns", "seed_perpendicular_m"]
        if self.detector_coordinates:
            names += ["detector_x", "detector_y", "detector_z"]
        if self.cleaning_flag:
            names += ["has_partner"]
        return names

    @property
    def global_feature_names(self) -> list[str]:
        """Return the per-event feature names, in column order."""
        return GLOBAL_FEATURE_NAMES + (SEED_FRAME_NAMES if self.frame == "seed" else [])

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as JSON-able data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureConfig:
        """Build from a mapping; unknown keys are an error."""
        return settings_from_dict(cls, data, "features").validate()


GLOBAL_FEATURE_NAMES = [
    "log10_n_pulses", "log10_n_sensors", "log10_total_charge", "log10_n_nodes",
    "cog_x", "cog_y", "cog_z", "linefit_dir_x", "linefit_dir_y", "linefit_dir_z", "linefit_speed",
]
"""Per-event features given to the readout: counts and charge (before the node cap), the
charge-weighted centre of gravity [m] of the kept nodes, and their plane-wave (LineFit) fit."""

SEED_FRAME_NAMES = [f"seed_{axis}_{c}" for axis in ("e1", "e2", "e3") for c in "xyz"]
"""With ``frame = "seed"``: the event's frame axes in detector coordinates (e3 = LineFit
direction); node positions are (r - cog)·(e1, e2, e3)."""

SPACE_TIME_COLUMNS = 4
"""The first four node features (x, y, z, t) span the space-time of the first kNN."""



class FlatGraphs(RaggedEvents):
    """Node features of many events: a RaggedEvents view with nodes as items.

    ``nodes`` (n_nodes, n_features) float32, raw (not standardised); ``counts`` nodes per
    event; ``globals`` (n_events, len(GLOBAL_FEATURE_NAMES)) float32. ``take`` and
    ``concatenate`` are the container's.
    """

    @classmethod
    def of(cls, nodes: np.ndarray, counts: np.ndarray, globals_: np.ndarray) -> FlatGraphs:
        """Return the graphs with ``counts`` nodes per event, in order."""
        return cls(offsets_from_counts(counts), {"nodes": nodes}, {"globals": globals_})

    @property
    def nodes(self) -> np.ndarray:
        """Return the node features (n_nodes, n_features)."""
        return self.columns["nodes"]

    @property
    def globals(self) -> np.ndarray:
        """Return the event features (n_events, n_global_features)."""
        return self.event_columns["globals"]


def events_to_graphs(events: ak.Array, config: FeatureConfig) -> FlatGraphs:
    """Return the node features of every event (events with 0 hits get 0 nodes)."""
    pulses = hit_columns(events)
    flat = fit_columns(pulses)
    partner = isolated_hit_mask(flat, CLEANING[config.linefit_medium]) \
        if (config.cleaning_flag or config.linefit == "improved") else None
    sensors = _SensorGroups.of(pulses)
    node, node_event = (_sensor_nodes(pulses, sensors, partner, config) if config.per_sensor
                        else _pulse_nodes(pulses, partner, config))
    if config.time_window_ns > 0:
        node, node_event = _time_window(node, node_event, pulses.n_events, config.time_window_ns)
    node, node_event = _cap_nodes(node, node_event, pulses.n_events, config)
    counts = np.bincount(node_event, minlength=pulses.n_events).astype(np.int64)
    t_rel = _relative_times(node, node_event, pulses.n_events)
    cog, linefit_dir, linefit_speed = _plane_wave_fit(node, t_rel, node_event, pulses.n_events)
    if config.linefit == "improved":
        linefit_dir, linefit_speed = _improved_linefit(flat, partner, config.linefit_medium)
    nodes, frame_globals = _node_features(node, node_event, t_rel, cog, linefit_dir, pulses.n_events, config)
    total_charge = segment_sum(pulses["charge"], pulses.event_index, pulses.n_events)
    glob = np.stack(
        [
            np.log10(np.maximum(pulses.counts, 1)),
            np.log10(np.maximum(sensors.per_event, 1)),
            np.log10(np.maximum(total_charge, 1e-3)),
            np.log10(np.maximum(counts, 1)),
            *cog.T,
            *linefit_dir.T,
            linefit_speed,
            *frame_globals,
        ],
        axis=1,
    ).astype(np.float32)
    return FlatGraphs.of(nodes, counts, glob)


@dataclass
class _SensorGroups:
    """The pulses sorted by (event, sensor, time), grouped per hit sensor of each event."""

    order: np.ndarray  # pulse indices in (event, sensor, time) order
    new_group: np.ndarray  # True where a sorted pulse starts a sensor's group
    group_of_sorted: np.ndarray  # group index of each sorted pulse
    n_groups: int
    group_event: np.ndarray  # event of each group
    per_event: np.ndarray  # hit sensors per event

    @classmethod
    def of(cls, pulses: RaggedEvents) -> _SensorGroups:
        event, sensor = pulses.event_index, pulses["sensor_id"]
        order = np.lexsort((pulses["t"], sensor, event))
        key_sorted = np.stack([event[order], sensor[order]])
        new_group = np.ones(len(order), dtype=bool)
        if len(order) > 1:
            new_group[1:] = np.any(key_sorted[:, 1:] != key_sorted[:, :-1], axis=0)
        group_of_sorted = np.cumsum(new_group) - 1
        n_groups = int(group_of_sorted[-1] + 1) if len(order) else 0
        group_event = key_sorted[0][new_group]
        return cls(order, new_group, group_of_sorted, n_groups, group_event,
                   np.bincount(group_event, minlength=pulses.n_events))


_NODE_COLUMNS = ("x", "y", "z", "t", "charge", "dir_x", "dir_y", "dir_z")


def _sensor_nodes(pulses: RaggedEvents, sensors: _SensorGroups, partner: np.ndarray | None,
                  config: FeatureConfig) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Return one node per hit sensor: its first pulse's position and time, summed charge, pulse count, spread."""
    order, groups = sensors.order, sensors.group_of_sorted
    charge, t = pulses["charge"][order], pulses["t"][order]
    first = order[sensors.new_group]  # earliest pulse of each sensor
    q = segment_sum(charge, groups, sensors.n_groups)
    qt = segment_sum(charge * t, groups, sensors.n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        t_mean = np.where(q > 0, qt / q, pulses["t"][first])
    node = {name: pulses[name][first] for name in ("x", "y", "z", "t", "dir_x", "dir_y", "dir_z")}
    node["charge"] = q
    node["n_pulses"] = np.bincount(groups, minlength=sensors.n_groups).astype(np.float64)
    node["t_spread"] = t_mean - pulses["t"][first]
    if config.cleaning_flag:
        node["has_partner"] = partner[first].astype(np.float64)
    return node, sensors.group_event


def _pulse_nodes(pulses: RaggedEvents, partner: np.ndarray | None,
                 config: FeatureConfig) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Return one node per pulse."""
    node = {name: pulses[name] for name in _NODE_COLUMNS}
    if config.cleaning_flag:
        node["has_partner"] = partner.astype(np.float64)
    return node, pulses.event_index


def _cap_nodes(node: dict[str, np.ndarray], node_event: np.ndarray, n_events: int,
               config: FeatureConfig) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Return at most ``config.max_nodes`` nodes per event (brightest or earliest; isolated ones go first),
    contiguous per event and in their original order."""
    node_count = np.bincount(node_event, minlength=n_events)
    if config.max_nodes and node_count.max(initial=0) > config.max_nodes:
        primary = -node["charge"] if config.node_selection == "brightest" else node["t"]
        secondary = node["t"] if config.node_selection == "brightest" else -node["charge"]
        isolated = -node["has_partner"] if config.cleaning_flag else np.zeros(len(node_event))
        rank_order = np.lexsort((secondary, primary, isolated, node_event))
        starts = np.concatenate([[0], np.cumsum(node_count)[:-1]])
        rank = np.empty(len(rank_order), dtype=np.int64)
        rank[rank_order] = np.arange(len(rank_order)) - np.repeat(starts, node_count)
        keep_idx = np.flatnonzero(rank < config.max_nodes)
        node = {name: value[keep_idx] for name, value in node.items()}
        node_event = node_event[keep_idx]
    # Contiguous per event (stable sort: already sorted when built from sorted hits).
    by_event = np.argsort(node_event, kind="stable")
    return {name: value[by_event] for name, value in node.items()}, node_event[by_event]


def _relative_times(node: dict[str, np.ndarray], node_event: np.ndarray, n_events: int) -> np.ndarray:
    """Return node times relative to the charge-weighted mean time of their event's nodes."""
    q_event = segment_sum(node["charge"], node_event, n_events)
    qt_event = segment_sum(node["charge"] * node["t"], node_event, n_events)
    with np.errstate(invalid="ignore", divide="ignore"):
        t_ref = np.where(q_event > 0, qt_event / q_event, 0.0)
    return node["t"] - t_ref[node_event]


def _node_features(node: dict[str, np.ndarray], node_event: np.ndarray, t_rel: np.ndarray, cog: np.ndarray,
                   linefit_dir: np.ndarray, n_events: int,
                   config: FeatureConfig) -> tuple[np.ndarray, list[np.ndarray]]:
    """Return (node feature matrix in ``config.feature_names`` order, the seed frame's event features)."""
    positions = np.stack([node["x"], node["y"], node["z"]], axis=1)
    frame_globals: list[np.ndarray] = []
    rel = positions - cog[node_event]
    if config.seed_residuals:
        time_residual, perpendicular = _seed_residuals(rel, t_rel, linefit_dir[node_event], node["charge"],
                                                       node_event, n_events, config.linefit_medium)
    if config.frame == "seed":
        axes = seed_frame_axes(linefit_dir)  # (n_events, 3 axes, 3)
        positions = np.einsum("nij,nj->ni", axes[node_event], rel)
        frame_globals = list(axes.reshape(n_events, 9).T)
    columns = [*positions.T, t_rel, np.log10(np.maximum(node["charge"], 1e-3))]
    if config.per_sensor:
        columns += [np.log10(node["n_pulses"]), node["t_spread"]]
    if config.pmt_direction:
        columns += [node["dir_x"], node["dir_y"], node["dir_z"]]
    if config.seed_residuals:
        columns += [time_residual, perpendicular]
    if config.detector_coordinates:
        columns += [node["x"], node["y"], node["z"]]
    if config.cleaning_flag:
        columns += [node["has_partner"]]
    nodes = np.stack(columns, axis=1).astype(np.float32) if columns[0].size else np.zeros(
        (0, len(config.feature_names)), dtype=np.float32)
    return nodes, frame_globals


def seed_frame_axes(direction: np.ndarray) -> np.ndarray:
    """Return (n, 3, 3) orthonormal right-handed frames whose third axis is ``direction``.

    e1 is horizontal (z × e3, normalised) unless e3 is within ~25° of vertical, then
    x × e3; e2 = e3 × e1. Events with no direction (zeros) get the detector frame.
    """
    direction = np.asarray(direction, dtype=np.float64)
    norm = np.linalg.norm(direction, axis=1, keepdims=True)
    valid = norm[:, 0] > 1e-9
    e3 = np.where(valid[:, None], direction / np.maximum(norm, 1e-12), [0.0, 0.0, 1.0])
    reference = np.where((np.abs(e3[:, 2]) < 0.9)[:, None], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0])
    e1 = np.cross(reference, e3)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(e3, e1)
    return np.where(valid[:, None, None], np.stack([e1, e2, e3], axis=1), np.eye(3))


def _seed_residuals(rel: np.ndarray, t_rel: np.ndarray, direction: np.ndarray, charge: np.ndarray,
                    node_event: np.ndarray, n_events: int, medium_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (Cherenkov time residual [ns], distance [m]) of nodes from their event's seed track.

    The seed track passes the charge centre of gravity along the LineFit direction; the
    direct-light arrival time is nurec.physics.timing.track_geometry's (the likelihood fits'
    geometry). The track's time offset is unknown, so residuals are relative to their
    charge-weighted event mean.
    """
    geometry = track_geometry(rel, np.zeros(3), direction, get_medium(medium_name))
    residual = t_rel - geometry["delay_ns"]
    q_sum = np.maximum(segment_sum(charge, node_event, n_events), 1e-12)
    offset = segment_sum(charge * residual, node_event, n_events) / q_sum
    return residual - offset[node_event], geometry["perpendicular_m"]


def _time_window(node: dict[str, np.ndarray], node_event: np.ndarray, n_events: int, window_ns: float):
    """Return the nodes within ``window_ns`` of their event's charge-weighted mean time."""
    q_event = segment_sum(node["charge"], node_event, n_events)
    with np.errstate(invalid="ignore", divide="ignore"):
        t_mean = segment_sum(node["charge"] * node["t"], node_event, n_events) / q_event
    inside = np.abs(node["t"] - t_mean[node_event]) <= window_ns
    has_inside = np.bincount(node_event[inside], minlength=n_events) > 0
    keep = np.flatnonzero(inside | ~has_inside[node_event])
    return {name: value[keep] for name, value in node.items()}, node_event[keep]


def _improved_linefit(flat: RaggedEvents, partner: np.ndarray, medium: str):
    """Return (direction (n, 3), speed [m/ns] capped at 1) of the baseline LineFit; zeros where it fails."""
    result = linefit_flat(clean_hits(flat, medium, mask=partner))
    ok = np.all(np.isfinite(result.direction), axis=1) & np.isfinite(result.speed_m_per_ns)
    direction = np.where(ok[:, None], result.direction, 0.0)
    speed = np.where(ok, np.minimum(result.speed_m_per_ns, 1.0), 0.0)
    return direction, speed


LINEFIT_WINDOW_NS = 1000.0
"""Only nodes within this of the charge-weighted mean time enter the LineFit features (noise)."""


def _plane_wave_fit(node: dict[str, np.ndarray], t_rel: np.ndarray, node_event: np.ndarray, n_events: int):
    """Return (centre of gravity (n, 3) [m], LineFit direction (n, 3), speed [m/ns]) per event.

    The charge-weighted least-squares fit of positions r = r0 + v t (the LineFit of
    Stokstad & al., AMANDA; IceCube NIM A 736 (2014) 143) has
    v = sum q (r - <r>)(t - <t>) / sum q (t - <t>)^2, over nodes within LINEFIT_WINDOW_NS
    of the mean time; events with one such node get zeros.
    """
    q = np.where(np.abs(t_rel) <= LINEFIT_WINDOW_NS, node["charge"], 0.0)
    q_sum = np.maximum(segment_sum(q, node_event, n_events), 1e-12)
    positions = np.stack([node["x"], node["y"], node["z"]], axis=1)
    cog = np.stack([segment_sum(q * positions[:, i], node_event, n_events) for i in range(3)], axis=1)
    cog /= q_sum[:, None]
    t_mean = segment_sum(q * t_rel, node_event, n_events) / q_sum
    dt = t_rel - t_mean[node_event]
    dr = positions - cog[node_event]
    var_t = segment_sum(q * dt * dt, node_event, n_events)
    cov = np.stack([segment_sum(q * dr[:, i] * dt, node_event, n_events) for i in range(3)], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        velocity = np.where(var_t[:, None] > 0, cov / var_t[:, None], 0.0)
    speed = np.linalg.norm(velocity, axis=1)
    direction = np.where(speed[:, None] > 0, velocity / np.maximum(speed, 1e-12)[:, None], 0.0)
    return cog, direction, np.minimum(speed, 1.0)
