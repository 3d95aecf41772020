"""``nurec pipeline``: the reproducible benchmark, simulate -> train -> reconstruct -> report.

A run directory holds separate train/validation/test sets with fixed seeds, the trained
models, one prediction file per method and the report. Every step writes its output
atomically and is skipped when that output is present, so rerunning the command resumes an
interrupted run; the directory remembers its preset and refuses a different one.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import awkward as ak

import nurec.models
from nurec.baselines.artifacts import ArtifactError, artifact_path
from nurec.evaluate.quality import EvaluationSettings
from nurec.evaluate.report import Report, build_report, json_safe, load_method_predictions
from nurec.evaluate.run_methods import method_names, print_progress, reconstruct_all
from nurec.evaluate.truth import truth_table
from nurec.io.files import write_atomic
from nurec.io.parquet import (
    MANIFEST,
    DatasetError,
    DatasetWriter,
    read_dataset,
    read_manifest,
    read_metadata,
    verify_dataset,
)
from nurec.io.predictions import read_predictions_metadata
from nurec.version import __version__
from sim.config import SimulationConfig
from sim.simulate import chunk_sizes, dataset_metadata, simulate_chunk

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PipelinePreset:
    """Everything a pipeline run depends on; stored in the run directory as preset.json.

    Data sets get fixed seeds ``seed + 1`` (train), ``seed + 2`` (validation) and
    ``seed + 3`` (test), so the three never share an event and a rerun gives the same bytes.
    ``event_caps`` limits named (slow) methods to the first N test events, marked as a
    subsample in the report; it is a count, not a time, so reruns on any machine give the
    same numbers.
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
        data = asdict(self)
        data["flavors"], data["interactions"] = list(self.flavors), list(self.interactions)
        return data


RETIRED_PRESET_FIELDS = ("method_budget_s",)
"""Fields of older presets that no longer exist; a run directory that stored them unset is the same preset."""

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


def simulate_dataset(config: SimulationConfig, out_dir: Path, say: Progress) -> str:
    """Simulate ``config`` into ``out_dir`` unless a complete, intact data set is there; return the step status.

    A data set whose files no longer match their recorded checksums (or whose manifest is
    malformed) is simulated again: the seeds make it the same events, and the step says why.
    """
    if (out_dir / MANIFEST).exists():
        problem = _dataset_problem(out_dir)
        if problem is None:
            return "present"
        say(f"  {problem}; simulating it again")
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


def _dataset_problem(data_dir: Path) -> str | None:
    """Return why a finished data set cannot be reused (a damaged or missing file, a bad manifest); None if it can."""
    try:
        statuses = verify_dataset(data_dir)
    except DatasetError as err:
        return str(err)
    bad = [(name, status) for name, status in statuses if status not in ("ok", "unverified")]
    return f"{data_dir}: {bad[0][0]} is {bad[0][1]}" if bad else None


def dataset_sha256(data_dir: Path) -> str:
    """Return the sha256 of a data set's chunk files in manifest order (identifies the exact events)."""
    digest = hashlib.sha256()
    for chunk in read_manifest(data_dir)["chunks"]:
        with open(data_dir / chunk["file"], "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def default_train_config() -> Path:
    """Return the training config the bundled default GNN was made with (nurec/models/default)."""
    path = Path(nurec.models.__file__).resolve().parent / "default" / "train_config.toml"
    if not path.exists():
        raise FileNotFoundError(f"{path}: the bundled model's training config is missing")
    return path


def train_gnn(preset: PipelinePreset, run_dir: Path, say: Progress, progress: bool = True) -> str:
    """Train the GNN on the train/validation sets into run_dir/models/gnn (resuming a checkpoint); return the status."""
    # torch is imported only when a GNN is trained.
    from nurec.models.network import ModelSpec
    from nurec.train.config import TrainConfig, load_config
    from nurec.train.loop import train

    out = run_dir / "models" / "gnn"
    if (out / "model.pt").exists():
        return "present"
    if preset.gnn_config is not None:
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


# Learned baselines: artifact name in the card of run_dir/models/baselines -> the method that loads it.
BASELINE_ARTIFACTS = {"charge_energy": "charge-energy", "cnn_energy": "cnn-energy", "bdt_uncertainty": "bdt-uncertainty"}
BASELINE_STEPS = {"energy": ("charge_energy", "cnn_energy"), "bdt": ("bdt_uncertainty",)}


def _artifact(run_dir: Path, name: str) -> Path | None:
    try:
        return artifact_path(name, run_dir / "models" / "baselines")
    except (ArtifactError, ValueError):
        return None


def train_learned_baselines(step: str, preset: PipelinePreset, run_dir: Path, command: str | None) -> str:
    """Train the learned baselines of ``step`` ("energy": charge + CNN, "bdt") with sim.train_baselines.

    The trainers simulate their own seeded samples (seeds derived from the preset's,
    different from the test set's). Returns the step status.
    """
    from sim import train_baselines as baseline_trainers  # imports torch: only when training

    if all(_artifact(run_dir, name) is not None for name in BASELINE_STEPS[step]):
        return "present"
    out = run_dir / "models" / "baselines"
    out.mkdir(parents=True, exist_ok=True)
    common = {"detector": preset.detector, "nurec_version": __version__,
              "command": command or f"nurec pipeline --preset {preset.name}"}
    if step == "energy":
        metrics = baseline_trainers.train_energy(out, preset.detector, preset.baseline_energy_events,
                                                 preset.seed + 11, preset.baseline_epochs, common)
    else:
        metrics = baseline_trainers.train_bdt(out, preset.detector, preset.baseline_direction_events,
                                              preset.seed + 12, None, common)
    return "done: " + ", ".join(f"{k} {v:.3g}" for k, v in metrics.items() if isinstance(v, float))


def trained_options(run_dir: Path) -> dict[str, dict]:
    """Return method options that point trained methods at this run's artifacts."""
    options: dict[str, dict] = {}
    if (run_dir / "models" / "gnn" / "model.pt").exists():
        options["gnn"] = {"model": str(run_dir / "models" / "gnn" / "model.pt")}
    for artifact, method in BASELINE_ARTIFACTS.items():
        path = _artifact(run_dir, artifact)
        if path is not None:
            options[method] = {"model": str(path)}
    return options


def write_json_record(path: Path, data: dict) -> None:
    """Write a run record (preset, steps) as strict JSON, atomically."""
    write_atomic(path, (json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n").encode())


@dataclass
class PipelineRun:
    """One run directory: its preset, the requested methods, and what the steps found on the way."""

    preset: PipelinePreset
    run_dir: Path
    names: list[str]
    say: Progress
    progress: bool
    command: str | None
    skipped: dict[str, str] = field(default_factory=dict)
    _test_sha256: str | None = None
    _test_events: ak.Array | None = None

    @property
    def test_dir(self) -> Path:
        return self.run_dir / "data" / "test"

    def check_preset(self) -> None:
        """Record the preset in a new run directory; refuse a directory made with another one."""
        path = self.run_dir / "preset.json"
        if path.exists():
            stored = {k: v for k, v in json.loads(path.read_text()).items()
                      if not (k in RETIRED_PRESET_FIELDS and v is None)}
            if stored != json.loads(json.dumps(self.preset.to_dict())):
                raise ValueError(f"{self.run_dir}: made with a different preset ('{stored.get('name')}'); "
                                 "use another --out")
        else:
            write_json_record(path, self.preset.to_dict())

    def test_sha256(self) -> str:
        """Return the fingerprint of the test set (computed once, after it is simulated)."""
        if self._test_sha256 is None:
            self._test_sha256 = dataset_sha256(self.test_dir)
        return self._test_sha256

    def test_events(self) -> ak.Array:
        """Return the test events (read once)."""
        if self._test_events is None:
            self._test_events = read_dataset(self.test_dir)
        return self._test_events

    def plan(self, train: bool) -> list[tuple[str, Callable[[], str]]]:
        """Return the steps, in order: simulate, train what the requested methods need, reconstruct."""
        steps: list[tuple[str, Callable[[], str]]] = []
        for split in ("train", "val", "test"):
            if split != "test" and not train or split == "val" and self.preset.n_val == 0:
                continue
            config = self.preset.dataset_config(split)
            steps.append((f"simulate {split} ({config.n_events} events, seed {config.seed})",
                          lambda c=config, s=split: simulate_dataset(c, self.run_dir / "data" / s, self.say)))
        if train:
            steps += self.training_steps()
        for name in self.names:
            steps.append((f"reconstruct test set with {name}", lambda n=name: self.reconstruct(n)))
        return steps

    def training_steps(self) -> list[tuple[str, Callable[[], str]]]:
        """Return the training steps the requested methods need (and only those)."""
        wanted = set(self.names)
        steps: list[tuple[str, Callable[[], str]]] = []
        if "gnn" in wanted:
            steps.append(("train gnn", lambda: train_gnn(self.preset, self.run_dir, self.say, self.progress)))
        for step, artifacts in BASELINE_STEPS.items():
            methods = [BASELINE_ARTIFACTS[a] for a in artifacts]
            if wanted & set(methods):
                steps.append((f"train {' and '.join(methods)}",
                              lambda s=step: train_learned_baselines(s, self.preset, self.run_dir, self.command)))
        return steps

    def reconstruct(self, name: str) -> str:
        """Reconstruct the test set with method ``name`` unless its predictions of these events exist."""
        path = self.run_dir / "predictions" / f"{name}.parquet"
        if path.exists():
            if read_predictions_metadata(path).get("extra", {}).get("data_sha256") == self.test_sha256():
                return "present"
            self.say(f"  {path} was made from other test events; redoing it")
        events = self.test_events()
        cap = self.preset.event_caps.get(name)
        subsample = cap is not None and cap < len(events)
        if subsample:
            self.say(f"  {name}: the first {cap} of {len(events)} test events (preset event cap)")
            events = events[:cap]
        _, why = reconstruct_all(events, [name], self.run_dir / "predictions",
                                 options=trained_options(self.run_dir), progress=self.say if self.progress else None,
                                 extra_metadata={"data_sha256": self.test_sha256()},
                                 detector=self.preset.dataset_config("test").detector, subsample=subsample)
        if why:
            self.skipped.update(why)
            return f"skipped: {why[name]}"
        return "done"

    def report(self) -> Report:
        """Write the report of every method whose test-set predictions exist."""
        files = [self.run_dir / "predictions" / f"{n}.parquet" for n in self.names]
        predictions = [load_method_predictions(path) for path in files if path.exists()]
        return build_report(truth_table(read_dataset(self.test_dir)), read_metadata(self.test_dir), predictions,
                            self.run_dir / "report", EvaluationSettings(), command=self.command, skipped=self.skipped)


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
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    run = PipelineRun(preset, run_dir, method_names(methods), progress or (lambda _msg: None),
                      progress is not None, command)
    run.check_preset()
    plan = run.plan(train)
    steps: list[StepResult] = []
    total = len(plan) + 1
    for index, (title, step) in enumerate(plan, start=1):
        run.say(f"[{index}/{total}] {title} ...")
        start = time.perf_counter()
        status = step()
        steps.append(StepResult(title, status, time.perf_counter() - start))
        run.say(f"  {status} ({steps[-1].seconds:.1f} s)")
    run.say(f"[{total}/{total}] report ...")
    start = time.perf_counter()
    report = run.report()
    steps.append(StepResult("report", "done", time.perf_counter() - start))
    run.say(f"  done ({steps[-1].seconds:.1f} s): {report.html_path}")
    write_json_record(run_dir / "pipeline.json", {
        "preset": preset.to_dict(), "command": command,
        "steps": [{"name": s.name, "status": s.status, "seconds": round(s.seconds, 2)} for s in steps],
    })
    return report, steps
