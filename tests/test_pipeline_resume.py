"""`nurec pipeline` steps: fixed seeds, separate splits, resumable, with whatever methods are registered."""

import json

import pytest

from nurec.io.parquet import read_metadata
from nurec.io.predictions import read_predictions_metadata
from sim.pipeline import PRESETS, PipelinePreset, PipelineRun, run_pipeline

TINY = PipelinePreset(
    name="tiny", n_train=120, n_val=40, n_test=40, flavors=("numu", "nue"), interactions=("CC",),
    energy_min_gev=1e3, energy_max_gev=1e5, gnn_training={"epochs": 1, "batch_size": 32, "val_fraction": 0.2},
    gnn_model={"network": {"conv_dims": [16, 16], "post_dims": [32], "readout_dims": [32]}},
    event_caps={"linefit": 25}, baseline_energy_events=150, baseline_direction_events=30, baseline_epochs=1,
)
# A fast selection (the pipeline trains only what these need).
METHODS = ["linefit", "charge-energy", "gnn"]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    report, steps = run_pipeline(TINY, run_dir, METHODS, progress=None, command="pytest")
    return run_dir, report, steps


def test_pipeline_writes_separate_seeded_splits_and_the_report(first_run):
    run_dir, report, steps = first_run
    seeds = {split: read_metadata(run_dir / "data" / split)["seed"] for split in ("train", "val", "test")}
    assert seeds == {"train": TINY.seed + 1, "val": TINY.seed + 2, "test": TINY.seed + 3}
    assert read_metadata(run_dir / "data" / "test")["n_events"] == 40
    assert report.html_path.exists() and report.metrics_path.exists()
    metrics = json.loads(report.metrics_path.read_text())
    assert metrics["dataset"]["seed"] == TINY.seed + 3 and metrics["dataset"]["n_events"] == 40
    statuses = {s.name: s.status for s in steps}
    assert all(status == "done" for name, status in statuses.items() if name.startswith("simulate"))
    # every step ran: the GNN and the learned baselines were trained on this run's own samples
    assert statuses["train gnn"] == "done"
    assert statuses["train charge-energy and cnn-energy"].startswith("done")
    assert all(s.status.startswith("done") for s in steps), statuses
    assert set(metrics["methods"]) == set(METHODS) and not metrics.get("skipped_methods")
    used = read_predictions_metadata(run_dir / "predictions" / "charge-energy.parquet")["options"]["model"]
    assert used.startswith(str(run_dir / "models" / "baselines"))  # the run's own calibration, not the shipped one
    # capped to the first 25 test events, shown as a subsample
    assert metrics["methods"]["linefit"]["counts"]["n"] == 25 and metrics["methods"]["linefit"]["subsample"]
    assert (run_dir / "models" / "baselines" / "card.json").exists()
    recorded = json.loads((run_dir / "pipeline.json").read_text())
    assert [s["name"] for s in recorded["steps"]] == [s.name for s in steps]


def test_rerun_skips_finished_steps_and_redoes_an_interrupted_one(first_run):
    run_dir, _, _ = first_run
    chunk = run_dir / "data" / "test" / "part-00000.parquet"
    before = chunk.read_bytes()
    (run_dir / "data" / "test" / "dataset.json").unlink()  # as if killed before the manifest was written
    _, steps = run_pipeline(TINY, run_dir, METHODS, progress=None, command="pytest")
    statuses = {s.name: s.status for s in steps}
    assert statuses[f"simulate test (40 events, seed {TINY.seed + 3})"] == "done"
    assert statuses[f"simulate train (120 events, seed {TINY.seed + 1})"] == "present"
    assert all(status == "present" or status.startswith("skipped")
               for name, status in statuses.items() if not name.startswith(("simulate test", "report")))
    assert chunk.read_bytes() == before  # same seed, same bytes


def test_run_directory_refuses_a_different_preset(first_run):
    run_dir, _, _ = first_run
    with pytest.raises(ValueError, match="different preset"):
        run_pipeline(PRESETS["small"], run_dir, progress=None)


def test_run_directory_from_before_the_time_budget_was_retired_still_resumes(tmp_path):
    stored = {**TINY.to_dict(), "method_budget_s": None}  # what older runs wrote
    (tmp_path / "preset.json").write_text(json.dumps(stored))
    PipelineRun(TINY, tmp_path, ["linefit"], print, False, None).check_preset()  # the same preset
    (tmp_path / "preset.json").write_text(json.dumps({**stored, "method_budget_s": 60.0}))
    with pytest.raises(ValueError, match="different preset"):  # a budgeted run was not the same benchmark
        PipelineRun(TINY, tmp_path, ["linefit"], print, False, None).check_preset()


def test_full_preset_simulates_what_the_bundled_gnn_was_trained_on():
    # The `nurec simulate` commands of the model card, train then test.
    import re
    import shlex

    from nurec.models.reconstruct import DEFAULT_MODEL_DIR

    card = (DEFAULT_MODEL_DIR / "MODEL_CARD.md").read_text().replace("\\\n", " ")
    commands = [shlex.split(line.split("#")[0]) for line in card.splitlines() if line.startswith("nurec simulate")]
    assert len(commands) == 2

    def option(args, name):
        return args[args.index(name) + 1]

    full = PRESETS["full"]
    for args, split in zip(commands, ("train", "test"), strict=True):
        config = full.dataset_config(split)
        assert (config.detector, config.flavors, config.interactions) == (
            option(args, "--detector"), ("nue", "numu", "nutau"), ("CC", "NC"))
        assert config.n_events == int(option(args, "--events")) and config.seed == int(option(args, "--seed"))
        assert config.spectral_index == float(option(args, "--spectral-index"))
        assert (config.energy_min_gev, config.energy_max_gev) == (100.0, 1e6)
        assert re.search(r"--flavor nue numu nutau --interaction cc nc", " ".join(args))
    assert full.n_val == 0 and full.gnn_config == "default" and full.gnn_training == {}
