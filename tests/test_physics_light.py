"""Expected charge and its sampling: linear in cascade energy, unbiased thinned Poisson sampling."""

from dataclasses import replace

import numpy as np
import pytest
from sim_testing import cascades_at

from nurec.geometry import get_geometry
from nurec.physics.light import expected_npe_cascade, expected_npe_track
from nurec.physics.medium import ICE, WATER
from nurec.physics.muon import muon_energy_at_m
from nurec.physics.response import ICECUBE_RESPONSE, KM3NET_RESPONSE
from nurec.physics.timing import track_geometry
from sim.config import SimulationConfig
from sim.detector import LightSources
from sim.generator import generate_primaries
from sim.photons import sample_photoelectrons

UNCAPPED = {"max_pe_per_sensor": 10**9}


def sampled_charge(sources, geometry, medium, response, repeats, seed=0):
    """Return the photo-electrons per event, summed over sensors, for ``repeats`` draws (repeats, events)."""
    n = len(sources.vertex)
    return np.array([
        np.bincount(pe.event, weights=pe.scale, minlength=n)
        for pe in (sample_photoelectrons(sources, geometry, medium, response, np.random.default_rng(seed + i))
                   for i in range(repeats))
    ])


def expected_charge(sources, geometry, medium, response):
    """Return Σ over all sensors of the expected photo-electrons per event (dense, mean stochastic loss)."""
    pos, pmt = geometry.position, geometry.direction
    total = []
    for e in range(len(sources.vertex)):
        casc, _ = expected_npe_cascade(pos, pmt, sources.vertex[e], sources.direction[e],
                                       sources.cascade_em_energy_gev[e], medium)
        geo = track_geometry(pos, sources.vertex[e], sources.muon_direction[e], medium)
        emission = geo["emission_m"]
        on = sources.is_track[e] & (emission >= 0) & (emission <= sources.track_length_m[e])
        energy = muon_energy_at_m(sources.muon_energy_gev[e], np.maximum(emission, 0), medium)
        emission_pos = sources.vertex[e] + np.maximum(emission, 0)[:, None] * sources.muon_direction[e]
        track, _ = expected_npe_track(pos, pmt, sources.vertex[e], sources.muon_direction[e], emission_pos, energy,
                                      medium)
        total.append(((casc + np.where(on, track, 0.0)) * geometry.efficiency).sum())
    return np.array(total)


def test_cascade_total_charge_grows_linearly_with_energy():
    geometry = get_geometry("icecube-mini")
    response = replace(ICECUBE_RESPONSE, **UNCAPPED)
    energies = np.array([1e3, 1e4, 1e5])
    sources = cascades_at(geometry.center + [30.0, 20.0, 0.0], 1, 1.0)
    means = []
    for energy in energies:
        sources.cascade_em_energy_gev = np.array([energy])
        means.append(sampled_charge(sources, geometry, ICE, response, 40).mean())
    slope = np.polyfit(np.log(energies), np.log(means), 1)[0]
    assert slope == pytest.approx(1.0, abs=0.03)
    assert means[0] > 20  # a 1 TeV cascade inside the array is clearly visible


@pytest.mark.parametrize("detector, medium, response, e_range", [
    ("icecube-mini", ICE, ICECUBE_RESPONSE, (1e3, 1e5)),
    ("icecube86", ICE, ICECUBE_RESPONSE, (10.0, 1e3)),  # DeepCore's high-QE DOMs: per-sensor efficiency
    ("orca6", WATER, KM3NET_RESPONSE, (10.0, 1e3)),
])
def test_thinned_sampling_matches_the_dense_expected_charge(detector, medium, response, e_range):
    """sample_photoelectrons visits few sensors, yet its mean equals Σ expected_npe over all sensors."""
    geometry = get_geometry(detector)
    config = SimulationConfig(detector=detector, flavors=("numu", "nue"), energy_min_gev=e_range[0],
                              energy_max_gev=e_range[1], volume_margin_m=50.0)
    rng = np.random.default_rng(3)
    sources = LightSources(generate_primaries(24, config, geometry, medium, rng), medium, rng)
    expected = expected_charge(sources, geometry, medium, response).sum()
    totals = sampled_charge(sources, geometry, medium, replace(response, **UNCAPPED), 60).sum(axis=1)
    error = totals.std() / np.sqrt(len(totals))
    assert expected > 20  # enough light for the comparison to mean something
    assert abs(totals.mean() - expected) < 4 * error + 0.01 * expected, (totals.mean(), expected, error)
