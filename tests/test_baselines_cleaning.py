"""Noise cleaning (isolated_hit_mask): the sensor-pair definition, computed without building every pair."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from nurec.baselines import cleaning
from nurec.baselines.cleaning import CLEANING, CleaningSettings, isolated_hit_mask
from nurec.geometry import get_geometry
from nurec.ragged import RaggedEvents


def definition_mask(flat: RaggedEvents, settings: CleaningSettings) -> np.ndarray:
    """Return the cleaning verdict straight from its definition, every sensor pair of each event."""
    keep = np.zeros(flat.n_items, dtype=bool)
    for event in range(flat.n_events):
        items = np.arange(flat.offsets[event], flat.offsets[event + 1])
        sensor, t = flat["sensor_id"][items], flat["t"][items]
        ids = np.unique(sensor)
        first = np.array([items[sensor == s][np.argsort(t[sensor == s], kind="stable")[0]] for s in ids],
                         dtype=np.int64)
        t_first, t_last = flat["t"][first], np.array([t[sensor == s].max() for s in ids])
        pos = flat["pos"][first]
        i, j = np.meshgrid(np.arange(len(ids)), np.arange(len(ids)), indexing="ij")
        gap = np.maximum(t_first[j] - t_last[i], t_first[i] - t_last[j])
        close = (i != j) & (gap <= settings.window_ns)
        close &= np.sum((pos[i] - pos[j]) ** 2, axis=-1) <= settings.radius_m**2
        keep[items] = np.isin(sensor, ids[close.any(axis=1)])
    return keep


def random_events(rng: np.random.Generator, settings: CleaningSettings, n_events: int, max_hits: int,
                  n_sensors: int, box_radii: float, lattice: bool) -> RaggedEvents:
    """Return events whose sensors sit in a box of ``box_radii`` radii; on a lattice (step radius/5) and
    with times on a grid of window/4, many pairs sit exactly at the radius or the time window."""
    radius, window = settings.radius_m, settings.window_ns
    counts = rng.integers(0, max_hits, n_events)
    sensor = rng.integers(0, n_sensors, counts.sum())
    if lattice:
        positions = rng.integers(-int(5 * box_radii), int(5 * box_radii) + 1, (n_sensors, 3)) * (radius / 5)
        t = rng.integers(0, 16, counts.sum()) * (window / 4)
    else:
        positions = rng.uniform(-box_radii * radius, box_radii * radius, (n_sensors, 3))
        t = rng.uniform(0, 4 * window, counts.sum())
    return RaggedEvents.from_counts(counts, {"pos": positions[sensor] + 1000.0, "t": t + 1e4, "sensor_id": sensor})


@pytest.mark.parametrize("medium", ["ice", "water"])
@pytest.mark.parametrize("grid", [False, True], ids=["as-configured", "grid-for-all"])
def test_mask_equals_the_pairwise_definition_including_exact_radius_and_window(monkeypatch, medium, grid):
    if grid:  # every event through the spatial grid, not only those with many sensors
        monkeypatch.setattr(cleaning, "_SMALL_EVENT_SENSORS", 0)
    settings = CLEANING[medium]
    rng = np.random.default_rng(11)
    for trial in range(24):
        flat = random_events(rng, settings, n_events=6, max_hits=160, n_sensors=150, box_radii=[0.3, 1.5, 3.0][trial % 3],
                             lattice=trial % 2 == 0)
        np.testing.assert_array_equal(isolated_hit_mask(flat, settings), definition_mask(flat, settings),
                                      err_msg=f"trial {trial}")


def test_partners_at_exactly_the_radius_and_the_window_are_kept_and_just_beyond_are_not(monkeypatch):
    monkeypatch.setattr(cleaning, "_SMALL_EVENT_SENSORS", 0)
    settings = CLEANING["ice"]  # 150 m, 1000 ns
    # Event 0: sensors 1 and 2 exactly 150 m apart (90, 120, 0), spans [0, 10] and [1010, 1010]: gap 1000 ns.
    # Event 1: the same, 1 ns later: gap 1001 ns. Event 2: 150.01 m apart, gap 0. Sensor 3 is far away.
    pos = np.array([[0, 0, 0], [0, 0, 0], [90, 120, 0], [5000, 0, 0]] * 2 + [[0, 0, 0], [150.01, 0, 0]], dtype=float)
    t = np.array([0, 10, 1010, 0, 0, 10, 1011, 0, 0, 0], dtype=float)
    sensor = np.array([1, 1, 2, 3, 1, 1, 2, 3, 1, 2])
    flat = RaggedEvents.from_counts(np.array([4, 4, 2]), {"pos": pos, "t": t, "sensor_id": sensor})
    assert isolated_hit_mask(flat, settings).tolist() == [True, True, True, False] + [False] * 6


def test_sensors_in_different_events_are_never_partners():
    settings = CLEANING["water"]
    pos = np.zeros((2, 3))
    flat = RaggedEvents.from_counts(np.array([1, 1]), {"pos": pos, "t": np.zeros(2), "sensor_id": np.array([1, 2])})
    assert not isolated_hit_mask(flat, settings).any()


def test_empty_events_and_non_finite_values_give_no_partner():
    settings = CLEANING["ice"]
    pos = np.array([[0, 0, 0], [1, 0, 0], [np.nan, 0, 0], [2, 0, 0]], dtype=float)
    t = np.array([0, 5, 0, np.inf])
    flat = RaggedEvents.from_counts(np.array([0, 2, 0, 2]), {"pos": pos, "t": t, "sensor_id": np.array([1, 2, 3, 4])})
    assert isolated_hit_mask(flat, settings).tolist() == [True, True, False, False]


@pytest.mark.parametrize(("radius_m", "window_ns"), [(0.0, 10.0), (-1.0, 10.0), (np.inf, 10.0), (1.0, -1.0)])
def test_settings_must_be_a_real_neighbourhood(radius_m, window_ns):
    with pytest.raises(ValueError, match="cleaning"):
        CleaningSettings(radius_m, window_ns)


def _peak_mb(flat: RaggedEvents, settings: CleaningSettings) -> float:
    tracemalloc.start()
    try:
        isolated_hit_mask(flat, settings)
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def test_memory_of_a_20000_hit_event_on_every_icecube_sensor_is_bounded():
    """Sum over sensor pairs would be 5,160² = 27 million pairs (GBs of temporaries); the grid stays small."""
    geometry = get_geometry("icecube86")
    rng = np.random.default_rng(5)
    sensor = np.concatenate([np.arange(geometry.n_sensors), rng.integers(0, geometry.n_sensors, 20_000 - geometry.n_sensors)])
    flat = RaggedEvents.from_counts(np.array([len(sensor)]), {
        "pos": geometry.position[sensor].astype(np.float64), "t": rng.uniform(0.0, 20_000.0, len(sensor)),
        "sensor_id": geometry.sensor_id[sensor]})
    assert _peak_mb(flat, CLEANING["ice"]) < 50.0


@pytest.mark.parametrize(("n_sensors", "half_width_m"), [(5_000, 40.0), (20_000, 750.0)],
                         ids=["5000-in-one-cube", "20000-spread"])
def test_memory_of_dense_events_is_bounded(n_sensors, half_width_m):
    """Sensors within one window: all in one 80 m box (every pair close), or spread over a 1.5 km box."""
    rng = np.random.default_rng(6)
    flat = RaggedEvents.from_counts(np.array([n_sensors]), {
        "pos": rng.uniform(-half_width_m, half_width_m, (n_sensors, 3)), "t": rng.uniform(0.0, 500.0, n_sensors),
        "sensor_id": np.arange(n_sensors)})
    assert _peak_mb(flat, CLEANING["ice"]) < 50.0
