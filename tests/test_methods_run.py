"""The run loop (nurec.methods.run): progress within one large batch, --max-events streaming."""

import time

import awkward as ak
import numpy as np
import pytest

from nurec.io.schema import empty_predictions, finish_predictions
from nurec.methods.contract import MethodInfo
from nurec.methods.run import BatchSizer, Provenance, reconstruct_events


class SlowPerEvent:
    """A per-event fit taking ``seconds`` per event; records the size of every call."""

    name = "slow"
    version = "1"

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.calls: list[int] = []

    def describe(self) -> MethodInfo:
        return MethodInfo(self.name, self.version, "test: direction from the event id", ("direction",))

    def reconstruct(self, events: ak.Array):
        self.calls.append(len(events))
        time.sleep(self.seconds * len(events))
        ids = ak.to_numpy(events.event_id)
        table = empty_predictions(ids, self.name)
        angle = ids * 0.01
        table["dir_x"], table["dir_y"], table["dir_z"] = np.cos(angle), np.sin(angle), 0.0
        return finish_predictions(table)


def provenance() -> Provenance:
    return Provenance("slow", "1", {"name": "test", "hash": ""})


def events(ids) -> ak.Array:
    return ak.Array({"event_id": np.asarray(ids, dtype=np.int64)})


def test_one_large_batch_moves_the_progress_more_than_once():
    method = SlowPerEvent(seconds=0.002)
    updates: list[int] = []
    table, record = reconstruct_events(method, [events(range(300))], provenance(), batch_size=300,
                                       on_batch=updates.append, progress_interval_s=0.05, min_sub_batch=10)
    assert len(updates) > 3  # one batch of 300 events, several progress updates
    assert sum(updates) == 300 and updates == method.calls and max(updates) <= 300
    assert table.event_id.tolist() == list(range(300)) and record.n_events == 300
    whole, _ = reconstruct_events(SlowPerEvent(), [events(range(300))], provenance(), batch_size=300)
    assert whole.drop(columns="method").equals(table.drop(columns="method"))  # the sizes change nothing


def test_unwatched_runs_call_the_method_with_whole_batches():
    method = SlowPerEvent()
    reconstruct_events(method, [events(range(300))], provenance(), batch_size=128)
    assert method.calls == [128, 128, 44]


def test_batch_sizer_aims_at_the_interval_within_its_bounds():
    sizer = BatchSizer(batch_size=256, interval_s=2.0, min_events=16)
    assert sizer.next_size() == 16  # nothing measured yet: a small first call
    sizer.record(16, 16 * 0.05)  # 50 ms per event
    assert sizer.next_size() == 40
    sizer.record(1000, 1000 * 1e-5)  # much faster on average now: whole batches
    assert sizer.next_size() == 256
    assert BatchSizer(batch_size=256).next_size() == 256  # nobody watching
    assert BatchSizer(batch_size=8, interval_s=1.0, min_events=64).next_size() == 8


def test_max_events_stops_reading_batches_after_the_limit():
    def chunks():
        yield events(range(0, 5))
        yield events(range(5, 10))
        raise AssertionError("a batch after the limit was read")

    table, record = reconstruct_events(SlowPerEvent(), chunks(), provenance(), batch_size=3, max_events=7,
                                       total=12)
    assert table.event_id.tolist() == list(range(7))
    assert record.n_events == 7 and record.subsample
    assert record.extra == {"max_events": 7, "source_n_events": 12}
    table, record = reconstruct_events(SlowPerEvent(), [events(range(4))], provenance(), max_events=10, total=4)
    assert len(table) == 4 and not record.subsample and "max_events" not in record.extra


@pytest.mark.parametrize("limit", [5, 10])
def test_max_events_at_a_batch_boundary(limit):
    def chunks():
        yield events(range(0, 5))
        yield events(range(5, 10))

    table, record = reconstruct_events(SlowPerEvent(), chunks(), provenance(), max_events=limit, total=10)
    assert table.event_id.tolist() == list(range(limit))
    assert record.subsample == (limit < 10)
