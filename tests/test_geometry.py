"""Detector geometries: built-in layouts, IceCube's real table, and clear errors for bad tables."""

import numpy as np
import pytest

from nurec.geometry import (
    Geometry,
    GeometryError,
    available_detectors,
    floors_by_height,
    get_geometry,
    km3net_pmt_directions,
    load_geometry,
    strings_of_modules,
    write_geometry_table,
)


def nearest_string_distance(geometry):
    xy = np.unique(geometry.module_position[:, :2].round(3), axis=0)
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    return d.min(axis=1)


def test_icecube86_has_78_standard_and_8_deepcore_strings_of_60_doms():
    g = get_geometry("icecube86")
    assert g.family == "icecube" and g.medium == "ice"
    assert g.n_sensors == g.n_modules == 86 * 60
    assert np.all(np.bincount(g.string_id)[1:] == 60)
    standard = g.string_id <= 78
    depth = 1948.07 - g.position[standard, 2]
    assert depth.min() == pytest.approx(1450.0) and depth.max() == pytest.approx(2453.0)
    assert np.diff(np.sort(np.unique(g.position[standard, 2]))).min() == pytest.approx(17.0)
    assert np.median(nearest_string_distance(g)[:78]) == pytest.approx(125.0, abs=1.0)
    deep = g.position[(g.string_id > 78) & (g.position[:, 2] < -150)]
    assert np.diff(np.sort(np.unique(deep[:, 2]))).max() == pytest.approx(7.0)  # denser DeepCore
    assert np.allclose(g.direction, [0.0, 0.0, -1.0])  # single PMT facing down
    assert np.allclose(g.center, 0.0, atol=80.0)


@pytest.mark.parametrize("name, units, unit_spacing, dom_spacing", [
    ("km3net-orca", 115, 20.0, 9.0), ("km3net-arca", 115, 90.0, 36.0), ("orca6", 6, 20.0, 9.0),
])
def test_km3net_detectors_have_31_pmt_doms_on_units(name, units, unit_spacing, dom_spacing):
    g = get_geometry(name)
    assert g.family == "km3net" and g.medium == "water"
    assert g.n_modules == units * 18 and g.n_sensors == units * 18 * 31
    assert np.median(nearest_string_distance(g)) == pytest.approx(unit_spacing, rel=0.05)
    floors = np.sort(np.unique(g.module_position[:, 2].round(2)))
    assert np.diff(floors) == pytest.approx(np.full(17, dom_spacing), abs=0.01)
    assert np.allclose(np.linalg.norm(g.direction, axis=1), 1.0)


def test_km3net_dom_pmts_form_rings_with_more_looking_down():
    dirs = km3net_pmt_directions()
    assert dirs.shape == (31, 3)
    assert (dirs[:, 2] < 0).sum() == 19 and (dirs[:, 2] > 0).sum() == 12
    assert len(np.unique(dirs[:, 2].round(6))) == 6  # one straight down + five rings


def test_all_builtins_load_and_have_stable_hashes():
    for name in available_detectors():
        g = get_geometry(name)
        assert g.hash == get_geometry(name).hash and len(g.hash) == 16
    assert get_geometry("icecube86").hash != get_geometry("icecube-mini").hash


def test_real_icecube86_table_from_graphnet_loads(graphnet_data):
    path = graphnet_data / "geometry_tables/icecube/icecube86.parquet"
    g = get_geometry(path)
    assert g.family == "icecube"
    assert len(np.unique(g.string_id)) == 86
    assert 5000 < g.n_sensors <= 5160  # in-ice DOMs (IceTop dropped)
    assert np.all(np.abs(g.position) < 700.0)
    assert np.allclose(g.direction[:, 2], -1.0)


def test_geometry_table_round_trip(tmp_path):
    g = get_geometry("orca6")
    path = tmp_path / "orca6.csv"
    g.to_table().to_csv(path, index=False)
    back = load_geometry(path)
    assert back.family == "km3net" and back.n_modules == g.n_modules
    assert np.allclose(back.position, g.position) and back.hash == g.hash


def test_written_geometry_table_keeps_name_and_family_of_a_sparse_km3net_geometry(tmp_path):
    g = get_geometry("orca6")
    one_pmt_per_module = np.unique(g.module_id, return_index=True)[1]
    sparse = Geometry("KM3NeT_00000049", "km3net", g.sensor_id[one_pmt_per_module], g.position[one_pmt_per_module],
                      g.direction[one_pmt_per_module], g.module_id[one_pmt_per_module],
                      g.string_id[one_pmt_per_module], g.floor[one_pmt_per_module])
    path = write_geometry_table(sparse, tmp_path / "geometry.parquet")
    back = get_geometry(path)
    # One PMT per module would read as IceCube (ice) without the stored family.
    assert back.name == "KM3NeT_00000049" and back.family == "km3net" and back.medium == "water"
    assert back.hash == sparse.hash and not list(tmp_path.glob("*.tmp"))


def test_strings_and_floors_of_modules_come_from_positions_of_tilted_lines_seen_in_any_order():
    rng = np.random.default_rng(4)
    height = np.arange(18) * 9.0
    lines = []
    for x0, y0 in [(40.0, 0.0), (0.0, 0.0), (20.0, 0.0)]:  # 20 m apart, tilted 3 m over the line
        lines.append(np.column_stack([x0 + height / height.max() * 3.0, np.full(18, y0), height]))
    centres = np.vstack(lines)
    seen = np.sort(rng.choice(len(centres), 40, replace=False))  # floors missing: only modules with hits
    order = rng.permutation(seen)
    string_id = strings_of_modules(centres[order])
    assert string_id.tolist() == [[3, 1, 2][i // 18] for i in order]  # numbered by x: 0, 20, 40 m
    floor = floors_by_height(string_id, centres[order, 2])
    for string in (1, 2, 3):
        on = string_id == string
        assert sorted(floor[on].tolist()) == list(range(on.sum()))
        assert np.all(np.diff(centres[order][on][np.argsort(floor[on]), 2]) > 0)


@pytest.mark.parametrize("content, problem", [
    ("sensor_id,x,y\n0,0,0\n", "no 'z' column"),
    ("sensor_id,x,y,z\n", "no sensors"),
    ("sensor_id,x,y,z\n0,0,0,0\n1,nan,0,5\n", "non-finite sensor position"),
    ("sensor_id,x,y,z\n0,0,0,0\n0,0,0,20\n", "sensor_id values are not unique"),
])
def test_malformed_geometry_table_raises_naming_the_problem(tmp_path, content, problem):
    path = tmp_path / "geo.csv"
    path.write_text(content)
    with pytest.raises(GeometryError, match=problem):
        load_geometry(path)


def test_unknown_detector_and_missing_table_are_geometry_errors(tmp_path):
    with pytest.raises(GeometryError, match="unknown detector 'icecube87'.*icecube86"):
        get_geometry("icecube87")
    with pytest.raises(GeometryError, match="no such geometry file"):
        get_geometry(tmp_path / "absent.csv")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.raises(GeometryError, match="cannot read geometry table"):
        load_geometry(broken)
