"""Simulated events: causal hit times, trigger kept events only, schema."""

import awkward as ak
import numpy as np
import pytest

from nurec.geometry import get_geometry
from nurec.io.schema import validate_events
from nurec.physics.medium import ICE, WATER
from nurec.physics.response import ICECUBE_RESPONSE, KM3NET_RESPONSE
from nurec.physics.tables import direct_time_ns, load_table
from nurec.physics.timing import track_geometry
from sim.config import SimulationConfig
from sim.detector import LightSources, photoelectron_times_ns
from sim.generator import generate_primaries
from sim.photons import sample_photoelectrons
from sim.simulate import simulate_events


def test_cascade_light_hits_never_arrive_before_the_direct_time():
    """Full simulation of cascades (νe CC, ν NC): hit time ≥ t0 + the earliest direct time - jitter.

    The earliest direct time is the photon tables' (the smallest group index over the detected
    spectrum: chromatic dispersion lets red light arrive before the medium's nominal c/n_group)."""
    for detector, medium, response in [("icecube86", ICE, ICECUBE_RESPONSE), ("orca6", WATER, KM3NET_RESPONSE)]:
        config = SimulationConfig(detector=detector, flavors=("nue", "numu"), interactions=("CC", "NC"),
                                  n_events=40, chunk_events=40, energy_min_gev=1e4, energy_max_gev=1e5, seed=4)
        events, _ = simulate_events(config)
        validate_events(events)
        events = events[~events.truth.is_track]
        counts = ak.to_numpy(ak.num(events.hits, axis=1))
        truth = events.truth
        vertex = np.repeat(np.column_stack([ak.to_numpy(truth[f"vertex_{c}"]) for c in "xyz"]), counts, axis=0)
        pos = np.column_stack([ak.to_numpy(ak.flatten(events.hits[c])) for c in "xyz"]).astype(float)
        direct = np.repeat(ak.to_numpy(truth.t0), counts) + direct_time_ns(
            load_table(medium.name, "cascade"), np.linalg.norm(pos - vertex, axis=1))
        light = ~ak.to_numpy(ak.flatten(events.hits.is_noise))
        residual = (ak.to_numpy(ak.flatten(events.hits.t)) - direct)[light]
        assert len(residual) > 500
        assert residual.min() > -5 * response.jitter_ns
        assert np.median(residual) > 0  # scattering delays


@pytest.mark.parametrize("detector, medium, response", [("icecube86", ICE, ICECUBE_RESPONSE),
                                                      ("km3net-orca", WATER, KM3NET_RESPONSE)])
def test_track_photoelectrons_never_arrive_before_the_cherenkov_time(detector, medium, response):
    """Muon tracks: photo-electron times ≥ earliest direct Cherenkov time of the (true) muon - jitter.

    Pandel delays (ice) count from the medium's Cherenkov time; the photon tables' (water) from the
    earliest over the spectrum: the muon passes the closest approach at along/c, light needs ρ·K/c."""
    config = SimulationConfig(detector=detector, energy_min_gev=1e3, energy_max_gev=1e6, volume_margin_m=100.0)
    geometry = get_geometry(detector)
    rng = np.random.default_rng(6)
    sources = LightSources(generate_primaries(300, config, geometry, medium, rng), medium, rng)
    sources.cascade_em_energy_gev = np.zeros(300)  # track light only
    pe = sample_photoelectrons(sources, geometry, medium, response, rng)
    times = photoelectron_times_ns(pe, sources, geometry, medium, response, rng)
    geo = track_geometry(geometry.position[pe.sensor], sources.vertex[pe.event],
                         sources.muon_direction[pe.event], medium)
    if response.arrival_delays == "tables":
        earliest = geo["along_m"] / 0.299792458 + direct_time_ns(load_table(medium.name, "track"), geo["perpendicular_m"])
    else:
        earliest = geo["delay_ns"]
    residual = times - earliest
    assert len(residual) > 1000
    assert residual.min() > -5 * response.jitter_ns
    assert np.median(residual) > 0


def test_only_triggered_events_are_written_with_time_ordered_hits():
    config = SimulationConfig(detector="icecube86", n_events=40, chunk_events=40, seed=8)
    events, metadata = simulate_events(config)
    assert len(events) == 40 and metadata["n_generated"] > 40
    t = events.hits.t
    assert ak.all(t[:, 1:] >= t[:, :-1])
    n_light_modules = [len(set(s)) for s in ak.to_list(events.hits.sensor_id[~events.hits.is_noise])]
    assert min(n_light_modules) >= 4  # SMT8 needs light on several DOMs


def test_photoelectrons_come_sorted_by_event_for_the_readout_windows():
    """simulate_hit_columns finds each event's light window with reduceat: pe must be grouped by event."""
    config = SimulationConfig(detector="icecube86", energy_min_gev=1e3, energy_max_gev=1e6)
    geometry = get_geometry("icecube86")
    rng = np.random.default_rng(12)
    sources = LightSources(generate_primaries(512, config, geometry, ICE, rng), ICE, rng)
    pe = sample_photoelectrons(sources, geometry, ICE, ICECUBE_RESPONSE, rng)
    assert len(np.unique(pe.event)) > 50
    assert np.all(np.diff(pe.event) >= 0)


@pytest.mark.parametrize("detector, medium, response, energy_gev, n_events", [
    ("icecube-mini", ICE, ICECUBE_RESPONSE, 3e4, 150),  # Pandel delays
    ("orca6", WATER, KM3NET_RESPONSE, 1.5e3, 50),  # photon-table delays
])
def test_a_capped_sensor_still_records_the_first_of_all_its_photoelectrons(detector, medium, response, energy_gev,
                                                                            n_events):
    """Keeping max_pe_per_sensor of N photo-electrons must not delay the sensor's first arrival."""
    from dataclasses import replace

    from scipy import stats
    from sim_testing import cascades_at

    geometry = get_geometry(detector)
    sources = cascades_at(geometry.position[0] + np.array([0.0, 12.0, 0.0]), n_events, energy_gev)
    first = {}
    for cap in (16, 10**9):
        capped = replace(response, max_pe_per_sensor=cap)
        pe = sample_photoelectrons(sources, geometry, medium, capped, np.random.default_rng(5))
        times = photoelectron_times_ns(pe, sources, geometry, medium, capped, np.random.default_rng(6))
        brightest = np.argmax(np.bincount(pe.sensor, weights=pe.scale))
        on_sensor = pe.sensor == brightest
        assert np.all(np.isin(np.arange(n_events), pe.event[on_sensor]))
        first[cap] = np.full(n_events, np.inf)
        np.minimum.at(first[cap], pe.event[on_sensor], times[on_sensor])
        if cap == 16:
            assert pe.scale[on_sensor].mean() > 5  # the sensor was capped: N ≫ 16
    assert stats.ks_2samp(first[16], first[10**9]).pvalue > 1e-3
    assert abs(np.median(first[16]) - np.median(first[10**9])) < 1.0
