"""Actions from their validated YAML, and what confines each kind to what suture.yaml allows.

:data:`ACTIONS` maps each action's keyword (as the schema and a playbook write it, and
as its model type's ``keyword`` says) to its builder; :data:`_CONFINED` maps each model
type to the check that keeps it inside the config's allowlists. A new kind of action adds
a line to each (a test checks the tables against the schema and the model).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .build import Builder, as_int
from .config import Config
from .confine import Refused, container_problem, resolve_command, webhook_problem
from .errors import PathRefused
from .paths import relative_problem, resolve_target
from .playbook import (
    FILE_ACTIONS,
    Action,
    Adjust,
    Exec,
    Notify,
    Replace,
    Restart,
    Restore,
    SetValue,
    Stop,
)
from .yaml_document import PathKey

ActionBuilder = Callable[[Builder, dict[str, Any], PathKey], Action]
FILE_KEYWORDS = tuple(t.keyword for t in FILE_ACTIONS)


def action(b: Builder, node: dict[str, Any], path: PathKey) -> Action:
    """One item of ``fix`` or ``on_rollback``."""
    ((kind, body),) = node.items()
    here = (*path, kind)
    if path[0] == "on_rollback" and kind in FILE_KEYWORDS:
        b.problem(here, f"on_rollback runs after the fix's files are restored, so a '{kind}' there has nothing"
                  " to do; use restart, stop, exec or notify", key=True)
    if "file" in body:
        problem = relative_problem(body["file"])
        if problem:
            b.problem((*here, "file"), problem)
    return ACTIONS[kind](b, body, here)


def adjust(b: Builder, body: dict[str, Any], path: PathKey) -> Adjust:
    if "key" in body and "regex" in body:
        b.problem((*path, "regex"), "expected exactly one of key, regex; got both", key=True)
    elif "key" not in body and "regex" not in body:
        b.problem(path, "expected exactly one of key, regex (what to change); got neither")
    ops = [op for op in ("multiply", "add", "set") if op in body]
    if not ops:
        b.problem(path, "expected exactly one of multiply, add, set (how to change it); got none")
    elif len(ops) > 1:
        b.problem((*path, ops[1]), f"expected exactly one of multiply, add, set; got {', '.join(ops)}", key=True)
    if "regex" in body:
        compiled = b.regex((*path, "regex"), body["regex"])
        if compiled is not None and "value" not in compiled.groupindex:
            b.problem((*path, "regex"),
                      "the regex needs a named group 'value' around the number, e.g. sleep\\((?P<value>[0-9.]+)\\)")
    lo, hi = body.get("min"), body.get("max")
    if lo is not None and hi is not None and lo > hi:
        b.problem((*path, "min"), f"min ({lo:g}) is greater than max ({hi:g})")
    if "multiply" in body and body["multiply"] <= 0:
        b.problem((*path, "multiply"), "multiply must be greater than 0")
    op = ops[0] if ops else "set"
    return Adjust(file=body["file"], key=body.get("key"), regex=body.get("regex"), op=op,
                  amount=float(body.get(op, 0)), minimum=lo, maximum=hi, round_to=as_int(body.get("round")),
                  at=b.where(path))


def set_value(b: Builder, body: dict[str, Any], path: PathKey) -> SetValue:
    return SetValue(file=body["file"], key=body["key"], value=body["value"], at=b.where(path))


def replace(b: Builder, body: dict[str, Any], path: PathKey) -> Replace:
    b.regex((*path, "regex"), body["regex"])
    return Replace(file=body["file"], regex=body["regex"], with_=body["with"], at=b.where(path))


def restore(b: Builder, body: dict[str, Any], path: PathKey) -> Restore:
    return Restore(file=body["file"], at=b.where(path))


def restart(b: Builder, body: dict[str, Any], path: PathKey) -> Restart:
    process = body.get("process")
    if process:
        problem = relative_problem(process["pidfile"]) if not process["pidfile"].startswith("/") else None
        if problem:
            b.problem((*path, "process", "pidfile"), problem)
        return Restart(pidfile=process["pidfile"], signal=process.get("signal", "SIGTERM"), at=b.where(path))
    return Restart(container=body["container"], at=b.where(path))


def stop(b: Builder, body: dict[str, Any], path: PathKey) -> Stop:
    return Stop(container=body["container"], timeout=b.duration((*path, "timeout"), body.get("timeout"), 10.0),
                at=b.where(path))


def exec_(b: Builder, body: dict[str, Any], path: PathKey) -> Exec:
    return Exec(argv=tuple(body["argv"]), timeout=b.duration((*path, "timeout"), body.get("timeout"), 30.0),
                at=b.where(path))


def notify(b: Builder, body: dict[str, Any], path: PathKey) -> Notify:
    return Notify(webhook=body["webhook"], at=b.where(path))


ACTIONS: Mapping[str, ActionBuilder] = {
    Adjust.keyword: adjust,
    SetValue.keyword: set_value,
    Replace.keyword: replace,
    Restore.keyword: restore,
    Restart.keyword: restart,
    Stop.keyword: stop,
    Exec.keyword: exec_,
    Notify.keyword: notify,
}


# --- confinement: what suture.yaml allows each kind to reach ------------------------------

Confined = tuple[PathKey, str] | None  # (the field at fault, why), or None: allowed


def _file(action: Adjust | SetValue | Replace | Restore, config: Config) -> Confined:
    try:
        resolve_target(config.target_root, config.allowed_paths, action.file)
    except PathRefused as exc:
        return ("file",), str(exc)
    return None


def _container(action: Restart | Stop, config: Config) -> Confined:
    message = container_problem(config, action.container) if action.container is not None else None
    return (("container",), message) if message else None


def _command(action: Exec, config: Config) -> Confined:
    try:
        resolve_command(config, action.argv[0])
    except Refused as exc:
        return ("argv", 0), str(exc)
    return None


def _webhook(action: Notify, config: Config) -> Confined:
    message = webhook_problem(config, action.webhook)
    return (("webhook",), message) if message else None


_CONFINED: Mapping[type[Action], Callable[[Any, Config], Confined]] = {
    **dict.fromkeys(FILE_ACTIONS, _file),
    Restart: _container,
    Stop: _container,
    Exec: _command,
    Notify: _webhook,
}


def confinement_problem(action: Action, config: Config) -> Confined:
    """(the field at fault, why) when ``action`` reaches outside what the config allows (engine.confine)."""
    return _CONFINED[type(action)](action, config)
