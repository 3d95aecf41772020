import json

import awkward as ak
import numpy as np
import pandas as pd
import pytest

from nurec.io import (
    DatasetError,
    DatasetWriter,
    SchemaError,
    events_from_hits_dataframe,
    iter_dataset,
    read_dataset,
    read_metadata,
    write_dataset,
)


def _events(n=5, seed=0):
    rng = np.random.default_rng(seed)
    hits = pd.DataFrame({
        "event_id": np.repeat(np.arange(n) * 10 + 3, 4),
        "sensor_id": rng.integers(0, 100, 4 * n), "x": rng.normal(size=4 * n),
        "y": rng.normal(size=4 * n), "z": rng.normal(size=4 * n),
        "t": rng.uniform(0, 100, 4 * n), "charge": rng.uniform(0.5, 2, 4 * n),
    })
    return events_from_hits_dataframe(hits)


def test_dataset_round_trip_preserves_events_and_metadata(tmp_path):
    events = _events()
    write_dataset(tmp_path / "ds", events, {"detector": "x", "seed": 7}, chunk_events=2)
    back = read_dataset(tmp_path / "ds")
    assert ak.to_list(back) == ak.to_list(events)
    assert read_metadata(tmp_path / "ds") == {"detector": "x", "seed": 7}
    assert len(list(iter_dataset(tmp_path / "ds"))) == 3


def test_hits_dataframe_keeps_event_order_of_first_appearance():
    hits = pd.DataFrame({"event_id": [9, 9, 2, 5, 2], "sensor_id": [1, 2, 3, 4, 5],
                         "x": 0.0, "y": 0.0, "z": 0.0, "t": [1.0, 2, 3, 4, 5], "charge": 1.0})
    events = events_from_hits_dataframe(hits)
    assert events.event_id.tolist() == [9, 2, 5]
    assert ak.to_list(events.hits.sensor_id) == [[1, 2], [3, 5], [4]]


def test_missing_hit_column_names_the_field():
    with pytest.raises(SchemaError, match="'charge'"):
        events_from_hits_dataframe(pd.DataFrame({"event_id": [1], "sensor_id": [1], "x": [0.0],
                                                 "y": [0.0], "z": [0.0], "t": [0.0]}))


def test_failed_writer_leaves_no_dataset(tmp_path):
    out = tmp_path / "ds"
    with pytest.raises(RuntimeError):
        with DatasetWriter(out, {}) as writer:
            writer.write(_events())
            raise RuntimeError("simulated crash")
    assert not out.exists()


def test_incomplete_dataset_is_refused(tmp_path):
    out = tmp_path / "ds"
    write_dataset(out, _events(), {})
    (out / "dataset.json").unlink()
    with pytest.raises(DatasetError, match="incomplete"):
        read_dataset(out)


def test_non_empty_output_needs_overwrite(tmp_path):
    out = tmp_path / "ds"
    write_dataset(out, _events(), {})
    with pytest.raises(DatasetError, match="not empty"):
        write_dataset(out, _events(), {})
    write_dataset(out, _events(3), {"v": 2}, overwrite=True)
    assert json.loads((out / "dataset.json").read_text())["n_events"] == 3


def test_prediction_files_are_parquet_or_csv_by_suffix(tmp_path):
    from nurec.io.predictions import prediction_file_format, read_predictions, write_predictions
    from nurec.io.schema import empty_predictions, finish_predictions

    table = finish_predictions(empty_predictions(np.arange(3), "m"))
    assert [prediction_file_format(n) for n in ("a.parquet", "a.PQ", "a.csv")] == ["parquet", "parquet", "csv"]
    for name in ("a.pq", "a.csv"):
        write_predictions(table, tmp_path / name)
        assert read_predictions(tmp_path / name).event_id.tolist() == [0, 1, 2]
    assert (tmp_path / "a.csv").read_text().startswith("event_id,")
    for name in ("a.txt", "a"):
        with pytest.raises(ValueError, match=r"accepted: \.parquet, \.pq, \.csv"):
            write_predictions(table, tmp_path / name)
        assert not (tmp_path / name).exists()
