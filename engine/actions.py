"""Actions: what a fix does, planned before anything is touched.

File actions (``adjust``, ``set``, ``replace``) are *planned*: each target is
resolved (links followed, allowed_paths checked), read without following a
link, and edited in memory; several actions on one file chain. The plan holds
the exact bytes before and after, so the journal knows both hashes before a
byte is written, and a no-op change is dropped (nothing is written).

Other actions (``restart``, ``exec``, ``notify``) are *effects*: the sidecar
carries them out through an :class:`EffectRunner` it passes in, because they
wait on the world (the Docker API, a child process, a webhook).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .backup import read_target, sha256_bytes
from .edits import (
    Span,
    TextEdit,
    adjust_value,
    edit_value,
    format_number,
    format_of,
    parse_number,
    replace_text,
)
from .errors import ActionError, BackupError, EditError, PathRefused
from .paths import resolve_target
from .playbook import FILE_ACTIONS, Action, Adjust, Replace, Restore, SetValue
from .values import adjusted, number_of


@dataclass(frozen=True, slots=True, kw_only=True)
class ValueChange:
    """One value changed by one action (for the journal, the history and people)."""

    file: str
    action: str
    target: str  # the key, or the regex
    old: str
    new: str
    line: int

    def as_json(self) -> dict[str, Any]:
        return {"file": self.file, "action": self.action, "target": self.target,
                "old": self.old, "new": self.new, "line": self.line}


@dataclass(frozen=True, slots=True, kw_only=True)
class FilePlan:
    """A file's bytes before and after the fix."""

    path: str  # as the playbook names it
    real: Path  # resolved, link-free
    before: bytes
    after: bytes
    stat: os.stat_result
    changes: tuple[ValueChange, ...]

    @property
    def pre_sha(self) -> str:
        return sha256_bytes(self.before)

    @property
    def post_sha(self) -> str:
        return sha256_bytes(self.after)


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    files: tuple[FilePlan, ...]
    effects: tuple[Action, ...]

    @property
    def changes(self) -> tuple[ValueChange, ...]:
        return tuple(c for f in self.files for c in f.changes)

    @property
    def empty(self) -> bool:
        return not self.files and not self.effects


class EffectRunner(Protocol):
    """Carries out restart / exec / notify; raises ActionError when one fails."""

    def run(self, action: Action, context: Mapping[str, Any]) -> str: ...


def _decode(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EditError(f"{path}: not UTF-8 text (byte {exc.start}); suture edits text files only") from exc


def _adjust(action: Adjust, text: str) -> TextEdit:
    fmt = format_of(action.file)
    step = (action.op, action.amount, action.minimum, action.maximum, action.round_to)
    if action.regex is not None:

        def compute(span: Span) -> str:
            return format_number(adjust_value(parse_number(span.text), *step), span.text)

        return edit_value(text, fmt, key=None, regex=action.regex, compute=compute)

    def intend(span: Span) -> int | float | str:
        # from the value as the format reads it (YAML 0x10 is 16), typed like it
        return adjusted(adjust_value(number_of(span), *step), span)

    return edit_value(text, fmt, key=action.key, regex=None, intend=intend)


def _set(action: SetValue, text: str) -> TextEdit:
    value = action.value  # typed as the playbook's YAML gave it: str, int, float or bool
    return edit_value(text, format_of(action.file), key=action.key, regex=None, intend=lambda span: value)


def _replace(action: Replace, text: str) -> TextEdit:
    return replace_text(text, action.regex, action.with_, format_of(action.file))


# The text edit of each file action but restore (which puts back bytes: see plan_fix).
_EDITS: dict[type[Action], Callable[[Any, str], TextEdit]] = {Adjust: _adjust, SetValue: _set, Replace: _replace}


def _edit(action: Action, text: str) -> TextEdit:
    edit = _EDITS.get(type(action))
    if edit is None:
        raise ActionError(f"{type(action).__name__} is not a file action that edits text")
    return edit(action, text)


LastGood = Callable[[str], "tuple[bytes, str] | None"]


def plan_fix(
    actions: Sequence[Action],
    *,
    target_root: Path,
    allowed: Sequence[Path],
    read: Callable[[Path], tuple[bytes, os.stat_result]] = read_target,
    last_good: LastGood | None = None,
) -> Plan:
    """Resolve, read and edit in memory; raise ActionError (PathRefused, EditError, AtBound).

    ``last_good(file)`` gives the bytes a ``restore`` puts back and where they come from.
    """
    order: list[str] = []
    state: dict[str, tuple[Path, bytes, str, os.stat_result, list[ValueChange]]] = {}
    effects: list[Action] = []
    for action in actions:
        if not isinstance(action, FILE_ACTIONS):
            effects.append(action)
            continue
        where = f" ({action.at})"
        if action.file not in state:
            try:
                real = resolve_target(target_root, allowed, action.file)
                before, st = read(real)
            except PathRefused as exc:
                raise PathRefused(f"{exc}{where}") from None
            except BackupError as exc:  # a link swapped in on the way since the path was resolved
                raise PathRefused(f"{action.file}: {exc}{where}") from None
            except FileNotFoundError as exc:
                raise EditError(f"{action.file} does not exist{where}") from exc
            except OSError as exc:
                raise EditError(f"cannot read {action.file}: {exc.strerror}{where}") from exc
            order.append(action.file)
            state[action.file] = (real, before, _decode(before, action.file), st, [])
        real, before, text, st, changes = state[action.file]
        if isinstance(action, Restore):
            good = last_good(action.file) if last_good is not None else None
            if good is None:
                raise EditError(f"{action.file}: no good version is known yet (no validated fix or backup of it){where}")
            data, origin = good
            new_text = _decode(data, action.file)
            if new_text != text:
                changes.append(ValueChange(file=action.file, action=action.keyword, target=origin,
                                           old=f"sha256:{sha256_bytes(text.encode())[:12]}",
                                           new=f"sha256:{sha256_bytes(data)[:12]}", line=0))
            state[action.file] = (real, before, new_text, st, changes)
            continue
        try:
            edit = _edit(action, text)
        except ActionError as exc:
            raise type(exc)(f"{action.file}: {exc}{where}") from None
        if edit.changed:
            target = getattr(action, "key", None) or getattr(action, "regex", "") or ""
            changes.append(ValueChange(file=action.file, action=action.keyword, target=target, old=edit.old,
                                       new=edit.new, line=edit.line))
        state[action.file] = (real, before, edit.text, st, changes)
    files = []
    for name in order:
        real, before, text, st, changes = state[name]
        after = text.encode("utf-8")
        if after != before:
            files.append(FilePlan(path=name, real=real, before=before, after=after, stat=st, changes=tuple(changes)))
    return Plan(files=tuple(files), effects=tuple(effects))
