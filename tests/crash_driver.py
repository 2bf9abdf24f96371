"""A real sidecar that SIGKILLs itself at one step of a fix (for tests/test_crash_recovery.py).

    python tests/crash_driver.py CONFIG --kill-at POINT [--delay SECONDS]
    python tests/crash_driver.py CONFIG --recover-only

It prints every event as `EVENT <kind> <message>` on stdout, `READY` once the
sidecar runs, and with --recover-only it starts (recovering unfinished fixes),
prints `RECOVERED <seconds>` and stops.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from suture.engine.config import load_config
from suture.sidecar.runtime import Event, Sidecar

POINTS = (
    "after_intent",  # the plan (targets, pre/post hashes) is journaled; nothing written
    "after_backup",  # the backup is verified and journaled
    "before_rename",  # the new bytes are in a temp file beside the target, not renamed yet
    "after_apply_file",  # the target holds suture's bytes
    "validating",  # somewhere inside the validation window (after --delay)
    "rolling_back",  # a breach started the rollback, nothing restored yet
    "restore_before_rename",  # the restored bytes are in a temp file, not renamed yet
    "after_commit",  # the fix succeeded and was recorded
)


def die(*_args: object) -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--kill-at", choices=POINTS)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--recover-only", action="store_true")
    args = parser.parse_args()

    hooks = {}
    if args.kill_at == "validating":
        hooks["validating"] = lambda *_: threading.Timer(args.delay, die).start()
    elif args.kill_at and args.kill_at != "after_commit":
        hooks[args.kill_at] = die

    def listen(event: Event) -> None:
        print(f"EVENT {event.kind} {event.message}", flush=True)
        if args.kill_at == "after_commit" and event.kind == "succeeded":
            die()

    sidecar = Sidecar(load_config(args.config), listeners=[listen], hooks=hooks)
    if args.recover_only:
        began = time.perf_counter()
        sidecar.open()
        took = time.perf_counter() - began
        sidecar.shutdown()
        print(f"RECOVERED {took:.3f}", flush=True)
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sidecar.stop.set())
    threading.Thread(target=lambda: (sidecar.ready.wait(), print("READY", flush=True)), daemon=True).start()
    return sidecar.run()


if __name__ == "__main__":
    sys.exit(main())
