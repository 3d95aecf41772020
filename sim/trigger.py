"""Triggers: IceCube-like local coincidence + simple multiplicity (SMT), KM3NeT-like L1 and a JTE-like 3D trigger."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nurec.geometry import Geometry
from nurec.physics.medium import Medium
from nurec.physics.response import DetectorResponse
from sim.sorting import order_by_group_then_time


def smt_trigger(
    n_events: int, event: np.ndarray, module: np.ndarray, time_ns: np.ndarray,
    geometry: Geometry, response: DetectorResponse,
) -> np.ndarray:
    """Return per-event booleans: at least ``trigger_threshold`` modules in local coincidence.

    A module is in local coincidence (IceCube HLC) when its first hit is within
    ``coincidence_window_ns`` of the first hit of a module up to
    ``coincidence_floor_span`` floors away on the same string. With a
    ``subarray_trigger_threshold``, events with that many HLC modules inside the geometry's
    trigger subarray (DeepCore) trigger too.
    """
    strings, string_index = np.unique(geometry.module_string, return_inverse=True)
    floors = geometry.module_floor.astype(np.int64)
    n_floors = int(floors.max(initial=0)) + 1
    # Sparse: the first hit of each (event, string, floor), sorted by that key.
    key = (event.astype(np.int64) * len(strings) + string_index[module]) * n_floors + floors[module]
    order = order_by_group_then_time(key, time_ns)
    key, t = key[order], time_ns[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    key, t = key[first], t[first]
    string_group, floor = key // n_floors, key % n_floors
    span = response.coincidence_floor_span
    coincident = np.zeros(len(key), dtype=bool)
    # Floors of one string are distinct and increasing, so a module within `span` floors
    # is within `span` entries.
    for shift in range(1, span + 1):
        pair = (
            (string_group[shift:] == string_group[:-shift])
            & (floor[shift:] - floor[:-shift] <= span)
            & (np.abs(t[shift:] - t[:-shift]) <= response.coincidence_window_ns)
        )
        coincident[shift:] |= pair
        coincident[:-shift] |= pair
    n_hlc = np.bincount(string_group[coincident] // len(strings), minlength=n_events)
    triggered = n_hlc >= response.trigger_threshold
    if response.subarray_trigger_threshold > 0:
        # DeepCore's SMT3: fewer HLC modules suffice inside the denser, high-QE subarray.
        in_subarray = np.zeros((len(strings), n_floors), dtype=bool)
        module_in_subarray = np.zeros(geometry.n_modules, dtype=bool)
        module_in_subarray[geometry.sensor_module_index[geometry.subarray]] = True
        in_subarray[string_index, floors] = module_in_subarray
        inside = coincident & in_subarray[string_group % len(strings), floor]
        n_subarray = np.bincount(string_group[inside] // len(strings), minlength=n_events)
        triggered |= n_subarray >= response.subarray_trigger_threshold
    return triggered


def l1_trigger(
    n_events: int, event: np.ndarray, module: np.ndarray, time_ns: np.ndarray,
    response: DetectorResponse,
) -> np.ndarray:
    """Return per-event booleans: at least ``trigger_threshold`` modules with an L1 coincidence.

    L1 (KM3NeT): two hits on the same module within ``coincidence_window_ns``.
    """
    n_modules = int(module.max(initial=0)) + 1
    l1 = l1_coincidences(event, module, time_ns, n_modules, response.coincidence_window_ns)
    l1_modules = np.unique(l1.event.astype(np.int64) * n_modules + l1.module)
    return np.bincount(l1_modules // n_modules, minlength=n_events) >= response.trigger_threshold


@dataclass(frozen=True)
class L1s:
    """L1 coincidences: runs of two or more hits on one module, each closer than the L1 window to the last."""

    event: np.ndarray  # per L1
    module: np.ndarray  # per L1
    time_ns: np.ndarray  # per L1: its first hit's time
    hit_l1: np.ndarray  # per hit (input order): index of its L1, -1 if none


def l1_coincidences(event: np.ndarray, module: np.ndarray, time_ns: np.ndarray, n_modules: int,
                    window_ns: float) -> L1s:
    """Return the L1s among hits given as (event, module, time), sorted by event then module and time."""
    key = event.astype(np.int64) * n_modules + module
    order = order_by_group_then_time(key, time_ns)
    k, t = key[order], time_ns[order]
    joins_previous = np.zeros(len(k), dtype=bool)
    joins_previous[1:] = (k[1:] == k[:-1]) & (np.diff(t) <= window_ns)
    run = np.cumsum(~joins_previous) - 1
    run_size = np.bincount(run, minlength=run[-1] + 1 if len(run) else 0)
    is_l1_run = run_size >= 2
    first = np.flatnonzero(~joins_previous)  # first hit of every run, in run order
    l1_index = np.cumsum(is_l1_run) - 1
    hit_l1 = np.full(len(k), -1, dtype=np.int64)
    hit_l1[order] = np.where(is_l1_run[run], l1_index[run], -1)
    starts = first[is_l1_run]
    return L1s(k[starts] // n_modules, k[starts] % n_modules, t[starts], hit_l1)


def largest_causal_cluster(position_m: np.ndarray, time_ns: np.ndarray, light_speed_m_per_ns: float,
                           slack_ns: float) -> np.ndarray:
    """Return a mask of L1s that are pairwise causal (|Δt| ≤ |Δx|/c_medium + slack), found by
    dropping the L1 with the most violations until none is left (the clique search of KM3NeT's
    3D trigger, approximated greedily)."""
    distance = np.linalg.norm(position_m[:, None, :] - position_m[None, :, :], axis=2)
    violates = np.abs(time_ns[:, None] - time_ns[None, :]) > distance / light_speed_m_per_ns + slack_ns
    keep = np.ones(len(time_ns), dtype=bool)
    counts = violates.sum(axis=1)
    while counts.max(initial=0) > 0:
        worst = int(np.argmax(counts))
        keep[worst] = False
        counts -= violates[:, worst]
        counts[worst] = 0
    return keep


def causal_l1_trigger(
    n_events: int, event: np.ndarray, module: np.ndarray, time_ns: np.ndarray,
    geometry: Geometry, medium: Medium, response: DetectorResponse,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (per-event decision, per-hit flag of the hits that made it): at least
    ``trigger_threshold`` L1s on distinct modules that are pairwise causally connected (light
    could travel between them), as KM3NeT's 3D trigger asks.

    Uncorrelated ⁴⁰K coincidences on far-apart modules are rarely causal with each other, so
    the optical background alone seldom triggers even a large detector.
    """
    l1 = l1_coincidences(event, module, time_ns, geometry.n_modules, response.coincidence_window_ns)
    decision = np.zeros(n_events, dtype=bool)
    in_cluster = np.zeros(len(l1.time_ns), dtype=bool)
    n_l1 = np.bincount(l1.event, minlength=n_events)
    bounds = np.concatenate([[0], np.cumsum(n_l1)])  # L1s come sorted by event
    for e in np.flatnonzero(n_l1 >= response.trigger_threshold):
        part = slice(bounds[e], bounds[e + 1])
        modules = l1.module[part]
        causal = largest_causal_cluster(geometry.module_position[modules], l1.time_ns[part],
                                        medium.light_speed_m_per_ns, response.trigger_slack_ns)
        decision[e] = len(np.unique(modules[causal])) >= response.trigger_threshold
        in_cluster[part] = causal & decision[e]
    hit_flag = np.zeros(len(time_ns), dtype=bool)
    has_l1 = l1.hit_l1 >= 0
    hit_flag[has_l1] = in_cluster[l1.hit_l1[has_l1]]
    return decision, hit_flag


def apply_trigger(
    n_events: int, event: np.ndarray, sensor_row: np.ndarray, time_ns: np.ndarray,
    geometry: Geometry, response: DetectorResponse, medium: Medium | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Return (per-event trigger decisions, per-hit flag of the triggering hits or None where the
    trigger does not mark hits) for hits given as (event, sensor row, time)."""
    module = geometry.sensor_module_index[sensor_row]
    if response.trigger == "smt":
        return smt_trigger(n_events, event, module, time_ns, geometry, response), None
    if response.trigger == "l1":
        return l1_trigger(n_events, event, module, time_ns, response), None
    if response.trigger == "3d":
        if medium is None:
            raise ValueError("the 3d trigger needs the medium (light speed)")
        return causal_l1_trigger(n_events, event, module, time_ns, geometry, medium, response)
    raise ValueError(f"unknown trigger '{response.trigger}' (smt, l1 or 3d)")


def hard_local_coincidence(event: np.ndarray, sensor_row: np.ndarray, time_ns: np.ndarray, geometry: Geometry,
                           response: DetectorResponse) -> np.ndarray:
    """Return, per hit, whether it is in hard local coincidence (IceCube HLC; else SLC): another hit
    within ``coincidence_window_ns`` on a module 1 to ``coincidence_floor_span`` floors away on its string."""
    if len(time_ns) == 0:
        return np.zeros(0, dtype=bool)
    module = geometry.sensor_module_index[sensor_row]
    n_floors = int(geometry.module_floor.max(initial=0)) + 1
    n_strings = int(geometry.module_string.max(initial=0)) + 1
    key = (event.astype(np.int64) * n_strings + geometry.module_string[module]) * n_floors + geometry.module_floor[module]
    # One sorted axis for (key, time): times are offset by a key stride far larger than any readout window.
    stride = 4.0 * (float(time_ns.max()) - float(time_ns.min())) + 4.0 * response.coincidence_window_ns + 1.0
    t = time_ns - float(time_ns.min())
    value = key * stride + t
    ordered = np.sort(value)
    hlc = np.zeros(len(time_ns), dtype=bool)
    for offset in [d for span in range(1, response.coincidence_floor_span + 1) for d in (span, -span)]:
        floor = geometry.module_floor[module] + offset
        valid = (floor >= 0) & (floor < n_floors)
        target = (key + offset) * stride + t
        index = np.searchsorted(ordered, target)
        for candidate in (np.clip(index - 1, 0, len(ordered) - 1), np.clip(index, 0, len(ordered) - 1)):
            hlc |= valid & (np.abs(ordered[candidate] - target) <= response.coincidence_window_ns)
    return hlc
