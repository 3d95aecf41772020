"""Wall time of `nurec demo` in a fresh process (imports included), with every method, and its report.

Usage: python benchmarks/bench_demo.py [--events N] [--out DIR] [--repeat R]

Each run starts `python -m nurec demo` in a new process and prints its wall time, the
events, the methods run and skipped, and the time each method took (build, warm-up,
reconstruction, from metrics.json's timing). The last run's text summary (verdicts,
summary table, energy per decade) follows. With --repeat 2 or more the runs' metrics.json
are compared without their timing: the demo is deterministic, so they must be identical.
The target is <= 120 s on this project's 2-core machine with the default 400 events.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 120.0
REPO = Path(__file__).resolve().parents[1]


def run_demo_process(out: Path, events: int | None) -> tuple[float, subprocess.CompletedProcess]:
    """Return (wall seconds, finished process) of one `nurec demo --out OUT` in a fresh interpreter."""
    command = [sys.executable, "-m", "nurec", "demo", "--out", str(out)]
    if events:
        command += ["--events", str(events)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    return time.perf_counter() - start, done


def timing_lines(metrics: dict) -> list[str]:
    """Return one line per method: events, build, warm-up and reconstruction seconds."""
    lines = []
    for name, t in metrics.get("timing", {}).items():
        n = (t.get("n_events") or 0) + (t.get("warmup_events") or 0)
        lines.append(f"  {name:20s} {n:4d} events: build {t.get('load_s') or 0:6.2f} s, warm-up "
                     f"{t.get('warmup_s') or 0:6.2f} s, reconstruction {t.get('wall_s') or 0:6.2f} s")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=None, help="events (default: the demo's default)")
    parser.add_argument("--out", default=None, help="report directory (default: a temporary one per run)")
    parser.add_argument("--repeat", type=int, default=1, help="runs; from 2 on, their metrics are compared")
    args = parser.parse_args()
    from nurec.evaluate.report import without_timing

    reports = []
    for run in range(args.repeat):
        out = Path(args.out) / f"run{run + 1}" if args.out else Path(tempfile.mkdtemp(prefix="nurec-demo-"))
        wall, done = run_demo_process(out, args.events)
        if done.returncode != 0:
            print(done.stdout, done.stderr, file=sys.stderr)
            return done.returncode
        metrics = json.loads((out / "metrics.json").read_text())
        reports.append(metrics)
        verdict = "met" if wall <= TARGET_S else "MISSED"
        print(f"run {run + 1}: wall {wall:.1f} s (target <= {TARGET_S:.0f} s: {verdict}), "
              f"{metrics['dataset']['n_events']} events, methods run: {', '.join(metrics['methods']) or 'none'}; "
              f"not run: {', '.join(metrics['skipped_methods']) or 'none'}")
        print("\n".join(timing_lines(metrics)))
    if len(reports) > 1:
        same = all(without_timing(r) == without_timing(reports[0]) for r in reports[1:])
        print(f"metrics.json without timing identical across {len(reports)} runs: {'yes' if same else 'NO'}")
    print()
    print((out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
