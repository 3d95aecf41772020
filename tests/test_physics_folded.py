"""Folded photon tables: the fast lookup the simulator and the cascade fit share, and its bounds."""

import numpy as np
import pytest

from nurec.physics import tables
from nurec.physics.folded import cascade_npe_per_gev, folded_table, lookup_npe, table_envelope
from nurec.physics.light import expected_npe_cascade
from nurec.physics.medium import ICE, WATER


def random_sensors(rng, n, max_distance_m):
    distance = np.exp(rng.uniform(0.0, np.log(max_distance_m), n))
    towards = rng.normal(size=(n, 3))
    towards /= np.linalg.norm(towards, axis=1, keepdims=True)
    facing = rng.normal(size=(n, 3))
    facing /= np.linalg.norm(facing, axis=1, keepdims=True)
    return distance[:, None] * towards, facing, distance


@pytest.mark.parametrize("medium", ["ice", "water"])
def test_folded_lookup_agrees_with_the_direct_fold_of_the_table(medium):
    table = tables.load_table(medium, "cascade")
    position, facing, _ = random_sensors(np.random.default_rng(1), 4000, 0.999 * float(table.distance_m[-1]))
    axis = np.array([0.0, 0.0, 1.0])
    direct = tables.expected_npe_cascade(table, position, facing, np.zeros(3), axis, 1.0)
    fast, _ = cascade_npe_per_gev(medium, position, facing, np.zeros(3), axis)
    ratio = fast[direct > 0] / direct[direct > 0]
    assert np.median(ratio) == pytest.approx(1.0, abs=0.01)
    assert np.all(np.abs(np.quantile(ratio, [0.01, 0.99]) - 1.0) < 0.07), np.quantile(ratio, [0.01, 0.99])


@pytest.mark.parametrize("medium", ["ice", "water"])
def test_the_simulators_envelope_bounds_every_lookup(medium):
    envelope = table_envelope(medium, "cascade", 40.0)
    table = tables.load_table(medium, "cascade")
    position, facing, distance = random_sensors(np.random.default_rng(2), 20000, 1.2 * float(table.distance_m[-1]))
    axis = np.array([0.3, -0.2, 0.93])
    axis /= np.linalg.norm(axis)
    value, _ = cascade_npe_per_gev(medium, position, facing, np.zeros(3), axis)
    cos_eta = position @ axis / distance
    assert np.all(value <= envelope.bound(distance, cos_eta, cos_eta) * (1 + 1e-9))
    assert np.all(value <= envelope.bound(0.8 * distance, cos_eta - 0.1, cos_eta + 0.1) * (1 + 1e-9))
    radial = envelope.radial_scale * np.exp(-distance / 40.0) / np.maximum(distance, 1.0) ** 2
    assert np.all(value <= radial * (1 + 1e-9))


def test_no_light_beyond_the_table_and_the_first_node_inside_it():
    folded = folded_table("ice", "cascade")
    low, high = folded.distance_range_m
    facing = np.array([[-1.0, 0.0, 0.0]])
    inside = lookup_npe(folded, np.array([low, 0.2 * low, 1.01 * high]), 0.5, facing)
    assert inside[0] == inside[1] > 0
    assert inside[2] == 0.0


def test_cascade_light_at_100_m_is_brighter_forward_by_the_tables_factor():
    # The simulator's expectation (light.expected_npe_cascade) carries the photon tables' anisotropy
    # (tests/test_physics_tables.py checks the tables against the photon Monte Carlo). A horizontal
    # cascade, so that both sensors see the same ice layers.
    table = tables.load_table("ice", "cascade")
    axis = np.array([1.0, 0.0, 0.0])
    side = np.sqrt(1 - 0.76**2)
    positions = 100.0 * np.array([[0.76, side, 0.0], [-0.76, side, 0.0]])
    facing = -positions / 100.0  # head-on to the vertex
    light, _ = expected_npe_cascade(positions, facing, np.zeros(3), axis, 1.0, ICE)
    direct = tables.expected_npe_cascade(table, positions, facing, np.zeros(3), axis, 1.0)
    assert light[0] / light[1] == pytest.approx(direct[0] / direct[1], rel=0.03)
    assert light[0] / light[1] > 2.0


def test_the_dust_layer_dims_light_that_crosses_it():
    axis = np.array([0.0, 0.0, 1.0])
    vertex = np.array([0.0, 0.0, -40.0])  # ~1990 m deep, above the dust layer near 2,050 m
    down, up = vertex + [[30.0, 0.0, -80.0]], vertex + [[30.0, 0.0, 80.0]]
    facing = np.array([[0.0, 0.0, -1.0]])
    bulk_down, _ = cascade_npe_per_gev("ice", down, facing, vertex, -axis)
    bulk_up, _ = cascade_npe_per_gev("ice", up, facing, vertex, axis)
    layered_down, _ = expected_npe_cascade(down, facing, vertex, -axis, 1.0, ICE)
    layered_up, _ = expected_npe_cascade(up, facing, vertex, axis, 1.0, ICE)
    assert layered_down[0] / bulk_down[0] < 0.7 * layered_up[0] / bulk_up[0]


def test_water_cascades_keep_their_cherenkov_cone_much_farther_than_ice():
    axis = np.array([1.0, 0.0, 0.0])  # horizontal: both sensors in the same ice layers
    ratios = {}
    for medium in (ICE, WATER):
        positions = 100.0 * np.array([[0.74, np.sqrt(1 - 0.74**2), 0.0], [-0.74, np.sqrt(1 - 0.74**2), 0.0]])
        light, _ = expected_npe_cascade(positions, -positions / 100.0, np.zeros(3), axis, 1.0, medium)
        ratios[medium.name] = light[0] / light[1]
    assert ratios["water"] > 5 * ratios["ice"]
