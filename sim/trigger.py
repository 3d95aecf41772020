"""Triggers: IceCube-like local coincidence + simple multiplicity (SMT), KM3NeT-like L1."""

from __future__ import annotations

import numpy as np

from nurec.geometry import Geometry
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


def apply_trigger(
    n_events: int, event: np.ndarray, sensor_row: np.ndarray, time_ns: np.ndarray,
    geometry: Geometry, response: DetectorResponse,
) -> np.ndarray:
    """Return per-event trigger decisions for hits given as (event, sensor row, time)."""
    module = geometry.sensor_module_index[sensor_row]
    if response.trigger == "smt":
        return smt_trigger(n_events, event, module, time_ns, geometry, response)
    if response.trigger == "l1":
        return l1_trigger(n_events, event, module, time_ns, response)
    raise ValueError(f"unknown trigger '{response.trigger}' (smt or l1)")
