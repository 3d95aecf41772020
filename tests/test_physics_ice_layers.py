"""Layered ice (nurec.physics.ice_layers): the shipped table, its averages, the path correction, files.

Values hard-coded below are rows of GraphNeT's ice_transparency.parquet (depth, effective
scattering length, absorption length [m]); the comparison with the whole file runs only where
../shared is present.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nurec.cli import main
from nurec.physics import ice_layers, optics
from nurec.physics.ice_layers import (
    absorption_per_m,
    depth_of_z,
    effective_scattering_per_m,
    load_layers,
    max_correction_rate_per_m,
    path_absorption_correction,
    path_excess_absorption,
)
from nurec.physics.tables import TABLE_DIR, TableError

REPO = Path(__file__).resolve().parents[1]
SHARED_TABLE = REPO.parent / "shared" / "data" / "graphnet" / "ice_properties" / "ice_transparency.parquet"
A_BULK = optics.ICE_ABSORPTION_400_PER_M
ORIGIN_DEPTH_M = 1948.07  # IceCube's z = 0 (nurec.geometry)

# (depth, 1/b_e, 1/a) [m]: top layer, detector centre, dust-layer peak and its neighbour, the
# clearest layer, bottom layer.
SHARED_ROWS = [(1398.4, 13.2, 45.1), (1948.5, 26.7, 103.9), (2048.5, 5.0, 17.9), (2058.5, 7.2, 28.4),
               (2468.3, 89.4, 276.1), (2488.4, 56.7, 185.2)]


def _at_depth(depth_m, x_m=0.0, y_m=0.0) -> np.ndarray:
    return np.array([x_m, y_m, ORIGIN_DEPTH_M - depth_m])


def _numeric_excess(source: np.ndarray, sensor: np.ndarray, n: int = 200_001) -> float:
    """∫ (a - a_bulk) ds by the trapezoid rule on a fine grid along the line."""
    s = np.linspace(0.0, 1.0, n)
    depth = depth_of_z(source[2] + s * (sensor[2] - source[2]))
    return float(np.linalg.norm(sensor - source) * np.trapezoid(absorption_per_m(depth) - A_BULK, s))


# --- the table ------------------------------------------------------------------------------

@pytest.mark.parametrize("depth, scattering_m, absorption_m", SHARED_ROWS)
def test_the_shipped_table_holds_the_shared_values_at_their_depths(depth, scattering_m, absorption_m):
    assert effective_scattering_per_m(depth) == 1.0 / scattering_m
    assert absorption_per_m(depth) == 1.0 / absorption_m


def test_the_profile_is_linear_between_layers_and_held_outside():
    a_2050 = 1 / 17.9 + 0.15 * (1 / 28.4 - 1 / 17.9)
    assert absorption_per_m(2050.0) == pytest.approx(a_2050, rel=1e-12)
    assert absorption_per_m([500.0, 1398.4]) == pytest.approx([1 / 45.1, 1 / 45.1])
    assert absorption_per_m(2800.0) == 1 / 185.2
    assert effective_scattering_per_m(1000.0) == 1 / 13.2
    assert depth_of_z(0.0) == ORIGIN_DEPTH_M
    assert depth_of_z([-500.0, 500.0]) == pytest.approx([2448.07, 1448.07])


@pytest.mark.skipif(not SHARED_TABLE.exists(), reason="../shared (GraphNeT's ice table) is not here")
def test_the_build_reproduces_the_shipped_file_from_the_shared_table(tmp_path):
    rows = ice_layers.read_source(SHARED_TABLE)
    layers = load_layers()
    assert len(rows) == 110
    np.testing.assert_array_equal(layers.depth_m, rows[:, 0])
    np.testing.assert_allclose(1.0 / layers.effective_scattering_per_m, rows[:, 1], rtol=1e-15)
    np.testing.assert_allclose(1.0 / layers.absorption_per_m, rows[:, 2], rtol=1e-15)
    assert main(["tables", "ice-layers", "--from", str(SHARED_TABLE), "--out", str(tmp_path)]) == 0
    shipped = (TABLE_DIR / ice_layers.LAYER_FILE).read_bytes()
    assert (tmp_path / ice_layers.LAYER_FILE).read_bytes() == shipped
    built = json.loads((tmp_path / "tables.json").read_text())["ice_layers"]
    recorded = json.loads((TABLE_DIR / "tables.json").read_text())["ice_layers"]
    assert built.pop("build_command").endswith(f"--out {tmp_path}")
    recorded.pop("build_command")
    assert built == recorded


def test_the_depth_average_is_optics_bulk_ice():
    layers = load_layers()
    # optics.py: b_e(400) and a(400) are the means of the coefficients over the 110 layers.
    assert len(layers.depth_m) == 110
    assert layers.effective_scattering_per_m.mean() == pytest.approx(optics.ICE_EFFECTIVE_SCATTERING_400_PER_M,
                                                                     abs=5e-6)
    assert layers.absorption_per_m.mean() == pytest.approx(A_BULK, abs=5e-6)
    # A vertical path through the layers' column (half a layer beyond each end) sees the bulk.
    column = path_absorption_correction(_at_depth(1393.4), _at_depth(2493.4))
    assert column == pytest.approx(1.0, abs=1.5e-3)


# --- the correction -------------------------------------------------------------------------

def test_a_path_in_bulk_equivalent_ice_is_not_corrected():
    layers = load_layers()
    excess = layers.absorption_per_m - A_BULK
    i = int(np.flatnonzero(np.sign(excess[:-1]) != np.sign(excess[1:]))[0])
    depth = layers.depth_m[i] - excess[i] * np.diff(layers.depth_m)[i] / (excess[i + 1] - excess[i])
    assert absorption_per_m(depth) == pytest.approx(A_BULK, rel=1e-12)
    assert path_absorption_correction(_at_depth(depth), _at_depth(depth, x_m=250.0)) == pytest.approx(1.0, abs=1e-12)
    assert path_absorption_correction(_at_depth(2000.0), _at_depth(2000.0)) == 1.0


def test_the_dust_layer_attenuates_a_horizontal_path():
    a_2050 = 1 / 17.9 + 0.15 * (1 / 28.4 - 1 / 17.9)
    factor = path_absorption_correction(_at_depth(2050.0, x_m=-50.0), _at_depth(2050.0, x_m=50.0, y_m=0.0))
    assert factor == pytest.approx(np.exp(-100.0 * (a_2050 - A_BULK)), rel=1e-12)
    assert factor == pytest.approx(0.0171, abs=1e-4)
    # clear ice below it lets more light through than the bulk
    assert path_absorption_correction(_at_depth(2468.3), _at_depth(2468.3, y_m=100.0)) > 1.0


def test_slanted_paths_match_a_numerical_integral_across_layers_and_beyond_the_table():
    pairs = [((0.0, 0.0, 0.0), (30.0, -20.0, -150.0)),       # down through the dust layer
             ((10.0, 0.0, 600.0), (0.0, 5.0, 400.0)),        # starting above the table
             ((0.0, 0.0, -520.0), (80.0, 0.0, -600.0)),      # ending below it
             ((0.0, 0.0, -100.0), (300.0, 0.0, -100.004))]   # nearly horizontal, in the dust
    for source, sensor in pairs:
        source, sensor = np.array(source), np.array(sensor)
        assert path_excess_absorption(source, sensor) == pytest.approx(_numeric_excess(source, sensor),
                                                                       rel=1e-6, abs=1e-9)


def test_the_correction_is_symmetric_multiplicative_and_broadcasts():
    rng = np.random.default_rng(7)
    source = rng.uniform([-300, -300, -600], [300, 300, 600], size=(500, 3))
    sensor = rng.uniform([-300, -300, -600], [300, 300, 600], size=(500, 3))
    forward = path_absorption_correction(source, sensor)
    assert forward.shape == (500,)
    np.testing.assert_array_equal(forward, path_absorption_correction(sensor, source))
    split = source + rng.random((500, 1)) * (sensor - source)
    np.testing.assert_allclose(path_absorption_correction(source, split) * path_absorption_correction(split, sensor),
                               forward, rtol=1e-10)
    grid = path_absorption_correction(source[:4, None, :], sensor[None, :6, :])
    assert grid.shape == (4, 6)
    np.testing.assert_allclose(grid[2, 5], path_absorption_correction(source[2], sensor[5]), rtol=1e-14)


def test_nearly_horizontal_paths_join_the_horizontal_one():
    # On both sides of the 1 µm switch to the mid-depth value, and across a layer depth (2048.5 m).
    for depth in (2040.0, 2048.5):
        for rise in (1e-9, 1e-7, 9e-7, 1.1e-6, 1e-5, 1e-3):
            flat = path_excess_absorption(_at_depth(depth + rise / 2), _at_depth(depth + rise / 2, x_m=200.0))
            tilted = path_excess_absorption(_at_depth(depth), _at_depth(depth + rise, x_m=200.0))
            assert tilted == pytest.approx(flat, rel=1e-7)


def test_the_growth_rate_bounds_the_factor():
    rate = max_correction_rate_per_m()
    assert rate == pytest.approx(A_BULK - 1 / 276.1, rel=1e-12)  # the clearest layer, 2468.3 m
    rng = np.random.default_rng(3)
    source = rng.uniform([-500, -500, -700], [500, 500, 700], size=(2000, 3))
    sensor = rng.uniform([-500, -500, -700], [500, 500, 700], size=(2000, 3))
    distance = np.linalg.norm(sensor - source, axis=-1)
    factor = path_absorption_correction(source, sensor)
    assert np.all(factor > 0) and np.all(factor <= np.exp(distance * rate))
    assert factor.max() > 1.0  # the bound is not vacuous: some paths do gain


# --- files ----------------------------------------------------------------------------------

@pytest.fixture
def layer_copy(tmp_path) -> Path:
    for name in (ice_layers.LAYER_FILE, "tables.json"):
        shutil.copy(TABLE_DIR / name, tmp_path / name)
    return tmp_path


def test_a_tampered_table_is_refused_with_the_rebuild_command(layer_copy):
    path = layer_copy / ice_layers.LAYER_FILE
    path.write_bytes(path.read_bytes().replace(b"2048.5,5.0,17.9", b"2048.5,5.0,71.9"))
    with pytest.raises(TableError, match=r"SHA-256 does not match tables.json; rebuild it with `nurec tables "
                                         r"ice-layers --from \.\./shared/data/graphnet/ice_properties/"
                                         r"ice_transparency\.parquet --out .*`") as error:
        load_layers(layer_copy)
    assert "\n" not in str(error.value)


def test_a_missing_table_names_the_command_that_builds_it(layer_copy):
    (layer_copy / ice_layers.LAYER_FILE).unlink()
    with pytest.raises(TableError, match=r"no ice layer table; rebuild it with `nurec tables ice-layers --from "):
        load_layers(layer_copy)
