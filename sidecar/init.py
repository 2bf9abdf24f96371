"""`suture init`: a suture.yaml and two starter playbooks for your own app.

    answers (flags; prompts at a terminal) --plan--> Setup --render--> texts
        --write (refuses to overwrite unless forced)--> files --self_check--> problems

``plan`` checks each answer (a config file that is not there, a URL that is not
http(s), a container name Docker would refuse: InitError naming it; a log
path that matches no file yet: a warning) and decides the rest:
``target_root`` is the app folder if one is given, else the common parent of
the config file and the logs (the config's folder when that parent is the
file system's top); ``allowed_paths`` is the config file's folder, or the file
alone when that folder also holds the logs or suture's own files. The texts
are built by pure functions in :mod:`.init_texts`. ``run_init`` is the
command: it asks (:func:`interview`) or reads the flags,
writes, runs the same checks as ``suture check --run-examples`` on what it
wrote, and prints the three commands to run next.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shlex
import shutil
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TypeVar
from urllib.parse import urlsplit

from suture.engine.backup import BackupStore, read_target
from suture.engine.config import load_config
from suture.engine.confine import CHILD_PATH
from suture.engine.edits import format_of
from suture.engine.errors import DocumentError, EditError, Problem, SutureError
from suture.engine.executor import new_id
from suture.engine.paths import resolve_target
from suture.engine.verify import parse_document

from .init_texts import GLOB_CHARS, Setup, allowed_entry, next_commands, rel, texts

DEFAULT_PORT = 8765
CONTAINER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")  # what allowed_containers and restart accept
SHELL_OPERATORS = frozenset({"&&", "||", ";", "|", "&", ">", ">>", "<"})
T = TypeVar("T")


class InitError(SutureError):
    """An answer init cannot use; the message names it and says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Answers:
    """What the user said, as typed (flags or prompts); paths are relative to the working folder."""

    log: str | None = None
    container: str | None = None
    app_config: str | None = None
    url: str | None = None
    app_dir: str | None = None
    restart_command: str | None = None
    port: int = DEFAULT_PORT


# --- checking each answer ---------------------------------------------------------------


def _absolute(text: str, cwd: Path) -> Path:
    path = Path(os.path.expanduser(text))
    return Path(os.path.normpath(path if path.is_absolute() else cwd / path))


def app_config_path(text: str, cwd: Path) -> Path:
    """The app's config file, absolute; InitError unless it is an existing file."""
    if not text.strip():
        raise InitError("the app's config file is needed (a YAML, JSON, TOML, INI or .env file)")
    path = _absolute(text, cwd)
    if path.is_dir():
        raise InitError(f"app config {text} is a folder; name the config file itself")
    if not path.is_file():
        raise InitError(f"app config {text} does not exist")
    return Path(os.path.realpath(path))


def log_path(text: str, cwd: Path) -> tuple[str, tuple[str, ...]]:
    """An absolute log path or glob and the files it matches now (none is allowed: the app may not have logged yet)."""
    if not text.strip():
        raise InitError("the app's log is needed: a file or a glob such as logs/*.log")
    path = _absolute(text, cwd)
    if path.is_dir():
        raise InitError(f"log {text} is a folder; give a file or a glob such as {text.rstrip('/')}/*.log")
    matches = tuple(sorted(m for m in glob.glob(str(path), recursive=True) if os.path.isfile(m)))
    return str(path), matches


def container_name(text: str) -> str:
    name = text.strip()
    if not CONTAINER_NAME.match(name):
        raise InitError(f"container {text!r} is not a container name (letters, digits, _ . -; starting with a letter"
                        " or digit)")
    return name


def probe_url(text: str) -> str | None:
    """An http(s) URL to probe, or None for an empty answer."""
    url = text.strip()
    if not url:
        return None
    if any(c.isspace() or not c.isprintable() for c in url):
        raise InitError(f"health URL {url!r} holds a space or a control character")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InitError(f"health URL {url!r} is not an http:// or https:// URL with a host")
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        raise InitError(f"health URL {url!r} has an invalid port") from None
    return url


def api_port(text: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= 65535:
        raise InitError(f"port {text!r} is not a port number (1-65535)")
    return int(text)


def restart_argv(text: str) -> tuple[str, ...]:
    """A restart command as an argv whose program is an absolute path (as allowed_commands needs), or ()."""
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise InitError(f"restart command {text!r}: {exc}") from None
    if not argv:
        return ()
    operators = sorted({a for a in argv if a in SHELL_OPERATORS})
    if operators:
        raise InitError(f"restart command {text!r}: {' '.join(operators)} would be passed to the program as text;"
                        " fixes run a program without a shell (put the steps in a script and name it)")
    program = argv[0]
    if "/" not in program:
        found = shutil.which(program, path=CHILD_PATH)
        if found is None:
            raise InitError(f"restart command: {program!r} is not found in the PATH fixes run with ({CHILD_PATH});"
                            " give its absolute path")
        program = found
    elif not program.startswith("/"):
        raise InitError(f"restart command: {program!r} is a relative path; give the program's absolute path")
    if not (os.path.isfile(program) and os.access(program, os.X_OK)):
        raise InitError(f"restart command: {program} is not an executable file")
    return (os.path.normpath(program), *argv[1:])


def app_folder(text: str, cwd: Path, app_config: Path) -> Path:
    folder = Path(os.path.realpath(_absolute(text, cwd)))
    if not folder.is_dir():
        raise InitError(f"app folder {text} is not a folder")
    if not app_config.is_relative_to(folder):
        raise InitError(f"app config {app_config} is not inside the app folder {folder}")
    return folder


# --- deciding ---------------------------------------------------------------------------


def static_folder(pattern: str) -> Path:
    """The folder of a path or glob up to its first glob character: /var/log/app/*.log -> /var/log/app."""
    parts = Path(pattern).parts
    fixed = list(parts[: next((i for i, p in enumerate(parts) if GLOB_CHARS.search(p)), len(parts))])
    folder = Path(*fixed) if fixed else Path("/")
    return folder if GLOB_CHARS.search(pattern) else folder.parent


def choose_target_root(app_config: Path, log: str | None, base: Path) -> Path:
    """The common parent of the config file and the logs (of the config and suture.yaml for a container);
    the config's folder if that parent is at the file system's top."""
    other = static_folder(log) if log else base
    folders = [app_config.parent, Path(os.path.realpath(other))]
    common = Path(os.path.commonpath(folders))
    return common if len(common.parts) >= 3 else app_config.parent


def choose_allowed(app_config: Path, target_root: Path, log: str | None, base: Path) -> Path:
    """The config's folder, or the file alone when that folder also holds the logs or suture's files."""
    folder = app_config.parent
    logs = Path(os.path.realpath(static_folder(log))) if log else None
    shared = Path(os.path.realpath(base)).is_relative_to(folder) or (logs is not None and logs.is_relative_to(folder))
    return app_config if shared or not folder.is_relative_to(target_root) else folder


def plan(answers: Answers, config_file: Path, cwd: Path) -> Setup:
    """Check every answer and decide the layout; InitError says which answer is wrong."""
    if answers.log and answers.container:
        raise InitError("give a log (--log) or a container (--container), not both")
    if not answers.log and not answers.container:
        raise InitError("the app's log is needed: --log PATH|GLOB or --container NAME")
    if answers.container and answers.restart_command:
        raise InitError("a container is restarted through Docker; --restart-command is for an app that logs to a file")
    app_config = app_config_path(answers.app_config or "", cwd)
    log, matches = log_path(answers.log, cwd) if answers.log else (None, ())
    container = container_name(answers.container) if answers.container else None
    config_file = _absolute(str(config_file), cwd)
    target_root = (app_folder(answers.app_dir, cwd, app_config) if answers.app_dir
                   else choose_target_root(app_config, log, config_file.parent))
    return Setup(
        config_file=config_file,
        target_root=target_root,
        app_config=app_config,
        allowed=choose_allowed(app_config, target_root, log, config_file.parent),
        log=log,
        log_matches=matches,
        container=container,
        url=probe_url(answers.url or ""),
        restart_argv=() if container else restart_argv(answers.restart_command or ""),
        port=api_port(str(answers.port)),
    )


# --- the command ------------------------------------------------------------------------


def write(files: dict[Path, str], *, force: bool, cwd: Path) -> None:
    """Write every file, or none: InitError naming those that exist (unless ``force``)."""
    existing = [p for p in files if p.exists()]
    if existing and not force:
        names = ", ".join(rel(p, cwd, dot=False) for p in existing)
        raise InitError(f"{names} already exist{'s' if len(existing) == 1 else ''}; nothing written"
                        " (--force overwrites)")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def self_check(config_file: Path) -> list[Problem]:
    """What `suture check --run-examples --config FILE` finds in what was written."""
    from suture.engine.loader import load_playbooks
    from suture.engine.selftest import regex_problems, run_examples

    try:
        config = load_config(config_file)
    except DocumentError as exc:
        return list(exc.problems)
    loaded = load_playbooks([config.playbooks], config)
    problems = list(loaded.problems)
    for pb in loaded.playbooks:
        problems.extend(regex_problems(pb))
        problems.extend(r.problem for r in run_examples(pb) if r.problem is not None)
    return problems


def take_baseline(config_file: Path, app_config: Path, now: float) -> str | None:
    """Back up the app's config as it is now (if it parses), so ``restore`` has a known version from the start.

    Without it a fresh install knows no good version of the file: the starters' restore could only record
    that it would act. The backup is an ordinary one (listed by `suture backups`, pruned by retention);
    returns its id, or None with the reason printed when the file does not parse as its format.
    """

    config = load_config(config_file)
    rel_path = app_config.relative_to(config.target_root).as_posix()
    real = resolve_target(config.target_root, config.allowed_paths, rel_path)
    data, st = read_target(real)
    try:
        if format_of(rel_path) != "text":
            parse_document(data.decode("utf-8"), format_of(rel_path))
    except (EditError, UnicodeDecodeError) as exc:
        print(f"suture init: no baseline backup of {rel_path}: it does not parse now ({exc}); restore will know a"
              " good version once a validated fix leaves one", file=sys.stderr)
        return None
    config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    manifest = BackupStore(config.state_dir / "backups").create(
        backup_id=new_id("b", now), created_at=now, fix_id="baseline", playbook_id="suture-init",
        confidence=0.0, reason="the baseline suture init took: the file as the app ran with it",
        files=[(rel_path, real, data, st)])
    return manifest.id


def _port_default() -> int:
    """8765 if nothing listens there now, else a free port."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", DEFAULT_PORT))
            return DEFAULT_PORT
        except OSError:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])


def _guess_log(cwd: Path) -> str:
    """The first of logs/*.log, log/*.log, *.log that matches a file here, as a glob."""
    return next((g for g in ("logs/*.log", "log/*.log", "*.log") if any(p.is_file() for p in cwd.glob(g))), "")


def _guess_config(cwd: Path) -> str:
    """The first file here that looks like the app's config."""
    for pattern in ("config/*.yaml", "config/*.yml", "config/*.toml", "config/*.json", "config/*.ini",
                    "settings.*", "config.*", ".env"):
        found = sorted(p for p in cwd.glob(pattern) if p.is_file() and format_of(p.name) != "text")
        if found:
            return found[0].relative_to(cwd).as_posix()
    return ""


def _as_typed(check: Callable[[str], object]) -> Callable[[str], str]:
    """A check that keeps the answer as typed once ``check`` accepts it."""
    def keep(text: str) -> str:
        check(text)
        return text
    return keep


def ask(question: str, default: str, check: Callable[[str], T], *, prompt: Callable[[str], str] = input,
        out: IO[str] = sys.stdout) -> T:
    """Ask until ``check`` accepts the answer (an empty answer is the default); EOF stops init."""
    while True:
        try:
            answer = prompt(f"{question}{f' [{default}]' if default else ''}: ").strip() or default
        except EOFError:
            raise InitError("stopped: no answer") from None
        try:
            return check(answer)
        except InitError as exc:
            print(f"  {exc}; try again", file=out)


def interview(given: Answers, cwd: Path, config_file: Path, *, prompt: Callable[[str], str] = input,
              out: IO[str] = sys.stdout) -> Answers:
    """Ask for every answer, the flags' values (or a guess) as defaults."""
    def where(text: str) -> str:
        if text.startswith("container:"):
            return "container:" + container_name(text.removeprefix("container:"))
        if not log_path(text, cwd)[1]:
            print(f"  note: {text} matches no file yet (fine if the app has not logged yet)", file=out)
        return text

    default_log = f"container:{given.container}" if given.container else given.log or _guess_log(cwd)
    log = ask("App log: a file or glob, or container:NAME", default_log, where, prompt=prompt, out=out)
    container = log.removeprefix("container:") if log.startswith("container:") else None
    app_config = ask("App config file (YAML, JSON, TOML, INI or .env)", given.app_config or _guess_config(cwd),
                     _as_typed(lambda t: app_config_path(t, cwd)), prompt=prompt, out=out)
    url = ask("Health URL to probe (http:// or https://; empty for none)", given.url or "",
              _as_typed(probe_url), prompt=prompt, out=out)
    restart = "" if container else ask("Command that restarts the app (empty for none)",
                                       given.restart_command or "", _as_typed(restart_argv), prompt=prompt, out=out)
    answers = replace(given, log=None if container else log, container=container, app_config=app_config,
                      url=url or None, restart_command=restart or None)
    conf = app_config_path(app_config, cwd)
    root = given.app_dir or rel(plan(replace(answers, app_dir=None), config_file, cwd).target_root, cwd, dot=False)
    app_dir = ask("App folder (target_root: the playbooks' file paths are relative to it)", root,
                  _as_typed(lambda t: app_folder(t, cwd, conf)), prompt=prompt, out=out)
    port = ask("Port for suture's API on 127.0.0.1", str(given.port), api_port, prompt=prompt, out=out)
    return replace(answers, app_dir=app_dir, port=port)


def run_init(args: argparse.Namespace) -> int:
    """`suture init`: 0 written and checked, 1 refused or the check failed, 2 an answer is wrong."""
    cwd, config_file = Path.cwd(), Path(args.config)
    given = Answers(log=args.log, container=args.container, app_config=args.app_config, url=args.url,
                    app_dir=args.app_dir, restart_command=args.restart_command,
                    port=args.port if args.port is not None else _port_default())
    interactive = not args.yes and sys.stdin.isatty()
    try:
        if interactive:
            given = interview(given, cwd, config_file)
        else:
            missing = [flag for flag, value in (("--log PATH|GLOB or --container NAME", args.log or args.container),
                                                ("--app-config FILE", args.app_config)) if not value]
            if missing:
                raise InitError(f"{' and '.join(missing)} needed: init asks only at a terminal (without --yes)")
        setup = plan(given, config_file, cwd)
    except InitError as exc:
        print(f"suture init: {exc}", file=sys.stderr)
        return 2
    if setup.log and not setup.log_matches and not interactive:  # the interview said so already
        print(f"suture init: warning: {given.log} matches no file yet; suture follows it once it appears",
              file=sys.stderr)
    files = texts(setup)
    try:
        write(files, force=args.force, cwd=cwd)
    except InitError as exc:
        print(f"suture init: {exc}", file=sys.stderr)
        return 1
    print("suture init: wrote " + ", ".join(rel(p, cwd, dot=False) for p in files))
    problems = self_check(setup.config_file)
    for problem in problems:
        print(problem.render(), file=sys.stderr)
    if problems:  # init's own files never have one (a bug if they do); other playbooks in the folder may
        print(f"suture init: `suture check` finds {len(problems)} problem(s) in {rel(setup.playbooks, cwd)}"
              " or the config (above)", file=sys.stderr)
    if not problems:
        baseline = take_baseline(setup.config_file, setup.app_config, time.time())
        if baseline:
            print(f"  baseline: backup {baseline} holds {rel(setup.app_config, cwd, dot=False)} as it is now, the"
                  " version `restore` puts back until a validated fix leaves a newer one")
    folder = "" if setup.allowed == setup.app_config else "/"
    print(f"  target_root: {rel(setup.target_root, cwd, dot=False)}; fixes may change only"
          f" {rel(setup.allowed, cwd, dot=False)}{folder} (allowed_paths: [{allowed_entry(setup)}])")
    print("  both playbooks are in mode: shadow: they record what they would do and change nothing")
    print("\nNext:")
    for line in next_commands(setup, args.config, cwd):
        print(f"  {line}")
    return 1 if problems else 0
