"""`make bench`: every benchmark, each against a baseline measured in the same run.

Prints markdown tables (pasted into docs/benchmarks.md) headed by the command that
produced them. The machine is shared and noisy, so figures are compared with
a baseline measured seconds apart, never asserted in a test.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import conditions, detection, effects, fleet, footprint, idle, ingest, reload, replay, scrape

BENCHES = {"detection": detection.main, "effects": effects.main, "idle": idle.main, "ingest": ingest.main,
           "reload": reload.main, "replay": replay.main, "footprint": footprint.main, "fleet": fleet.main,
           "scrape": scrape.main, "conditions": conditions.main}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help=f"which benchmarks: {', '.join(BENCHES)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="fewer trials, for a smoke run")
    args = parser.parse_args()
    unknown = set(args.names) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    names = args.names or list(BENCHES)
    if len(names) == 1:
        BENCHES[names[0]](quick=args.quick)
        print()
        return 0
    # each in a process of its own: one bench's imports and heap must not weigh on the next (a library
    # mapped by this process too, e.g. DuckDB, keeps its pages resident in the measured sidecar as well)
    for name in names:
        done = subprocess.run([sys.executable, __file__, name, *(["--quick"] if args.quick else [])], check=False)
        if done.returncode:
            return done.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
