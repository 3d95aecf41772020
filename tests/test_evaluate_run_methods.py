"""Running registered methods for a report: failures kept per batch, time budgets, unready methods skipped."""

import awkward as ak
import numpy as np
import pytest

from nurec.evaluate import run_methods
from nurec.io.schema import empty_predictions, finish_predictions
from nurec.methods import registry
from nurec.methods.contract import MethodInfo
from sim.config import SimulationConfig
from sim.simulate import simulate_events

CLOCK = {"now": 0.0}


class TruthCopy:
    """Returns the true direction; raises on any batch holding event id 7; advances a fake clock 0.1 s/event."""

    name = "truth-copy"
    version = "9.9"

    def __init__(self, fail_on: int = 7, detector=None):
        self.fail_on = fail_on

    def describe(self):
        return MethodInfo(self.name, self.version, "test: the true direction", ("direction",))

    def reconstruct(self, events):
        ids = ak.to_numpy(events.event_id)
        CLOCK["now"] += 0.1 * len(events)
        if self.fail_on in ids:
            raise RuntimeError("cannot handle event 7\nsecond line")
        table = empty_predictions(ids, self.name)
        for axis in ("x", "y", "z"):
            table[f"dir_{axis}"] = ak.to_numpy(events.truth[f"dir_{axis}"])
        return finish_predictions(table)


def broken_factory(detector=None):
    raise FileNotFoundError("no trained model at models/x.pt")


@pytest.fixture(scope="module")
def events():
    events, _ = simulate_events(SimulationConfig(detector="icecube86", n_events=40, seed=4))
    return events


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(registry._METHODS, "truth-copy", registry.MethodSpec("truth-copy", f"{__name__}:TruthCopy", "test"))
    monkeypatch.setitem(registry._METHODS, "broken", registry.MethodSpec("broken", f"{__name__}:broken_factory", "test"))


def test_a_batch_that_raises_fails_only_its_events_with_the_reason(events, registered):
    run = run_methods.run_method("truth-copy", events, batch_size=5)
    status = run.predictions.set_index("event_id")["fit_status"]
    assert len(status) == len(events)
    failed = status[status != "ok"]
    assert list(failed.index) == [7]  # its batch of 5 was retried event by event
    assert failed.iloc[0] == "failed: method raised RuntimeError: cannot handle event 7"
    assert np.isnan(run.predictions.set_index("event_id").loc[7, "dir_x"])
    assert run.version == "9.9" and run.throughput["n_events"] == len(events) and not run.subsample


def test_slow_method_runs_on_a_subsample_within_its_budget(events, registered, monkeypatch):
    monkeypatch.setattr(run_methods.time, "perf_counter", lambda: CLOCK["now"])
    run = run_methods.run_method("truth-copy", events, {"fail_on": -1}, time_budget_s=2.0, probe_events=4)
    # 0.1 s per event: the budget of 2 s affords 20 events (4 probed, then 16 more).
    assert len(run.predictions) == 20
    assert run.subsample
    assert run.throughput["events_per_s"] == pytest.approx(10.0)


def test_unready_method_is_skipped_with_its_reason(events, registered):
    run = run_methods.run_method("broken", events)
    assert run.predictions is None
    assert run.skipped == "method raised FileNotFoundError: no trained model at models/x.pt"
    first_batch = run_methods.run_method("truth-copy", events[5:10], skip_if_first_batch_raises=True)
    assert first_batch.skipped.startswith("method raised RuntimeError")


def test_budget_gives_fast_methods_all_they_need_and_splits_the_rest():
    shares = run_methods.share_budget(10.0, {"fast": 1.0, "slow": 100.0, "slower": 200.0})
    assert shares == {"fast": 1.0, "slow": 4.5, "slower": 4.5}
    assert run_methods.share_budget(10.0, {"a": 2.0, "b": 3.0}) == {"a": 2.0, "b": 3.0}
