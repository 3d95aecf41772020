"""The demo and the reproducible benchmark pipeline: simulate -> (train) -> reconstruct -> report.

``run_demo`` reconstructs a small fresh sample with every registered method that works
without training and writes the report. ``run_pipeline`` (see nurec.pipeline_steps) adds
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
from nurec.evaluate.report import MethodPredictions, Report, build_report
from nurec.evaluate.run_methods import MethodRun, print_progress, run_method
from nurec.evaluate.truth import truth_table
from nurec.io.predictions import write_predictions
from nurec.registry import available_methods
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
    reconstruction_budget_s: float = 45.0  # shared by all methods; slow ones run on a subsample
    min_method_budget_s: float = 5.0
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


def method_names(requested: Sequence[str] | None = None) -> list[str]:
    """Return the requested method names (checked against the registry) or all registered ones."""
    registered = [spec.name for spec in available_methods()]
    if requested is None:
        return registered
    unknown = [name for name in requested if name not in registered]
    if unknown:
        raise ValueError(f"methods: unknown method '{unknown[0]}' (registered: {', '.join(registered) or 'none'})")
    return list(requested)


def reconstruct_all(
    events: ak.Array,
    names: Sequence[str],
    out_dir: Path | None = None,
    budget_s: float | None = None,
    min_method_budget_s: float = 5.0,
    batch_size: int = 256,
    options: dict[str, dict] | None = None,
    skip_unready: bool = True,
    progress: Progress | None = print_progress,
) -> tuple[list[MethodRun], dict[str, str]]:
    """Return (runs of the methods that ran, {method: reason} for those skipped) on ``events``.

    With ``budget_s`` the methods share that much reconstruction time: each gets the
    remaining budget divided by the methods still to run (at least ``min_method_budget_s``)
    and runs on a subsample if it is slower. Predictions are written to
    ``out_dir/<method>.parquet`` when ``out_dir`` is given.
    """
    say = progress or (lambda _msg: None)
    runs, skipped = [], {}
    remaining = budget_s
    for index, name in enumerate(names):
        budget = None
        if remaining is not None:
            budget = max(min_method_budget_s, remaining / (len(names) - index))
        say(f"reconstructing {len(events)} events with {name} ...")
        run = run_method(name, events, (options or {}).get(name), batch_size=batch_size, time_budget_s=budget,
                         skip_if_first_batch_raises=skip_unready, progress=say, show_bar=progress is not None)
        if run.skipped:
            say(f"  skipped {name}: {run.skipped}")
            skipped[name] = run.skipped
            continue
        rate = run.throughput
        n_failed = int((run.predictions["fit_status"] != "ok").sum())
        say(f"  {name}: {rate['n_events']} events in {rate['wall_s']:.1f} s "
            f"({rate['events_per_s']:.3g} events/s, {rate['events_per_s_per_core']:.3g} per core), {n_failed} failed")
        if remaining is not None:
            remaining -= rate["wall_s"] + run.load_s
        if out_dir is not None:
            write_predictions(run.predictions, Path(out_dir) / f"{name}.parquet", run.metadata())
        runs.append(run)
    return runs, skipped


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
        min_method_budget_s=config.min_method_budget_s, batch_size=config.batch_size, progress=progress,
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


def method_predictions_from_runs(runs: Sequence[MethodRun]) -> list[MethodPredictions]:
    """Return report inputs for runs that produced predictions."""
    return [r.as_method_predictions() for r in runs if r.predictions is not None]
