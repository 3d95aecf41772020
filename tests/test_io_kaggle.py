"""The IceCube Kaggle layout, on a tiny Kaggle-layout copy of REAL IceCube events.

No Kaggle competition file is available here, so the fixture writes the Kaggle layout
(sensor_geometry.csv, train_meta.parquet, train/batch_<n>.parquet) from the real GraphNeT
oscNext events and the real IceCube86 geometry table in tests/data/graphnet, with the same pulses.
"""

from __future__ import annotations

import sqlite3

import awkward as ak
import numpy as np
import pandas as pd
import pytest

from nurec.geometry import load_geometry
from nurec.io.graphnet import iter_graphnet_sqlite
from nurec.io.kaggle import iter_kaggle
from nurec.io.sources import SourceError

EVENT_ID_OFFSET = 1000  # Kaggle event ids differ from GraphNeT event_no, to check the mapping
BATCH_OF_EVENT_NO = {0: 1, 1: 1, 2: 1, 3: 2, 4: 2}


def write_kaggle_layout(root, db_path, geometry_path) -> pd.DataFrame:
    """Write the Kaggle layout of the GraphNeT events into ``root``; return the pulses written."""
    geometry = pd.read_parquet(geometry_path).reset_index(drop=True)
    in_ice = geometry[geometry.dom_type == 20].sort_values(["string", "dom_number"], ignore_index=True)
    in_ice["sensor_id"] = np.arange(len(in_ice))
    in_ice.rename(columns={"dom_x": "x", "dom_y": "y", "dom_z": "z"})[["sensor_id", "x", "y", "z"]].to_csv(
        root / "sensor_geometry.csv", index=False)
    with sqlite3.connect(db_path) as connection:
        pulses = pd.read_sql_query("SELECT * FROM SRTInIcePulses ORDER BY event_no, rowid", connection)
        truth = pd.read_sql_query("SELECT event_no, zenith, azimuth FROM truth ORDER BY event_no", connection)
    pulses = pulses.merge(in_ice[["string", "dom_number", "sensor_id"]], on=["string", "dom_number"], how="left")
    assert pulses.sensor_id.notna().all()
    pulses["event_id"] = pulses.event_no + EVENT_ID_OFFSET
    pulses["batch_id"] = pulses.event_no.map(BATCH_OF_EVENT_NO)
    (root / "train").mkdir()
    meta = []
    for batch_id, batch in pulses.groupby("batch_id"):
        table = pd.DataFrame({
            "sensor_id": batch.sensor_id.astype(np.int16).to_numpy(),
            "time": np.round(batch.dom_time).astype(np.int64).to_numpy(),
            "charge": batch.charge.to_numpy(),
            "auxiliary": (batch.hlc == 0).to_numpy(),
        }, index=pd.Index(batch.event_id.to_numpy(), name="event_id"))
        table.to_parquet(root / "train" / f"batch_{batch_id}.parquet")
        row = np.arange(len(batch))
        bounds = pd.DataFrame({"event_id": batch.event_id.to_numpy(), "row": row}).groupby("event_id").row.agg(["min", "max"])
        meta.append(pd.DataFrame({"batch_id": batch_id, "event_id": bounds.index,
                                  "first_pulse_index": bounds["min"].to_numpy(), "last_pulse_index": bounds["max"].to_numpy()}))
    meta = pd.concat(meta, ignore_index=True)
    meta = meta.merge(truth.assign(event_id=truth.event_no + EVENT_ID_OFFSET)[["event_id", "azimuth", "zenith"]])
    meta.to_parquet(root / "train_meta.parquet", index=False)
    return pulses


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory, graphnet_data):
    graphnet = graphnet_data
    db = graphnet / "tests/sqlite/oscNext_genie_level7_v02/oscNext_genie_level7_v02_first_5_frames.db"
    root = tmp_path_factory.mktemp("kaggle")
    pulses = write_kaggle_layout(root, db, graphnet / "geometry_tables/icecube/icecube86.parquet")
    return root, pulses, db


def test_kaggle_events_have_the_real_pulses_at_their_dom_positions(kaggle):
    root, pulses, _ = kaggle
    events = ak.concatenate(list(iter_kaggle(root)))
    assert events.event_id.tolist() == [1000, 1001, 1002, 1003, 1004]
    assert events.source.batch_id.tolist() == [1, 1, 1, 2, 2]
    assert ak.num(events.hits, axis=1).tolist() == pulses.groupby("event_no").size().tolist()
    for name, column in (("x", "dom_x"), ("y", "dom_y"), ("z", "dom_z"), ("charge", "charge")):
        np.testing.assert_allclose(ak.to_numpy(ak.flatten(events.hits[name])), pulses[column], rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(events.hits.t)), np.round(pulses.dom_time))
    assert ak.flatten(events.hits.sensor_id).tolist() == pulses.sensor_id.astype(int).tolist()


def test_kaggle_truth_direction_is_minus_the_meta_source_direction(kaggle):
    root, _, db = kaggle
    events = ak.concatenate(list(iter_kaggle(root)))
    meta = pd.read_parquet(root / "train_meta.parquet").sort_values("event_id")
    z, a = meta.zenith.to_numpy(), meta.azimuth.to_numpy()
    travel = -np.column_stack([np.sin(z) * np.cos(a), np.sin(z) * np.sin(a), np.cos(z)])
    got = np.column_stack([ak.to_numpy(events.truth[f"dir_{c}"]) for c in "xyz"])
    np.testing.assert_allclose(got, travel, atol=1e-12)
    # the same real events read from GraphNeT get the same truth direction
    graphnet = ak.concatenate(list(iter_graphnet_sqlite(db)))
    np.testing.assert_allclose(got, np.column_stack([ak.to_numpy(graphnet.truth[f"dir_{c}"]) for c in "xyz"]))


def test_kaggle_small_chunks_and_auxiliary_cut(kaggle):
    root, pulses, _ = kaggle
    whole = ak.concatenate(list(iter_kaggle(root)))
    chunked = list(iter_kaggle(root, chunk_events=2))
    assert [len(c) for c in chunked] == [2, 1, 2]  # batch 1: 3 events, batch 2: 2 events
    assert ak.to_list(ak.concatenate(chunked).hits) == ak.to_list(whole.hits)
    main = ak.concatenate(list(iter_kaggle(root, drop_auxiliary=True)))
    assert ak.num(main.hits, axis=1).tolist() == pulses[pulses.hlc == 1].groupby("event_no").size().reindex(range(5), fill_value=0).tolist()


def test_kaggle_sensor_geometry_csv_is_an_icecube_geometry(kaggle):
    root, _, _ = kaggle
    geometry = load_geometry(root / "sensor_geometry.csv")
    raw = pd.read_csv(root / "sensor_geometry.csv")
    assert geometry.family == "icecube" and geometry.n_sensors == len(raw) == 5083
    np.testing.assert_allclose(geometry.position, raw[["x", "y", "z"]].to_numpy())


def test_kaggle_sensor_missing_from_geometry_names_file_and_sensor(kaggle, tmp_path):
    root, pulses, _ = kaggle
    for item in ("train", "train_meta.parquet"):
        (tmp_path / item).symlink_to(root / item)
    missing = int(pulses.sensor_id.iloc[0])
    geometry = pd.read_csv(root / "sensor_geometry.csv")
    geometry[geometry.sensor_id != missing].to_csv(tmp_path / "sensor_geometry.csv", index=False)
    with pytest.raises(SourceError, match=rf"batch_1\.parquet: .*sensor_id {missing} is not in the geometry"):
        list(iter_kaggle(tmp_path))


def test_kaggle_batch_missing_a_column_names_file_and_column(kaggle, tmp_path):
    root, _, _ = kaggle
    (tmp_path / "train").mkdir()
    for item in ("train_meta.parquet", "sensor_geometry.csv"):
        (tmp_path / item).symlink_to(root / item)
    pd.read_parquet(root / "train/batch_1.parquet").drop(columns=["charge"]).to_parquet(tmp_path / "train/batch_1.parquet")
    with pytest.raises(SourceError, match=r"batch_1\.parquet: no column 'charge'"):
        list(iter_kaggle(tmp_path))
