"""Build Playbook objects from validated documents, and load a playbook set.

The load pipeline, each step pure and tested on its own:

    read_document -> schema_problems -> build_playbook -> check_set (ids, config refs)

``load_playbooks`` runs the whole pipeline for a folder and reports every
problem of every file at once, so `suture check` and a hot reload say the
same thing. The parts of a playbook are built by ``engine.build_conditions``
and ``engine.build_actions`` (one builder per kind), on the shared
``engine.build.Builder`` that records each problem where it was written.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .build import Builder, parse_path, path_of
from .build_actions import action, confinement_problem
from .build_conditions import condition
from .config import Config
from .documents import schema_problems
from .errors import DocumentError, Problem
from .playbook import (
    Examples,
    Learning,
    LogCondition,
    Playbook,
    ProbeCondition,
    Validate,
    leaves,
)
from .yaml_document import Document, PathKey, read_document

PLAYBOOK_SUFFIXES = (".yaml", ".yml")


class _PlaybookBuilder(Builder):
    """Turns one schema-valid document into a Playbook, collecting semantic problems."""

    def __init__(self, doc: Document, digest: str) -> None:
        super().__init__(doc, digest)
        self.broken: tuple[PathKey, ...] = ()  # where the schema found problems; see check()

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
                    action(self, node, (key, i))
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
            condition(self, node, path, in_expect=in_expect)

    # -- the playbook --

    def playbook(self) -> Playbook:
        data = self.doc.data
        when = condition(self, data["when"], ("when",), in_expect=False)
        fix = tuple(action(self, a, ("fix", i)) for i, a in enumerate(data["fix"]))
        on_rollback = tuple(action(self, a, ("on_rollback", i)) for i, a in enumerate(data.get("on_rollback", [])))
        v = data["validate"]
        window, settle = self.window(v)
        expect = tuple(condition(self, c, ("validate", "expect", i), in_expect=True) for i, c in enumerate(v["expect"]))
        learning = data.get("learning")
        examples = data.get("examples", {})
        return Playbook(
            id=data["id"],
            description=data.get("description", ""),
            severity=data.get("severity", "warning"),
            tags=tuple(data.get("tags", ())),
            when=when,
            confidence=float(data["confidence"]),
            fix=fix,
            on_rollback=on_rollback,
            validate=Validate(window=window, settle=settle, expect=expect),
            cooldown=self.duration(("cooldown",), data.get("cooldown"), 600.0),
            max_attempts=int(data.get("max_attempts", 3)),
            mode=data.get("mode", "auto"),
            scope=data.get("scope", "replica"),
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
    builder = _PlaybookBuilder(doc, digest)
    if problems:
        builder.check(parse_path(p.path) for p in problems)
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
            at = path_of(leaf.at)
            if isinstance(leaf, LogCondition) and leaf.source not in config.sources:
                message = _unknown("source", leaf.source, config.sources, config)
                problems.append(doc.problem((*at, "source"), message))
            if isinstance(leaf, ProbeCondition) and leaf.at.path.endswith(".scrape"):
                scraped = leaf.name.removeprefix("scrape.")
                if scraped not in config.scrapes:
                    message = _unknown("scraped source", scraped, config.scrapes, config)
                    problems.append(doc.problem((*at, "name"), message))
            elif isinstance(leaf, ProbeCondition) and leaf.name not in config.probes:
                message = _unknown("probe", leaf.name, config.probes, config)
                problems.append(doc.problem((*at, "name"), message))
    for item in (*pb.fix, *pb.on_rollback):
        problem = confinement_problem(item, config)
        if problem is not None:
            field, message = problem
            problems.append(doc.problem((*path_of(item.at), *field), message))
    return problems


def _unknown(what: str, name: str, known: Mapping[str, object], config: Config) -> str:
    hint = difflib.get_close_matches(name, list(known), n=1)
    mean = f"did you mean '{hint[0]}'? " if hint else ""
    names = ", ".join(sorted(known)) or "none"
    return f"unknown {what} '{name}' ({mean}{what}s in {config.file.name}: {names})"
