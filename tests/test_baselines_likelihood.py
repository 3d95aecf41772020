import awkward as ak
import numpy as np
import pytest
from scipy.stats import spearmanr

from nurec.baselines.cleaning import clean_hits
from nurec.baselines.common import detector_setup, flatten_hits, opening_angle_deg, truth_directions
from nurec.baselines.likelihood import TrackFitSettings, first_pulses, track_log_likelihood_terms
from nurec.evaluate.metrics import coverage
from nurec.methods.registry import build_method
from sim.config import SimulationConfig
from sim.simulate import simulate_events


@pytest.fixture(scope="module")
def numu_events():
    """Simulated νμ CC events, 1-100 TeV, E^-2, icecube86 (independent of the BDT's training seed)."""
    config = SimulationConfig(detector="icecube86", flavors=("numu",), interactions=("CC",),
                              energy_min_gev=1e3, energy_max_gev=1e5, n_events=120, seed=31)
    return simulate_events(config)[0]


@pytest.fixture(scope="module")
def bdt_predictions(numu_events):
    return build_method("bdt-uncertainty", n_jobs=2).reconstruct(numu_events)


def _errors(predictions, events):
    return opening_angle_deg(predictions[["dir_x", "dir_y", "dir_z"]].to_numpy(float), truth_directions(events))


def test_likelihood_median_error_well_below_linefit(numu_events, bdt_predictions):
    linefit = build_method("linefit").reconstruct(numu_events)
    linefit_median = np.median(_errors(linefit, numu_events))
    likelihood_median = np.nanmedian(_errors(bdt_predictions, numu_events))
    assert (bdt_predictions.fit_status == "ok").mean() > 0.95
    assert likelihood_median < 0.6 * linefit_median, (likelihood_median, linefit_median)


def _rotate(direction, angle_deg, rng):
    axis = np.cross(direction, rng.normal(size=3))
    axis /= np.linalg.norm(axis)
    angle = np.radians(angle_deg)
    return np.cos(angle) * direction + np.sin(angle) * np.cross(axis, direction)


def test_likelihood_higher_at_truth_than_10_degrees_away(numu_events):
    setup = detector_setup("icecube86")
    settings = TrackFitSettings(setup.medium, setup.response.jitter_ns, setup.noise_rate_per_ns)
    pulses, _ = first_pulses(clean_hits(flatten_hits(numu_events), "ice"))
    truth = truth_directions(numu_events)
    vertex = np.column_stack([ak.to_numpy(numu_events.truth[k]) for k in ("vertex_x", "vertex_y", "vertex_z")])
    t0 = ak.to_numpy(numu_events.truth.t0)
    rng = np.random.default_rng(3)
    differences = []
    for i in range(60):
        sl = pulses.event_slice(i)
        args = (pulses["pos"][sl], pulses["t"][sl], np.ones(sl.stop - sl.start))
        at_truth = track_log_likelihood_terms(*args, vertex[i], t0[i], truth[i], settings).sum()
        away = track_log_likelihood_terms(*args, vertex[i], t0[i], _rotate(truth[i], 10.0, rng), settings).sum()
        differences.append(at_truth - away)
    differences = np.asarray(differences)
    assert differences.mean() > 0 and (differences > 0).mean() > 0.8


def test_bdt_uncertainty_correlates_with_error_and_covers_68_percent(numu_events, bdt_predictions):
    ok = (bdt_predictions.fit_status == "ok").to_numpy()
    error = _errors(bdt_predictions, numu_events)[ok]
    sigma = bdt_predictions.angular_uncertainty_deg.to_numpy()[ok]
    assert np.isfinite(sigma).all() and (sigma > 0).all()
    assert spearmanr(sigma, error).statistic > 0.3
    assert 0.60 <= coverage(error, sigma) <= 0.76
    assert (bdt_predictions.method == "bdt-uncertainty").all()
