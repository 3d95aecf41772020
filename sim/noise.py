"""Uncorrelated sensor noise (dark counts, radioactive decays) in the readout window."""

from __future__ import annotations

import numpy as np


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
