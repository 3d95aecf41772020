"""Triggers: IceCube-like local coincidence + simple multiplicity (SMT), KM3NeT-like L1."""

from __future__ import annotations

import numpy as np

from nurec.geometry import Geometry
from sim.config import DetectorResponse


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
    floors = geometry.module_floor
    first = np.full((n_events, len(strings), floors.max() + 1), np.inf)
    np.minimum.at(first, (event, string_index[module], floors[module]), time_ns)
    hit = np.isfinite(first)
    coincident = np.zeros_like(hit)
    for shift in range(1, response.coincidence_floor_span + 1):
        close = np.abs(first[:, :, shift:] - first[:, :, :-shift]) <= response.coincidence_window_ns
        pair = close & hit[:, :, shift:] & hit[:, :, :-shift]
        coincident[:, :, shift:] |= pair
        coincident[:, :, :-shift] |= pair
    return coincident.sum(axis=(1, 2)) >= response.trigger_threshold


def l1_trigger(
    n_events: int, event: np.ndarray, module: np.ndarray, time_ns: np.ndarray,
    response: DetectorResponse,
) -> np.ndarray:
    """Return per-event booleans: at least ``trigger_threshold`` modules with an L1 coincidence.

    L1 (KM3NeT): two hits on the same module within ``coincidence_window_ns``.
    """
    order = np.lexsort((time_ns, module, event))
    e, m, t = event[order], module[order], time_ns[order]
    same = (e[1:] == e[:-1]) & (m[1:] == m[:-1]) & (np.diff(t) <= response.coincidence_window_ns)
    l1_event, l1_module = e[1:][same], m[1:][same]
    key = np.unique(l1_event.astype(np.int64) * (module.max(initial=0) + 1) + l1_module)
    n_l1_modules = np.bincount(key // (module.max(initial=0) + 1), minlength=n_events)
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
