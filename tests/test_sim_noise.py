"""Background and readout: noise and coincidence rates match the configuration; KM3NeT windows and ToT."""

import awkward as ak
import numpy as np
import pytest

from nurec.geometry import get_geometry
from nurec.physics.response import ICECUBE_RESPONSE, KM3NET_RESPONSE
from sim.config import SimulationConfig
from sim.noise import sample_module_coincidences, sample_noise_hits, sensor_conditions
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


def test_module_coincidences_come_at_the_configured_rate_on_two_sensors_of_one_module():
    geometry = get_geometry("orca6")
    rng = np.random.default_rng(3)
    start = np.zeros(400)
    end = np.full(400, 1e5)
    event, sensor, time = sample_module_coincidences(start, end, geometry, 700.0, 2.0, rng)
    n_pairs = len(event) // 2
    expected = 700.0 * geometry.n_modules * 400 * 1e5 * 1e-9
    assert n_pairs == pytest.approx(expected, abs=4 * np.sqrt(expected))
    first, second = sensor[:n_pairs], sensor[n_pairs:]
    module = geometry.sensor_module_index
    assert np.all(module[first] == module[second]) and np.all(first != second)
    assert np.std(time[:n_pairs] - time[n_pairs:]) == pytest.approx(2.0 * np.sqrt(2.0), rel=0.1)


def test_sensor_rates_and_dead_sensors_are_a_fixed_property_of_the_detector():
    geometry = get_geometry("km3net-orca")
    rates, alive = sensor_conditions(geometry, KM3NET_RESPONSE)
    again, _ = sensor_conditions(geometry, KM3NET_RESPONSE)
    assert np.array_equal(rates, again)
    assert 1.0 - alive.mean() == pytest.approx(KM3NET_RESPONSE.dead_sensor_fraction, abs=0.003)
    assert rates[alive].mean() == pytest.approx(KM3NET_RESPONSE.noise_rate_hz, rel=0.02)
    assert np.all(rates[~alive] == 0)


def test_km3net_events_keep_the_readout_window_and_record_tot():
    """Window: the light's coincidences widened by the detector's light-crossing time on both sides."""
    from nurec.physics.medium import get_medium
    from sim.detector import light_crossing_time_ns

    config = SimulationConfig(detector="orca6", flavors=("numu",), n_events=40, seed=2,
                              energy_min_gev=20, energy_max_gev=2000)
    events, _ = simulate_events(config)
    crossing = light_crossing_time_ns(get_geometry("orca6"), get_medium("water"))
    span = ak.to_numpy(ak.fill_none(ak.max(events.hits.t, axis=1) - ak.min(events.hits.t, axis=1), 0.0))
    assert np.median(span) > 2 * crossing * 0.95
    tot = ak.to_numpy(ak.flatten(events.hits.tot_ns))
    assert tot.min() >= 1 and tot.max() <= 255 and np.all(tot == np.round(tot))
    # The trigger marks the hits it fired on: at least 4 causally connected L1s, i.e. 8 hits on 4 modules.
    n_trig = ak.to_numpy(ak.sum(events.hits.trig, axis=1))
    assert n_trig.min() >= 8
    module = get_geometry("orca6").sensor_module_index[get_geometry("orca6").sensor_lookup(
        ak.to_numpy(ak.flatten(events.hits.sensor_id[events.hits.trig])))]
    trig_event = np.repeat(np.arange(len(events)), n_trig)
    modules_per_event = [len(np.unique(module[trig_event == e])) for e in range(len(events))]
    assert min(modules_per_event) >= 4
    again, _ = simulate_events(config)
    assert ak.to_list(again) == ak.to_list(events)
