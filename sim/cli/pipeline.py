"""``nurec pipeline``: simulate, train, reconstruct with every method and write the report, resumably."""

from __future__ import annotations

import argparse
import shlex

from nurec.cli.options import method_names_help
from sim.pipeline import PRESETS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pipeline", help="reproducible benchmark: simulate, train, reconstruct, report (resumable)",
        description="Run every step of the benchmark into --out; steps whose output exists are skipped, "
                    "so rerunning the same command continues an interrupted run.",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small",
                        help="small: ~10 min on 2 cores; full: the scale of the bundled default model")
    parser.add_argument("--out", required=True, help="run directory, e.g. runs/small")
    parser.add_argument("--methods", default=None, help=method_names_help())
    parser.add_argument("--no-train", action="store_true",
                        help="skip training; trained methods use their bundled artifacts if they have them")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nurec.cli.evaluate import print_summary
    from sim.pipeline import run_pipeline

    methods = None if args.methods is None else [m.strip() for m in args.methods.split(",") if m.strip()]
    parts = ["nurec", "pipeline", "--preset", args.preset, "--out", args.out]
    if args.methods:
        parts += ["--methods", args.methods]
    if args.no_train:
        parts.append("--no-train")
    report, steps = run_pipeline(PRESETS[args.preset], args.out, methods, train=not args.no_train,
                                 command=shlex.join(parts))
    print_summary(report.summary)
    for step in steps:
        print(f"{step.seconds:8.1f} s  {step.name}: {step.status}")
    print(f"report: {report.html_path}")
    return 0
