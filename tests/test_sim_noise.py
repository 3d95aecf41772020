"""Noise: the rate of noise hits in light-free windows matches the configured rate."""

import awkward as ak
import numpy as np
import pytest

from nurec.geometry import get_geometry
from nurec.physics.response import ICECUBE_RESPONSE
from sim.config import SimulationConfig
from sim.noise import sample_noise_hits
from sim.simulate import simulate_events


def test_noise_hits_follow_the_configured_rate_in_windows_without_light():
    rng = np.random.default_rng(4)
    start = rng.uniform(-1e4, 1e4, 2000)
    end = start + rng.uniform(5e3, 2e4, 2000)
    event, sensor, time = sample_noise_hits(start, end, 5160, 500.0, rng)
    expected = 500.0 * 5160 * np.sum(end - start) * 1e-9
    assert len(event) == pytest.approx(expected, abs=4 * np.sqrt(expected))
    assert np.all((time >= start[event]) & (time <= end[event]))
    assert np.bincount(sensor, minlength=5160).max() < 30  # spread over sensors


def test_simulated_events_carry_noise_at_the_configured_rate_before_the_light():
    """The first readout_before_ns of each window hold no light: noise hits there match the rate."""
    config = SimulationConfig(detector="icecube86", n_events=150, chunk_events=150, seed=9,
                              energy_min_gev=1e3, energy_max_gev=1e4)
    events, _ = simulate_events(config)
    before = ICECUBE_RESPONSE.readout_before_ns
    early = (events.hits.t < before - 20.0)  # minus a margin for jitter of the first light
    assert not ak.any(early & ~events.hits.is_noise)
    n_early = int(ak.sum(early & events.hits.is_noise))
    expected = len(events) * ICECUBE_RESPONSE.noise_rate_hz * get_geometry("icecube86").n_sensors * (before - 20.0) * 1e-9
    assert n_early == pytest.approx(expected, abs=4 * np.sqrt(expected))
