"""nurec.io.sources: format detection, dispatch to the readers, and joining predictions back."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pandas as pd
import pytest

from nurec.io.parquet import write_dataset
from nurec.io.sources import SourceError, detect_format, iter_events, source_keys_table

km3net_testdata = pytest.importorskip("km3net_testdata")
data_path = km3net_testdata.data_path


@pytest.fixture(scope="module")
def graphnet_tests(graphnet_data):
    return graphnet_data / "tests"


def test_detect_format_recognises_each_real_layout(graphnet_tests, tmp_path):
    assert detect_format(data_path("offline/numucc.root")) == "km3net-offline"
    assert detect_format(next(graphnet_tests.glob("sqlite/oscNext*/*.db"))) == "graphnet-sqlite"
    parquet = graphnet_tests / "parquet/oscNext_genie_level7_v02"
    assert detect_format(parquet) == "graphnet-parquet"
    assert detect_format(parquet / "merged") == "graphnet-parquet"
    assert detect_format(next(parquet.glob("*.parquet"))) == "graphnet-parquet"
    (tmp_path / "kaggle/train").mkdir(parents=True)
    pd.DataFrame({"sensor_id": [0], "x": [0.0], "y": [0.0], "z": [0.0]}).to_csv(tmp_path / "kaggle/sensor_geometry.csv")
    batch = tmp_path / "kaggle/train/batch_1.parquet"
    pd.DataFrame({"sensor_id": [0], "time": [1], "charge": [1.0], "auxiliary": [False]}).to_parquet(batch)
    assert detect_format(tmp_path / "kaggle") == "kaggle"
    assert detect_format(batch) == "kaggle"


def test_detect_format_refuses_unknown_and_missing_paths(tmp_path):
    unknown = tmp_path / "notes.txt"
    unknown.write_text("hello")
    with pytest.raises(SourceError, match=r"notes\.txt: cannot tell the data format"):
        detect_format(unknown)
    with pytest.raises(FileNotFoundError, match=r"nothing\.root"):
        detect_format(tmp_path / "nothing.root")


def test_iter_events_passes_reader_options(graphnet_tests):
    path = data_path("offline/km3net_offline.root")
    detx = data_path("detx/km3net_offline.detx")
    every = ak.concatenate(list(iter_events(path, detx=detx)))
    triggered = ak.concatenate(list(iter_events(path, detx=detx, triggered_only=True)))
    assert ak.all(ak.num(triggered.hits, axis=1) < ak.num(every.hits, axis=1))
    with pytest.raises(ValueError, match="unknown source format 'icetray'"):
        iter_events(path, "icetray")


def test_predictions_join_back_onto_the_source_keys(graphnet_tests, tmp_path):
    db = next(graphnet_tests.glob("sqlite/oscNext*/*.db"))
    events = ak.concatenate(list(iter_events(db)))
    # a converted dataset keeps the keys through a write/read round trip
    write_dataset(tmp_path / "ds", events)
    reread = ak.concatenate(list(iter_events(tmp_path / "ds")))
    keys = source_keys_table(reread)
    assert keys.columns.tolist() == ["event_id", "run_id", "event_no", "RunID", "SubrunID", "EventID", "SubEventID"]
    predictions = pd.DataFrame({"event_id": ak.to_numpy(events.event_id)[::-1], "zenith": np.arange(5.0)})
    joined = predictions.merge(keys, on="event_id")
    assert joined.event_no.tolist() == [4, 3, 2, 1, 0]
    assert joined.EventID.tolist() == ak.to_numpy(events.source.EventID)[::-1].tolist()


def test_predictions_written_back_carry_the_km3net_run_and_frame_ids(tmp_path):
    from nurec.io.predictions import read_predictions, write_predictions
    from nurec.io.schema import empty_predictions
    from nurec.io.sources import attach_source_keys, convert_source

    source = data_path("offline/km3net_offline.root")
    convert_source(source, tmp_path / "ds", detx=data_path("detx/km3net_offline.detx"), progress=False)
    predictions = attach_source_keys(empty_predictions(np.arange(10)[::-1], "linefit"), tmp_path / "ds")
    write_predictions(predictions, tmp_path / "back.csv")
    back = read_predictions(tmp_path / "back.csv")
    raw = pytest.importorskip("uproot").open(source)["E"].arrays(["run_id", "frame_index", "trigger_counter"], library="pd")
    assert back.frame_index.tolist() == raw.frame_index.tolist()[::-1]
    assert back.trigger_counter.tolist() == raw.trigger_counter.tolist()[::-1]
    assert back.run_id.tolist() == raw.run_id.tolist()[::-1]
