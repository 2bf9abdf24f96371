"""Giving memory back to the OS between uses (the core thread calls it every TRIM_EVERY seconds)."""

from __future__ import annotations

import contextlib

COLD_LIBRARIES = ("_duckdb",)  # big libraries used now and then: their code is paged out between uses
MADV_PAGEOUT = 21  # Linux 5.4+: reclaim these pages now; dirty ones are swapped or kept, never dropped


def trim_heap() -> None:
    """Give memory back to the OS: what Python freed (glibc keeps it otherwise; a steady few MB of RSS),
    and the code pages of cold libraries.

    DuckDB's start-up touches ~33 MB of its 66 MB library; an idle sidecar runs none of it until
    the next fix or query, which faults back in the ~20 MB it needs (minor faults, from the page
    cache). MADV_PAGEOUT is what the kernel does to those clean file pages under memory pressure,
    done early; it never discards data. On kernels without it nothing changes.
    """
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # not glibc
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.malloc_trim(0)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        with open("/proc/self/maps") as maps:
            for entry in maps:
                fields = entry.split()
                if len(fields) > 5 and fields[1] in ("r-xp", "r--p") and any(n in fields[5] for n in COLD_LIBRARIES):
                    start, end = (int(x, 16) for x in fields[0].split("-"))
                    libc.madvise(start, end - start, MADV_PAGEOUT)
