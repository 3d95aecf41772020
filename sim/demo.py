"""``nurec demo``: simulate a small fresh sample, reconstruct it with every ready method, write the report.

What runs on which events is fixed by the configuration, never by the clock: fast methods
reconstruct every event, the slow per-event fits (``slow_methods``) the same leading
``slow_method_events`` events (the sample is in random order, so that is a random subsample
fixed by the seed). The same configuration therefore gives the same metrics.json byte for
byte, apart from its ``timing`` (nurec.evaluate.report.TIMING_KEY).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nurec.evaluate.quality import EvaluationSettings
from nurec.evaluate.report import Report, build_report
from nurec.evaluate.run_methods import (
    SLOW_METHODS,
    MethodRun,
    method_names,
    print_progress,
    reconstruct_all,
)
from nurec.evaluate.truth import truth_table
from sim.config import SimulationConfig
from sim.simulate import simulate_events

Progress = Callable[[str], None]

DEFAULT_SLOW_METHOD_EVENTS = 20
"""Events of each slow fit in the demo: with every method the demo takes ~100 s on a quiet
2-core machine (benchmarks/bench_demo.py), the cascade likelihood (~5 CPU-s per event) most of it."""


@dataclass(frozen=True)
class DemoConfig:
    """What ``nurec demo`` simulates, which events each method reconstructs, and how it is evaluated."""

    n_events: int = 400
    seed: int = 2026
    detector: str = "icecube86"
    flavors: tuple[str, ...] = ("numu", "nue")
    interactions: tuple[str, ...] = ("CC",)
    energy_min_gev: float = 1.0e3
    energy_max_gev: float = 1.0e5
    methods: tuple[str, ...] | None = None  # None: every registered method
    slow_methods: tuple[str, ...] = SLOW_METHODS
    slow_method_events: int = DEFAULT_SLOW_METHOD_EVENTS
    batch_size: int = 256
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)

    def simulation(self) -> SimulationConfig:
        """Return the simulation settings of the demo sample."""
        return SimulationConfig(
            detector=self.detector, flavors=self.flavors, interactions=self.interactions,
            n_events=self.n_events, energy_min_gev=self.energy_min_gev,
            energy_max_gev=self.energy_max_gev, seed=self.seed,
        ).validate()

    def max_events(self) -> dict[str, int]:
        """Return {slow method: number of leading events it reconstructs}; other methods do every event."""
        if self.slow_method_events < 1:
            raise ValueError(f"slow_method_events: must be at least 1, got {self.slow_method_events}")
        return {name: self.slow_method_events for name in self.slow_methods}


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
    max_events = config.max_events()
    sim = config.simulation()
    say(f"simulating {sim.n_events} events ({'+'.join(sim.flavors)} {'/'.join(sim.interactions)}, "
        f"{sim.detector}, {sim.energy_min_gev:g}-{sim.energy_max_gev:g} GeV, seed {sim.seed}) ...")
    events, metadata = simulate_events(sim)
    say(f"  simulated in {time.perf_counter() - start:.1f} s")
    if not names:
        say("no reconstruction methods are registered; the report shows the data set only")
    runs, skipped = reconstruct_all(
        events, names, out_dir / "predictions", max_events=max_events, batch_size=config.batch_size,
        progress=progress, detector=metadata.get("detector"),
    )
    say("writing the report ...")
    command = command or demo_command(config)
    report = build_report(truth_table(events), metadata, [r.as_method_predictions() for r in runs], out_dir,
                          config.evaluation, command=command, skipped=skipped)
    return RunOutcome(report, runs, skipped, time.perf_counter() - start)


def demo_command(config: DemoConfig) -> str:
    """Return the command line that reproduces a demo run with ``config``."""
    parts = ["nurec", "demo", "--events", str(config.n_events), "--seed", str(config.seed)]
    if config.methods is not None:
        parts += ["--methods", ",".join(config.methods)]
    if config.slow_method_events != DEFAULT_SLOW_METHOD_EVENTS:
        parts += ["--slow-events", str(config.slow_method_events)]
    return shlex.join(parts)
