"""The demo and the reproducible benchmark pipeline: simulate -> (train) -> reconstruct -> report.

``run_demo`` reconstructs a small fresh sample with every registered method that works
without training and writes the report. ``run_pipeline`` (see sim.pipeline_steps) adds
separate train/validation/test sets and the training steps.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import awkward as ak

from nurec.evaluate.evaluation import EvaluationSettings
from nurec.evaluate.report import Report, build_report
from nurec.evaluate.run_methods import MethodRun, method_names, print_progress, reconstruct_all
from nurec.evaluate.truth import truth_table
from sim.config import SimulationConfig
from sim.simulate import simulate_events

Progress = Callable[[str], None]


@dataclass(frozen=True)
class DemoConfig:
    """What ``nurec demo`` simulates and how long it may spend reconstructing."""

    n_events: int = 400
    seed: int = 2026
    detector: str = "icecube86"
    flavors: tuple[str, ...] = ("numu", "nue")
    interactions: tuple[str, ...] = ("CC",)
    energy_min_gev: float = 1.0e3
    energy_max_gev: float = 1.0e5
    methods: tuple[str, ...] | None = None  # None: every registered method
    reconstruction_budget_s: float = 60.0  # shared by all methods; slow ones run on a subsample
    batch_size: int = 256

    def simulation(self) -> SimulationConfig:
        """Return the simulation settings of the demo sample."""
        return SimulationConfig(
            detector=self.detector, flavors=self.flavors, interactions=self.interactions,
            n_events=self.n_events, energy_min_gev=self.energy_min_gev,
            energy_max_gev=self.energy_max_gev, seed=self.seed,
        ).validate()


@dataclass
class RunOutcome:
    """Methods' runs on one event sample and the report written from them."""

    report: Report
    runs: list[MethodRun]
    skipped: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0


def run_demo(config: DemoConfig, out_dir: str | Path, progress: Progress | None = print_progress,
             command: str | None = None) -> RunOutcome:
    """Return the outcome of the demo: simulate, reconstruct with every ready method, write the report."""
    say = progress or (lambda _msg: None)
    start = time.perf_counter()
    out_dir = Path(out_dir)
    names = method_names(config.methods)
    sim = config.simulation()
    say(f"simulating {sim.n_events} events ({'+'.join(sim.flavors)} {'/'.join(sim.interactions)}, "
        f"{sim.detector}, {sim.energy_min_gev:g}-{sim.energy_max_gev:g} GeV, seed {sim.seed}) ...")
    events, metadata = simulate_events(sim)
    say(f"  simulated in {time.perf_counter() - start:.1f} s")
    if not names:
        say("no reconstruction methods are registered; the report shows the data set only")
    runs, skipped = reconstruct_all(
        events, names, out_dir / "predictions", budget_s=config.reconstruction_budget_s,
        batch_size=config.batch_size, progress=progress, detector=metadata.get("detector"),
    )
    say("writing the report ...")
    command = command or demo_command(config)
    report = build_report(truth_table(events), metadata, [r.as_method_predictions() for r in runs], out_dir,
                          EvaluationSettings(), command=command, skipped=skipped)
    return RunOutcome(report, runs, skipped, time.perf_counter() - start)


def demo_command(config: DemoConfig) -> str:
    """Return the command line that reproduces a demo run with ``config``."""
    parts = ["nurec", "demo", "--events", str(config.n_events), "--seed", str(config.seed)]
    if config.methods is not None:
        parts += ["--methods", ",".join(config.methods)]
    return shlex.join(parts)


# ============================================================================ pipeline
@dataclass(frozen=True)
class PipelinePreset:
    """Everything a pipeline run depends on; stored in the run directory as preset.json.

    Data sets get fixed seeds ``seed + 1`` (train), ``seed + 2`` (validation) and
    ``seed + 3`` (test), so the three never share an event and a rerun gives the same bytes.
    ``event_caps`` limits named (slow) methods to the first N test events, marked as a
    subsample in the report; it is a count, not a time, so reruns on any machine give the
    same numbers. ``method_budget_s`` would instead cap each method's reconstruction time
    (machine-dependent, so off in the presets); None runs every event.
    """

    name: str
    n_train: int
    n_val: int
    n_test: int
    detector: str = "icecube86"
    flavors: tuple[str, ...] = ("nue", "numu", "nutau")
    interactions: tuple[str, ...] = ("CC", "NC")
    energy_min_gev: float = 1.0e2
    energy_max_gev: float = 1.0e6
    seed: int = 7000
    split_seeds: dict = field(default_factory=dict)  # explicit seeds per split, else seed + 1/2/3
    spectral_index: float = 2.0
    split_spectral_indices: dict = field(default_factory=dict)  # explicit E^-index per split, else spectral_index
    gnn_config: str | None = None  # training TOML ("default": the bundled model's own); None: gnn_model
    gnn_training: dict = field(default_factory=dict)  # TrainConfig fields, override gnn_config's [training]
    gnn_model: dict = field(default_factory=dict)  # ModelSpec fields ([model] table) when gnn_config is None
    method_budget_s: float | None = None
    event_caps: dict = field(default_factory=dict)  # method -> at most this many test events
    baseline_energy_events: int = 4000  # sim.train_baselines defaults
    baseline_direction_events: int = 1200
    baseline_epochs: int = 20

    def dataset_config(self, split: str) -> SimulationConfig:
        """Return the simulation settings of the ``split`` ("train", "val" or "test") data set."""
        n_events = {"train": self.n_train, "val": self.n_val, "test": self.n_test}[split]
        seed = self.split_seeds.get(split, self.seed + {"train": 1, "val": 2, "test": 3}[split])
        return SimulationConfig(
            detector=self.detector, flavors=self.flavors, interactions=self.interactions, n_events=n_events,
            energy_min_gev=self.energy_min_gev, energy_max_gev=self.energy_max_gev,
            spectral_index=self.split_spectral_indices.get(split, self.spectral_index), seed=seed,
        ).validate()

    def to_dict(self) -> dict:
        """Return the preset as JSON-able data."""
        from dataclasses import asdict

        data = asdict(self)
        data["flavors"], data["interactions"] = list(self.flavors), list(self.interactions)
        return data


PRESETS: dict[str, PipelinePreset] = {
    # ~10 minutes on 2 cores: a few thousand events, the default GNN's architecture trained for 3 epochs,
    # slow fits on the first 250 test events.
    "small": PipelinePreset(
        name="small", n_train=4000, n_val=800, n_test=1000, energy_min_gev=1.0e3, energy_max_gev=1.0e5,
        gnn_config="default", gnn_training={"epochs": 3, "max_events": 0, "time_limit_min": 0.0, "threads": 2},
        event_caps={name: 250 for name in ("likelihood", "likelihood-mpe", "cascade-likelihood", "bdt-uncertainty")},
        baseline_energy_events=2000, baseline_direction_events=300, baseline_epochs=8,
    ),
    # How the bundled default GNN was made (nurec/models/default/MODEL_CARD.md): the same simulation
    # settings (200,000 train events, E^-1, seed 2026, of which train_config.toml uses the first
    # 100,000 with a validation split by hash; 12,000 held-out test events, E^-1.5, seed 2027; all
    # flavours, CC+NC, 100 GeV - 1 PeV) and train_config.toml; every method reconstructs every test event.
    "full": PipelinePreset(
        name="full", n_train=200_000, n_val=0, n_test=12_000, split_seeds={"train": 2026, "test": 2027},
        spectral_index=1.5, split_spectral_indices={"train": 1.0}, gnn_config="default",
    ),
}


@dataclass
class StepResult:
    """One pipeline step: what it did ("done", "present", "skipped: <why>") and how long it took."""

    name: str
    status: str
    seconds: float


def _write_json_atomic(path: Path, data: dict) -> None:
    import json
    import os

    from nurec.evaluate.report import json_safe

    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


def simulate_dataset(config: SimulationConfig, out_dir: Path, say: Progress) -> str:
    """Simulate ``config`` into ``out_dir`` unless a complete data set is there; return the step status."""
    from nurec.io.parquet import MANIFEST, DatasetWriter
    from sim.simulate import chunk_sizes, dataset_metadata, simulate_chunk

    if (out_dir / MANIFEST).exists():
        return "present"
    n_generated = 0
    chunks = chunk_sizes(config)
    # overwrite=True removes the chunk files of an interrupted earlier attempt (no manifest yet).
    with DatasetWriter(out_dir, {}, overwrite=True) as writer:
        for index in range(len(chunks)):
            events, generated = simulate_chunk(config, index)
            n_generated += generated
            writer.metadata = dataset_metadata(config, n_generated)
            writer.write(events, index)
            say(f"  chunk {index + 1}/{len(chunks)}: {len(events)} events")
    return "done"


def dataset_sha256(data_dir: Path) -> str:
    """Return the sha256 of a data set's chunk files in manifest order (identifies the exact events)."""
    import hashlib

    from nurec.io.parquet import read_manifest

    digest = hashlib.sha256()
    for chunk in read_manifest(data_dir)["chunks"]:
        with open(data_dir / chunk["file"], "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def default_train_config() -> Path:
    """Return the training config the bundled default GNN was made with (nurec/models/default)."""
    import nurec.models

    path = Path(nurec.models.__file__).resolve().parent / "default" / "train_config.toml"
    if not path.exists():
        raise FileNotFoundError(f"{path}: the bundled model's training config is missing")
    return path


def train_gnn(preset: PipelinePreset, run_dir: Path, say: Progress, progress: bool = True) -> str:
    """Train the GNN on the train/validation sets into run_dir/models/gnn (resuming a checkpoint); return the status."""
    out = run_dir / "models" / "gnn"
    if (out / "model.pt").exists():
        return "present"
    try:
        from nurec.models.network import ModelSpec
        from nurec.train.config import TrainConfig
        from nurec.train.loop import train
    except ImportError as err:
        return f"skipped: no GNN trainer available ({err})"
    if preset.gnn_config is not None:
        from nurec.train.config import load_config

        path = default_train_config() if preset.gnn_config == "default" else Path(preset.gnn_config)
        spec, base = load_config(path)
        config = TrainConfig.from_dict({**base.to_dict(), **preset.gnn_training})
        say(f"  model and training settings from {path}")
    else:
        spec = ModelSpec.from_dict(preset.gnn_model) if preset.gnn_model else ModelSpec()
        config = TrainConfig.from_dict({"seed": preset.seed, **preset.gnn_training})
    resume = (out / "last.pt").exists()
    if resume:
        say("  resuming from the last checkpoint")
    val_dir = run_dir / "data" / "val" if preset.n_val > 0 else None  # None: hash split of the train set
    train(spec, config, run_dir / "data" / "train", out, val_dir=val_dir, resume=resume,
          progress=progress, name=f"pipeline-{preset.name}")
    return "done"


# Learned baselines: artifact name in nurec/baselines/artifacts card -> (method, option naming the file).
BASELINE_ARTIFACTS = {
    "charge_energy": ("charge-energy", "model"),
    "cnn_energy": ("cnn-energy", "model"),
    "bdt_uncertainty": ("bdt-uncertainty", "model"),
}
BASELINE_STEPS = {"energy": ("charge_energy", "cnn_energy"), "bdt": ("bdt_uncertainty",)}


def _artifact(run_dir: Path, name: str) -> Path | None:
    try:
        from nurec.baselines.artifacts import artifact_path
    except ImportError:
        return None
    try:
        return artifact_path(name, run_dir / "models" / "baselines")
    except (FileNotFoundError, ValueError):
        return None


def train_baselines(step: str, preset: PipelinePreset, run_dir: Path, command: str | None) -> str:
    """Train the learned baselines of ``step`` ("energy": charge + CNN, "bdt") with their library trainers.

    The trainers (sim.train_baselines) simulate their own seeded samples (seeds
    derived from the preset's, different from the test set's). Returns the step status.
    """
    if all(_artifact(run_dir, name) is not None for name in BASELINE_STEPS[step]):
        return "present"
    try:
        from nurec.baselines import train_all
    except ImportError as err:
        return f"skipped: no baseline trainer available ({err})"
    from nurec import __version__

    out = run_dir / "models" / "baselines"
    out.mkdir(parents=True, exist_ok=True)
    common = {"detector": preset.detector, "nurec_version": __version__,
              "command": command or f"nurec pipeline --preset {preset.name}"}
    if step == "energy":
        metrics = train_all.train_energy(out, preset.detector, preset.baseline_energy_events, preset.seed + 11,
                                         preset.baseline_epochs, common)
    else:
        metrics = train_all.train_bdt(out, preset.detector, preset.baseline_direction_events, preset.seed + 12,
                                      None, common)
    return "done: " + ", ".join(f"{k} {v:.3g}" for k, v in metrics.items() if isinstance(v, float))


def trained_options(run_dir: Path) -> dict[str, dict]:
    """Return method options that point trained methods at this run's artifacts."""
    options: dict[str, dict] = {}
    if (run_dir / "models" / "gnn" / "model.pt").exists():
        options["gnn"] = {"model": str(run_dir / "models" / "gnn" / "model.pt")}
    for artifact, (method, option) in BASELINE_ARTIFACTS.items():
        path = _artifact(run_dir, artifact)
        if path is not None:
            options[method] = {option: str(path)}
    return options


def run_pipeline(
    preset: PipelinePreset,
    run_dir: str | Path,
    methods: Sequence[str] | None = None,
    train: bool = True,
    progress: Progress | None = print_progress,
    command: str | None = None,
) -> tuple[Report, list[StepResult]]:
    """Return the report and step results of simulate -> train -> reconstruct -> report in ``run_dir``.

    Each step writes its output atomically and is skipped when that output is present,
    so an interrupted run continues where it stopped. The run directory remembers its
    preset and refuses a different one.
    """
    import json

    from nurec.evaluate.report import load_method_predictions
    from nurec.io.parquet import read_dataset, read_metadata
    from nurec.io.predictions import read_predictions_metadata

    say = progress or (lambda _msg: None)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    preset_path = run_dir / "preset.json"
    if preset_path.exists():
        stored = json.loads(preset_path.read_text())
        if stored != json.loads(json.dumps(preset.to_dict())):
            raise ValueError(f"{run_dir}: made with a different preset ('{stored.get('name')}'); use another --out")
    else:
        _write_json_atomic(preset_path, preset.to_dict())
    names = method_names(methods)
    steps: list[StepResult] = []
    plan: list[tuple[str, Callable[[], str]]] = []
    for split in ("train", "val", "test"):
        if split != "test" and not train or split == "val" and preset.n_val == 0:
            continue
        config = preset.dataset_config(split)
        plan.append((f"simulate {split} ({config.n_events} events, seed {config.seed})",
                     lambda c=config, s=split: simulate_dataset(c, run_dir / "data" / s, say)))
    if train:  # only what the requested methods need
        if "gnn" in names:
            plan.append(("train gnn", lambda: train_gnn(preset, run_dir, say, progress is not None)))
        if {"charge-energy", "cnn-energy"} & set(names):
            plan.append(("train charge-energy and cnn-energy",
                         lambda: train_baselines("energy", preset, run_dir, command)))
        if "bdt-uncertainty" in names:
            plan.append(("train bdt-uncertainty", lambda: train_baselines("bdt", preset, run_dir, command)))
    skipped: dict[str, str] = {}

    test_events: list[ak.Array] = []

    fingerprint: list[str] = []

    def reconstruct(name: str) -> str:
        path = run_dir / "predictions" / f"{name}.parquet"
        if not fingerprint:
            fingerprint.append(dataset_sha256(run_dir / "data" / "test"))
        if path.exists():
            if read_predictions_metadata(path).get("extra", {}).get("data_sha256") == fingerprint[0]:
                return "present"
            say(f"  {path} was made from other test events; redoing it")
        if not test_events:
            test_events.append(read_dataset(run_dir / "data" / "test"))
        events = test_events[0]
        extra = {"data_sha256": fingerprint[0]}
        cap = preset.event_caps.get(name)
        if cap is not None and cap < len(events):
            say(f"  {name}: the first {cap} of {len(events)} test events (preset event cap)")
            events = events[:cap]
        runs, why = reconstruct_all(events, [name], run_dir / "predictions", budget_s=preset.method_budget_s,
                                    options=trained_options(run_dir), progress=progress, extra_metadata=extra,
                                    detector=preset.dataset_config("test").detector,
                                    subsample=cap is not None and cap < len(test_events[0]))
        if why:
            skipped.update(why)
            return f"skipped: {why[name]}"
        return "done"

    for name in names:
        plan.append((f"reconstruct test set with {name}", lambda n=name: reconstruct(n)))
    total = len(plan) + 1
    for index, (title, step) in enumerate(plan, start=1):
        say(f"[{index}/{total}] {title} ...")
        start = time.perf_counter()
        status = step()
        steps.append(StepResult(title, status, time.perf_counter() - start))
        say(f"  {status} ({steps[-1].seconds:.1f} s)")
    say(f"[{total}/{total}] report ...")
    start = time.perf_counter()
    test_dir = run_dir / "data" / "test"
    predictions = [load_method_predictions(run_dir / "predictions" / f"{n}.parquet") for n in names
                   if (run_dir / "predictions" / f"{n}.parquet").exists()]
    report = build_report(truth_table(read_dataset(test_dir)), read_metadata(test_dir), predictions,
                          run_dir / "report", EvaluationSettings(), command=command, skipped=skipped)
    steps.append(StepResult("report", "done", time.perf_counter() - start))
    say(f"  done ({steps[-1].seconds:.1f} s): {report.html_path}")
    _write_json_atomic(run_dir / "pipeline.json", {
        "preset": preset.to_dict(), "command": command,
        "steps": [{"name": s.name, "status": s.status, "seconds": round(s.seconds, 2)} for s in steps],
    })
    return report, steps
