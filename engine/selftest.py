"""Playbook self-tests: the ``examples:`` block, run by ``suture check --run-examples``.

A ``fires`` line must match at least one log condition that can make the
playbook fire (a log leaf that appears un-negated in some alternative of
``when``), and capture every ``group_by`` group it needs; an ``ignores`` line
must match none of them. Lines are matched one at a time, as the sidecar
matches them; counts and windows are not simulated (that is what
``suture replay`` is for).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import Problem
from .playbook import Adjust, LogCondition, Playbook, Replace, Where, leaves
from .rules import to_dnf


@dataclass(frozen=True, slots=True, kw_only=True)
class ExampleResult:
    playbook_id: str
    kind: str  # "fires" | "ignores"
    index: int
    line: str
    ok: bool
    matched: tuple[str, ...]  # describe() of the conditions the line matched
    problem: Problem | None = None


def firing_log_conditions(pb: Playbook) -> list[LogCondition]:
    """The log leaves whose matches can make ``pb`` fire (un-negated somewhere in its DNF)."""
    seen: dict[str, LogCondition] = {}
    for positive, _negated in to_dnf(pb.when):
        for leaf in positive:
            if isinstance(leaf, LogCondition):
                seen.setdefault(leaf.signal, leaf)
    return list(seen.values())


def _matches(leaf: LogCondition, line: str) -> bool:
    m = re.search(leaf.pattern, line)
    return m is not None and all(m.group(name) for name in leaf.group_by)


def run_examples(pb: Playbook) -> list[ExampleResult]:
    leaves = firing_log_conditions(pb)
    results: list[ExampleResult] = []
    cases = [("fires", pb.examples.fires, pb.examples.fire_lines), ("ignores", pb.examples.ignores, pb.examples.ignore_lines)]
    for kind, lines, marks in cases:
        for i, text in enumerate(lines):
            matched = tuple(leaf.describe() for leaf in leaves if _matches(leaf, text))
            ok = bool(matched) if kind == "fires" else not matched
            problem = None
            if not ok:
                if kind == "fires":
                    message = (
                        "this example should fire the playbook but matches none of its log conditions"
                        if leaves
                        else "this example cannot fire the playbook: its `when` has no log condition"
                    )
                else:
                    message = f"this example should be ignored but matches: {'; '.join(matched)}"
                problem = Problem(
                    file=pb.file,
                    line=marks[i] if i < len(marks) else 0,
                    column=0,
                    path=f"examples.{kind}[{i}]",
                    message=message,
                )
            results.append(ExampleResult(playbook_id=pb.id, kind=kind, index=i, line=text, ok=ok,
                                         matched=matched, problem=problem))
    return results


# --- catastrophic backtracking ---------------------------------------------------------

PROBE_LENGTH = 10 * 1024
_BASIC = "a0 ._-/:=,;x\t"


def _probe_lines(pattern: str) -> list[str]:
    """Hostile lines for ``pattern``: long runs of the characters it is built from, then a misfit."""
    chars = dict.fromkeys(c for c in pattern if c.isprintable() and c not in "()[]{}?*+|^$\\")
    chars.update(dict.fromkeys(_BASIC))
    units = list(chars)
    literal_runs = re.findall(r"[A-Za-z0-9 ]{2,8}", pattern)
    units += literal_runs
    lines = []
    for unit in units:
        body = (unit * (PROBE_LENGTH // len(unit) + 1))[:PROBE_LENGTH]
        lines.append(body + "\x00!")
        lines.append(body)
    return lines


def backtracking_problem(pattern: str, budget: float = 0.2) -> str | None:
    """A message if ``pattern`` needs more than ``budget`` seconds on some 10 KiB line, else None."""
    import regex  # the timeout-capable engine; `re` cannot be interrupted

    try:
        compiled = regex.compile(pattern)
    except regex.error:
        return None  # compile errors are reported by the loader with their position
    for line in _probe_lines(pattern):
        try:
            compiled.search(line, timeout=budget)
        except TimeoutError:
            sample = line[:12].replace("\x00", "\\0")
            return (
                f"backtracks catastrophically: over {budget:g}s on a 10 KiB line like '{sample}…' "
                "(nested quantifiers such as (a+)+ or (.*)* ?)"
            )
    return None


def regex_problems(pb: Playbook, budget: float = 0.2) -> list[Problem]:
    """Catastrophic-backtracking problems of every regex in a playbook."""
    found: list[Problem] = []
    conditions = [pb.when, *pb.validate.expect]
    checked: set[str] = set()
    targets: list[tuple[str, Where, str]] = []
    for cond in conditions:
        for leaf in leaves(cond):
            if isinstance(leaf, LogCondition):
                targets.append((leaf.pattern, leaf.at, "pattern"))
    for action in (*pb.fix, *pb.on_rollback):
        if isinstance(action, (Adjust, Replace)) and action.regex:
            targets.append((action.regex, action.at, "regex"))
    for pattern, where, key in targets:
        if pattern in checked:
            continue
        checked.add(pattern)
        message = backtracking_problem(pattern, budget)
        if message:
            found.append(Problem(file=where.file, line=where.line, column=0, path=f"{where.path}.{key}", message=message))
    return found
