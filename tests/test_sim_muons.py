"""The simulator's muons: stochastic losses as cascades, multiple scattering, length in the detector."""

from types import SimpleNamespace

import numpy as np
import pytest

from nurec.geometry import get_geometry
from nurec.physics import interaction as xs
from nurec.physics.medium import ICE, WATER
from nurec.physics.muon_losses import highland_theta0_rad
from sim.muons import expand, transport_muons


def muons_through(geometry, n, energy_gev, offset_m=0.0, length_m=None):
    """Return n vertical down-going muons starting 600 m above the detector's centre."""
    start = geometry.center + np.array([offset_m, 0.0, 600.0])
    down = np.tile([0.0, 0.0, -1.0], (n, 1))
    return SimpleNamespace(vertex=np.tile(start, (n, 1)), direction=down, muon_direction=down,
                           is_track=np.ones(n, bool), muon_energy_gev=np.full(n, float(energy_gev)),
                           track_length_m=np.full(n, 1e4 if length_m is None else length_m),
                           cascade_em_energy_gev=np.zeros(n))


def test_a_high_energy_muon_sheds_stochastic_cascades_along_its_track():
    geometry = get_geometry("icecube86")
    sources = muons_through(geometry, 50, 1e5)
    transport = transport_muons(sources, geometry, ICE, 500.0, np.random.default_rng(1))
    assert len(transport.loss_event) > 50
    per_muon = np.bincount(transport.loss_event, weights=transport.loss_em_energy_gev, minlength=50)
    # Losses above 5% of 100 TeV over ~1.7 km: several TeV per muon on average, widely spread.
    assert 2e3 < per_muon.mean() < 5e4 and per_muon.std() > 0.3 * per_muon.mean()
    rows = expand(sources, transport)
    loss_rows = np.arange(len(rows.parent)) >= 100  # after 50 vertex rows and 50 track rows
    assert rows.is_track.sum() == 50 and np.array_equal(rows.parent[loss_rows], transport.loss_event)
    # Each loss lies on its muon's (scattered) line, and shines when the muon gets there.
    offset = rows.vertex[loss_rows] - transport.light_anchor[transport.loss_event]
    along = np.einsum("ij,ij->i", offset, transport.light_direction[transport.loss_event])
    assert np.allclose(np.linalg.norm(offset, axis=1), along)
    assert np.allclose(rows.time_offset_ns[loss_rows] * 0.299792458, transport.loss_distance_m)
    again = transport_muons(sources, geometry, ICE, 500.0, np.random.default_rng(1))
    assert np.array_equal(again.loss_em_energy_gev, transport.loss_em_energy_gev)


def test_multiple_scattering_tilts_a_low_energy_muon_by_highlands_angle():
    geometry = get_geometry("orca6")
    n = 4000
    sources = muons_through(geometry, n, 20.0, length_m=80.0)
    sources.vertex = np.tile(geometry.center + np.array([0.0, 0.0, 40.0]), (n, 1))  # 40 m to the centre
    transport = transport_muons(sources, geometry, WATER, 300.0, np.random.default_rng(2))
    cos = np.clip(transport.light_direction @ np.array([0.0, 0.0, -1.0]), -1.0, 1.0)
    space_angle = np.arccos(cos)
    # Roughly: θ0 over 40 m at the muon's mean energy there (~15 GeV); the space angle's RMS is √2 θ0.
    expected = np.sqrt(2.0) * highland_theta0_rad(15.0, 40.0, "water")
    assert np.sqrt(np.mean(space_angle**2)) == pytest.approx(expected, rel=0.25)


def test_a_muon_through_the_detector_is_as_long_inside_it_as_the_detector_is_tall():
    geometry = get_geometry("icecube86")
    top = geometry.center + np.array([0.0, 0.0, 2000.0])
    length = geometry.path_length_inside(top[None, :], np.array([[0.0, 0.0, -1.0]]), np.array([5000.0]))
    assert length[0] == pytest.approx(geometry.height_m, rel=1e-6)
    stopped = geometry.path_length_inside(top[None, :], np.array([[0.0, 0.0, -1.0]]), np.array([2100.0]))
    to_top = top[2] - geometry.position[:, 2].max()
    assert stopped[0] == pytest.approx(2100.0 - to_top, abs=1e-6)
    outside = geometry.path_length_inside(top[None, :] + [5000.0, 0, 0], np.array([[0.0, 0.0, -1.0]]),
                                          np.array([5000.0]))
    assert outside[0] == 0.0


def test_hadronic_light_fluctuates_around_its_mean_as_radel_and_wiebusch_say():
    energy = np.full(200_000, 100.0)
    factor = xs.sample_hadronic_light_factor(energy, np.random.default_rng(3))
    mean = xs.hadronic_light_factor(100.0)
    assert factor.mean() == pytest.approx(mean, rel=0.01)
    assert factor.std() / mean == pytest.approx(0.95899551 * np.log(100.0) ** -1.35589541, rel=0.05)
    assert factor.min() >= 0.0 and factor.max() <= 1.1
