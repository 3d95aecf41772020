"""``nurec demo``: simulate a small fresh sample, reconstruct it with every ready method, write the report."""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nurec.evaluate.quality import EvaluationSettings
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
