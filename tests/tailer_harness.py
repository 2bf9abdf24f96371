"""Run a FileSource in a loop as its own process, so a test can SIGKILL it anywhere (tests/test_tailer_torture.py).

    python tests/tailer_harness.py --pattern '/tmp/x/logs/*.log' --state /tmp/x/state.json --out /tmp/x/out.jsonl

Each observation becomes one JSON line in --out. Observing and checkpointing must be atomic across
SIGKILL, so --out is also a write-ahead log: every batch is appended as its observations followed
by one commit record holding the checkpoint entries commit() produced, fsynced, and only then is
the checkpoint file saved. A start first cuts --out after its last commit record (a batch without
one was never committed) and rewrites the checkpoint file from that record, so the two agree
whatever instant the previous run died at.

Records: {"obs": text, "partial": bool, "truncated": bool, "path": str} and
{"commit": {key: mark}, "pid": int, "truncations": int} (this run's count so far).
SIGTERM stops it after the current batch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from suture.sidecar.sources.checkpoints import Checkpoints
from suture.sidecar.sources.files import FileSource

SOURCE = "app"


def recover(out: Path, state: Path) -> None:
    """Cut ``out`` after its last commit record; make ``state`` hold exactly that record's checkpoints."""
    data = out.read_bytes() if out.exists() else b""
    end, marks = 0, None
    pos = 0
    for raw in data.splitlines(keepends=True):
        pos += len(raw)
        if not raw.endswith(b"\n"):
            break  # torn last record
        rec = json.loads(raw)
        if "commit" in rec:
            end, marks = pos, rec["commit"]
    with open(out, "ab") as fh:
        fh.truncate(end)
        os.fsync(fh.fileno())
    if marks is None:
        state.unlink(missing_ok=True)  # never committed: a first start
        return
    tmp = state.with_name(state.name + ".tmp")
    tmp.write_text(json.dumps({"version": 1, "sources": {SOURCE: marks}}))
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, state)


def run(args: argparse.Namespace) -> None:
    out, state = Path(args.out), Path(args.state)
    state.parent.mkdir(parents=True, exist_ok=True)
    recover(out, state)
    checkpoints = Checkpoints(state)
    source = FileSource(SOURCE, args.pattern, checkpoints=checkpoints, max_line_bytes=args.max_line_bytes,
                        chunk_bytes=args.chunk_bytes, max_poll_lines=args.max_poll_lines)
    stop = False

    def on_term(_signum: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    last: dict[str, Any] | None = None
    with open(out, "ab", buffering=0) as fh:
        while not stop:
            lines = source.poll()
            source.commit()
            marks = {k: asdict(m) for k, m in checkpoints.entries(SOURCE).items()}
            if lines or marks != last:
                recs = [{"obs": ln.text, "partial": ln.partial, "truncated": ln.truncated, "path": ln.path}
                        for ln in lines]
                recs.append({"commit": marks, "pid": os.getpid(), "truncations": source.stats["truncations"]})
                fh.write(b"".join(json.dumps(r).encode() + b"\n" for r in recs))
                os.fsync(fh.fileno())
                checkpoints.save()
                last = marks
            if not source.backlog:
                time.sleep(args.interval)
    source.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pattern", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--interval", type=float, default=0.005)
    parser.add_argument("--max-line-bytes", type=int, default=65536)
    parser.add_argument("--chunk-bytes", type=int, default=65536)
    parser.add_argument("--max-poll-lines", type=int, default=1 << 16)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
