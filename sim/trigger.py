"""Triggers: IceCube-like local coincidence + simple multiplicity (SMT), KM3NeT-like L1 and a JTE-like 3D trigger."""

from __future__ import annotations

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
    ``coincidence_floor_span`` floors away on the same string.
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
    return n_hlc >= response.trigger_threshold


def l1_trigger(
    n_events: int, event: np.ndarray, module: np.ndarray, time_ns: np.ndarray,
    response: DetectorResponse,
) -> np.ndarray:
    """Return per-event booleans: at least ``trigger_threshold`` modules with an L1 coincidence.

    L1 (KM3NeT): two hits on the same module within ``coincidence_window_ns``.
    """
    n_modules = int(module.max(initial=0)) + 1
    key = event.astype(np.int64) * n_modules + module
    order = order_by_group_then_time(key, time_ns)
    k, t = key[order], time_ns[order]
    same = (k[1:] == k[:-1]) & (np.diff(t) <= response.coincidence_window_ns)
    l1_key = np.unique(k[1:][same])
    n_l1_modules = np.bincount(l1_key // n_modules, minlength=n_events)
    return n_l1_modules >= response.trigger_threshold


def l1_coincidences(event: np.ndarray, module: np.ndarray, time_ns: np.ndarray, n_modules: int,
                    window_ns: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (event, module, time [ns]) of each L1: a hit followed within ``window_ns`` by another on its module."""
    key = event.astype(np.int64) * n_modules + module
    order = order_by_group_then_time(key, time_ns)
    k, t = key[order], time_ns[order]
    starts = (k[1:] == k[:-1]) & (np.diff(t) <= window_ns)
    starts[1:] &= ~starts[:-1]  # one L1 per run of close hits
    return k[:-1][starts] // n_modules, k[:-1][starts] % n_modules, t[:-1][starts]


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
) -> np.ndarray:
    """Return per-event booleans: at least ``trigger_threshold`` L1s on distinct modules that are
    pairwise causally connected (light could travel between them), as KM3NeT's 3D trigger asks.

    Uncorrelated ⁴⁰K coincidences on far-apart modules are rarely causal with each other, so
    the optical background alone seldom triggers even a large detector.
    """
    l1_event, l1_module, l1_time = l1_coincidences(event, module, time_ns, geometry.n_modules,
                                                    response.coincidence_window_ns)
    decision = np.zeros(n_events, dtype=bool)
    n_l1 = np.bincount(l1_event, minlength=n_events)
    bounds = np.concatenate([[0], np.cumsum(n_l1)])  # L1s come sorted by event
    for e in np.flatnonzero(n_l1 >= response.trigger_threshold):
        part = slice(bounds[e], bounds[e + 1])
        modules, times = l1_module[part], l1_time[part]
        causal = largest_causal_cluster(geometry.module_position[modules], times, medium.light_speed_m_per_ns,
                                        response.trigger_slack_ns)
        decision[e] = len(np.unique(modules[causal])) >= response.trigger_threshold
    return decision


def apply_trigger(
    n_events: int, event: np.ndarray, sensor_row: np.ndarray, time_ns: np.ndarray,
    geometry: Geometry, response: DetectorResponse, medium: Medium | None = None,
) -> np.ndarray:
    """Return per-event trigger decisions for hits given as (event, sensor row, time)."""
    module = geometry.sensor_module_index[sensor_row]
    if response.trigger == "smt":
        return smt_trigger(n_events, event, module, time_ns, geometry, response)
    if response.trigger == "l1":
        return l1_trigger(n_events, event, module, time_ns, response)
    if response.trigger == "3d":
        if medium is None:
            raise ValueError("the 3d trigger needs the medium (light speed)")
        return causal_l1_trigger(n_events, event, module, time_ns, geometry, medium, response)
    raise ValueError(f"unknown trigger '{response.trigger}' (smt, l1 or 3d)")
