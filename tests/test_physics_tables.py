"""Photon tables: the shipped tables against direct photon tracking, physics sanity, files and errors.

The direct tracking is a fresh photon Monte Carlo (another seed) whose photons are counted by
transparent sensor spheres on a ring around the source (every sphere at the same table
geometry, so their counts add up): Σ weight × acceptance / (2 π R²) over the photons crossing
their surfaces estimates the expected photo-electrons, independently of the tables' shell-crossing estimator, binning and
interpolation. To stay fast, photons are tracked only as long as they can still arrive within
``window_ns`` of the direct time, and the tables are read within the same window
(expected_npe × delay_cdf(window)).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from nurec.physics import optics
from nurec.physics.medium import ICE, SPEED_OF_LIGHT_M_PER_NS
from nurec.physics.photon_mc import (
    detected_spectrum,
    direct_time_factors,
    emit_cascade,
    emit_track,
    propagate,
    sphere_sensor_hits,
)
from nurec.physics.sensors import icecube_effective_area_m2, km3net_effective_area_m2, sensor_for
from nurec.physics.tables import (
    TABLE_DIR,
    SensorGeometry,
    TableError,
    build_table,
    default_settings,
    delay_cdf,
    expected_npe,
    expected_npe_cascade,
    load_table,
    sample_delay_ns,
    sensor_geometry,
    tables_to_bytes,
    write_tables,
)

HEAD_ON = (-1.0, 0.0, 0.0)  # sensor axis against the direct light (local frame d0, d1, d2)
SIDEWAYS = (0.0, 0.0, 1.0)


# --- direct tracking -------------------------------------------------------------------------

def _ring(source: str, distance_m: float, cos_eta: float, n: int, reference_cos: float):
    """Return sensor centres on a ring seeing one table geometry, and each centre's local frame (d0, d1, d2)."""
    phi = 2 * np.pi * (np.arange(n) + 0.5) / n
    radial = np.stack([np.cos(phi), np.sin(phi), np.zeros(n)], axis=1)
    axis = np.array([0.0, 0.0, 1.0])
    if source == "cascade":
        sin_eta = np.sqrt(1 - cos_eta**2)
        d0 = sin_eta * radial + cos_eta * axis
        d1 = axis - cos_eta * d0
        d1 /= np.linalg.norm(d1, axis=1, keepdims=True)
        centres = distance_m * d0
    else:  # infinite track along z: the ring at z = 0, ρ = distance_m
        d0 = reference_cos * axis + np.sqrt(1 - reference_cos**2) * radial
        d1 = -np.sqrt(1 - reference_cos**2) * axis + reference_cos * radial
        centres = distance_m * radial
    return centres, np.stack([d0, d1, np.cross(d0, d1)], axis=1)


def track_to_sensors(medium: str, source: str, distance_m: float, cos_eta: float, radius_m: float,
                     n_sensors: int, photons: int, seed: int, window_ns: float, track_from_m: float = 0.0,
                     track_to_m: float = 0.0):
    """Return the photons crossing a ring of sensor spheres: frames, direction, delay, weight, group.

    ``group`` numbers the (photon, sphere) pairs: a photon's crossings of one sphere (in and
    out) carry nearly the same delay.

    Tracks emit on z ∈ [track_from_m, track_to_m), a piece of an infinite track long enough
    that light from beyond cannot reach the ring within ``window_ns``; cascades emit 1 GeV's light.
    """
    table = load_table(medium, source)
    centres, frames = _ring(source, distance_m, cos_eta, n_sensors, table.reference_cos_theta)
    factor = direct_time_factors(medium)[0 if source == "cascade" else 1]
    rng = np.random.default_rng(seed)
    if source == "cascade":
        photons_ = emit_cascade(medium, photons, rng)
        max_path = distance_m + radius_m + window_ns * SPEED_OF_LIGHT_M_PER_NS / factor
    else:
        length = track_to_m - track_from_m
        photons_ = emit_track(medium, photons, rng, length_m=length)
        photons_.position_m[:, 2] += track_from_m
        photons_.time_ns += track_from_m / SPEED_OF_LIGHT_M_PER_NS
        max_path = -track_from_m + distance_m + 2 * radius_m
    parts = []
    for segments in propagate(photons_, medium, rng, max_path):
        hits = sphere_sensor_hits(segments, centres, radius_m)
        reach = np.hypot(hits.position_m[:, 0], hits.position_m[:, 1]) if source == "track" \
            else np.linalg.norm(hits.position_m, axis=1)
        direct = reach * factor / SPEED_OF_LIGHT_M_PER_NS
        if source == "track":
            direct = direct + hits.position_m[:, 2] / SPEED_OF_LIGHT_M_PER_NS
        delay = np.maximum(hits.time_ns - direct, 0.0)
        keep = delay < window_ns
        parts.append((hits.sensor[keep], hits.direction[keep], delay[keep], hits.weight[keep], hits.photon[keep]))
    sensor, direction, delay, weight, photon = (np.concatenate(column) for column in zip(*parts, strict=True))
    group = np.unique(photon * n_sensors + sensor, return_inverse=True)[1]
    return frames[sensor], direction, delay, weight / (2 * np.pi * radius_m**2 * n_sensors), group


def sensor_response(medium: str, frames, direction, weight, pmt_local) -> tuple[float, float, np.ndarray]:
    """Return (expected pe, its relative error, per-photon pe) of sensors facing ``pmt_local``."""
    pmt = np.einsum("j,ijk->ik", np.asarray(pmt_local, dtype=float), frames)
    pe = weight * sensor_for(medium).acceptance(np.einsum("ij,ij->i", direction, pmt))
    return float(pe.sum()), float(np.sqrt((pe**2).sum()) / pe.sum()), pe


def table_response(table, distance_m, cos_eta, pmt_local, window_ns) -> tuple[float, float, SensorGeometry]:
    """Return (expected pe within the window, relative statistical error, geometry) from a table."""
    geometry = SensorGeometry(np.array([distance_m]), np.array([cos_eta]), np.array([pmt_local], dtype=float))
    npe = expected_npe(table, geometry)[0] * delay_cdf(table, geometry, window_ns)[0]
    i = np.argmin(np.abs(np.log(table.distance_m / distance_m)))
    j = np.clip(np.searchsorted(table.cos_eta_edges, cos_eta) - 1, 0, table.npe_rel_error.shape[1] - 1)
    return float(npe), float(table.npe_rel_error[i, j]), geometry


def independent_delays(delay, pe, group, rng) -> np.ndarray:
    """Return an unweighted sample of the delay distribution, one delay at most per (photon, sphere).

    Each group's crossings are replaced by one of them, drawn in proportion to its weight and
    carrying the group's total (unbiased); the groups are then kept with probability weight /
    max weight. Entry and exit of one photon would otherwise count as two nearly equal delays.
    """
    order = np.lexsort((np.log(rng.random(len(delay))) / np.maximum(pe, 1e-300), group))
    last = np.flatnonzero(np.diff(group[order], append=-1))  # the largest key of each group: weighted pick
    total = np.bincount(group, pe)
    chosen = order[last]
    weight = total[group[chosen]]
    return delay[chosen][rng.random(len(chosen)) < weight / weight.max()]


def table_delays(table, geometry, window_ns, size, rng) -> np.ndarray:
    """Return ``size`` delays drawn from the table within the window."""
    delays = sample_delay_ns(table, geometry, rng, 4 * size)[0]
    return delays[delays < window_ns][:size]


@pytest.fixture(scope="module")
def water_cascade_hits():
    window = 300.0
    return {
        "on the cone at 40 m": (40.0, 0.75, window, track_to_sensors("water", "cascade", 40.0, 0.75, 0.5, 32,
                                                                    600_000, 101, window)),
        "off the cone at 20 m": (20.0, 0.3, window, track_to_sensors("water", "cascade", 20.0, 0.3, 1.0, 32,
                                                                    600_000, 102, window)),
    }


def compare_with_table(medium, source, distance, cos_eta, window, hits, pe_tolerance=0.05):
    """Assert the table's head-on charge within ``pe_tolerance`` and its delays by a KS test; return the numbers."""
    frames, direction, delay, weight, group = hits
    table = load_table(medium, source)
    mc, mc_error, pe = sensor_response(medium, frames, direction, weight, HEAD_ON)
    tab, tab_error, geometry = table_response(table, distance, cos_eta, HEAD_ON, window)
    assert mc_error < 0.02 and tab_error < 0.01, (mc_error, tab_error)
    assert abs(tab / mc - 1) < pe_tolerance, (tab, mc, mc_error, tab_error)
    rng = np.random.default_rng(5)
    measured = independent_delays(delay, pe, group, rng)
    assert len(measured) > 300
    ks = stats.ks_2samp(measured, table_delays(table, geometry, window, 20000, rng))
    assert ks.pvalue > 0.01, ks
    return table, mc, tab


@pytest.mark.parametrize("point", ["on the cone at 40 m", "off the cone at 20 m"])
def test_water_cascade_table_matches_direct_photon_tracking(water_cascade_hits, point):
    distance, cos_eta, window, hits = water_cascade_hits[point]
    table, mc, _ = compare_with_table("water", "cascade", distance, cos_eta, window, hits)
    # a sensor facing sideways sees less, and as much as the table says (within 3 combined standard errors)
    frames, direction, _, weight, _ = hits
    mc_side, side_error, _ = sensor_response("water", frames, direction, weight, SIDEWAYS)
    tab_side, tab_error, _ = table_response(table, distance, cos_eta, SIDEWAYS, window)
    assert mc_side < 0.3 * mc
    assert abs(tab_side / mc_side - 1) < 3 * np.hypot(side_error, tab_error), (tab_side, mc_side, side_error)


def test_the_comparison_can_fail(water_cascade_hits):
    # the same photons against the table read 25% farther out, and the delays 3x farther out
    distance, cos_eta, window, (frames, direction, delay, weight, group) = water_cascade_hits["off the cone at 20 m"]
    table = load_table("water", "cascade")
    mc, _, pe = sensor_response("water", frames, direction, weight, HEAD_ON)
    farther, _, _ = table_response(table, 1.25 * distance, cos_eta, HEAD_ON, window)
    assert abs(farther / mc - 1) > 0.3
    rng = np.random.default_rng(6)
    _, _, wrong = table_response(table, 3 * distance, cos_eta, HEAD_ON, window)
    measured = independent_delays(delay, pe, group, rng)
    assert stats.ks_2samp(measured, table_delays(table, wrong, window, 20000, rng)).pvalue < 1e-4


def test_water_track_table_matches_direct_photon_tracking():
    # an infinite track is a long one: light from beyond -130 m or +40 m cannot arrive within 100 ns
    window, rho = 100.0, 20.0
    hits = track_to_sensors("water", "track", rho, 0.0, 1.0, 32, 600_000, 103, window,
                            track_from_m=-130.0, track_to_m=40.0)
    compare_with_table("water", "track", rho, 0.0, window, hits)


def test_ice_cascade_table_matches_direct_photon_tracking():
    window = 1000.0
    hits = track_to_sensors("ice", "cascade", 40.0, 0.76, 1.5, 24, 100_000, 104, window)
    compare_with_table("ice", "cascade", 40.0, 0.76, window, hits)


def test_ice_cascade_light_is_brighter_forward_as_the_photon_mc_says():
    # 100 m from the cascade, on the Cherenkov cone's side (cos η = 0.76) and opposite it (-0.76)
    window = 2000.0
    table = load_table("ice", "cascade")
    mc, tab = {}, {}
    for seed, (side, cos_eta) in enumerate((("forward", 0.76), ("backward", -0.76))):
        frames, direction, _, weight, _ = track_to_sensors("ice", "cascade", 100.0, cos_eta, 5.0, 24, 120_000,
                                                           105 + seed, window)
        mc[side] = sensor_response("ice", frames, direction, weight, HEAD_ON)[:2]
        tab[side] = table_response(table, 100.0, cos_eta, HEAD_ON, window)[:2]
    mc_ratio = mc["forward"][0] / mc["backward"][0]
    tab_ratio = tab["forward"][0] / tab["backward"][0]
    sigma = np.sqrt(sum(error**2 for _, error in (*mc.values(), *tab.values())))
    assert sigma < 0.1, sigma
    assert mc_ratio > 1.2 and tab_ratio > 1.2, (mc_ratio, tab_ratio)
    assert abs(tab_ratio / mc_ratio - 1) < 3 * sigma, (tab_ratio, mc_ratio, sigma)


# --- physics sanity -------------------------------------------------------------------------

def test_scattering_tail_is_much_smaller_in_water_than_in_ice_at_equal_distance():
    tail = {}
    for medium in ("water", "ice"):
        table = load_table(medium, "cascade")
        geometry = SensorGeometry(np.array([50.0]), np.array([0.75]), np.array([HEAD_ON]))
        tail[medium] = 1.0 - delay_cdf(table, geometry, 20.0)[0]  # light later than 20 ns
    assert tail["water"] < 0.25 * tail["ice"], tail
    assert tail["ice"] > 0.5, tail


def test_expected_charge_falls_with_distance_and_scales_with_energy():
    table = load_table("ice", "cascade")
    vertex, direction = np.zeros(3), np.array([0.0, 0.0, 1.0])
    sensors = np.array([[d, 0.0, 0.0] for d in (10.0, 30.0, 100.0, 300.0)])
    facing = -sensors / np.linalg.norm(sensors, axis=1, keepdims=True)
    npe = expected_npe_cascade(table, sensors, facing, vertex, direction, 2.0)
    assert np.all(np.diff(npe) < 0) and npe[-1] > 0
    np.testing.assert_allclose(expected_npe_cascade(table, sensors, facing, vertex, direction, 4.0), 2 * npe)


def test_sensor_geometry_of_a_track_is_independent_of_the_position_along_it():
    table = load_table("water", "track")
    sensors = np.array([[10.0, 0.0, z] for z in (-50.0, 0.0, 70.0)])
    geometry = sensor_geometry(table, sensors, [0.0, 0.0, -1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0])
    np.testing.assert_allclose(geometry.distance_m, 10.0)
    npe = expected_npe(table, geometry)
    np.testing.assert_allclose(npe, npe[0], rtol=1e-6)


# --- optical constants ------------------------------------------------------------------------

def test_optical_constants_match_their_sources():
    # Jpp KM3NeT.hh absorption table: 67.5 m at 440 nm, 59.0 m at 475 nm, linear in between
    assert optics.absorption_length_m("water", 470.0) == pytest.approx(67.5 + 30 / 35 * (59.0 - 67.5))
    assert optics.absorption_length_m("water", 440.0) == pytest.approx(67.5)
    # Kopelevich at 550 nm: 1 / (0.0017 + (1.340 + 0.312) * 0.0075) m
    assert optics.scattering_length_m("water", 550.0) == pytest.approx(1 / (0.0017 + 1.652 * 0.0075))
    # Bailey / Quan & Fry at 240 atm, 470 nm
    x = 1 / 470.0
    assert optics.n_phase("water", 470.0) == pytest.approx(1.3201 + 1.4e-5 * 240 + 16.2566 * x - 4383 * x**2
                                                           + 1.1455e6 * x**3)
    assert optics.n_group("water", 470.0) == pytest.approx(1.3772, abs=5e-4)
    # Ice: depth-averaged b_e(400) = 0.04226 /m and a(400) = 0.01208 /m (module docstring), SPICE α, κ
    assert 1 / optics.effective_scattering_length_m("ice", 400.0) == pytest.approx(0.04226)
    assert 1 / optics.absorption_length_m("ice", 400.0) == pytest.approx(0.01208)
    assert optics.effective_scattering_length_m("ice", 500.0) == pytest.approx(1 / 0.04226 * 1.25**0.898)
    # Price & Woschnagg at 400 nm (n_phase as nurec.physics.medium.ICE quotes it)
    assert optics.n_phase("ice", 400.0) == pytest.approx(ICE.refractive_index_phase, abs=1e-4)
    assert optics.n_group("ice", 400.0) == pytest.approx(1.3561, abs=1e-4)
    # sensors: KM3NeT 45.4 cm² × QE 26% × collection 0.9 at 400 nm; IceCube DOM peak 0.0114425 m² at 420 nm
    assert km3net_effective_area_m2(400.0) == pytest.approx(45.4e-4 * 0.26 * 0.9)
    assert icecube_effective_area_m2(420.0) == pytest.approx(0.0114425)
    # the phase functions are normalised and have their mean cosines
    cos = np.linspace(-1, 1, 200001)
    for medium in optics.MEDIA:
        pdf = optics.phase_function_pdf(medium, cos)
        assert 2 * np.pi * np.trapezoid(pdf, cos) == pytest.approx(1.0, abs=1e-4)
        assert 2 * np.pi * np.trapezoid(pdf * cos, cos) == pytest.approx(optics.scattering_mean_cos(medium), abs=1e-3)
        sample = optics.sample_scattering_cos(medium, 200_000, np.random.default_rng(1))
        assert sample.mean() == pytest.approx(optics.scattering_mean_cos(medium), abs=3e-3)
    assert detected_spectrum("water").yield_m2_per_m > 0


# --- files, determinism and errors -----------------------------------------------------------

def _small_settings(seed: int):
    return default_settings("water", "track", photons=40_000, seed=seed, batch_size=20_000, n_distance=8,
                            distance_max_m=50.0)


def test_same_seed_gives_identical_table_bytes_and_another_seed_does_not():
    first = tables_to_bytes([build_table(_small_settings(3))])
    assert tables_to_bytes([build_table(_small_settings(3))]) == first
    assert tables_to_bytes([build_table(_small_settings(4))]) != first


@pytest.fixture
def table_copy(tmp_path) -> Path:
    for name in ("water.npz", "ice.npz", "ice_layers.csv", "tables.json"):
        shutil.copy(TABLE_DIR / name, tmp_path / name)
    return tmp_path


def test_a_table_with_a_wrong_hash_is_refused_with_the_rebuild_command(table_copy):
    path = table_copy / "water.npz"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(TableError, match=r"SHA-256 does not match tables.json; rebuild it with "
                                         r"`nurec tables build --medium water --out .*`") as error:
        load_table("water", "cascade", table_copy)
    assert "\n" not in str(error.value)
    assert load_table("ice", "track", table_copy).medium == "ice"


def test_a_missing_table_names_the_command_that_builds_it(table_copy):
    (table_copy / "ice.npz").unlink()
    with pytest.raises(TableError, match=r"no ice photon table; rebuild it with `nurec tables build --medium ice"):
        load_table("ice", "cascade", table_copy)


def test_unknown_medium_and_source_are_one_line_errors():
    with pytest.raises(ValueError, match=r"^unknown medium 'oil' \(known: water, ice\)$"):
        load_table("oil", "cascade")
    with pytest.raises(ValueError, match=r"^unknown source 'tau'"):
        load_table("water", "tau")
    with pytest.raises(ValueError, match="unknown medium 'oil'"):
        optics.absorption_length_m("oil", 400.0)


def test_out_of_range_distance_and_energy_name_the_quantity():
    table = load_table("water", "cascade")
    with pytest.raises(ValueError, match=r"^distance_m 400 m is outside the water cascade table's range \[1, 300\] m$"):
        expected_npe(table, SensorGeometry(np.array([10.0, 400.0]), np.array([0.0, 0.0]), np.array(HEAD_ON)))
    with pytest.raises(ValueError, match="distance_m 0.5 m is outside"):
        delay_cdf(table, SensorGeometry(np.array([0.5]), np.array([0.0]), np.array(HEAD_ON)), 10.0)
    with pytest.raises(ValueError, match="em_energy_gev must be finite and ≥ 0"):
        expected_npe_cascade(table, [[10.0, 0, 0]], [[-1.0, 0, 0]], [0, 0, 0], [0, 0, 1.0], -1.0)
    with pytest.raises(ValueError, match=r"perpendicular distance_m 600 m is outside the ice track table"):
        expected_npe(load_table("ice", "track"), SensorGeometry(np.array([600.0]), np.array([0.0]),
                                                                np.array(HEAD_ON)))


def test_written_tables_load_back_identically(tmp_path):
    table = build_table(_small_settings(5))
    write_tables("water", [table], tmp_path)
    loaded = load_table("water", "track", tmp_path)
    for name, value in table.arrays().items():
        np.testing.assert_array_equal(getattr(loaded, name), value)
    geometry = SensorGeometry(np.array([7.0]), np.array([0.0]), np.array(HEAD_ON))
    assert expected_npe(loaded, geometry) == pytest.approx(expected_npe(table, geometry))


def test_tables_check_command_reports_each_medium(table_copy, capsys):
    from nurec.cli import main

    assert main(["tables", "check", "--dir", str(table_copy)]) == 0
    out = capsys.readouterr().out
    assert out.count(": ok, ") == 3  # water, ice, ice layers
    (table_copy / "water.npz").write_bytes(b"not a table")
    assert main(["tables", "check", "--dir", str(table_copy)]) == 1
    failed = [line for line in capsys.readouterr().out.splitlines() if "FAILED" in line]
    assert failed == [f"water: FAILED: {table_copy / 'water.npz'}: SHA-256 does not match tables.json; rebuild it "
                      f"with `nurec tables build --medium water --out {table_copy}`"]


def test_tables_build_command_refuses_a_photon_count_it_cannot_batch(tmp_path, capsys):
    from nurec.cli import main

    assert main(["tables", "build", "--medium", "ice", "--out", str(tmp_path), "--photons", "12345"]) == 1
    assert capsys.readouterr().err.strip() == ("nurec tables: error: photons must be a positive multiple of "
                                               "batch_size 100000, got 12345")
