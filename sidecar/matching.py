"""Matching log lines against every pattern of a source in one pass."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from suture.engine.playbook import LogCondition


# --- matching lines --------------------------------------------------------------------


@dataclass(slots=True)
class _Pattern:
    signal: str
    regex: re.Pattern[str]
    group_by: tuple[str, ...]


class PatternSet:
    """Every pattern of one source; ``match`` returns (signal, labels) for each hit."""

    def __init__(self, conditions: Iterable[LogCondition]) -> None:
        seen: dict[str, _Pattern] = {}
        for c in conditions:
            if c.signal not in seen:
                seen[c.signal] = _Pattern(c.signal, re.compile(c.pattern), c.group_by)
        self._patterns = list(seen.values())

    def __len__(self) -> int:
        return len(self._patterns)

    def match(self, text: str) -> list[tuple[str, dict[str, str]]]:
        hits = []
        for p in self._patterns:
            m = p.regex.search(text)
            if m is None:
                continue
            labels = {name: (m.group(name) or "") for name in p.group_by}
            hits.append((p.signal, labels))
        return hits
