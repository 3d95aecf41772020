"""Training: a tiny model can overfit, runs resume exactly, the split is by event id, outputs are written."""

import csv
import json

import numpy as np
import pytest
import torch

from nurec.graph.features import FeatureConfig
from nurec.io.parquet import write_dataset
from nurec.models.network import GraphNetwork, ModelSpec
from nurec.models.tasks import task_losses
from nurec.train.config import TrainConfig, load_config
from nurec.train.data import is_validation, make_training_set
from nurec.train.loop import train
from sim.config import SimulationConfig
from sim.simulate import simulate_events

TINY = {"conv_dims": [16, 16], "post_dims": [32], "readout_dims": [32]}


@pytest.fixture(scope="module")
def events():
    config = SimulationConfig(detector="icecube86", flavors=("numu", "nue"), interactions=("CC",), n_events=160,
                              energy_min_gev=1e3, energy_max_gev=1e5, seed=21)
    return simulate_events(config)[0]


@pytest.fixture(scope="module")
def dataset(events, tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data") / "train", events, {"detector": "icecube86"})


def test_tiny_model_overfits_32_events(events, request):
    # One thread: the result must not depend on how many threads earlier tests left set.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    torch.manual_seed(0)
    spec = ModelSpec(network={"conv_dims": [32, 32], "post_dims": [64], "readout_dims": [64]},
                     features=FeatureConfig(max_nodes=32))
    data = make_training_set(events[:32], spec.features)
    network = GraphNetwork(spec)
    network.set_statistics(data.graphs)
    inputs = (torch.from_numpy(data.graphs.nodes), torch.from_numpy(data.graphs.counts),
              torch.from_numpy(data.graphs.globals))
    targets = torch.from_numpy(data.targets)
    optimizer = torch.optim.Adam(network.parameters(), lr=5e-3)

    def errors() -> np.ndarray:
        """Return (1 - cos angle, LogCosh energy loss, BCE) averaged over the 32 events."""
        with torch.no_grad():
            out = network(*inputs)
            losses = task_losses(out, targets, spec.tasks)
            cos = torch.nn.functional.cosine_similarity(out[:, :3], targets[:, :3]).mean()
        return np.array([1 - cos.item(), losses["energy"].item(), losses["track"].item()])

    before = errors()
    for _ in range(150):
        loss = task_losses(network(*inputs), targets, spec.tasks)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = errors()
    assert np.all(after < before / 10), (before, after)


def config_file(tmp_path, epochs=2):
    path = tmp_path / "config.toml"
    path.write_text(
        "[model]\narchitecture = \"dynedge\"\n[model.network]\nconv_dims = [16, 16]\npost_dims = [32]\n"
        "readout_dims = [32]\n[model.features]\nmax_nodes = 48\n"
        # One thread: multi-threaded BLAS may split a reduction differently from call to call
        # on a loaded machine, which changes the last bits; the loop itself is deterministic.
        f"[training]\nepochs = {epochs}\nbatch_size = 32\nval_fraction = 0.25\nseed = 5\nthreads = 1\n"
    )
    return path


def test_training_resumes_from_a_checkpoint_to_the_same_result(dataset, tmp_path):
    spec, config = load_config(config_file(tmp_path))
    straight = train(spec, config, dataset, tmp_path / "straight", progress=False)
    train(spec, config, dataset, tmp_path / "resumed", progress=False, stop_after_epochs=1)
    first_half = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)
    assert json.loads(first_half["loop_state_json"])["epoch"] == 1
    resumed = train(spec, config, dataset, tmp_path / "resumed", resume=True, progress=False)
    a = torch.load(straight.model_path, weights_only=True)["state_dict"]
    b = torch.load(resumed.model_path, weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    with open(tmp_path / "resumed" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    summary = json.loads((tmp_path / "straight" / "summary.json").read_text())
    assert summary["summary"]["epochs_run"] == 2 and summary["n_val"] > 0
    assert 0 < summary["summary"]["kappa_scale"]


def test_training_refuses_to_overwrite_a_run_without_resume(dataset, tmp_path):
    spec, config = load_config(config_file(tmp_path, epochs=1))
    train(spec, config, dataset, tmp_path / "run", progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        train(spec, config, dataset, tmp_path / "run", progress=False)


def test_validation_split_is_a_stable_hash_of_event_id():
    event_id = np.arange(20_000)
    run_id = np.full(20_000, 7)
    val = is_validation(event_id, run_id, 0.1)
    assert 0.09 < val.mean() < 0.11
    # The same event lands in the same split whatever the order or batch it comes in.
    shuffled = np.random.default_rng(0).permutation(20_000)
    assert np.array_equal(is_validation(event_id[shuffled], run_id[shuffled], 0.1), val[shuffled])
    assert not np.array_equal(is_validation(event_id, run_id + 1, 0.1), val)


def test_bad_config_names_the_setting(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[training]\nlearning_rat = 0.1\n")
    with pytest.raises(ValueError, match="learning_rat"):
        load_config(path)
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear").validate()


def test_training_set_built_in_chunks_equals_the_whole(events, dataset, monkeypatch):
    import nurec.train.data as data_module

    features = FeatureConfig(max_nodes=48, time_window_ns=2000.0, linefit="improved", seed_residuals=True,
                             cleaning_flag=True)
    whole = make_training_set(events[:150], features)
    monkeypatch.setattr(data_module, "FEATURE_CHUNK_EVENTS", 7)
    chunked = data_module.load_training_set(dataset, features, max_events=150)
    assert np.array_equal(chunked.graphs.counts, whole.graphs.counts)
    np.testing.assert_allclose(chunked.graphs.nodes, whole.graphs.nodes, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(chunked.graphs.globals, whole.graphs.globals, rtol=1e-6, atol=1e-5)
    assert np.array_equal(chunked.targets, whole.targets) and np.array_equal(chunked.event_id, whole.event_id)
