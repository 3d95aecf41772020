"""Triggers: the sparse SMT/L1 implementations decide like a plain dense reference."""

from dataclasses import replace

import numpy as np

from nurec.geometry import get_geometry
from nurec.physics.response import ICECUBE_RESPONSE, KM3NET_RESPONSE
from sim.trigger import apply_trigger


def dense_smt(n_events, event, module, time_ns, geometry, response):
    """Reference: a module array per event, neighbours up to span floors on the same string."""
    strings, string_index = np.unique(geometry.module_string, return_inverse=True)
    floors = geometry.module_floor
    first = np.full((n_events, len(strings), floors.max() + 1), np.inf)
    np.minimum.at(first, (event, string_index[module], floors[module]), time_ns)
    hit = np.isfinite(first)
    coincident = np.zeros_like(hit)
    for shift in range(1, response.coincidence_floor_span + 1):
        a, b = first[:, :, shift:], first[:, :, :-shift]
        both = hit[:, :, shift:] & hit[:, :, :-shift]
        close = np.zeros_like(both)
        close[both] = np.abs(a[both] - b[both]) <= response.coincidence_window_ns
        coincident[:, :, shift:] |= close
        coincident[:, :, :-shift] |= close
    return coincident.sum(axis=(1, 2)) >= response.trigger_threshold


def dense_l1(n_events, event, module, time_ns, response):
    """Reference: count, per event, modules with two hits within the window (loop over events)."""
    result = np.zeros(n_events, dtype=bool)
    for e in range(n_events):
        modules = 0
        for m in np.unique(module[event == e]):
            t = np.sort(time_ns[(event == e) & (module == m)])
            modules += bool(np.any(np.diff(t) <= response.coincidence_window_ns))
        result[e] = modules >= response.trigger_threshold
    return result


def test_smt_trigger_matches_dense_reference():
    geometry = get_geometry("icecube-mini")
    rng = np.random.default_rng(1)
    n_events, n_hits = 300, 9000
    event = rng.integers(0, n_events, n_hits)
    # Hits clustered on a few strings and floors so that some events trigger and some do not.
    sensor = rng.integers(0, 90, n_hits) + 60 * rng.integers(0, 3, n_hits)
    time_ns = rng.uniform(0, 4000, n_hits) + 500 * rng.integers(0, 3, n_hits)
    decision, _ = apply_trigger(n_events, event, sensor, time_ns, geometry, ICECUBE_RESPONSE)
    module = geometry.sensor_module_index[sensor]
    assert np.array_equal(decision, dense_smt(n_events, event, module, time_ns, geometry, ICECUBE_RESPONSE))
    assert 0.1 < decision.mean() < 0.9


def test_l1_trigger_matches_dense_reference():
    geometry = get_geometry("orca6")
    rng = np.random.default_rng(2)
    n_events, n_hits = 200, 4000
    event = rng.integers(0, n_events, n_hits)
    sensor = rng.integers(0, 31 * 8, n_hits)  # 8 DOMs, ~2.5 hits each per event
    time_ns = rng.uniform(0, 150, n_hits)
    response = replace(KM3NET_RESPONSE, trigger="l1")
    decision, _ = apply_trigger(n_events, event, sensor, time_ns, geometry, response)
    module = geometry.sensor_module_index[sensor]
    assert np.array_equal(decision, dense_l1(n_events, event, module, time_ns, response))
    assert 0.05 < decision.mean() < 0.95


def test_packed_sort_orders_like_lexsort():
    from sim.sorting import order_by_group_then_time

    rng = np.random.default_rng(3)
    group = rng.integers(0, 50_000, 200_000)
    time_ns = rng.uniform(-4000.0, 70_000.0, 200_000)
    assert np.array_equal(order_by_group_then_time(group, time_ns), np.lexsort((time_ns, group)))
    assert len(order_by_group_then_time(np.zeros(0, int), np.zeros(0))) == 0


def test_3d_trigger_needs_causally_connected_l1s():
    """L1s as a muon would make them trigger; as many L1s scattered in time over the detector do not."""
    from nurec.physics.medium import WATER

    geometry = get_geometry("km3net-orca")
    module_sensor = np.searchsorted(geometry.sensor_module_index, np.arange(geometry.n_modules))
    near = np.argsort(np.linalg.norm(geometry.module_position - geometry.module_position[0], axis=1))[:6]
    rng = np.random.default_rng(5)
    far = rng.choice(geometry.n_modules, 6, replace=False)
    travel = np.linalg.norm(geometry.module_position[near] - geometry.module_position[near[0]], axis=1)
    causal_times = travel / WATER.light_speed_m_per_ns  # light spreading from one point
    random_times = rng.uniform(0.0, 50_000.0, 6)
    event = np.repeat([0, 1], 12)
    modules = np.concatenate([np.repeat(near, 2), np.repeat(far, 2)])
    sensor = module_sensor[modules] + np.tile([0, 1], 12)
    time_ns = np.concatenate([np.repeat(causal_times, 2), np.repeat(random_times, 2)]) + np.tile([0.0, 3.0], 12)
    decision, triggered_hits = apply_trigger(2, event, sensor, time_ns, geometry, KM3NET_RESPONSE, WATER)
    assert decision.tolist() == [True, False]
    # Every hit of the causal L1s is flagged; nothing of the event that did not trigger.
    assert triggered_hits.tolist() == [True] * 12 + [False] * 12


def test_deepcore_smt3_triggers_on_three_local_coincidences_inside_deepcore_only():
    geometry = get_geometry("icecube86")
    deepcore_string = geometry.string_id.max()  # a DeepCore string
    outer_string = 60  # a standard string far from the centre

    def deepest(string_id, n):
        rows = np.flatnonzero(geometry.string_id == string_id)
        return rows[np.argsort(geometry.position[rows, 2])][:n]

    inside, outside = deepest(deepcore_string, 3), deepest(outer_string, 3)
    assert geometry.subarray[inside].all() and not geometry.subarray[outside].any()
    sensor = np.concatenate([inside, outside])
    event = np.repeat([0, 1], 3)
    time_ns = np.tile([0.0, 100.0, 200.0], 2)  # neighbouring DOMs within 1 µs: three HLC DOMs each
    decision, _ = apply_trigger(2, event, sensor, time_ns, geometry, ICECUBE_RESPONSE)
    assert decision.tolist() == [True, False]


def test_hit_level_hlc_flags_match_a_brute_force_search():
    from sim.trigger import hard_local_coincidence

    geometry = get_geometry("icecube-mini")
    rng = np.random.default_rng(4)
    n = 600
    event = rng.integers(0, 5, n)
    sensor = rng.integers(0, 120, n)
    time_ns = rng.uniform(0, 20_000, n)
    flags = hard_local_coincidence(event, sensor, time_ns, geometry, ICECUBE_RESPONSE)
    string, floor = geometry.string_id[sensor], geometry.floor[sensor]
    expected = np.array([
        np.any((event == event[i]) & (string == string[i]) & (np.abs(floor - floor[i]) >= 1)
               & (np.abs(floor - floor[i]) <= ICECUBE_RESPONSE.coincidence_floor_span)
               & (np.abs(time_ns - time_ns[i]) <= ICECUBE_RESPONSE.coincidence_window_ns))
        for i in range(n)])
    assert np.array_equal(flags, expected)
    assert 0.05 < flags.mean() < 0.95
