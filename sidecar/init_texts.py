"""The texts `suture init` writes, built by pure functions from its decisions (a Setup).

    suture.yaml   target_root, allowed_paths (the app config's folder or the file), the log
                  source, a probe if a URL was given, allowed_commands for a restart command
    playbooks/    two starters:
      error-burst   the app says its config is broken, or logs a burst of errors
                    -> restore the config's last good version (then restart, if init knows how)
      app-down      the health probe fails (if there is one), or the app crashes again and again
                    -> restart it (container or restart command), else restore the config
    next          the check, replay and run commands, as the user types them

Both playbooks are written in ``mode: shadow``: suture records what it would
have done and changes nothing until a person promotes them. Every action they
use is one the generated suture.yaml allows: the config file is under
``allowed_paths``, a container followed by the source is allowed implicitly,
and a restart command is listed in ``allowed_commands``. Each carries an
``examples:`` block that ``suture check --run-examples`` passes.

Text that came from the user (a path, a file name in a regex, a container
name, a command) is quoted by :func:`yaml_str` or :func:`shlex.quote`, never
pasted in bare.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import textwrap
from dataclasses import dataclass
from pathlib import Path

from suture.engine.documents import schema_dir
from suture.engine.edits import format_of

GLOB_CHARS = re.compile(r"[*?\[]")
SHELL_SAFE = re.compile(r"^[\w@%+=:,./*?-]+$")  # a glob the shell may expand as written
SOURCE = "app"  # the names the bundled playbooks use, so they can be copied in with few edits
PROBE = "api"

# A burst of error-level lines: "ERROR", "CRITICAL", "FATAL" as words (not ERROR_PAGE),
# level=error / "level": "error" (logfmt, JSON), and nginx/Apache's [error] / [crit].
BURST = (r'\b(?:ERROR|CRITICAL|FATAL)\b|\blevel"?\s?[=:]\s?"?(?:error|critical|fatal)\b'
         r'|\[(?:error|crit|alert|emerg)\]')

# A process dying: a Python traceback header, a Go panic, a JVM thread's uncaught exception,
# Node's uncaught errors, a segfault. Not a "Traceback" word in a message, not "don't panic".
CRASH = (r'Traceback \(most recent call last\):|^panic: |\bpanic: runtime error\b|\bgoroutine \d+ \[running\]:'
         r'|\bException in thread "|\bUncaught (?:exception|\w*Error)\b|\bUnhandledPromiseRejection'
         r'|\bSegmentation fault\b|\bSIGSEGV\b')

# The parser errors each format's usual library raises (a line that names the file is added to them).
PARSER_ERRORS = {
    "yaml": r"\byaml\.(?:scanner|parser|composer|constructor)\.\w+Error\b",
    "json": r"\bjson\.decoder\.JSONDecodeError\b",
    "toml": r"\b(?:tomllib|tomli)\.TOMLDecodeError\b|\btoml\.decoder\.TomlDecodeError\b",
    "ini": r"\bconfigparser\.\w+Error\b",
    "env": r"\bPython-dotenv could not parse statement\b",
}
PARSER_EXAMPLES = {
    "yaml": "yaml.scanner.ScannerError: mapping values are not allowed here",
    "json": "json.decoder.JSONDecodeError: Expecting ',' delimiter: line 12 column 5 (char 301)",
    "toml": "tomllib.TOMLDecodeError: Expected '=' after a key in a key/value pair (at line 3, column 9)",
    "ini": "configparser.MissingSectionHeaderError: File contains no section headers.",
    "env": "Python-dotenv could not parse statement starting at line 3",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Starter:
    """What the starter playbooks need to know about the app."""

    config_file: str  # the app's config, relative to target_root (as a playbook names it)
    config_format: str  # yaml | json | toml | ini | env | text (engine.edits.format_of)
    probe: bool  # a health probe named PROBE exists
    container: str | None = None  # the source follows this container: restart it
    restart_argv: tuple[str, ...] = ()  # else this program (in allowed_commands) restarts the app
    modeline: str | None = None  # "# yaml-language-server: $schema=..." or None


def yaml_str(text: str) -> str:
    """``text`` as a YAML scalar that reads back as exactly that string (single quotes where they suffice)."""
    if text.isprintable():  # single quotes hold any printable text; only ' itself is doubled
        return "'" + text.replace("'", "''") + "'"
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def config_errors_pattern(s: Starter) -> str:
    """Lines saying the config is broken: its parser's errors, "invalid config", a line naming the file."""
    name = re.escape(s.config_file.rsplit("/", 1)[-1])
    parts = [PARSER_ERRORS[s.config_format]] if s.config_format in PARSER_ERRORS else []
    parts.append(r"(?i:\binvalid (?:configuration|config|settings)\b)")
    parts.append(f"{name}.*(?i:\\b(?:error|invalid|failed|cannot|could not)\\b)")
    return "|".join(parts)


def _restart(s: Starter) -> list[str]:
    """The YAML lines of the action that restarts the app, if init knows one."""
    if s.container:
        return [f"restart: {{ container: {yaml_str(s.container)} }}"]
    if s.restart_argv:
        argv = ", ".join(yaml_str(a) for a in s.restart_argv)
        return [f"exec: {{ argv: [{argv}], timeout: 1m }}"]
    return []


def _items(lines: list[str], indent: int) -> str:
    pad = " " * indent
    return "".join(f"{pad}- {line}\n" for line in lines)


def _comment(text: str) -> str:
    """``text`` as comment lines of at most 90 characters."""
    return "\n".join(f"# {line}" for line in textwrap.wrap(text, 88))


def _head(s: Starter, comment: str) -> str:
    return (f"{s.modeline}\n" if s.modeline else "") + comment


def error_burst(s: Starter) -> str:
    """The starter that restores the config when the app says it is broken or errors pile up."""
    cfg = yaml_str(s.config_file)
    broken = yaml_str(config_errors_pattern(s))
    burst = yaml_str(BURST)
    fix = [f"restore: {{ file: {cfg} }}   # the last good version: what a validated fix left, else the newest backup",
           *(f"{a}   # so the app reads the restored file now" for a in _restart(s))]
    undo = _restart(s)
    on_rollback = (f"\n# the fix's files were put back: let the app read them again\non_rollback:\n{_items(undo, 2)}"
                   if undo else "")
    probe = f"    - probe: {{ name: {PROBE}, status: healthy }}\n" if s.probe else ""
    name = s.config_file.rsplit("/", 1)[-1]
    parser_line = PARSER_EXAMPLES.get(s.config_format)
    fires = [
        *([parser_line] if parser_line else []),
        f"2026-11-25T10:00:01Z CRITICAL failed to load {name}: invalid value on line 3",
        "2026-11-25T10:00:02Z ERROR could not process order 42: upstream refused the connection",
        '{"time": "2026-11-25T10:00:03Z", "level": "error", "msg": "payment failed"}',
    ]
    ignores = [
        f"2026-11-25T10:00:01Z INFO loaded {name} (12 keys)",
        "2026-11-25T10:00:02Z INFO processed 12 orders, 0 errors",
        "2026-11-25T10:00:03Z WARNING slow answer from upstream (2.1s)",
        "2026-11-25T10:00:04Z DEBUG ERROR_PAGE=/500.html error_count=0",
    ]
    return _head(s, f"""\
# Starter playbook written by `suture init`: the app's config broke, or errors pile up.
#
# It fires on a line saying the config is broken (its parser's errors, a line naming
# {name} with an error word) or on a burst of error-level lines, and would put back
# the last good version of {s.config_file}: what a validated fix left there, else the
# newest backup (until suture has one, the history says "no good version is known yet").
#
# mode: shadow records what it would do and changes nothing. Watch `suture history`
# for a week; if the firings are right, set `mode: ask` (a person approves each fix
# with `suture approve FIX_ID`) and later `mode: auto`. Tune the burst's at_least to
# your app's normal error rate first.
""") + f"""id: error-burst
description: The config fails to load, or errors pile up; restore the config's last good version.
severity: warning
tags: [starter, configuration]

when:
  any:
    - log:                           # the app says its config is broken: once is enough
        source: {SOURCE}
        pattern: {broken}
        at_least: 1
        within: 1m
    - log:                           # or a burst of errors
        source: {SOURCE}
        pattern: {burst}
        at_least: 10
        within: 1m

confidence: 70                       # below the threshold (85): once promoted, proposed until history says it helps

fix:
{_items(fix, 2)}{on_rollback}
validate:
  window: 2m
  settle: 20s
  expect:
    - log: {{ source: {SOURCE}, pattern: {broken}, at_most: 0 }}
    - log: {{ source: {SOURCE}, pattern: {burst}, at_most: 5 }}
{probe}
cooldown: 10m
max_attempts: 2
mode: shadow                         # record only; see above to promote it
on_inconclusive: keep                # a quiet window is no reason to put the broken file back

examples:
  fires:
{_items([yaml_str(x) for x in fires], 4)}  ignores:
{_items([yaml_str(x) for x in ignores], 4)}"""


def app_down(s: Starter) -> str:
    """The starter that restarts the app (or restores its config) when it is down or keeps crashing."""
    crash = yaml_str(CRASH)
    restart = _restart(s)
    fix = restart or [f"restore: {{ file: {yaml_str(s.config_file)} }}   # no way to restart the app is known:"
                      " a crash after a config change is the config's"]
    cure = "restart the app" if restart else f"restore {s.config_file}"
    probe_when = (f"    - probe: {{ name: {PROBE}, status: unhealthy, for: 1m }}   # the health URL fails for a minute\n"
                  if s.probe else "")
    probe_expect = f"    - probe: {{ name: {PROBE}, status: healthy }}\n" if s.probe else ""
    how = (f"restart the container {s.container}." if s.container else "run the restart command." if s.restart_argv
           else f"restore {s.config_file}. init knew no way to restart the app: add a `restart:` or an `exec:` that"
           " does, and list an exec's program in allowed_commands of suture.yaml.")
    when = "the health probe fails for a minute, or when " if s.probe else ""
    about = _comment(f"It fires when {when}the log shows three crashes (a traceback, a panic, an uncaught exception,"
                     f" a segfault) within five minutes, and would {how}")
    fires = [
        "Traceback (most recent call last):",
        "panic: runtime error: invalid memory address or nil pointer dereference",
        'Exception in thread "main" java.lang.OutOfMemoryError: Java heap space',
        "2026-11-25T10:00:01Z node: Uncaught TypeError: Cannot read properties of undefined",
        "Segmentation fault (core dumped)",
    ]
    ignores = [
        '  File "/app/server.py", line 88, in handle',
        "2026-11-25T10:00:01Z INFO started worker 3",
        "2026-11-25T10:00:02Z INFO no panic: queue drained",
        "2026-11-25T10:00:03Z WARNING retrying after a timeout (attempt 2 of 3)",
    ]
    return _head(s, f"""\
# Starter playbook written by `suture init`: the app is down or keeps crashing.
#
{about}
#
# mode: shadow records what it would do and changes nothing; promote it to `ask`, then
# `auto`, once its firings in `suture history` look right.
""") + f"""id: app-down
description: The app is down or crashes again and again; {cure}.
severity: critical
tags: [starter, crash]

when:
  any:
{probe_when}    - log:
        source: {SOURCE}
        pattern: {crash}
        at_least: 3
        within: 5m

confidence: 60                       # a restart costs in-flight work: proposed until history says it helps

fix:
{_items(fix, 2)}
validate:
  window: 5m
  settle: 30s                        # the app starts again
  expect:
    - log: {{ source: {SOURCE}, pattern: {crash}, at_most: 0 }}
{probe_expect}
cooldown: 15m
max_attempts: 2
mode: shadow                         # record only
on_inconclusive: keep                # a restart cannot be undone; a quiet window is the hoped-for outcome

examples:
  fires:
{_items([yaml_str(x) for x in fires], 4)}  ignores:
{_items([yaml_str(x) for x in ignores], 4)}"""


def starter_playbooks(s: Starter) -> dict[str, str]:
    """File name -> text of each starter playbook."""
    return {"error-burst.yaml": error_burst(s), "app-down.yaml": app_down(s)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Setup:
    """Every decision init made, in absolute paths."""

    config_file: Path  # the suture.yaml to write
    target_root: Path
    app_config: Path
    allowed: Path  # the folder (or the file) fixes may write
    log: str | None  # an absolute path or glob
    log_matches: tuple[str, ...]
    container: str | None
    url: str | None
    restart_argv: tuple[str, ...]
    port: int

    @property
    def base(self) -> Path:
        return self.config_file.parent

    @property
    def playbooks(self) -> Path:
        return self.base / "playbooks"


# --- suture.yaml and the next commands --------------------------------------------------


def rel(path: Path | str, base: Path, *, dot: bool = True) -> str:
    """``path`` relative to ``base`` when under it (./x, or . for base itself), else absolute."""
    p = Path(path)
    if not p.is_relative_to(base):
        return str(p)
    inside = p.relative_to(base).as_posix()
    return "." if inside == "." else (f"./{inside}" if dot else inside)


def modeline(folder: Path, schema: str) -> str | None:
    """The yaml-language-server comment for a file in ``folder``, if the installed schema can be reached from it."""
    try:
        target = schema_dir() / f"{schema}.schema.json"
    except FileNotFoundError:
        return None
    path = os.path.relpath(target, folder)
    # read textually, as editors do (the folder may not exist yet when the text is built)
    return f"# yaml-language-server: $schema={path}" if Path(os.path.normpath(folder / path)).is_file() else None


def allowed_entry(s: Setup) -> str:
    """The allowed_paths entry: the config file, or its folder with a trailing / (or . for target_root)."""
    entry = s.allowed.relative_to(s.target_root).as_posix()
    return entry if s.allowed == s.app_config or entry == "." else f"{entry}/"


def render_config(s: Setup) -> str:
    """The text of suture.yaml."""
    allowed = allowed_entry(s)
    what = "the config file" if s.allowed == s.app_config else "the folder of the config file"
    source = (f"{{ container: {yaml_str(s.container)} }}   # fixes may restart the container a source follows"
              if s.container else f"{{ file: {yaml_str(rel(s.log or '', s.base))} }}")
    lines = [
        *filter(None, [modeline(s.base, "config")]),
        "# suture's config, written by `suture init`. Relative paths are relative to this file.",
        "# Fixes may write only what allowed_paths names (under target_root, after resolving links);",
        "# the starter playbooks in playbooks/ are in mode: shadow, so nothing changes until you promote them.",
        f"target_root: {yaml_str(rel(s.target_root, s.base, dot=False))}",
        f"allowed_paths: [{yaml_str(allowed)}]   # {what}: the only place fixes may change",
        "playbooks: ./playbooks",
        "state_dir: ./.suture                   # history (DuckDB), backups, read positions",
        "threshold: 85                          # a fix in mode auto is applied at this adjusted confidence or more",
        "sources:",
        f"  {SOURCE}: {source}",
    ]
    if s.url:
        lines += ["probes:", f"  {PROBE}: {{ http: {yaml_str(s.url)}, interval: 10s, timeout: 2s }}"]
    if s.restart_argv:
        lines.append(f"allowed_commands: [{yaml_str(s.restart_argv[0])}]   # the program that restarts the app")
    lines.append(f"api: {{ listen: '127.0.0.1:{s.port}', token_env: SUTURE_TOKEN }}   # changes through the API"
                 " need $SUTURE_TOKEN")
    return "\n".join(lines) + "\n"


def texts(s: Setup) -> dict[Path, str]:
    """Every file init writes, with its text."""
    starter = Starter(config_file=s.app_config.relative_to(s.target_root).as_posix(),
                      config_format=format_of(s.app_config.name), probe=s.url is not None, container=s.container,
                      restart_argv=s.restart_argv, modeline=modeline(s.playbooks, "playbook"))
    out = {s.config_file: render_config(s)}
    out.update({s.playbooks / name: text for name, text in starter_playbooks(starter).items()})
    return out


def _replay_arg(s: Setup, cwd: Path) -> str:
    """The log as the shell should get it: a plain glob unquoted (the shell expands it), a path quoted."""
    shown = rel(s.log or "", cwd, dot=False)
    if not GLOB_CHARS.search(shown):
        return shlex.quote(shown)
    if SHELL_SAFE.match(shown):
        return shown
    # a glob with characters the shell would mangle: its last match, quoted (or the glob, quoted, to say what is missing)
    return shlex.quote(rel(s.log_matches[-1], cwd, dot=False) if s.log_matches else shown)


def next_commands(s: Setup, config_arg: str, cwd: Path) -> list[str]:
    """check, replay, run: exactly as the user types them in ``cwd``."""
    cfg = f"--config {shlex.quote(config_arg)}"
    if s.container:
        saved = shlex.quote(f"{s.container}.log")
        replay = (f"docker logs --timestamps {shlex.quote(s.container)} > {saved} 2>&1 && "
                  f"suture replay {saved} --source {SOURCE} {cfg}")
    else:
        replay = f"suture replay {_replay_arg(s, cwd)} {cfg}"
    # a log cannot show the probe: take app-down's "probe unhealthy" as not holding, so only its log alternative fires
    return [f"suture check --run-examples {cfg}", replay, f"suture run {cfg}"]
