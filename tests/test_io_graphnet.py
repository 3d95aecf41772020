"""GraphNeT SQLite and Parquet samples (real IceCube simulation, tests/data/graphnet) and the IceCube86 table.

Expectations are read independently with sqlite3 / pandas and recomputed from raw fields.
"""

from __future__ import annotations

import shutil
import sqlite3

import awkward as ak
import numpy as np
import pandas as pd
import pytest

from nurec.geometry import load_geometry
from nurec.io.graphnet import iter_graphnet_parquet, iter_graphnet_sqlite
from nurec.io.sources import SourceError


@pytest.fixture(scope="module")
def graphnet_dir(graphnet_data):
    return graphnet_data


@pytest.fixture(scope="module")
def osc_db(graphnet_dir):
    return graphnet_dir / "tests/sqlite/oscNext_genie_level7_v02/oscNext_genie_level7_v02_first_5_frames.db"


@pytest.fixture(scope="module")
def upgrade_db(graphnet_dir):
    return next((graphnet_dir / "tests/sqlite").glob("upgrade_genie_step4_*/*.db"))


@pytest.fixture(scope="module")
def osc_parquet(graphnet_dir):
    return graphnet_dir / "tests/parquet/oscNext_genie_level7_v02"


@pytest.fixture(scope="module")
def osc_events(osc_db):
    return ak.concatenate(list(iter_graphnet_sqlite(osc_db, pulses="SRTInIcePulses", chunk_events=2)))


def _sql(db, query):
    with sqlite3.connect(db) as connection:
        return pd.read_sql_query(query, connection)


def _hits_table(events) -> pd.DataFrame:
    counts = ak.to_numpy(ak.num(events.hits, axis=1))
    table = pd.DataFrame({name: ak.to_numpy(ak.flatten(events.hits[name])) for name in ("x", "y", "z", "t", "charge")})
    table["event_no"] = np.repeat(ak.to_numpy(events.event_id), counts)
    return table.sort_values(["event_no", "t", "x"], ignore_index=True)


def _travel_from_angles(zenith, azimuth):
    # GraphNeT/IceCube zenith, azimuth give where the particle comes FROM.
    return -np.column_stack([np.sin(zenith) * np.cos(azimuth), np.sin(zenith) * np.sin(azimuth), np.cos(zenith)])


def test_graphnet_sqlite_pulses_match_the_database(osc_events, osc_db):
    counts = _sql(osc_db, "SELECT event_no, COUNT(*) AS n FROM SRTInIcePulses GROUP BY event_no ORDER BY event_no")
    assert osc_events.event_id.tolist() == counts.event_no.tolist() == [0, 1, 2, 3, 4]
    assert ak.num(osc_events.hits, axis=1).tolist() == counts.n.tolist()
    raw = _sql(osc_db, "SELECT event_no, dom_x AS x, dom_y AS y, dom_z AS z, dom_time AS t, charge FROM SRTInIcePulses")
    raw = raw.sort_values(["event_no", "t", "x"], ignore_index=True)
    got = _hits_table(osc_events)
    np.testing.assert_allclose(got[["x", "y", "z", "t", "charge"]].to_numpy(),
                               raw[["x", "y", "z", "t", "charge"]].to_numpy(), rtol=1e-6, atol=1e-3)
    assert ak.all(osc_events.hits.dir_z == -1)  # single downward PMT per IceCube DOM


def test_graphnet_truth_direction_is_minus_the_source_direction(osc_events, osc_db):
    truth = _sql(osc_db, "SELECT * FROM truth ORDER BY event_no")
    travel = _travel_from_angles(truth.zenith.to_numpy(), truth.azimuth.to_numpy())
    got = np.column_stack([ak.to_numpy(osc_events.truth[f"dir_{c}"]) for c in "xyz"])
    np.testing.assert_allclose(got, travel, atol=1e-12)
    np.testing.assert_allclose(ak.to_numpy(osc_events.truth.zenith), truth.zenith)
    np.testing.assert_allclose(ak.to_numpy(osc_events.truth.energy), truth.energy)
    np.testing.assert_allclose(ak.to_numpy(osc_events.truth.vertex_x), truth.position_x)
    assert osc_events.truth.pdg.tolist() == truth.pid.astype(int).tolist()
    assert osc_events.truth.interaction.tolist() == ["CC"] * 5  # interaction_type 1 = CC
    assert osc_events.truth.is_track.tolist() == [True] * 5  # all five are numu CC
    assert osc_events.run_id.tolist() == truth.RunID.astype(int).tolist()
    assert osc_events.source.EventID.tolist() == truth.EventID.astype(int).tolist()


def test_graphnet_upgrade_sample_keeps_multi_pmt_directions(upgrade_db):
    events = ak.concatenate(list(iter_graphnet_sqlite(upgrade_db)))  # pulse table found automatically
    raw = _sql(upgrade_db, "SELECT event_no, pmt_dir_z FROM SplitInIcePulses")
    assert ak.num(events.hits, axis=1).tolist() == raw.groupby("event_no").size().tolist() == [145, 94, 85, 167, 134]
    np.testing.assert_allclose(np.sort(ak.to_numpy(ak.flatten(events.hits.dir_z))), np.sort(raw.pmt_dir_z), atol=1e-6)
    assert len(np.unique(ak.to_numpy(ak.flatten(events.hits.dir_z)))) > 2  # not just "facing down"


@pytest.mark.parametrize("layout", ["merged", "nested"])
def test_graphnet_parquet_layouts_give_the_sqlite_events(layout, osc_parquet, osc_events):
    path = osc_parquet if layout == "merged" else next(osc_parquet.glob("*.parquet"))
    events = ak.concatenate(list(iter_graphnet_parquet(path)))
    order = np.argsort(ak.to_numpy(events.event_id))
    events = events[order]
    assert events.event_id.tolist() == osc_events.event_id.tolist()
    pd.testing.assert_frame_equal(_hits_table(events), _hits_table(osc_events))
    truth = pd.concat([pd.read_parquet(f) for f in sorted((osc_parquet / "merged/truth").glob("*.parquet"))]).sort_index()
    travel = _travel_from_angles(truth.zenith.to_numpy(), truth.azimuth.to_numpy())
    np.testing.assert_allclose(np.column_stack([ak.to_numpy(events.truth[f"dir_{c}"]) for c in "xyz"]), travel)


def test_icecube86_table_holds_every_graphnet_hit_position(graphnet_dir, osc_events):
    path = graphnet_dir / "geometry_tables/icecube/icecube86.parquet"
    raw = pd.read_parquet(path).reset_index(drop=True)
    in_ice = raw[raw.dom_type == 20]
    geometry = load_geometry(path)
    assert geometry.family == "icecube" and geometry.n_sensors == len(in_ice) == 5083
    np.testing.assert_allclose(np.sort(geometry.position[:, 2]), np.sort(in_ice.dom_z.to_numpy()))
    hits = np.column_stack([ak.to_numpy(ak.flatten(osc_events.hits[c])) for c in "xyz"])
    distance = np.min(np.linalg.norm(hits[:, None, :] - geometry.position[None, :, :], axis=2), axis=1)
    assert np.all(distance < 0.01)


def test_graphnet_sqlite_without_the_named_table_names_file_and_table(osc_db):
    with pytest.raises(SourceError, match=r"first_5_frames\.db: no table 'InIcePulses' \(tables: SRTInIcePulses, truth\)"):
        list(iter_graphnet_sqlite(osc_db, pulses="InIcePulses"))
    with pytest.raises(SourceError, match=r"first_5_frames\.db: no table 'mc_truth'"):
        list(iter_graphnet_sqlite(osc_db, truth="mc_truth"))


def test_graphnet_parquet_missing_a_column_names_file_and_column(osc_parquet, tmp_path):
    copy = tmp_path / "merged"
    shutil.copytree(osc_parquet / "merged", copy)
    broken = copy / "SRTInIcePulses/SRTInIcePulses_2.parquet"
    pd.read_parquet(broken).drop(columns=["dom_time"]).to_parquet(broken)
    with pytest.raises(SourceError, match=r"SRTInIcePulses_2\.parquet: no column 'dom_time'"):
        list(iter_graphnet_parquet(copy))


def test_graphnet_without_truth_reads_real_data_style(osc_db):
    events = ak.concatenate(list(iter_graphnet_sqlite(osc_db, truth=None)))
    assert "truth" not in events.fields and len(events) == 5
