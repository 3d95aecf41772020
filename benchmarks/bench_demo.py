"""Wall time of `nurec demo` in a fresh process (imports included), and its summary table.

Usage: python benchmarks/bench_demo.py [--events N] [--out DIR] [--repeat R]
Prints one line per run: wall seconds, events, methods run and skipped. The target is
< 120 s on a 2-core machine with the default 400 events.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=None, help="events (default: the demo's default)")
    parser.add_argument("--out", default=None, help="report directory (default: a temporary one)")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    for run in range(args.repeat):
        out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="nurec-demo-"))
        command = [sys.executable, "-m", "nurec", "demo", "--out", str(out)]
        if args.events:
            command += ["--events", str(args.events)]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            print(done.stdout, done.stderr, file=sys.stderr)
            return done.returncode
        metrics = json.loads((out / "metrics.json").read_text())
        print(f"run {run + 1}: wall {wall:.1f} s, {metrics['dataset']['n_events']} events, "
              f"methods run: {', '.join(metrics['methods']) or 'none'}; "
              f"not run: {', '.join(metrics['skipped_methods']) or 'none'}")
        if run == args.repeat - 1:
            print(done.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
