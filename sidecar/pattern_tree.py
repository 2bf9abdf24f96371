"""What both translations of a pattern read: Python's own parse tree of it, and sets of code points.

``sidecar.matching`` never hands a pattern over as written: it walks the tree
``re._parser`` gives (the one ``re`` itself compiles) and emits one expression
for hyperscan (``sidecar.pattern_prefilter``) and one for the ``regex`` module
(``sidecar.pattern_exact``). A node neither knows raises :class:`Untranslatable`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

parser: Any = importlib.import_module("re._parser")
constants: Any = importlib.import_module("re._constants")
REPEATS = (constants.MAX_REPEAT, constants.MIN_REPEAT, constants.POSSESSIVE_REPEAT)


class Untranslatable(Exception):
    """A parse tree node the translators do not know (a newer Python, say)."""


Ranges = list[tuple[int, int]]  # inclusive code point ranges
MAX_CP = 0x10FFFF


def norm(ranges: Iterable[tuple[int, int]]) -> Ranges:
    """Sorted, with overlapping and adjacent ranges merged."""
    out: Ranges = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def complement(ranges: Ranges) -> Ranges:
    """Every code point not in ``ranges``."""
    out: Ranges = []
    nxt = 0
    for lo, hi in norm(ranges):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= MAX_CP:
        out.append((nxt, MAX_CP))
    return out
