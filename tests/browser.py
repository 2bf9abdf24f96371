"""Fixtures for the dashboard tests: headless Chromium (Playwright) and a demo world with its API.

Chromium is Debian's (``apt-get install -y chromium``), driven by Playwright for Python;
Playwright's own browser download is never used. Without either, the tests skip and say
what to install.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from suture.engine.config import load_config
from suture.sidecar.demo import demo_source, free_port
from suture.sidecar.transport import serve

from .conftest import Running
from .servers import _Shared

TOKEN = "dashboard-test-token"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PROPOSING = """\
id: rate-limit-backoff
when:
  all:
    - log: {source: app, pattern: '429 .*Too Many Requests', at_least: 5, within: 10s}
    - probe: {name: api, status: healthy}
confidence: 70
fix:
  - adjust: {file: config/settings.yaml, key: upstream.request_delay_s, multiply: 3, max: 5}
validate:
  window: 30s
  settle: 1s
  expect:
    - log: {source: app, pattern: '429 .*Too Many Requests', at_most: 0}
    - probe: {name: api, status: healthy}
cooldown: 1h
"""


def chromium_path() -> str:
    found = os.environ.get("SUTURE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("SKIPPED LOUDLY: no chromium on PATH; the dashboard tests need `apt-get install -y chromium` "
                    "(or SUTURE_CHROMIUM=/path/to/chrome)")
    return found


@contextlib.contextmanager
def _chromium(profile: Path) -> Iterator[Any]:
    path = chromium_path()
    sync_api = pytest.importorskip("playwright.sync_api", reason="SKIPPED LOUDLY: pip install playwright (test extra)")
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=path, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 800}, color_scheme="light",
        )
        context.set_default_timeout(10_000)
        yield context
        context.close()


_CHROMIUM: _Shared[Any] = _Shared()


@pytest.fixture(scope="session", name="chromium")
def chromium_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium with a fresh profile; each test opens its own pages (own sessionStorage).

    Every test module that imports this fixture gets a copy of it; they share one browser (Playwright's sync API
    allows one instance per thread), started by the first and closed by the last."""
    with _CHROMIUM.use(lambda: _chromium(tmp_path_factory.mktemp("chromium-profile"))) as context:
        yield context


@dataclass
class Tab:
    """A page with everything it logged: console errors and uncaught exceptions."""

    page: Any
    errors: list[str] = field(default_factory=list)

    def close(self) -> None:
        self.page.close()


@pytest.fixture(name="open_tab")
def open_tab_fixture(chromium: Any) -> Iterator[Any]:
    """Open the dashboard in a new tab (its own sessionStorage); every tab is closed after the test."""
    opened: list[Tab] = []

    def open_(url: str, *, color_scheme: str = "light") -> tuple[Tab, Any]:
        page = chromium.new_page()
        tab = Tab(page)
        opened.append(tab)
        page.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: tab.errors.append(f"uncaught: {exc}"))
        page.emulate_media(color_scheme=color_scheme)
        response = page.goto(url)
        page.wait_for_selector("body[data-ready=true]")
        return tab, response

    yield open_
    for tab in opened:
        tab.close()


class DemoWorld:
    """The demo (copied into a folder) with a playbook that proposes, a real sidecar and its API.

    The app starts only when a test asks for it, so a page can be watching before anything happens.
    """

    def __init__(self, root: Path) -> None:
        shutil.copytree(demo_source(), root, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", ".suture", "logs"))
        (root / "logs").mkdir()
        (root / "logs" / "app.log").write_text("")
        (root / "playbooks" / "rate-limit-backoff.yaml").write_text(PROPOSING)
        self.root = root
        self.app_port = free_port()
        cfg = (root / "suture.yaml").read_text()
        (root / "suture.yaml").write_text(cfg.replace("127.0.0.1:8000", f"127.0.0.1:{self.app_port}")
                                          .replace("127.0.0.1:8765", "127.0.0.1:0"))
        self.running = Running(load_config(root / "suture.yaml", env={"SUTURE_TOKEN": TOKEN})).start()
        self.server = serve(self.running.sidecar)
        self.url = str(self.running.sidecar.api_url)
        self.app: subprocess.Popen[bytes] | None = None

    def start_app(self) -> None:
        if self.app is None:
            self.app = subprocess.Popen(
                [sys.executable, str(self.root / "app.py"), "--root", str(self.root), "--port", str(self.app_port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def proposal(self, timeout: float = 20.0) -> Any:
        """Start the app (if not yet) and wait for the sidecar to propose the fix."""
        self.start_app()
        return self.running.wait_for(lambda e: e.kind == "proposed", timeout=timeout)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.running.stop()
        if self.app is not None:
            self.app.terminate()
            self.app.wait(timeout=10)


@pytest.fixture(scope="module", name="world")
def world_fixture() -> Iterator[DemoWorld]:
    with tempfile.TemporaryDirectory(prefix="suture-dashboard-") as tmp:
        w = DemoWorld(Path(tmp) / "demo")
        try:
            yield w
        finally:
            w.stop()


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def wait_until(predicate: Any, timeout: float = 10.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False
