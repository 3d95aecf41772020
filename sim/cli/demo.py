"""``nurec demo``: simulate a small sample, reconstruct it with every ready method, write the report."""

from __future__ import annotations

import argparse

from nurec.cli.options import method_names_help, positive_int
from sim.demo import DemoConfig, demo_command, run_demo

DEFAULT_OUT = "demo_report"
"""Where ``nurec demo`` writes without --out (ignored by the repository's .gitignore)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = DemoConfig()
    parser = subparsers.add_parser(
        "demo", help="simulate a small sample, reconstruct it with every ready method, write the report",
        description="The main job in one command: icecube86 numu CC + nue CC sample, every registered method "
                    "that works without training, quality report in --out.",
    )
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                        help="directory for the report, its figures and the predictions")
    parser.add_argument("--events", type=positive_int, default=defaults.n_events, help="events to simulate")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="simulation seed")
    parser.add_argument("--methods", default=None, help=method_names_help())
    parser.add_argument("--slow-events", type=positive_int, default=defaults.slow_method_events,
                        help=f"the slow fits ({', '.join(defaults.slow_methods)}) reconstruct the first N events, "
                             "the same for each; fast methods reconstruct all")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nurec.cli.evaluate import print_summary

    methods = None if args.methods is None else tuple(m.strip() for m in args.methods.split(",") if m.strip())
    config = DemoConfig(n_events=args.events, seed=args.seed, methods=methods, slow_method_events=args.slow_events)
    outcome = run_demo(config, args.out, command=demo_command(config))
    print(outcome.report.verdicts_text())
    print_summary(outcome.report.summary)
    for name, reason in outcome.skipped.items():
        print(f"not run: {name}: {reason}")
    print(f"report: {outcome.report.html_path}  metrics: {outcome.report.metrics_path}")
    print(f"demo finished in {outcome.wall_s:.1f} s")
    return 0
