"""Build Playbook objects from validated documents, and load a playbook set.

The load pipeline, each step pure and tested on its own:

    read_document -> schema_problems -> build_playbook -> check_set (ids, config refs)

``load_playbooks`` runs the whole pipeline for a folder and reports every
problem of every file at once, so `suture check` and a hot reload say the
same thing.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Config
from .confine import Refused, container_problem, resolve_command, webhook_problem
from .documents import Document, PathKey, read_document, render_path, schema_problems
from .errors import DocumentError, PathRefused, Problem
from .paths import relative_problem, resolve_target
from .playbook import (
    FILE_ACTIONS,
    Action,
    Adjust,
    AllOf,
    AnyOf,
    Condition,
    ContainerCondition,
    Examples,
    Exec,
    Learning,
    LogCondition,
    MetricCondition,
    Notify,
    NotOf,
    Playbook,
    ProbeCondition,
    Replace,
    Restart,
    Restore,
    SetValue,
    Stop,
    Validate,
    Where,
    leaves,
    parse_duration,
)

PLAYBOOK_SUFFIXES = (".yaml", ".yml")
DEFAULT_WITHIN = 60.0


class _Builder:
    """Turns one schema-valid document into a Playbook, collecting semantic problems."""

    def __init__(self, doc: Document, digest: str) -> None:
        self.doc = doc
        self.digest = digest
        self.problems: list[Problem] = []
        self.broken: tuple[PathKey, ...] = ()  # where the schema found problems; see check()

    def problem(self, path: PathKey, message: str, *, key: bool = False) -> None:
        self.problems.append(self.doc.problem(path, message, key=key))

    def where(self, path: PathKey) -> Where:
        return Where(file=self.doc.file, line=self.doc.anchor(path).line, path=render_path(path))

    def duration(self, path: PathKey, text: str | None, default: float) -> float:
        if text is None:
            return default
        try:
            return parse_duration(text)
        except ValueError as exc:
            self.problem(path, str(exc))
            return default

    def regex(self, path: PathKey, pattern: str) -> re.Pattern[str] | None:
        try:
            return re.compile(pattern)
        except (re.error, RecursionError, OverflowError) as exc:
            msg = getattr(exc, "msg", str(exc))
            pos = getattr(exc, "pos", None)
            at = f" at position {pos}" if pos is not None else ""
            self.problem(path, f"invalid regex: {msg}{at}")
            return None

    # -- conditions --

    def condition(self, node: dict[str, Any], path: PathKey, *, in_expect: bool) -> Condition:
        (kind, body), = node.items()
        here = (*path, kind)
        if kind == "all":
            return AllOf(items=tuple(self.condition(c, (*here, i), in_expect=in_expect) for i, c in enumerate(body)))
        if kind == "any":
            return AnyOf(items=tuple(self.condition(c, (*here, i), in_expect=in_expect) for i, c in enumerate(body)))
        if kind == "not":
            return NotOf(item=self.condition(body, here, in_expect=in_expect))
        leaf: Condition = getattr(self, f"leaf_{kind}")(body, here, in_expect)
        return leaf

    def leaf_log(self, body: dict[str, Any], path: PathKey, in_expect: bool) -> LogCondition:
        compiled = self.regex((*path, "pattern"), body["pattern"])
        at_least, at_most = _int(body.get("at_least")), _int(body.get("at_most"))
        if at_least is not None and at_most is not None:
            self.problem((*path, "at_most"), "use at_least or at_most, not both", key=True)
        if at_least is None and at_most is None:
            if in_expect:
                at_most = 0
            else:
                at_least = 1
        group_by = tuple(body.get("group_by", ()))
        if compiled is not None:
            for i, name in enumerate(group_by):
                if name not in compiled.groupindex:
                    known = ", ".join(compiled.groupindex) or "none"
                    self.problem(
                        (*path, "group_by", i),
                        f"group_by '{name}' is not a named group of the pattern (named groups: {known})",
                    )
        within_text = body.get("within")
        if within_text is not None:
            within: float | None = self.duration((*path, "within"), within_text, DEFAULT_WITHIN)
        else:
            within = None if in_expect else DEFAULT_WITHIN
        return LogCondition(
            source=body["source"],
            pattern=body["pattern"],
            at_least=at_least,
            at_most=at_most,
            within=within,
            group_by=group_by,
            at=self.where(path),
        )

    def leaf_metric(self, body: dict[str, Any], path: PathKey, in_expect: bool) -> MetricCondition:
        above, below = body.get("above"), body.get("below")
        if above is None and below is None:
            self.problem(path, "expected exactly one of above, below; got neither")
        elif above is not None and below is not None:
            self.problem((*path, "below"), "expected exactly one of above, below; got both", key=True)
        return MetricCondition(
            name=body["name"],
            above=above,
            below=below,
            for_s=self.duration((*path, "for"), body.get("for"), 0.0),
            at=self.where(path),
        )

    def leaf_probe(self, body: dict[str, Any], path: PathKey, in_expect: bool) -> ProbeCondition:
        latency = body.get("latency_ms", {})
        if "status" not in body and not latency:
            self.problem(path, "a probe condition needs status, latency_ms or both")
        above, below = latency.get("above"), latency.get("below")
        if above is not None and below is not None and below <= above:
            self.problem((*path, "latency_ms"), f"below ({below}) must be greater than above ({above})")
        return ProbeCondition(
            name=body["name"],
            status=body.get("status"),
            latency_above_ms=above,
            latency_below_ms=below,
            for_s=self.duration((*path, "for"), body.get("for"), 0.0),
            at=self.where(path),
        )

    def leaf_container(self, body: dict[str, Any], path: PathKey, in_expect: bool) -> ContainerCondition:
        restarts = body.get("restarts")
        if ("state" in body) == (restarts is not None):
            got = "both" if restarts is not None else "neither"
            self.problem(path, f"expected exactly one of state, restarts; got {got}")
        return ContainerCondition(
            name=body["name"],
            state=body.get("state"),
            restarts_at_least=_int(restarts["at_least"]) if restarts else None,
            restarts_within=self.duration((*path, "restarts", "within"), restarts.get("within"), 600.0)
            if restarts
            else None,
            at=self.where(path),
        )

    # -- actions --

    def action(self, node: dict[str, Any], path: PathKey) -> Action | None:
        (kind, body), = node.items()
        here = (*path, kind)
        if path[0] == "on_rollback" and kind in _FILE_ACTION_KEYS:
            self.problem(here, f"on_rollback runs after the fix's files are restored, so a '{kind}' there has nothing"
                         " to do; use restart, stop, exec or notify", key=True)
        if "file" in body:
            problem = relative_problem(body["file"])
            if problem:
                self.problem((*here, "file"), problem)
        action: Action = getattr(self, f"action_{kind}")(body, here)
        return action

    def action_adjust(self, body: dict[str, Any], path: PathKey) -> Adjust:
        if "key" in body and "regex" in body:
            self.problem((*path, "regex"), "expected exactly one of key, regex; got both", key=True)
        elif "key" not in body and "regex" not in body:
            self.problem(path, "expected exactly one of key, regex (what to change); got neither")
        ops = [op for op in ("multiply", "add", "set") if op in body]
        if not ops:
            self.problem(path, "expected exactly one of multiply, add, set (how to change it); got none")
        elif len(ops) > 1:
            self.problem((*path, ops[1]), f"expected exactly one of multiply, add, set; got {', '.join(ops)}", key=True)
        if "regex" in body:
            compiled = self.regex((*path, "regex"), body["regex"])
            if compiled is not None and "value" not in compiled.groupindex:
                self.problem((*path, "regex"), "the regex needs a named group 'value' around the number, e.g. sleep\\((?P<value>[0-9.]+)\\)")
        lo, hi = body.get("min"), body.get("max")
        if lo is not None and hi is not None and lo > hi:
            self.problem((*path, "min"), f"min ({lo:g}) is greater than max ({hi:g})")
        if "multiply" in body and body["multiply"] <= 0:
            self.problem((*path, "multiply"), "multiply must be greater than 0")
        op = ops[0] if ops else "set"
        return Adjust(
            file=body["file"],
            key=body.get("key"),
            regex=body.get("regex"),
            op=op,
            amount=float(body.get(op, 0)),
            minimum=lo,
            maximum=hi,
            round_to=_int(body.get("round")),
            at=self.where(path),
        )

    def action_set(self, body: dict[str, Any], path: PathKey) -> SetValue:
        return SetValue(file=body["file"], key=body["key"], value=body["value"], at=self.where(path))

    def action_replace(self, body: dict[str, Any], path: PathKey) -> Replace:
        self.regex((*path, "regex"), body["regex"])
        return Replace(file=body["file"], regex=body["regex"], with_=body["with"], at=self.where(path))

    def action_restart(self, body: dict[str, Any], path: PathKey) -> Restart:
        process = body.get("process")
        if process:
            problem = relative_problem(process["pidfile"]) if not process["pidfile"].startswith("/") else None
            if problem:
                self.problem((*path, "process", "pidfile"), problem)
            return Restart(pidfile=process["pidfile"], signal=process.get("signal", "SIGTERM"), at=self.where(path))
        return Restart(container=body["container"], at=self.where(path))

    def action_exec(self, body: dict[str, Any], path: PathKey) -> Exec:
        return Exec(
            argv=tuple(body["argv"]),
            timeout=self.duration((*path, "timeout"), body.get("timeout"), 30.0),
            at=self.where(path),
        )

    def action_restore(self, body: dict[str, Any], path: PathKey) -> Restore:
        return Restore(file=body["file"], at=self.where(path))

    def action_stop(self, body: dict[str, Any], path: PathKey) -> Stop:
        return Stop(container=body["container"], timeout=self.duration((*path, "timeout"), body.get("timeout"), 10.0),
                    at=self.where(path))

    def action_notify(self, body: dict[str, Any], path: PathKey) -> Notify:
        return Notify(webhook=body["webhook"], at=self.where(path))

    def window(self, v: Mapping[str, Any]) -> tuple[float, float]:
        window = self.duration(("validate", "window"), v["window"], 60.0)
        settle = self.duration(("validate", "settle"), v.get("settle"), 0.0)
        if settle >= window:
            self.problem(("validate", "settle"), f"settle ({v.get('settle')}) must be shorter than the window ({v['window']})")
        return window, settle

    # -- the parts of a document the schema accepted --

    def check(self, broken: Iterable[PathKey]) -> None:
        """Run the semantic checks on every part without a schema problem, so one load reports everything."""
        self.broken = tuple(broken)
        data = self.doc.data
        self._walk(data.get("when"), ("when",), in_expect=False)
        for key in ("fix", "on_rollback"):
            items = data.get(key)
            for i, node in enumerate(items if isinstance(items, list) else ()):
                if isinstance(node, dict) and len(node) == 1 and self._clean((key, i, *node)):
                    self.action(node, (key, i))
        v = data.get("validate")
        if isinstance(v, dict):
            expect = v.get("expect")
            for i, node in enumerate(expect if isinstance(expect, list) else ()):
                self._walk(node, ("validate", "expect", i), in_expect=True)
            if "window" in v and self._clean(("validate", "window")) and self._clean(("validate", "settle")):
                self.window(v)

    def _clean(self, path: PathKey) -> bool:
        return not any(b[: len(path)] == path for b in self.broken)

    def _walk(self, node: Any, path: PathKey, *, in_expect: bool) -> None:
        if not isinstance(node, dict) or len(node) != 1:
            return
        ((kind, body),) = node.items()
        here = (*path, kind)
        if kind in ("all", "any") and isinstance(body, list):
            for i, item in enumerate(body):
                self._walk(item, (*here, i), in_expect=in_expect)
        elif kind == "not":
            self._walk(body, here, in_expect=in_expect)
        elif self._clean(here):
            self.condition(node, path, in_expect=in_expect)

    # -- the playbook --

    def playbook(self) -> Playbook:
        data = self.doc.data
        when = self.condition(data["when"], ("when",), in_expect=False)
        fix = tuple(self.action(a, ("fix", i)) for i, a in enumerate(data["fix"]))
        on_rollback = tuple(self.action(a, ("on_rollback", i)) for i, a in enumerate(data.get("on_rollback", [])))
        v = data["validate"]
        window, settle = self.window(v)
        expect = tuple(self.condition(c, ("validate", "expect", i), in_expect=True) for i, c in enumerate(v["expect"]))
        learning = data.get("learning")
        examples = data.get("examples", {})
        return Playbook(
            id=data["id"],
            description=data.get("description", ""),
            severity=data.get("severity", "warning"),
            tags=tuple(data.get("tags", ())),
            when=when,
            confidence=float(data["confidence"]),
            fix=tuple(a for a in fix if a is not None),
            on_rollback=tuple(a for a in on_rollback if a is not None),
            validate=Validate(window=window, settle=settle, expect=expect),
            cooldown=self.duration(("cooldown",), data.get("cooldown"), 600.0),
            max_attempts=int(data.get("max_attempts", 3)),
            mode=data.get("mode", "auto"),
            on_inconclusive=data.get("on_inconclusive", "rollback"),
            learning=Learning(
                model=learning.get("model", "beta"), prior_weight=float(learning.get("prior_weight", 10))
            )
            if learning
            else None,
            examples=Examples(
                fires=tuple(examples.get("fires", ())),
                ignores=tuple(examples.get("ignores", ())),
                fire_lines=tuple(self.doc.mark(("examples", "fires", i)).line for i in range(len(examples.get("fires", ())))),
                ignore_lines=tuple(
                    self.doc.mark(("examples", "ignores", i)).line for i in range(len(examples.get("ignores", ())))
                ),
            ),
            file=self.doc.file,
            digest=self.digest,
        )


def build_playbook(doc: Document, digest: str = "") -> Playbook:
    """Schema-check and build one playbook; DocumentError lists every problem."""
    if not isinstance(doc.data, dict):
        got = {list: "a list", str: "a single string", type(None): "null"}.get(type(doc.data), type(doc.data).__name__)
        raise DocumentError(
            [doc.problem((), f"a playbook must be a mapping with id:, when:, confidence:, fix: and validate:, got {got}")]
        )
    problems = schema_problems(doc, "playbook")
    builder = _Builder(doc, digest)
    if problems:
        builder.check(_parse_path(p.path) for p in problems)
        raise DocumentError(sorted([*problems, *builder.problems], key=lambda p: (p.line, p.column)))
    playbook = builder.playbook()
    if builder.problems:
        raise DocumentError(builder.problems)
    return playbook


def parse_playbook(raw: bytes | str, file: str) -> Playbook:
    data = raw.encode() if isinstance(raw, str) else raw
    return build_playbook(read_document(data, file), hashlib.sha256(data).hexdigest())


@dataclass(frozen=True, slots=True)
class PlaybookSet:
    """The result of loading a folder: what loaded, and every problem found."""

    playbooks: tuple[Playbook, ...]
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def version(self) -> str:
        h = hashlib.sha256()
        for pb in sorted(self.playbooks, key=lambda p: p.id):
            h.update(f"{pb.id}:{pb.digest}\n".encode())
        return h.hexdigest()[:12]


def playbook_files(paths: Iterable[Path]) -> list[Path]:
    """YAML files named directly or found (not recursively) in folders, sorted; hidden files skipped."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(
                sorted(
                    p for p in path.iterdir()
                    if p.suffix in PLAYBOOK_SUFFIXES and not p.name.startswith(".") and p.is_file()
                )
            )
        else:
            out.append(path)
    return out


def display_name(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_playbooks(paths: Sequence[Path], config: Config | None = None) -> PlaybookSet:
    """Load every playbook; check ids are unique and references exist in ``config``.

    ``playbooks`` holds only the playbooks without problems (of two with one id, the first file's);
    ``problems`` holds every problem of every file.
    """
    loaded: list[tuple[Playbook, Document]] = []
    problems: list[Problem] = []
    for path in playbook_files(paths):
        name = display_name(path)
        try:
            raw = path.read_bytes()
            doc = read_document(raw, name)
            loaded.append((build_playbook(doc, hashlib.sha256(raw).hexdigest()), doc))
        except OSError as exc:
            problems.append(Problem(file=name, line=0, column=0, path="", message=f"cannot read: {exc.strerror}"))
        except DocumentError as exc:
            problems.extend(exc.problems)
    set_problems = check_set(loaded, config)
    problems.extend(set_problems)
    # A playbook with a set-level problem (a second use of an id, an unknown source or probe, a refused
    # path) is left out too: only playbooks without any problem are returned to be run.
    refused = {p.file for p in set_problems}
    good = tuple(pb for pb, doc in loaded if doc.file not in refused)
    return PlaybookSet(playbooks=good, problems=tuple(problems))


def check_set(loaded: Sequence[tuple[Playbook, Document]], config: Config | None) -> list[Problem]:
    """Problems that need the whole set or the config: duplicate ids, unknown names, paths."""
    problems: list[Problem] = []
    first: dict[str, Document] = {}
    for pb, doc in loaded:
        if pb.id in first:
            other = first[pb.id]
            line = other.mark(("id",)).line
            problems.append(doc.problem(("id",), f"duplicate playbook id '{pb.id}' (also in {other.file}:{line})"))
        else:
            first[pb.id] = doc
    if config is None:
        return problems
    for pb, doc in loaded:
        problems.extend(_check_refs(pb, doc, config))
    return problems


def _check_refs(pb: Playbook, doc: Document, config: Config) -> list[Problem]:
    problems: list[Problem] = []
    conditions = [pb.when, *pb.validate.expect]
    for cond in conditions:
        for leaf in leaves(cond):
            at = _path_of(leaf.at)
            if isinstance(leaf, LogCondition) and leaf.source not in config.sources:
                message = _unknown("source", leaf.source, config.sources, config)
                problems.append(doc.problem((*at, "source"), message))
            if isinstance(leaf, ProbeCondition) and leaf.name not in config.probes:
                message = _unknown("probe", leaf.name, config.probes, config)
                problems.append(doc.problem((*at, "name"), message))
    for action in (*pb.fix, *pb.on_rollback):
        problem = _confinement_problem(action, config)
        if problem is not None:
            field, message = problem
            problems.append(doc.problem((*_path_of(action.at), *field), message))
    return problems


def _confinement_problem(action: Action, config: Config) -> tuple[PathKey, str] | None:
    """(the field at fault, why) when ``action`` reaches outside what the config allows (engine.confine)."""
    if isinstance(action, FILE_ACTIONS):
        try:
            resolve_target(config.target_root, config.allowed_paths, action.file)
        except PathRefused as exc:
            return ("file",), str(exc)
        return None
    if isinstance(action, (Restart, Stop)) and action.container is not None:
        message = container_problem(config, action.container)
        return (("container",), message) if message else None
    if isinstance(action, Exec):
        try:
            resolve_command(config, action.argv[0])
        except Refused as exc:
            return ("argv", 0), str(exc)
        return None
    if isinstance(action, Notify):
        message = webhook_problem(config, action.webhook)
        return (("webhook",), message) if message else None
    return None


def _unknown(what: str, name: str, known: Mapping[str, object], config: Config) -> str:
    hint = difflib.get_close_matches(name, list(known), n=1)
    mean = f"did you mean '{hint[0]}'? " if hint else ""
    names = ", ".join(sorted(known)) or "none"
    return f"unknown {what} '{name}' ({mean}{what}s in {config.file.name}: {names})"


def _int(value: Any) -> int | None:
    """The schema's integers may be written 5.0; the model holds ints."""
    return None if value is None else int(value)


_FILE_ACTION_KEYS = ("adjust", "set", "replace", "restore")
_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _path_of(where: Where) -> PathKey:
    """Back from ``when.all[0].log`` to ``("when", "all", 0, "log")``."""
    return _parse_path(where.path)


def _parse_path(text: str) -> PathKey:
    return tuple(int(i) if i else name for name, i in _PART.findall(text))
