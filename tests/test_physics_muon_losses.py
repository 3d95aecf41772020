"""Muon losses: cross sections against published tables, the stochastic sampler, multiple scattering."""

import time

import numpy as np
import pytest
from scipy.integrate import quad

from nurec.physics import muon_losses as ml

M = ml.MUON_MASS_GEV

# Published muon energy-loss table of liquid water, PUMAS v1.00 (V. Niess et al., Comput.
# Phys. Commun. 229 (2018) 54; file dedx/muon/water.txt of github.com/niess/pumas-materials,
# generated with the PDG/Groom Sternheimer parameters of water, I = 79.7 eV). Columns at
# kinetic energy T: brems, pair, photonuc [MeV cm²/g]; b = column / E.
PUMAS_WATER_RADIATIVE_MEV_CM2_G = {
    1e4: (11.86, 16.63, 4.854),  # T = 10 TeV
    1e5: (123.4, 169.8, 61.71),  # T = 100 TeV
    1e6: (1244.0, 1703.0, 801.1),  # T = 1 PeV
}
# Same table: ionisation at T = 10 GeV, 2.482 MeV cm²/g; the PDG liquid-water table gives the
# minimum ionisation 1.992 MeV cm²/g and the CSDA range at T = 1 GeV, 473.2 g/cm².
IONISATION_10_GEV_MEV_CM2_G = 2.482
MINIMUM_IONISATION_MEV_CM2_G = 1.992
CSDA_RANGE_1_GEV_G_CM2 = 473.2


@pytest.mark.parametrize("kinetic_gev", sorted(PUMAS_WATER_RADIATIVE_MEV_CM2_G))
def test_radiative_loss_coefficients_match_the_published_water_table(kinetic_gev):
    energy = kinetic_gev + M
    expected = np.array(PUMAS_WATER_RADIATIVE_MEV_CM2_G[kinetic_gev]) * 1e-3 / energy
    b = np.array([float(ml.loss_coefficient_b_cm2_per_g(p, energy, "water")) for p in ml.RADIATIVE])
    # Measured (1e-6 cm²/g, brems/pair/photonuclear): 1.21/1.67/0.49 at 10 TeV (table
    # 1.19/1.66/0.49), 1.25/1.70/0.59 at 100 TeV (1.23/1.70/0.62), 1.26/1.71/0.73 at 1 PeV
    # (1.24/1.70/0.80; the table's photonuclear model rises faster than Bezrukov-Bugaev).
    np.testing.assert_allclose(b, expected, rtol=0.10)
    assert b.sum() == pytest.approx(expected.sum(), rel=0.05)
    assert 3.0e-6 < b.sum() < 4.0e-6  # b_total ≈ 3.4-3.7e-6 cm²/g from 10 TeV to 1 PeV


def test_media_differ_only_by_density():
    energy = np.array([1e2, 1e4, 1e6])
    ratio = ml.mean_energy_loss_gev_per_m(energy, "water") / ml.mean_energy_loss_gev_per_m(energy, "ice")
    np.testing.assert_allclose(ratio, 1.038 / 0.9216, rtol=1e-12)


def test_ionisation_matches_the_published_water_table():
    loss = float(ml.ionisation_loss_gev_cm2_per_g(10.0 + M, "water")) * 1e3  # measured 2.463
    assert loss == pytest.approx(IONISATION_10_GEV_MEV_CM2_G, rel=0.05)
    kinetic = np.geomspace(0.1, 10.0, 400)
    minimum = ml.ionisation_loss_gev_cm2_per_g(kinetic + M, "water").min() * 1e3  # measured 1.979
    assert minimum == pytest.approx(MINIMUM_IONISATION_MEV_CM2_G, rel=0.02)
    # The density effect only lowers the loss, and restricting the δ rays lowers it further.
    restricted = ml.ionisation_loss_gev_cm2_per_g(10.0 + M, "water", 1e-3)
    assert 0 < restricted < loss * 1e-3


def test_csda_range_of_an_all_continuous_muon_matches_the_pdg_table():
    tables = ml._sampling_tables("water", 1.0, None)  # v_cut = 1: every loss continuous
    range_g_cm2 = np.interp(np.log(1.0), tables.fine_ln_kinetic, tables.range_m) * 100 * 1.038
    assert range_g_cm2 == pytest.approx(CSDA_RANGE_1_GEV_G_CM2, rel=0.02)  # measured 473.6


def test_cross_sections_vanish_outside_their_kinematic_range():
    energy = 1e3
    for process in ml.RADIATIVE:
        lo, hi = ml.v_limits(process, energy, "ice")
        v = np.array([lo * 0.5, np.sqrt(lo * hi), 0.5 * (1 + hi)])
        rate = ml.differential_rate_per_g(process, energy, v, "ice")
        below_is_empty = process != "bremsstrahlung"  # no threshold: v_min is only a floor
        assert (rate[0] == 0) == below_is_empty and rate[2] == 0 and rate[1] > 0, process
    assert np.all(ml.differential_rate_per_g("pair_production", 1e-2, [0.1, 0.5], "ice") == 0)


@pytest.mark.parametrize("energy_gev, v", [(1e3, 1e-3), (1e4, 0.05), (1e6, 0.3)])
def test_pair_production_asymmetry_quadrature_converges(energy_gev, v):
    element = ml.OXYGEN
    threshold = 4 * ml.ELECTRON_MASS_GEV / (energy_gev * v)
    rho_max = (1 - 6 * M**2 / (energy_gev**2 * (1 - v))) * np.sqrt(1 - threshold)
    prefactor = (4 / (3 * np.pi) * element.z * (element.z + ml._atomic_electron_zeta(np.array(energy_gev), element))
                 * (ml.FINE_STRUCTURE * ml.CLASSICAL_ELECTRON_RADIUS_CM) ** 2 * (1 - v) / v)
    integral, _ = quad(lambda rho: ml._pair_integrand(energy_gev, v, rho**2, element), 0, rho_max, limit=200)
    assert ml.pair_production_dsigma_dv(energy_gev, v, element) == pytest.approx(prefactor * integral, rel=0.01)


def csda_energy_gev(energy_gev, length_m, medium, steps=20):
    """Solve dE/dx = -⟨dE/dx⟩(E) with RK4: the mean-loss integral of the same cross sections."""
    energy, h = float(energy_gev), length_m / steps

    def rate(e):
        return float(ml.mean_energy_loss_gev_per_m(e, medium))

    for _ in range(steps):
        k1 = rate(energy)
        k2 = rate(energy - 0.5 * h * k1)
        k3 = rate(energy - 0.5 * h * k2)
        k4 = rate(energy - h * k3)
        energy -= h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return energy


@pytest.mark.parametrize("e_cut_gev, n_muons, rtol", [(None, 20_000, 0.02), (1.0, 4_000, 0.04)])
def test_sampled_mean_loss_matches_the_mean_loss_integral(e_cut_gev, n_muons, rtol):
    # The loss of one 10 TeV muon fluctuates by ~1 TeV per 100 m (rare v ~ 0.5 losses), so
    # 500 muons over 100 m only pin the mean to ±10 %; 20 000 muons over 1 km pin it to ±0.5 %.
    energy, length = 1e4, 1000.0
    losses = ml.sample_stochastic_losses(np.full(n_muons, energy), length, "ice", 0.05,
                                         np.random.default_rng(11), e_cut_gev=e_cut_gev)
    lost = energy - losses.final_energy_gev
    expected = energy - csda_energy_gev(energy, length, "ice")  # ≈ 2.9 TeV
    assert lost.mean() == pytest.approx(expected, rel=rtol)
    # A muon may stop after a loss of nearly all its energy (v → v_max leaves it ~0.3 GeV).
    assert np.all((losses.distance_m == length) | losses.stopped)
    parts = losses.discrete_loss_gev + losses.continuous_loss_gev
    np.testing.assert_allclose(parts, lost, rtol=1e-12)
    assert np.all(losses.continuous_loss_gev > 0)


def test_stochastic_fraction_grows_with_energy():
    fractions = []
    for energy in (1e2, 1e4, 1e6):
        losses = ml.sample_stochastic_losses(np.full(2000, energy), 100.0, "ice", 0.05,
                                             np.random.default_rng(3), e_cut_gev=None)
        fractions.append(losses.discrete_loss_gev.sum() / (energy * 2000 - losses.final_energy_gev.sum()))
    # Below ~1 TeV ionisation dominates and is mostly continuous; radiative losses with v > 5 %
    # carry about half of the loss at high energy.
    assert fractions[0] < fractions[1] < fractions[2]
    assert fractions[0] < 0.25 and fractions[2] > 0.4


def test_loss_count_and_types_follow_the_rates_above_the_cut():
    energy, length, n = 1e4, 5.0, 4000  # the muon energy barely changes over 5 m
    losses = ml.sample_stochastic_losses(np.full(n, energy), length, "ice", 0.05, np.random.default_rng(5))
    cut = ml.DEFAULT_E_CUT_GEV / energy
    rates = np.array([quad(lambda v, p=p: float(ml.differential_rate_per_m(p, energy, v, "ice")),
                           max(cut, float(ml.v_limits(p, energy, "ice")[0])),
                           float(ml.v_limits(p, energy, "ice")[1]), limit=400, points=[1e-3, 1e-2, 0.1])[0]
                      for p in ml.LOSS_TYPES])
    expected = rates * length * n
    counts = np.bincount(losses.loss_type, minlength=len(ml.LOSS_TYPES))
    assert counts.sum() == pytest.approx(expected.sum(), rel=4 / np.sqrt(expected.sum()))
    assert np.all(np.abs(counts - expected) < 4 * np.sqrt(expected) + 2), (counts, expected)
    assert np.all(losses.energy_gev >= ml.DEFAULT_E_CUT_GEV * (1 - 1e-9))


def test_losses_are_ordered_along_each_track_and_inside_it():
    losses = ml.sample_stochastic_losses(np.geomspace(30, 1e5, 300), 800.0, "water", 0.05,
                                         np.random.default_rng(2))
    muon = losses.muon_index
    assert np.all(np.diff(losses.offsets) >= 0) and losses.offsets[-1] == len(losses.energy_gev)
    same = muon[1:] == muon[:-1]
    assert np.all(np.diff(losses.position_m)[same] >= 0)
    assert np.all(losses.position_m <= losses.distance_m[muon] + 1e-9)
    assert np.all(losses.energy_gev > 0) and np.all(losses.final_energy_gev >= M)
    # Losses above 1 GeV are discrete while the muon has more than 20 GeV (cut = 1 GeV there).
    fast = losses.final_energy_gev[muon] > 20.0
    assert np.all(losses.energy_gev[fast] >= 1.0 - 1e-9)


def test_low_energy_muons_stop_at_their_range():
    losses = ml.sample_stochastic_losses(np.full(500, 1.0 + M), 50.0, "water", 0.05, np.random.default_rng(4))
    assert np.all(losses.stopped) and np.all(losses.final_energy_gev == M)
    # Mean range ≈ CSDA range 473.2 g/cm² = 4.56 m of sea water.
    assert losses.distance_m.mean() == pytest.approx(CSDA_RANGE_1_GEV_G_CM2 / 103.8, rel=0.02)
    at_rest = ml.sample_stochastic_losses(np.array([M, 5.0]), np.array([10.0, 0.0]), "ice", 0.05,
                                          np.random.default_rng(0))
    assert np.all(at_rest.distance_m == 0) and len(at_rest.energy_gev) == 0
    np.testing.assert_allclose(at_rest.final_energy_gev, [M, 5.0])


def test_same_seed_gives_the_same_losses():
    def run(seed):
        return ml.sample_stochastic_losses(np.geomspace(1e2, 1e6, 200), 500.0, "ice", 0.05,
                                           np.random.default_rng(seed))

    first, second, other = run(7), run(7), run(8)
    for name in ("offsets", "position_m", "energy_gev", "loss_type", "final_energy_gev", "distance_m"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert not np.array_equal(first.final_energy_gev, other.final_energy_gev)


def test_sampler_is_fast_and_rejects_energies_beyond_its_tables():
    ml._sampling_tables("ice", 0.05, ml.DEFAULT_E_CUT_GEV)  # built once, cached
    start = time.perf_counter()
    ml.sample_stochastic_losses(np.full(1000, 1e3), 1000.0, "ice", 0.05, np.random.default_rng(1))
    assert time.perf_counter() - start < 1.0  # measured ≈ 0.03 s
    with pytest.raises(ValueError, match="outside the tables"):
        ml.sample_stochastic_losses(np.array([1e9]), 1.0, "ice", 0.05, np.random.default_rng(1))
    with pytest.raises(ValueError, match="unknown medium"):
        ml.sample_stochastic_losses(np.array([1e3]), 1.0, "air", 0.05, np.random.default_rng(1))


def test_highland_width_and_sampled_deflections():
    # Hand calculation: 10 GeV muon, 1 m of sea water: x/X0 = 103.8/36.08 = 2.877,
    # θ0 = 13.6 MeV / (β p) · sqrt(2.877) · (1 + 0.038 ln(2.877/β²)) = 2.400 mrad.
    theta0 = float(ml.highland_theta0_rad(10.0, 1.0, "water"))
    assert theta0 == pytest.approx(2.400e-3, rel=1e-3)
    theta_x, theta_y = ml.sample_deflection(np.full(20_000, 10.0), 1.0, "water", np.random.default_rng(9))
    assert np.sqrt(np.mean(theta_x**2)) == pytest.approx(theta0, rel=0.03)
    assert np.sqrt(np.mean(theta_y**2)) == pytest.approx(theta0, rel=0.03)


def test_deflected_directions_carry_the_projected_angles():
    rng = np.random.default_rng(6)
    start = rng.normal(size=(1000, 3))
    start /= np.linalg.norm(start, axis=1, keepdims=True)
    start[0] = [0.0, 0.0, -1.0]  # along the frame's fallback axis
    theta_x, theta_y = rng.normal(0, 0.01, size=(2, 1000))
    turned = ml.deflect(start, theta_x, theta_y)
    np.testing.assert_allclose(np.linalg.norm(turned, axis=1), 1.0)
    angle = np.arccos(np.clip(np.sum(turned * start, axis=1), -1, 1))
    np.testing.assert_allclose(angle, np.hypot(theta_x, theta_y), rtol=1e-3)


def test_scattering_along_a_track_adds_up_in_quadrature():
    n_muons, n_steps = 4000, 10
    energy = np.full((n_muons, n_steps), 50.0)
    directions = ml.scatter_along_track(np.array([0.0, 0.0, 1.0]), energy, 10.0, "ice", np.random.default_rng(12))
    assert directions.shape == (n_muons, n_steps, 3)
    projected = np.arctan2(directions[:, -1, 0], directions[:, -1, 2])
    expected = np.sqrt(n_steps) * float(ml.highland_theta0_rad(50.0, 10.0, "ice"))
    assert np.sqrt(np.mean(projected**2)) == pytest.approx(expected, rel=0.05)
