import awkward as ak
import numpy as np
import pytest

from nurec.baselines.common import opening_angle_deg
from nurec.methods.registry import build_method
from sim.config import SimulationConfig
from sim.simulate import simulate_events

C_M_PER_NS = 0.299792458

HIT_DTYPES = {"sensor_id": np.int32, "x": np.float32, "y": np.float32, "z": np.float32, "t": np.float32,
              "charge": np.float32, "dir_x": np.float32, "dir_y": np.float32, "dir_z": np.float32}


def make_events(hit_lists: list[dict[str, np.ndarray]], first_id: int = 0) -> ak.Array:
    """Return events (nurec schema, no truth) from one dict of hit columns per event."""
    counts = np.array([len(h["t"]) for h in hit_lists], dtype=np.int64)
    columns = {}
    for name, dtype in HIT_DTYPES.items():
        parts = []
        for hits in hit_lists:
            n = len(hits["t"])
            default = {"dir_z": -1.0, "charge": 1.0}.get(name, 0.0)
            value = hits.get(name, np.arange(n) if name == "sensor_id" else np.full(n, default))
            parts.append(np.asarray(value, dtype=dtype))
        columns[name] = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
    hits = ak.unflatten(ak.zip(columns, depth_limit=1), counts)
    ids = np.arange(first_id, first_id + len(hit_lists), dtype=np.int64)
    return ak.zip({"event_id": ids, "run_id": np.zeros(len(ids), np.int64), "hits": hits}, depth_limit=1)


def hits_of(events: ak.Array, index: int) -> dict[str, np.ndarray]:
    """Return the hit columns of one event as numpy arrays."""
    return {name: ak.to_numpy(events.hits[index][name]) for name in HIT_DTYPES}


def _line_hits(direction, n=12, spacing_m=30.0, origin=(10.0, -20.0, 5.0), sensor_offset=0):
    s = spacing_m * np.arange(n)
    pos = np.asarray(origin) + s[:, None] * direction
    return {"x": pos[:, 0], "y": pos[:, 1], "z": pos[:, 2], "t": 1000.0 + s / C_M_PER_NS,
            "charge": 1.0 + np.arange(n) % 3, "sensor_id": sensor_offset + np.arange(n)}


def test_linefit_recovers_noiseless_track():
    rng = np.random.default_rng(5)
    directions = rng.normal(size=(6, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    events = make_events([_line_hits(d) for d in directions])
    predictions = build_method("linefit").reconstruct(events)
    assert (predictions.fit_status == "ok").all()
    fitted = predictions[["dir_x", "dir_y", "dir_z"]].to_numpy()
    np.testing.assert_allclose(fitted, directions, atol=1e-5)
    np.testing.assert_allclose(predictions.linefit_speed_m_per_ns, C_M_PER_NS, rtol=1e-5)


def test_linefit_batch_equals_event_by_event():
    events, _ = simulate_events(SimulationConfig(detector="icecube-mini", n_events=20, seed=8))
    method = build_method("linefit", detector="icecube-mini")
    batch = method.reconstruct(events)
    single = np.vstack([method.reconstruct(events[i:i + 1])[["dir_x", "dir_y", "dir_z"]].to_numpy()
                        for i in range(len(events))])
    np.testing.assert_allclose(batch[["dir_x", "dir_y", "dir_z"]].to_numpy(), single, atol=1e-9)


@pytest.fixture(scope="module")
def mixed_batch():
    """Six malformed events between simulated ones."""
    good, _ = simulate_events(SimulationConfig(detector="icecube86", n_events=3, seed=12))
    good_hits = [hits_of(good, i) for i in range(len(good))]
    line = _line_hits(np.array([0.0, 0.6, -0.8]), n=5)
    same_time = dict(line, t=np.full(5, 300.0))
    nan_x = dict(line, x=np.where(np.arange(5) == 2, np.nan, line["x"]))
    nan_t = dict(line, t=np.where(np.arange(5) == 1, np.nan, line["t"]))
    take = lambda h, k: {key: np.asarray(v)[:k] for key, v in h.items()}  # noqa: E731
    bad = [take(line, 0), take(line, 1), take(line, 2), same_time, nan_x, nan_t]
    expected = ["hits: 0 hits", "hits: 1 hits", "hits: 2 hits", "hits.t: all hits at one time",
                "hits.x: non-finite", "hits.t: non-finite"]
    events = make_events([good_hits[0], *bad[:3], good_hits[1], *bad[3:], good_hits[2]])
    good_index = [0, 4, 8]
    bad_index = [1, 2, 3, 5, 6, 7]
    return events, good_index, dict(zip(bad_index, expected, strict=True))


@pytest.mark.parametrize("method", ["linefit", "likelihood", "cascade-likelihood", "charge-energy",
                                    "cnn-energy"])
def test_malformed_events_fail_alone(method, mixed_batch):
    events, good_index, expected = mixed_batch
    options = {"n_jobs": 1} if method in ("likelihood", "cascade-likelihood") else {}
    if method == "cascade-likelihood":
        options["n_directions"] = 1
    predictions = build_method(method, **options).reconstruct(events)
    assert predictions.event_id.tolist() == list(range(len(events)))
    assert (predictions.method == method).all()
    output = "energy" if method in ("charge-energy", "cnn-energy") else "dir_x"
    for i, reason in expected.items():
        status = predictions.fit_status[i]
        assert status.startswith("failed: " + reason), (i, status)
        assert np.isnan(predictions[output][i]) and np.isnan(predictions.energy[i])
    assert (predictions.fit_status[good_index] == "ok").all()
    assert np.isfinite(predictions[output][good_index]).all()


def test_linefit_direction_better_than_random_on_simulation():
    events, _ = simulate_events(SimulationConfig(detector="icecube86", n_events=200, seed=21))
    predictions = build_method("linefit").reconstruct(events)
    truth = np.column_stack([events.truth[k].to_numpy() for k in ("dir_x", "dir_y", "dir_z")])
    error = opening_angle_deg(predictions[["dir_x", "dir_y", "dir_z"]].to_numpy(), truth)
    assert np.median(error) < 15.0
