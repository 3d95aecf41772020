"""Running registered methods for a report: failures kept per batch, fixed event counts, timing parts, unready methods skipped."""

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
CALL_SIZES: list[int] = []


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
        CALL_SIZES.append(len(events))
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
    assert run.version == "9.9" and not run.subsample
    assert run.throughput["warmup_events"] + run.throughput["n_events"] == len(events)  # first event: warm-up


def slow_loading_factory(detector=None):
    CLOCK["now"] += 5.0  # building takes 5 s (a model being loaded)
    return TruthCopy(fail_on=-1)


def test_a_capped_method_runs_on_the_leading_events_with_build_and_warmup_timed_apart(events, registered, monkeypatch):
    monkeypatch.setitem(registry._METHODS, "slow-load",
                        registry.MethodSpec("slow-load", f"{__name__}:slow_loading_factory", "test"))
    monkeypatch.setattr(run_methods.time, "perf_counter", lambda: CLOCK["now"])
    capped, full = run_methods.run_methods(["truth-copy", "slow-load"], events, {"truth-copy": {"fail_on": -1}},
                                           batch_size=8, max_events={"truth-copy": 20})
    assert list(capped.predictions["event_id"]) == list(ak.to_numpy(events.event_id[:20]))  # the leading 20
    assert capped.subsample and not full.subsample and len(full.predictions) == len(events)
    # 0.1 s per event on the fake clock: one warm-up event, then 19 timed ones at 10 events/s.
    assert capped.throughput["warmup_events"] == 1 and capped.throughput["warmup_s"] == pytest.approx(0.1)
    assert capped.throughput["n_events"] == 19 and capped.throughput["events_per_s"] == pytest.approx(10.0)
    # Building (5 s) is its own number and does not slow the throughput down.
    assert full.throughput["load_s"] == pytest.approx(5.0) and full.load_s == pytest.approx(5.0)
    assert full.throughput["events_per_s"] == pytest.approx(10.0)
    extra = capped.provenance().extra
    assert extra["timed_events"] == 19 and extra["warmup_events"] == 1
    assert not hasattr(run_methods, "share_budget")  # no clock decides what runs


def test_unready_method_is_skipped_with_its_reason(events, registered):
    run = run_methods.run_method("broken", events)
    assert run.predictions is None
    assert run.skipped == "method raised FileNotFoundError: no trained model at models/x.pt"
    # The warm-up call (event 7 first) raises: the method is skipped, not a table of failures.
    first_call = run_methods.run_method("truth-copy", events[7:10], skip_if_first_batch_raises=True)
    assert first_call.skipped.startswith("method raised RuntimeError")
    # Raising later only fails those events.
    later = run_methods.run_method("truth-copy", events[5:10], skip_if_first_batch_raises=True)
    assert later.skipped is None and (later.predictions["fit_status"] != "ok").sum() == 1


def test_progress_moves_within_a_large_batch_of_slow_fits(events, registered, monkeypatch):
    # 0.1 s per event on the fake clock: one call of 39 events would leave the bar still for 3.9 s.
    monkeypatch.setattr(run_methods.time, "perf_counter", lambda: CLOCK["now"])
    monkeypatch.setattr("nurec.methods.run.available_cores", lambda: 1)
    CALL_SIZES.clear()
    shown = run_methods.run_methods(["truth-copy"], events, {"truth-copy": {"fail_on": -1}}, batch_size=256,
                                    show_bar=True)[0]
    # Warm-up, the first sized call, then calls of ~2 s (about 20 events) each.
    assert CALL_SIZES[:2] == [1, 8] and len(CALL_SIZES) == 4 and max(CALL_SIZES) <= 20 and sum(CALL_SIZES) == 40
    CALL_SIZES.clear()
    quiet = run_methods.run_methods(["truth-copy"], events, {"truth-copy": {"fail_on": -1}}, batch_size=256)[0]
    assert CALL_SIZES == [1, 39]
    assert shown.predictions.equals(quiet.predictions)
