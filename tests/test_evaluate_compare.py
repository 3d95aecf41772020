"""Paired comparisons and verdicts: on the events both methods reconstructed, seeded, few events never judged."""

import numpy as np
import pandas as pd
import pytest

from nurec.evaluate.compare import TASKS, judge_task, ratio
from nurec.evaluate.quality import EvaluationSettings, MethodResult

SETTINGS = EvaluationSettings(n_bootstrap=300)
TRACKS = next(task for task in TASKS if task.key == "track_direction")


def result(name, errors, ok=None):
    """A method whose per-event angular errors are ``errors`` on all-track events 0..n-1."""
    n = len(errors)
    status = np.where(np.ones(n, bool) if ok is None else ok, "ok", "failed: test")
    per_event = pd.DataFrame({"event_id": np.arange(n), "is_track": True, "fit_status": status,
                              "angular_error_deg": np.where(status == "ok", errors, np.nan)})
    return MethodResult(name, "1", per_event, {})


def test_paired_ratio_is_exact_for_a_method_twice_as_wrong_on_every_event():
    errors = np.random.default_rng(1).exponential(2.0, 200)
    outcome = judge_task(TRACKS, [result("double", 2 * errors), result("single", errors)], SETTINGS)
    verdict, (pair,) = outcome.verdict, outcome.comparisons
    assert verdict["best"] == "single" and verdict["runner_up"] == "double"
    # the same events in every resample: the ratio is 2 in each, so is its interval
    assert (pair["ratio_b_to_a"], pair["ratio_ci_low"], pair["ratio_ci_high"]) == pytest.approx((2.0, 2.0, 2.0))
    assert verdict["decisive"] and "single is best" in verdict["statement"]


def test_comparison_uses_only_events_both_reconstructed():
    rng = np.random.default_rng(2)
    errors = rng.exponential(2.0, 300)
    # "lucky" failed on every hard event: on its own events its median looks 3x better
    lucky_ok = errors < np.quantile(errors, 0.5)
    outcome = judge_task(TRACKS, [result("fair", errors), result("lucky", errors, ok=lucky_ok)], SETTINGS)
    pair = outcome.comparisons[0]
    assert pair["n_events"] == int(lucky_ok.sum())
    assert pair["ratio_b_to_a"] == pytest.approx(1.0)  # identical on the common events
    assert not outcome.verdict["decisive"] and "not a clear win" in outcome.verdict["statement"]


def test_methods_with_few_events_are_excluded_and_bootstrap_is_seeded():
    rng = np.random.default_rng(3)
    errors = rng.exponential(2.0, 100)
    few_ok = np.arange(100) < 15
    results = [result("a", errors), result("b", errors * rng.uniform(0.8, 1.6, 100)),
               result("few", errors / 10, ok=few_ok)]
    first, again = judge_task(TRACKS, results, SETTINGS), judge_task(TRACKS, results, SETTINGS)
    assert first.verdict == again.verdict and first.comparisons == again.comparisons
    assert first.verdict["excluded"] == {"few": "15 usable events, fewer than 20"}
    assert first.verdict["best"] == "a" and [c["method_b"] for c in first.comparisons] == ["b"]
    other_seed = judge_task(TRACKS, results, EvaluationSettings(n_bootstrap=300, seed=1))
    assert other_seed.comparisons[0]["ratio_ci_low"] != first.comparisons[0]["ratio_ci_low"]
    none = judge_task(TRACKS, [results[2]], SETTINGS)
    assert none.verdict["best"] is None and "no verdict" in none.verdict["statement"]


def test_ratio_of_zero_losses():
    assert ratio(0.0, 0.0) == 1.0 and ratio(1.0, 0.0) == np.inf and ratio(0.0, 2.0) == 0.0
