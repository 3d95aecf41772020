"""Metric functions against hand-computed cases."""

import numpy as np
import pytest

from nurec.evaluate import metrics as m


def test_angular_distance_is_accurate_near_zero():
    eps = 1e-7  # rad; arccos(dot) would return 0 or ~1e-8 rad of rounding noise here
    a = np.array([[1.0, 0.0, 0.0]])
    b = np.array([[np.cos(eps), np.sin(eps), 0.0]])
    assert m.angular_distance_deg(a, b)[0] == pytest.approx(np.degrees(eps), rel=1e-6)
    assert m.angular_distance_deg(a, a)[0] == 0.0


def test_angular_distance_is_accurate_near_pi():
    eps = 1e-7
    a = np.array([[0.0, 0.0, 1.0]])
    b = np.array([[np.sin(eps), 0.0, -np.cos(eps)]])
    assert m.angular_distance_deg(a, b)[0] == pytest.approx(180.0 - np.degrees(eps), abs=1e-9)
    assert 180.0 - m.angular_distance_deg(a, b)[0] == pytest.approx(np.degrees(eps), rel=1e-3)


def test_angular_distance_ignores_norm_and_marks_invalid_rows_nan():
    a = np.array([[2.0, 0.0, 0.0], [1.0, 0.0, 0.0], [np.nan, 0.0, 1.0], [0.0, 0.0, 0.0]])
    b = np.array([[0.0, 5.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    got = m.angular_distance_deg(a, b)
    assert got[:2] == pytest.approx([90.0, 45.0])
    assert np.isnan(got[2:]).all()


def test_azimuth_residual_wraps_across_zero():
    d_zen, d_az = m.angle_residuals_deg(np.radians([10.0]), np.radians([359.0]), np.radians([12.0]), np.radians([1.0]))
    assert d_zen[0] == pytest.approx(-2.0)
    assert d_az[0] == pytest.approx(-2.0)


def test_bootstrap_median_ci_is_seeded_and_has_expected_width():
    rng = np.random.default_rng(5)
    x = rng.normal(3.0, 1.0, 400)
    first = m.bootstrap_median_ci(x, seed=11)
    assert first == m.bootstrap_median_ci(x, seed=11)
    assert first.low < first.median < first.high
    # Standard error of a normal median: sqrt(pi/2) sigma / sqrt(n); 68% CI is about +-1 SE.
    expected_width = 2 * np.sqrt(np.pi / 2) / np.sqrt(len(x))
    assert first.high - first.low == pytest.approx(expected_width, rel=0.3)


def test_bootstrap_median_ci_handles_empty_and_nan():
    assert np.isnan(m.bootstrap_median_ci(np.array([np.nan])).median)
    single = m.bootstrap_median_ci(np.array([2.0, np.nan]))
    assert (single.median, single.low, single.high, single.n) == (2.0, 2.0, 2.0, 1)


def test_coverage_counts_errors_within_radius():
    assert m.coverage([1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 2.0]) == 0.5
    assert m.coverage([1.0, np.nan, 3.0], [2.0, 2.0, np.nan]) == 1.0
    assert np.isnan(m.coverage([np.nan], [1.0]))


def test_coverage_curve_is_diagonal_for_rayleigh_errors_and_low_when_radius_too_small():
    rng = np.random.default_rng(1)
    sigma = rng.uniform(0.5, 5.0, 20_000)
    error = sigma * np.sqrt(rng.standard_normal(20_000) ** 2 + rng.standard_normal(20_000) ** 2)
    r68 = m.RAYLEIGH_68_FACTOR * sigma
    curve = m.coverage_curve(error, r68)
    assert np.abs(curve["observed"] - curve["nominal"]).max() < 0.015
    assert m.coverage(error, r68) == pytest.approx(0.68, abs=0.01)
    assert m.coverage(error, 0.5 * r68) < 0.3
    pulls = m.angular_pulls(error, r68)
    assert np.median(pulls) == pytest.approx(np.sqrt(2 * np.log(2)), rel=0.03)


def test_energy_resolution_of_known_gaussian_smear():
    rng = np.random.default_rng(2)
    energy_true = 10 ** rng.uniform(3, 5, 20_000)
    energy_reco = energy_true * 10 ** rng.normal(0.05, 0.2, 20_000)
    resolution, bias = m.resolution_and_bias(m.log_energy_ratio(energy_reco, energy_true))
    assert resolution == pytest.approx(0.2, rel=0.03)
    assert bias == pytest.approx(0.05, abs=0.006)


def test_log_energy_ratio_is_nan_for_missing_or_nonpositive_energy():
    got = m.log_energy_ratio([100.0, np.nan, -1.0, 10.0], [10.0, 10.0, 10.0, 0.0])
    assert got[0] == pytest.approx(1.0)
    assert np.isnan(got[1:]).all()


def test_auc_of_separable_and_random_scores():
    rng = np.random.default_rng(3)
    truth = rng.random(20_000) < 0.4
    _, _, separable = m.roc_auc(truth + rng.uniform(0, 0.5, truth.size), truth)
    assert separable == 1.0
    _, _, random = m.roc_auc(rng.random(truth.size), truth)
    assert random == pytest.approx(0.5, abs=0.02)
    _, _, inverted = m.roc_auc(-truth.astype(float), truth)
    assert inverted == 0.0
    assert np.isnan(m.roc_auc(rng.random(10), np.ones(10, bool))[2])


def test_fit_status_counts_every_non_ok_status_as_failed():
    counts = m.fit_status_counts(["ok", "failed: 2 hits, need at least 3", "failed: 2 hits, need at least 3", None, "ok"])
    assert counts["n"] == 5 and counts["n_ok"] == 2 and counts["n_failed"] == 3
    assert counts["failure_reasons"] == {"2 hits, need at least 3": 2, "no status": 1}


def test_energy_bins_cover_range_and_flag_sparse_bins():
    edges = m.energy_bin_edges(np.array([1.5e3, 2e4, 9.9e4]), bins_per_decade=2)
    assert edges[0] <= 1.5e3 and edges[-1] >= 9.9e4
    assert np.allclose(np.diff(np.log10(edges)), 0.5)
    energy = np.array([1.2e3] * 30 + [5e4] * 3)
    table = m.binned_quantiles(np.arange(33.0), energy, np.array([1e3, 1e4, 1e5]), min_events=20)
    assert list(table["n"]) == [30, 3]
    assert list(table["low_stats"]) == [False, True]
    assert table["median"].iloc[0] == pytest.approx(14.5)
    single = m.binned_quantiles(np.array([4.0]), np.array([2e3]), np.array([1e3, 1e4]))
    assert single["median"].iloc[0] == 4.0 and np.isnan(single["q16"].iloc[0])  # no width from one event


def test_throughput_per_core_uses_cpu_time():
    rate = m.throughput(1000, wall_s=2.0, cpu_s=4.0)
    assert rate["events_per_s"] == 500.0
    assert rate["events_per_s_per_core"] == 250.0


def test_weighted_quantile_matches_numpy_unweighted_and_follows_the_weights():
    x = np.random.default_rng(1).normal(size=501)
    assert m.weighted_quantile(x, 0.5) == pytest.approx(np.median(x))
    assert m.weighted_median(x, np.ones_like(x)) == np.median(x)  # odd count: the middle event
    # integer weights act like repeated events
    values, weights = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 1.0, 5.0])
    repeated = np.repeat(values, weights.astype(int))
    for q in (0.1, 0.3, 0.5, 0.84):
        assert m.weighted_quantile(values, q, weights) == np.quantile(repeated, q, method="inverted_cdf")
    assert m.weighted_quantile(values, 0.5, weights * 0.37) == m.weighted_quantile(values, 0.5, weights)
    assert m.weighted_median(values, np.array([0.0, 0.0, 1.0, 0.0])) == 3.0  # zero weight: not counted
    assert np.isnan(m.weighted_median(np.array([np.nan])))


def test_bootstrap_with_unit_weights_gives_the_unweighted_median():
    x = np.random.default_rng(2).exponential(size=201)  # odd: both medians are the middle event
    plain = m.bootstrap_median_ci(x, n_boot=200, seed=3)
    weighted = m.bootstrap_median_ci(x, n_boot=200, seed=3, weights=np.ones_like(x))
    assert weighted.n == plain.n and weighted.median == plain.median
    assert weighted.low == pytest.approx(plain.low, rel=0.05) and weighted.high == pytest.approx(plain.high, rel=0.05)


def test_migration_matrix_counts_every_event_once():
    true = np.array([1.5e3, 2e3, 5e3, 5e4, 5e4])
    reco = np.array([1.5e3, 2e4, 5e3, 5e8, np.nan])  # one far above the axis, one without an estimate
    edges = np.array([1e3, 1e4, 1e5])
    matrix = m.migration_matrix(true, reco, edges, np.array([1e2, 1e3, 1e4, 1e5, 1e6]))
    assert matrix["counts"] == [[0, 0], [2, 0], [1, 0], [0, 0]]  # rows: reco bins, columns: true bins
    assert matrix["reco_above"] == [0, 1] and matrix["reco_below"] == [0, 0] and matrix["n"] == 4
    weighted = m.migration_matrix(true, reco, edges, np.array([1e2, 1e3, 1e4, 1e5, 1e6]), weights=np.full(5, 0.5))
    assert weighted["counts"][1] == [1.0, 0.0] and weighted["n"] == 4


def test_rank_auc_matches_sklearn_and_handles_ties_and_one_class():
    rng = np.random.default_rng(4)
    score, label = rng.integers(0, 5, 300).astype(float), rng.random(300) < 0.4
    score[label] += 1.0
    assert m.rank_auc(score, label) == pytest.approx(m.roc_auc(score, label)[2])
    rows = m.rank_auc(np.vstack([score, score]), np.vstack([label, np.ones_like(label)]))
    assert rows[0] == pytest.approx(m.roc_auc(score, label)[2]) and np.isnan(rows[1])


def test_miscalibration_factor_is_one_when_calibrated_and_symmetric():
    rng = np.random.default_rng(5)
    sigma = 1.0
    error = sigma * np.sqrt(-2 * np.log(rng.random(20000)))  # Rayleigh(sigma)
    radius = np.full_like(error, m.RAYLEIGH_68_FACTOR * sigma)
    assert m.miscalibration_factor(error, radius) == pytest.approx(1.0, abs=0.03)
    assert m.miscalibration_factor(error, radius / 2) == pytest.approx(2.0, rel=0.03)
    assert m.miscalibration_factor(error, radius * 2) == pytest.approx(2.0, rel=0.03)
