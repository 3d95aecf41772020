"""The one container for per-event item columns (hits, pulses, nodes)."""

import awkward as ak
import numpy as np
import pytest

from nurec.ragged import RaggedEvents


def events() -> RaggedEvents:
    # Event 0: 2 hits, event 1: none, event 2: 3 hits.
    return RaggedEvents.from_counts(
        [2, 0, 3],
        {"t": np.array([5.0, 1.0, 7.0, 3.0, 9.0]), "pos": np.arange(15.0).reshape(5, 3)},
        {"event_id": np.array([10, 11, 12]), "truth.energy": np.array([1.0, 2.0, 3.0])},
    )


def test_take_gathers_events_in_the_given_order_with_repeats():
    picked = events().take([2, 0, 2])
    assert picked.counts.tolist() == [3, 2, 3]
    assert picked["t"].tolist() == [7.0, 3.0, 9.0, 5.0, 1.0, 7.0, 3.0, 9.0]
    assert picked.event_columns["event_id"].tolist() == [12, 10, 12]
    assert picked["pos"].shape == (8, 3)


def test_concatenate_and_select_keep_events_aligned():
    both = RaggedEvents.concatenate([events(), events().take([0])])
    assert both.counts.tolist() == [2, 0, 3, 2] and both.n_items == 7
    fewer = both.select(both["t"] > 4.0)
    assert fewer.counts.tolist() == [1, 0, 2, 1]
    assert fewer.event_columns["event_id"].tolist() == [10, 11, 12, 10]


def test_segment_reductions_per_event_including_empty_ones():
    ragged = events()
    assert ragged.segment_sum(ragged["t"]).tolist() == [6.0, 0.0, 19.0]
    assert ragged.segment_min(ragged["t"]).tolist() == [1.0, np.inf, 3.0]
    assert ragged.segment_max(ragged["t"], empty=np.nan)[[0, 2]].tolist() == [5.0, 9.0]
    np.testing.assert_allclose(ragged.segment_sum(ragged["pos"])[2], [6 + 9 + 12, 7 + 10 + 13, 8 + 11 + 14])


def test_to_awkward_nests_dotted_event_columns_and_places_the_lists():
    array = events().to_awkward("hits", ["t"], ["event_id", "hits", "truth.energy"])
    assert array.fields == ["event_id", "hits", "truth"]
    assert ak.num(array.hits, axis=1).tolist() == [2, 0, 3]
    assert array.truth.energy.tolist() == [1.0, 2.0, 3.0]
    assert array.hits.t[2].tolist() == [7.0, 3.0, 9.0]


@pytest.mark.parametrize("offsets,columns,match", [
    ([1, 2], {}, "offsets"),
    ([0, 3, 2], {}, "offsets"),
    ([0, 2], {"t": np.zeros(3)}, "columns.t: 3 rows, expected 2"),
])
def test_inconsistent_columns_are_refused_naming_the_field(offsets, columns, match):
    with pytest.raises(ValueError, match=match):
        RaggedEvents(np.array(offsets), columns)


def test_from_awkward_reads_sliced_and_selected_events_as_ak_flatten_does():
    events = ak.Array({"hits": [[{"x": 1.0, "id": 1}, {"x": 2.0, "id": 2}], [], [{"x": 3.0, "id": 3}],
                                [{"x": 4.0, "id": 4}, {"x": 5.0, "id": 5}, {"x": 6.0, "id": 6}]]})
    for part in (events, events[1:], events[2:3], events[np.array([True, False, False, True])], events[::-1]):
        flat = RaggedEvents.from_awkward(part.hits, ["x", "id"], {"id": np.int64})
        assert flat.offsets.tolist() == [0, *np.cumsum(ak.num(part.hits, axis=1)).tolist()]
        assert flat["x"].tolist() == ak.flatten(part.hits.x).tolist()
        assert flat["id"].dtype == np.int64 and flat["id"].tolist() == ak.flatten(part.hits.id).tolist()
        flat["x"][:] = -1.0  # fresh arrays: the events are untouched
    assert ak.flatten(events.hits.x).tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
