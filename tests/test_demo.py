"""`nurec demo` (sim.demo.run_demo): the same seed gives the same metrics.json, timing apart."""

import json

import pytest

from nurec.evaluate.quality import EvaluationSettings
from nurec.evaluate.report import TIMING_KEY, without_timing
from sim.demo import DemoConfig, demo_command, run_demo

CONFIG = DemoConfig(n_events=40, methods=("linefit", "charge-energy", "likelihood"), slow_method_events=6,
                    evaluation=EvaluationSettings(n_bootstrap=100))
TIMING_FIELDS = {"n_events", "wall_s", "cpu_s", "events_per_s", "events_per_s_per_core", "load_s", "warmup_s",
                 "warmup_events"}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    return [run_demo(CONFIG, tmp_path_factory.mktemp(f"demo{i}"), progress=None) for i in range(2)]


def test_same_seed_gives_identical_metrics_apart_from_timing(two_runs):
    first, second = (json.loads(run.report.metrics_path.read_text()) for run in two_runs)
    assert json.dumps(without_timing(first), sort_keys=True) == json.dumps(without_timing(second), sort_keys=True)
    # the timing is all in one place, and only timing is there
    assert set(first[TIMING_KEY]) == {"linefit", "charge-energy", "likelihood"}
    for timing in first[TIMING_KEY].values():
        assert set(timing) == TIMING_FIELDS
    assert first[TIMING_KEY] != second[TIMING_KEY]  # wall-clock numbers do differ between runs


def test_slow_method_runs_on_the_same_leading_events_fast_ones_on_all(two_runs):
    metrics = json.loads(two_runs[0].report.metrics_path.read_text())
    slow = metrics["methods"]["likelihood"]
    assert slow["subsample"] and slow["events_evaluated"] == 6 and slow["counts"]["n"] == 6
    assert metrics["methods"]["linefit"]["events_evaluated"] == 40 and not metrics["methods"]["linefit"]["subsample"]
    predictions = {run.name: run.predictions for run in two_runs[0].runs}
    assert list(predictions["likelihood"]["event_id"]) == list(predictions["linefit"]["event_id"][:6])
    # a slow fit with 6 events (3 tracks at most) is never judged, and says so
    assert "likelihood" in metrics["verdicts"]["track_direction"]["excluded"]
    assert metrics["verdicts"]["track_direction"]["best"] == "linefit"
    assert metrics["timing"]["likelihood"]["warmup_events"] == 1 and metrics["timing"]["likelihood"]["n_events"] == 5
    assert metrics["command"] == demo_command(CONFIG) == "nurec demo --events 40 --seed 2026 --methods " \
                                                        "linefit,charge-energy,likelihood --slow-events 6"


def test_demo_config_rejects_no_slow_events():
    with pytest.raises(ValueError, match="slow_method_events"):
        DemoConfig(slow_method_events=0).max_events()
