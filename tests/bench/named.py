"""`suture` with its threads named for the kernel, so /proc/<pid>/task/*/comm tells them apart.

Python 3.11 keeps `threading.Thread.name` to itself (3.14 hands it to the OS); the idle
bench runs `python tests/bench/named.py run --config ...` so its per-thread table has
names: the loop's name without the `suture-` prefix (the kernel keeps 15 bytes, and
`suture-container-metrics` and `suture-containers` would both be `suture-containe`).
Nothing else changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
from typing import Any

PR_SET_NAME = 15


def _name_threads() -> None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return  # not Linux: the threads keep the process's name
    bootstrap = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]

    def named(self: threading.Thread, *args: Any) -> Any:
        prctl(PR_SET_NAME, self.name.removeprefix("suture-").encode()[:15], 0, 0, 0)
        return bootstrap(self, *args)

    threading.Thread._bootstrap_inner = named  # type: ignore[attr-defined]
    prctl(PR_SET_NAME, b"core", 0, 0, 0)  # the main thread runs the core


if __name__ == "__main__":
    _name_threads()
    from suture.sidecar.cli import main

    sys.exit(main(sys.argv[1:]))
