"""Event features and separability used to compare nurec's simulation with official Monte Carlo."""

import numpy as np
import pandas as pd
import pytest

from nurec.evaluate.fidelity import (
    FEATURES,
    background_rates,
    event_features,
    local_coincidence,
    module_of_positions,
    separability,
)
from nurec.physics.medium import get_medium
from sim.config import SimulationConfig
from sim.simulate import simulate_events


def test_pmts_of_one_module_are_grouped_and_modules_kept_apart():
    dom = np.array([[0.0, 0.0, 0.0], [0.2, 0.0, 0.0], [0.0, 0.15, 0.1]])
    positions = np.concatenate([dom, dom + [0.0, 0.0, 9.0], dom[:1]])
    module = module_of_positions(positions)
    assert len(set(module[:3])) == 1 and len(set(module[3:6])) == 1
    assert module[0] != module[3] and module[6] == module[0]


def test_local_coincidences_need_the_same_event_and_module_within_the_window():
    event = np.array([0, 0, 0, 1, 1])
    module = np.array([5, 5, 6, 5, 5])
    t = np.array([100.0, 108.0, 104.0, 100.0, 150.0])
    assert local_coincidence(event, module, t).tolist() == [True, True, False, False, False]


def test_features_of_noise_free_simulated_events_see_their_own_light():
    events, _ = simulate_events(SimulationConfig(detector="orca6", flavors=("numu",), n_events=30, seed=4,
                                                 energy_min_gev=50, energy_max_gev=500, noise=False))
    features = event_features(events, get_medium("water"))
    assert list(features.columns) == FEATURES and len(features) == 30
    # Without background every hit is light of the event: almost none lands outside the Cherenkov window,
    # and the earliest residuals sit near the direct time (jitter of a few ns; light of the hadronic
    # shower at the vertex can reach modules behind it a few ns before the track's Cherenkov light).
    assert features["outside_window_fraction"].median() < 0.05
    assert abs(features["residual_q16_ns"].median()) < 10.0
    assert (features["direct_hits"] > 0).mean() > 0.8


def test_separability_is_chance_for_one_distribution_and_high_for_shifted_ones():
    rng = np.random.default_rng(0)
    same_a = pd.DataFrame({"f": rng.normal(size=120)})
    same_b = pd.DataFrame({"f": rng.normal(size=120)})
    shifted = pd.DataFrame({"f": rng.normal(3.0, 1.0, size=120)})
    chance = separability(same_a, same_b, ["f"], seed=1, repeats=3)
    assert chance.auc_mean == pytest.approx(0.5, abs=0.12)
    assert separability(same_a, shifted, ["f"], seed=1, repeats=3).auc_mean > 0.95


def test_background_measured_in_simulated_km3net_events_is_the_configured_background():
    """The calibration that sets KM3NeT's background from official files recovers nurec's own settings."""
    from nurec.geometry import get_geometry
    from nurec.physics.response import KM3NET_RESPONSE

    events, _ = simulate_events(SimulationConfig(detector="km3net-orca", flavors=("nue",), n_events=150, seed=8,
                                                 energy_min_gev=20, energy_max_gev=200))
    geometry = get_geometry("km3net-orca")
    rates = background_rates(events, geometry.module_position, geometry.pmts_per_module, get_medium("water"))
    # Dead PMTs (1%) and pulses below the ToT threshold (~1% of single photo-electrons) record nothing.
    assert rates.singles_rate_hz == pytest.approx(KM3NET_RESPONSE.noise_rate_hz * 0.98, rel=0.05)
    assert rates.genuine_pair_rate_hz == pytest.approx(KM3NET_RESPONSE.coincidence_rate_hz * 0.96, rel=0.25)
    assert rates.random_pair_rate_hz < rates.pair_rate_hz


def test_readout_calibrations_measured_in_simulated_events_are_the_configured_ones():
    """The per-file calibrations bench_fidelity takes from official files recover nurec's own settings."""
    from nurec.evaluate.fidelity import (
        single_pe_charge_quantiles,
        single_pe_tot_ns,
        snapshot_margins_ns,
    )

    events, _ = simulate_events(SimulationConfig(
        detector="km3net-orca", flavors=("nue",), n_events=30, seed=9, energy_min_gev=20, energy_max_gev=200,
        response_overrides={"snapshot_before_ns": 700.0, "snapshot_after_ns": 1100.0, "tot_spe_ns": 24.0}))
    before, after = snapshot_margins_ns(events)
    # The window's edges are found by the background's random hits (~70 per µs on this detector) and the
    # triggered hits lie within the light's coincidence span: the 90% quantile sits just inside the margins.
    assert 650.0 < before <= 700.0 + 30.0 and 1050.0 < after <= 1100.0 + 30.0
    assert single_pe_tot_ns(events, get_medium("water")) == pytest.approx(24.0, abs=1.0)
    quantiles = single_pe_charge_quantiles(events, get_medium("water"))
    assert len(quantiles) == 21 and quantiles[10] == pytest.approx(1.0, abs=0.1)
