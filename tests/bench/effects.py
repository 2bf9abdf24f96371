"""Detection while a fix runs a slow effect: does an effect block the core? (issue 14 item 2)

The detection bench's world (50 playbooks, 3 probes, the `TRIGGER <n>` playbook B, API on,
in this process), plus playbook A: on `SLOW FIX NEEDED` it applies at once (auto,
confidence 99) a fix whose one action is `exec: {argv: [sleep, 10]}` (sleep is in
`allowed_commands`). First B is timed on its own, as in the detection bench; then A
is set off, and from its `decided` event on, one B trigger is written every 0.5 s
while A's `sleep` runs (0.5 s to 9 s into it), each timed write() -> its `detected`
event. A core that waits for effects detects none of them before the sleep ends: the
first waits ~9.5 s, the last ~1 s. A core that hands effects off detects each in
milliseconds.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from .detection import HEADER, TRIGGER, Detections, row, running_sidecar, trigger

EFFECT_S = 10
SLOW = f"""\
id: bench-slow-fix
when:
  log: {{source: app, pattern: 'SLOW FIX NEEDED', at_least: 1, within: 10s}}
confidence: 99
mode: auto
fix: [{{exec: {{argv: [sleep, '{EFFECT_S}'], timeout: 30s}}}}]
validate: {{window: 1m, expect: [{{log: {{source: app, pattern: 'SLOW FIX NEEDED', at_most: 0}}}}]}}
"""


def alone(seen: Detections, fh: object, trials: int) -> list[float]:
    """B on its own: each trial once the last is recorded (as in the detection bench)."""
    rnd = random.Random(14)
    out = []
    for n in range(trials):
        start = trigger(fh, n)
        if not seen.wait_for(lambda n=n: seen.count("shadow") > n, 10):
            raise RuntimeError(f"trial {n}: not detected and recorded within 10 s")
        out.append((seen.at[f"n={n}"] - start) * 1000)
        time.sleep(0.03 + rnd.random() * 0.05)
    return out


def during_effect(seen: Detections, fh: object, first: int) -> tuple[list[float], float | None, float]:
    """(B's latencies in ms while A's effect runs, seconds from A's decision to its `validating` event or
    None, seconds from A's decision to the last B detection)."""
    began = time.perf_counter()
    fh.write("2026-11-26T00:00:00Z ERROR SLOW FIX NEEDED\n")  # type: ignore[attr-defined]

    def decided() -> bool:
        return any(e.kind == "decided" and e.data.get("playbook_id") == "bench-slow-fix" and at >= began
                   for at, e in seen.events)

    if not seen.wait_for(decided, 10):
        raise RuntimeError("playbook A (the slow fix) was not decided within 10 s")
    t0 = next(at for at, e in seen.events if e.kind == "decided" and e.data.get("playbook_id") == "bench-slow-fix")
    written: dict[int, float] = {}
    for k, n in enumerate(range(first, first + 2 * (EFFECT_S - 1))):
        time.sleep(max(0.0, t0 + 0.5 * (k + 1) - time.perf_counter()))
        written[n] = trigger(fh, n)
    if not seen.wait_for(lambda: all(f"n={n}" in seen.at for n in written), 3 * EFFECT_S):
        missing = sorted(n for n in written if f"n={n}" not in seen.at)
        raise RuntimeError(f"triggers {missing} were not detected within {3 * EFFECT_S} s")
    seen.wait_for(lambda: any(e.kind == "validating" and at >= t0 for at, e in seen.events), 3 * EFFECT_S)
    validating = next((at - t0 for at, e in seen.events if e.kind == "validating" and at >= t0), None)
    last = max(seen.at[f"n={n}"] for n in written) - t0
    return [(seen.at[f"n={n}"] - at) * 1000 for n, at in written.items()], validating, last


def main(quick: bool = False) -> None:
    trials = 20 if quick else 100
    sleep = shutil.which("sleep") or "/bin/sleep"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with running_sidecar(root, {"trigger.yaml": TRIGGER, "slow.yaml": SLOW},
                             extra_config=f"allowed_commands: [{os.path.realpath(sleep)}]\n") as seen, \
                open(root / "target" / "logs" / "app.log", "a", buffering=1) as fh:
            idle = alone(seen, fh, trials)
            busy, validating, last = during_effect(seen, fh, trials)
    print(f"Detection while a fix runs `exec sleep {EFFECT_S}`, 50 playbooks + 3 probes: `make bench` "
          f"(python tests/bench/run.py effects), {os.cpu_count()} cores")
    print()
    print(HEADER)
    print(row(f"playbook B detected, nothing else running ({len(idle)} triggers)", idle))
    print(row(f"playbook B detected while A's fix runs `sleep {EFFECT_S}` ({len(busy)} triggers, written 0.5-"
              f"{0.5 * len(busy):g} s into it)", busy))
    print()
    done = f"{validating:.1f} s" if validating is not None else "never (no `validating` event)"
    print(f"A: decided -> validating (its effect done) {done}; decided -> the last of B's detections {last:.1f} s.")
