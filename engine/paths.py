"""Which files suture may write: canonical paths under allowed_paths, nothing else.

Checked twice: when a playbook loads (so `suture check` catches it) and again
right before a write (a link may have been swapped in meanwhile). A symlinked
target is followed to its real file, which must itself be allowed; the link
stays a link.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from .errors import PathRefused


def relative_problem(rel: str) -> str | None:
    """Why ``rel`` is not an acceptable playbook path, or None."""
    if "\x00" in rel:
        return "a path must not contain NUL bytes"
    p = PurePosixPath(rel)
    if p.is_absolute() or rel.startswith("~"):
        return f"'{rel}' must be relative to target_root, not absolute"
    if ".." in p.parts:
        return f"'{rel}' must not contain '..'"
    return None


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def resolve_target(target_root: Path, allowed: Sequence[Path], rel: str) -> Path:
    """The real (link-free) path of ``rel``, or PathRefused saying why not."""
    problem = relative_problem(rel)
    if problem:
        raise PathRefused(problem)
    if not allowed:
        raise PathRefused(f"'{rel}': allowed_paths is empty, so no file may be changed")
    real = Path(os.path.realpath(target_root / rel))
    # ``allowed`` is canonical already (resolved once when the config loaded), so a link
    # swapped into an allowed folder later points out of it rather than moving it
    if not any(_is_within(real, root) for root in allowed):
        shown = ", ".join(_shown(a, target_root) for a in allowed)
        link = "" if real == (target_root / rel) else f" (it resolves to {real})"
        raise PathRefused(f"'{rel}' is outside allowed_paths [{shown}]{link}")
    return real


def _shown(path: Path, root: Path) -> str:
    """An allowed path as the user wrote it (relative to target_root) where possible."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        return str(path)
    return f"{rel}/" if path.is_dir() else str(rel)
