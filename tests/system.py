"""What the suite needs from the machine, and saying so: which tests a missing package will skip.

Each need (``containers``, ``postgres``, ...) is named in ``.ci/packages`` beside the Debian
packages that meet it; ``make test`` installs them as root (``.ci/setup``). A need that is not met
skips the tests whose fixtures ask for it (the fixtures skip themselves, naming the packages). This
module tells the person running the suite *before* it runs: at the start, every test that will be
skipped and the one command that would run it; at the very end, a last line with the skip count.

Under pytest-xdist (``make test`` runs ``pytest -n``) the workers collect, not the controller that
prints: each worker writes what it found to a folder the controller named in its ``workerinput``,
before it reports its collection; the controller prints it when the first worker has.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from xdist.workermanage import WorkerController

PACKAGES = Path(__file__).resolve().parents[1] / ".ci" / "packages"


def packages_by_need(path: Path = PACKAGES) -> dict[str, list[str]]:
    """``.ci/packages`` as {need: [package, ...]}, in file order."""
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2:
            out.setdefault(words[1], []).append(words[0])
    return out


def _engine_answers() -> bool:
    for url in (os.environ.get("DOCKER_HOST", ""), "unix:///run/podman/podman.sock"):
        if url.startswith("unix://") and Path(url[len("unix://"):]).is_socket():
            return True
        if url.startswith(("tcp://", "http://")):
            try:
                urllib.request.urlopen(url.replace("tcp://", "http://") + "/_ping", timeout=1).close()
                return True
            except OSError:
                continue
    return False


def _containers() -> bool:
    engine = _engine_answers() or (shutil.which("podman") is not None and os.geteuid() == 0)
    return engine and any(Path(p).exists() for p in ("/bin/busybox", "/usr/bin/busybox", "/usr/sbin/busybox"))


def _postgres() -> bool:
    return any((p / "initdb").exists() and (p / "postgres").exists() for p in Path("/usr/lib/postgresql").glob("*/bin"))


@dataclass(frozen=True, slots=True)
class Need:
    name: str  # as in .ci/packages
    met: Callable[[], bool]
    fixtures: tuple[str, ...]  # a test asking for one of these is skipped without the need
    what: str


NEEDS = (
    Need("containers", _containers, ("docker_engine", "busybox_image"), "a Docker Engine API (Podman) and busybox"),
    Need("postgres", _postgres, ("postgres_server",), "PostgreSQL server binaries"),
    Need("redis", lambda: shutil.which("redis-server") is not None, ("redis_server",), "redis-server"),
    Need("browser", lambda: bool(os.environ.get("SUTURE_CHROMIUM") or shutil.which("chromium")
                                 or shutil.which("chromium-browser")), ("chromium",), "Chromium"),
    Need("promtool", lambda: shutil.which("promtool") is not None, ("promtool",), "promtool (Prometheus)"),
    Need("alertmanager", lambda: bool(shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")),
         ("alertmanager_binary",), "Alertmanager"),
)


@dataclass(slots=True)
class _Report:
    missing: dict[str, list[str]]  # need -> node ids of the tests it will skip


_REPORT = pytest.StashKey[_Report]()


def collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Work out, once collected, which tests each unmet need will skip."""
    missing: dict[str, list[str]] = {}
    for need in NEEDS:
        if need.met():
            continue
        skipped = [i.nodeid for i in items if set(need.fixtures) & set(getattr(i, "fixturenames", ()))]
        if skipped:
            missing[need.name] = skipped
    config.stash[_REPORT] = _Report(missing)
    workerinput = getattr(config, "workerinput", None)  # an xdist worker: leave it for the controller
    if workerinput is not None and _HANDOFF in workerinput:
        Path(workerinput[_HANDOFF], f"{workerinput['workerid']}.json").write_text(json.dumps(missing))


_HANDOFF = "suture_needs_folder"
_FOLDER = pytest.StashKey[str]()


def configure_node(node: WorkerController) -> None:
    """On the xdist controller, for each worker: the folder where it leaves what it will skip."""
    config = node.config
    if _FOLDER not in config.stash:
        config.stash[_FOLDER] = tempfile.mkdtemp(prefix="suture-needs-")
    node.workerinput[_HANDOFF] = config.stash[_FOLDER]


def node_collection_finished(node: WorkerController) -> None:
    """On the xdist controller: the first worker's collection is everyone's; say at the start what it skips."""
    config = node.config
    if _REPORT in config.stash or _FOLDER not in config.stash:
        return
    found = Path(config.stash[_FOLDER], f"{node.gateway.id}.json")
    if not found.exists():  # its collection failed before the hook: pytest reports that
        return
    config.stash[_REPORT] = _Report(json.loads(found.read_text()))
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        for line in report_collectionfinish(config):
            reporter.write_line(line)


def report_collectionfinish(config: pytest.Config) -> list[str]:
    """At the start: every test that will be skipped, and the one command that would run it."""
    report = config.stash.get(_REPORT, None)
    if report is None or not report.missing:
        return []
    packages = packages_by_need()
    needed = sorted({p for need in report.missing for p in packages.get(need, [])})
    lines = ["", f"SKIPPING {sum(map(len, report.missing.values()))} tests: this machine lacks what they need."]
    for need in NEEDS:
        ids = report.missing.get(need.name)
        if ids:
            lines.append(f"  {len(ids)} need {need.what} (Debian: {' '.join(packages.get(need.name, []))}):")
            lines += [f"    {nodeid}" for nodeid in ids]
    lines.append(f"To run them: sudo apt-get install -y {' '.join(needed)}   (or run `make test` as root)")
    return lines


def terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The skip count, said last (pytest's own line leaves it out when it is 0)."""
    skipped = len(terminalreporter.stats.get("skipped", []))
    report = terminalreporter.config.stash.get(_REPORT, None)
    why = ""
    if skipped and report is not None and report.missing:
        why = " (" + ", ".join(f"{len(v)} need {k}" for k, v in report.missing.items()) + "; see the start)"
    terminalreporter.config.stash[_LAST] = f"suture tests: {skipped} skipped{why}"


_LAST = pytest.StashKey[str]()


def unconfigure(config: pytest.Config) -> None:
    if _FOLDER in config.stash:
        shutil.rmtree(config.stash[_FOLDER], ignore_errors=True)
    line = config.stash.get(_LAST, None)
    if line is not None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(line, bold=True)
