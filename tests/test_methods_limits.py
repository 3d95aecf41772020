"""The per-event cost bound (EventLimits) of the run loop, and the one hit validation rule."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from nurec.geometry import get_geometry
from nurec.io.schema import (
    HIT_FIELDS,
    empty_predictions,
    event_problems,
    finish_predictions,
    hit_problems,
)
from nurec.methods.contract import EventLimits, MethodInfo
from nurec.methods.registry import build_method
from nurec.methods.run import Provenance, reconstruct_batch, reconstruct_events
from nurec.ragged import RaggedEvents


class Recording:
    """A method that records the event ids it is given and fills a direction."""

    name = "recording"
    version = "1"

    def __init__(self) -> None:
        self.seen: list[list[int]] = []

    def describe(self) -> MethodInfo:
        return MethodInfo(self.name, self.version, "test", ("direction",))

    def reconstruct(self, events: ak.Array):
        ids = ak.to_numpy(events.event_id)
        self.seen.append(ids.tolist())
        table = empty_predictions(ids, self.name)
        table["dir_z"] = -1.0
        return finish_predictions(table)


def make_events(n_hits: list[int], n_sensors: list[int] | None = None, detector: str = "icecube86") -> ak.Array:
    """Return events of the schema with ``n_hits`` hits on ``n_sensors`` distinct sensors of ``detector`` each."""
    geometry = get_geometry(detector)
    n_sensors = n_sensors or [min(n, geometry.n_sensors) for n in n_hits]
    rows = np.concatenate([np.arange(n) % s for n, s in zip(n_hits, n_sensors, strict=True)]).astype(np.int64)
    columns = {"sensor_id": geometry.sensor_id[rows], "x": geometry.position[rows, 0], "y": geometry.position[rows, 1],
               "z": geometry.position[rows, 2], "t": np.arange(len(rows)) * 3.0, "charge": np.ones(len(rows)),
               "dir_x": geometry.direction[rows, 0], "dir_y": geometry.direction[rows, 1],
               "dir_z": geometry.direction[rows, 2]}
    columns = {k: np.asarray(v).astype(HIT_FIELDS[k]) for k, v in columns.items()}
    ids = np.arange(10, 10 + len(n_hits), dtype=np.int64)
    ragged = RaggedEvents.from_counts(np.asarray(n_hits), columns, {"event_id": ids, "run_id": np.zeros_like(ids)})
    return ragged.to_awkward("hits", list(HIT_FIELDS), ["event_id", "run_id", "hits"])


def test_event_over_the_hit_limit_fails_alone_before_the_method_runs():
    method = Recording()
    events = make_events([5, 30, 7, 21])
    table = reconstruct_batch(method, events, limits=EventLimits(max_hits_per_event=20))
    assert table["event_id"].tolist() == [10, 11, 12, 13]
    assert method.seen == [[10, 12]]
    assert table["fit_status"].tolist() == [
        "ok", "failed: hits: 30 hits exceeds max_hits_per_event=20", "ok",
        "failed: hits: 21 hits exceeds max_hits_per_event=20"]
    assert table["dir_z"].iloc[[0, 2]].tolist() == [-1.0, -1.0] and table["dir_z"].iloc[[1, 3]].isna().all()


def test_event_over_the_distinct_sensor_limit_fails_naming_it():
    method = Recording()
    events = make_events([30, 12, 10], n_sensors=[5, 12, 10])  # 30 hits on 5 sensors is within 10 sensors
    table = reconstruct_batch(method, events, limits=EventLimits(max_sensors_per_event=10))
    assert method.seen == [[10, 12]]
    assert table["fit_status"].tolist() == [
        "ok", "failed: hits.sensor_id: 12 distinct sensors exceeds max_sensors_per_event=10", "ok"]


def test_default_limit_is_20000_hits_and_every_event_may_be_refused():
    method = Recording()
    table = reconstruct_batch(method, make_events([20_001], n_sensors=[100]))
    assert method.seen == []
    assert table["fit_status"].tolist() == ["failed: hits: 20,001 hits exceeds max_hits_per_event=20,000"]
    assert reconstruct_batch(method, make_events([20_000], n_sensors=[100]))["fit_status"].tolist() == ["ok"]
    assert EventLimits() == EventLimits(max_hits_per_event=20_000, max_sensors_per_event=10_000)


def test_zero_means_no_limit_and_bad_limits_are_refused():
    method = Recording()
    table = reconstruct_batch(method, make_events([25]), limits=EventLimits(0, 0))
    assert table["fit_status"].tolist() == ["ok"]
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="limits.max_hits_per_event"):
            EventLimits(max_hits_per_event=bad)


def test_the_run_loop_of_the_cli_and_evaluation_applies_the_limits():
    method = Recording()
    table, provenance = reconstruct_events(method, [make_events([3, 40, 3])], Provenance("recording", "1", {}),
                                           limits=EventLimits(max_hits_per_event=39))
    assert table["fit_status"].tolist() == ["ok", "failed: hits: 40 hits exceeds max_hits_per_event=39", "ok"]
    assert provenance.n_events == 3


def test_a_real_method_never_sees_the_refused_event():
    events = make_events([40, 20_001, 40], n_sensors=[40, 3_000, 40])
    table = reconstruct_batch(build_method("linefit", "icecube86"), events)
    assert table["fit_status"].iloc[1] == "failed: hits: 20,001 hits exceeds max_hits_per_event=20,000"
    assert table["fit_status"].iloc[[0, 2]].tolist() == ["ok", "ok"]


def test_non_finite_pmt_directions_fail_the_event_naming_the_field():
    events = make_events([4, 4, 4])
    dir_y = ak.to_numpy(ak.flatten(events.hits.dir_y)).copy()
    dir_y[5] = np.inf
    events = ak.with_field(events, ak.unflatten(dir_y, ak.num(events.hits)), ("hits", "dir_y"))
    problems = event_problems(events)
    assert problems[0] is None and problems[2] is None
    assert str(problems[1]) == "hits.dir_y: non-finite value"
    table = reconstruct_batch(build_method("linefit", "icecube86"), events)
    assert table["fit_status"].tolist()[1] == "failed: hits.dir_y: non-finite value"


def test_hit_problems_checks_sensor_ids_against_the_detector():
    geometry = get_geometry("icecube-mini")
    hits = {"sensor_id": np.array([geometry.sensor_id[0], 10**6, geometry.sensor_id[1], geometry.sensor_id[2]]),
            "x": np.array([0.0, 0.0, np.nan, 0.0])}
    problems = hit_problems(np.array([0, 2, 3, 4, 4]), hits, known_sensors=geometry.sorted_sensor_id,
                            detector=geometry.name)
    assert {i: str(p) for i, p in problems.items()} == {
        0: "hits.sensor_id: sensor 1000000 is not in detector 'icecube-mini'",
        1: "hits.x: non-finite value",
        3: "hits: 0 hits, need at least 1"}
    assert hit_problems(np.array([0, 2, 3, 4, 4]), hits, min_hits=0) == {1: problems[1]}  # no detector: ids unchecked


def test_service_decoding_applies_the_same_rule_and_the_sensor_bound():
    from nurec.protocol import pb
    from nurec.protocol.codec import encode_events
    from services.codec import DecodeLimits, decode_events

    events = make_events([6, 6, 6, 6], n_sensors=[6, 3, 6, 6], detector="icecube-mini")
    messages = encode_events(events)  # with PMT directions
    messages[0].raw.sensor_id = np.array([10**6] * 6, "<i4").tobytes()  # unknown, although directions were sent
    messages[3].raw.dir_z = np.array([0, 0, np.nan, 0, 0, 0], "<f4").tobytes()
    block, positions, failures = decode_events(messages, DecodeLimits(default_detector="icecube-mini", max_sensors=5))
    assert positions.tolist() == [1]
    assert {i: (f.code, f.field, f.reason) for i, f in failures.items()} == {
        0: (pb.INVALID_ARGUMENT, "hits.sensor_id", "sensor 1000000 is not in detector 'icecube-mini'"),
        2: (pb.INVALID_ARGUMENT, "hits.sensor_id", "6 distinct sensors exceeds max_sensors_per_event=5"),
        3: (pb.INVALID_ARGUMENT, "hits.dir_z", "non-finite value")}
