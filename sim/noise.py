"""Optical background in the readout window: uncorrelated singles (dark counts, ⁴⁰K decays seen by one
sensor) per sensor, and genuine coincidences of one decay seen by two sensors of a module."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from nurec.geometry import Geometry
from nurec.physics.response import DetectorResponse


def sample_noise_hits(
    window_start_ns: np.ndarray,
    window_end_ns: np.ndarray,
    n_sensors: int,
    rate_hz: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (event index, sensor row, time [ns]) of noise hits, Poisson in each window.

    Each sensor fires at ``rate_hz`` independently, so an event's count is Poisson with
    mean rate × window length × n_sensors, uniform in time and over sensors.
    """
    length_s = np.maximum(np.asarray(window_end_ns) - np.asarray(window_start_ns), 0.0) * 1e-9
    counts = rng.poisson(rate_hz * length_s * n_sensors)
    event = np.repeat(np.arange(len(counts)), counts)
    sensor = rng.integers(0, n_sensors, counts.sum())
    time = rng.uniform(np.repeat(window_start_ns, counts), np.repeat(window_end_ns, counts))
    return event, sensor, time


def sensor_conditions(geometry: Geometry, response: DetectorResponse) -> tuple[np.ndarray, np.ndarray]:
    """Return (singles rate [Hz], alive) per sensor: fixed properties of the detector.

    Rates scatter log-normally (relative width ``noise_rate_spread``, mean kept) and a fraction
    ``dead_sensor_fraction`` of sensors is dead (rate 0, records nothing); both are drawn from a
    generator seeded by the geometry's hash, so every event and chunk of one detector sees the
    same sensors (read-only arrays, computed once per detector and settings).
    """
    return _sensor_conditions(geometry.hash, geometry.n_sensors, response.noise_rate_hz, response.noise_rate_spread,
                              response.dead_sensor_fraction)


@lru_cache(maxsize=16)
def _sensor_conditions(geometry_hash: str, n_sensors: int, rate_hz: float, spread: float,
                       dead_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(int(geometry_hash, 16))
    scale = rng.lognormal(-0.5 * spread**2, spread, n_sensors) if spread > 0 else np.ones(n_sensors)
    alive = rng.random(n_sensors) >= dead_fraction
    rates = rate_hz * scale * alive
    rates.flags.writeable = alive.flags.writeable = False  # cached: shared by every batch
    return rates, alive


def sample_singles(window_start_ns: np.ndarray, window_end_ns: np.ndarray, rate_hz: np.ndarray,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (event index, sensor row, time [ns]) of uncorrelated hits with per-sensor ``rate_hz``."""
    length_s = np.maximum(np.asarray(window_end_ns) - np.asarray(window_start_ns), 0.0) * 1e-9
    total = float(rate_hz.sum())
    counts = rng.poisson(total * length_s)
    event = np.repeat(np.arange(len(counts)), counts)
    cumulative = np.cumsum(rate_hz) / total if total > 0 else np.ones(len(rate_hz))
    sensor = np.minimum(np.searchsorted(cumulative, rng.random(counts.sum()), side="right"), len(rate_hz) - 1)
    time = rng.uniform(np.repeat(window_start_ns, counts), np.repeat(window_end_ns, counts))
    return event, sensor, time


def sample_module_coincidences(window_start_ns: np.ndarray, window_end_ns: np.ndarray, geometry: Geometry,
                               rate_hz: float, jitter_ns: float, rng: np.random.Generator,
                               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (event index, sensor row, time [ns]) of genuine two-hit coincidences on one module.

    Each module sees ``rate_hz`` decays whose light reaches two of its sensors (⁴⁰K in sea
    water): Poisson in time, two distinct sensors of the module at random, each hit with
    the sensors' transit-time jitter (Gaussian ``jitter_ns``) around the decay time.
    """
    module = geometry.sensor_module_index
    order = np.argsort(module, kind="stable")
    per_module = np.bincount(module, minlength=geometry.n_modules)
    first = np.concatenate([[0], np.cumsum(per_module)[:-1]])
    usable = np.flatnonzero(per_module >= 2)
    length_s = np.maximum(np.asarray(window_end_ns) - np.asarray(window_start_ns), 0.0) * 1e-9
    counts = rng.poisson(rate_hz * length_s * len(usable))
    event = np.repeat(np.arange(len(counts)), counts)
    chosen = usable[rng.integers(0, len(usable), counts.sum())]
    size = per_module[chosen]
    a = rng.integers(0, size)
    b = (a + rng.integers(1, size)) % size  # a different sensor of the same module
    decay = rng.uniform(np.repeat(window_start_ns, counts), np.repeat(window_end_ns, counts))
    sensor = np.concatenate([order[first[chosen] + a], order[first[chosen] + b]])
    time = np.concatenate([decay, decay]) + rng.normal(0.0, jitter_ns, 2 * len(decay))
    return np.concatenate([event, event]), sensor, time


def sample_background(window_start_ns: np.ndarray, window_end_ns: np.ndarray, geometry: Geometry,
                      response: DetectorResponse, rng: np.random.Generator,
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (event index, sensor row, time [ns], charge [pe]) of the background hits in each window.

    Uniform uncorrelated noise when the response asks for nothing more (IceCube), else
    per-sensor singles and module coincidences (KM3NeT); single-photo-electron charges.
    """
    if response.noise_rate_spread == 0 and response.dead_sensor_fraction == 0 and response.coincidence_rate_hz == 0:
        event, sensor, time = sample_noise_hits(window_start_ns, window_end_ns, geometry.n_sensors,
                                                response.noise_rate_hz, rng)
    else:
        rates, _ = sensor_conditions(geometry, response)
        singles = sample_singles(window_start_ns, window_end_ns, rates, rng)
        pairs = sample_module_coincidences(window_start_ns, window_end_ns, geometry, response.coincidence_rate_hz,
                                           response.jitter_ns, rng)
        event, sensor, time = (np.concatenate([a, b]) for a, b in zip(singles, pairs, strict=True))
    charge = response.sample_spe_charge(len(event), rng)
    return event, sensor, time, charge
