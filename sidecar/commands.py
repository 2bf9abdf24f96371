"""The commands that start, check and set up a sidecar: ``run``, ``check``, ``init``, ``replay``, ``demo``.

Each takes the parsed arguments (:mod:`.cli` builds the parser) and returns the exit code:
0 ok, 1 the command's check failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from suture.engine.config import Config, load_config
from suture.engine.errors import DocumentError, Problem
from suture.engine.loader import load_playbooks
from suture.engine.playbook import Playbook
from suture.engine.selftest import ExampleResult, regex_problems, run_examples

DEFAULT_CONFIG = "suture.yaml"


def config_of(args: argparse.Namespace) -> Config:
    """The config ``--config`` names (DocumentError with every problem if it does not load)."""
    return load_config(Path(args.config))


def _print_problems(problems: Sequence[Problem], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"ok": not problems, "problems": [p.as_dict() for p in problems]}, indent=2))
    else:
        for p in problems:
            print(p.render(), file=sys.stderr)


def _fewer_malloc_arenas() -> None:
    """glibc gives each thread its own malloc arena; two are plenty for a sidecar (a few MB less RSS)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX


def cmd_run(args: argparse.Namespace) -> int:
    _fewer_malloc_arenas()
    from .runtime import Sidecar
    from .transport import serve

    config = config_of(args)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        logging.getLogger("suture").info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sidecar = Sidecar(config, stop=stop)
    server = serve(sidecar) if config.api.enabled else None
    try:
        return sidecar.run()
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def _pattern_engines(playbooks: Sequence[Playbook]) -> list[dict[str, str]]:
    """Which matching engine runs each log pattern (hyperscan, or `re` and why)."""
    from suture.engine.playbook import LogCondition, leaves

    from .matching import PatternSet

    rows = []
    for pb in playbooks:
        conds = [leaf for c in (pb.when, *pb.validate.expect) for leaf in leaves(c) if isinstance(leaf, LogCondition)]
        engines = PatternSet(conds).engines()
        for leaf in conds:
            rows.append({"playbook": pb.id, "file": leaf.at.file, "line": str(leaf.at.line), "path": leaf.at.path,
                         "pattern": leaf.pattern, "engine": engines.get(leaf.signal, "hyperscan")})
    return rows


def cmd_check(args: argparse.Namespace) -> int:
    config: Config | None = None
    problems: list[Problem] = []
    config_path = Path(args.config)
    if config_path.exists() or args.config != DEFAULT_CONFIG:
        try:
            config = load_config(config_path)
        except DocumentError as exc:
            problems.extend(exc.problems)
    paths = [Path(p) for p in args.paths] or ([config.playbooks] if config else [])
    if not paths and not problems:
        print("suture check: name playbook files or folders, or a --config that names them", file=sys.stderr)
        return 2
    # A config that did not load is the problem to show (a newcomer's first typo), not a usage error:
    # its problems are reported with whatever playbooks were named, and the exit is 1.
    result = load_playbooks(paths, config)
    problems.extend(result.problems)
    for pb in result.playbooks:
        problems.extend(regex_problems(pb))
    examples: list[ExampleResult] = []
    if args.run_examples:
        for pb in result.playbooks:
            examples.extend(run_examples(pb))
        problems.extend(r.problem for r in examples if r.problem is not None)
    problems.sort(key=lambda p: (p.file, p.line, p.column))
    engines = _pattern_engines(result.playbooks)
    if args.json:
        print(json.dumps({"ok": not problems, "problems": [p.as_dict() for p in problems], "patterns": engines},
                         indent=2))
        return 1 if problems else 0
    _print_problems(problems, as_json=False)
    for row in engines:
        if args.verbose or row["engine"] != "hyperscan":
            print(f"{row['file']}:{row['line']}: pattern /{row['pattern']}/ runs on {row['engine']} (at {row['path']})")
    if args.run_examples:
        passed = sum(r.ok for r in examples)
        print(f"examples: {passed} of {len(examples)} passed", file=sys.stdout if passed == len(examples) else sys.stderr)
    if not paths:
        print(f"{args.config} did not load, {len(problems)} problem(s); its playbooks were not checked", file=sys.stderr)
        return 1
    checked = f"{len(result.playbooks)} playbook(s) ok"
    print(f"{checked}, {len(problems)} problem(s)" if problems else checked, file=sys.stderr if problems else sys.stdout)
    return 1 if problems else 0


def cmd_replay(args: argparse.Namespace) -> int:
    from .replay import run_command

    return run_command(args)


def cmd_init(args: argparse.Namespace) -> int:
    from .init import run_init

    return run_init(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(workdir=Path(args.workdir) if args.workdir else None, keep=args.keep,
                    wait=False if args.exit else None)
