"""`suture demo`: a demo app breaks, suture heals it, and says what it does.

The demo copies examples/demo into a work folder, starts the app (which calls
a rate-limited upstream too often and logs 429 errors), runs a real sidecar
beside it, narrates each event, and prints the history table at the end.

Its dashboard is served from the start (the URL is printed). After the
healing, in a terminal, the demo keeps the app, suture and the dashboard up
until Ctrl-C; it finishes by itself when stdin is not a terminal (CI, `make
demo` piped), when ``SUTURE_DEMO_EXIT=1``, or when asked with ``wait=False``.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from suture.engine.config import load_config
from suture.engine.status import APPLIED_FINAL
from suture.engine.store import QueryResult

from .runtime import Event, Sidecar
from .tables import print_table

TIMEOUT = 75.0
LABELS = {
    "loaded": "LOADED",
    "detected": "DETECTED",
    "decided": "DECIDED",
    "backed_up": "BACKUP",
    "applied": "EDIT",
    "validating": "VALIDATING",
    "succeeded": "SUCCEEDED",
    "rolled_back": "ROLLED BACK",
    "failed": "FAILED",
    "proposed": "PROPOSED",
    "exhausted": "EXHAUSTED",
    "conflict": "CONFLICT",
    "inconclusive": "INCONCLUSIVE",
    "error": "ERROR",
}
FINAL = APPLIED_FINAL  # the states an applied fix ends in


def demo_source() -> Path:
    """examples/demo, from the checkout or the installed package data."""
    spec = importlib.util.find_spec("suture.demo")
    for location in (spec.submodule_search_locations or []) if spec else []:
        if Path(location, "app.py").is_file():
            return Path(location)
    here = Path(__file__).resolve().parent.parent / "examples" / "demo"
    if here.is_dir():
        return here
    raise FileNotFoundError("the demo files (examples/demo) are not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=0.5) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        threading.Event().wait(0.1)
    return False


def _count(path: Path, needle: str) -> int:
    try:
        return sum(1 for line in path.read_text(errors="replace").splitlines() if needle in line)
    except FileNotFoundError:
        return 0


def should_wait(wait: bool | None = None) -> bool:
    """Keep the dashboard up after the healing? Only for a person at a terminal, unless told."""
    if wait is not None:
        return wait
    return sys.stdin is not None and sys.stdin.isatty() and os.environ.get("SUTURE_DEMO_EXIT", "") not in ("1", "true")


def _wait_for_ctrl_c(stop: threading.Event) -> None:
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        print()


def _with_token(environ: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """The environment for the demo's sidecar: $SUTURE_TOKEN, or a fresh one the dashboard's controls can use."""
    env = dict(environ)
    if env.get("SUTURE_TOKEN"):
        return env, "$SUTURE_TOKEN"
    env["SUTURE_TOKEN"] = secrets.token_urlsafe(12)
    return env, env["SUTURE_TOKEN"]


def _history(sidecar: Sidecar) -> QueryResult:
    assert sidecar.store is not None
    return sidecar.store.fix_summaries()


def run_demo(workdir: Path | None = None, keep: bool = False, wait: bool | None = None) -> int:
    """Run the demo; ``wait``: keep the dashboard up until Ctrl-C (None: see :func:`should_wait`)."""
    src = demo_source()
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="suture-demo-"))
    if root.exists() and any(root.iterdir()) and workdir:
        print(f"suture demo: {root} is not empty", file=sys.stderr)
        return 2
    shutil.copytree(src, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", ".suture", "logs"))
    app_port, api_port = free_port(), free_port()
    cfg_text = (root / "suture.yaml").read_text()
    cfg_text = cfg_text.replace("127.0.0.1:8000", f"127.0.0.1:{app_port}").replace("127.0.0.1:8765", f"127.0.0.1:{api_port}")
    (root / "suture.yaml").write_text(cfg_text)
    log_path = root / "logs" / "app.log"
    t0 = time.monotonic()

    def say(label: str, message: str) -> None:
        print(f"[{time.monotonic() - t0:5.1f}s] {label:<12} {message}", flush=True)

    print(f"suture demo — in {root}\n")
    say("APP", "starting the demo app: it calls an upstream that allows 4 requests/s,")
    say("", "but its config says request_delay_s: 0.1 (10 requests/s), so it gets 429s")
    app = subprocess.Popen(
        [sys.executable, str(root / "app.py"), "--root", str(root), "--port", str(app_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    outcome: dict[str, Event] = {}
    done = threading.Event()

    def narrate(event: Event) -> None:
        label = LABELS.get(event.kind)
        if label is None:
            return
        say(label, event.message)
        if event.kind == "validating":
            say("", "expecting: no more 429 lines after settle, and the api probe healthy")
        if event.kind in FINAL:
            outcome["final"] = event
            done.set()

    sidecar: Sidecar | None = None
    try:
        if not _wait_http(f"http://127.0.0.1:{app_port}/health", 10):
            say("ERROR", "the demo app did not start")
            return 1
        env, token_note = _with_token(os.environ)
        config = load_config(root / "suture.yaml", env=env)
        sidecar = Sidecar(config, listeners=[narrate])
        from .transport import serve

        server = serve(sidecar)
        runner = threading.Thread(target=sidecar.run, name="suture-demo-sidecar", daemon=True)
        say("SUTURE", f"watching {log_path.relative_to(root)} and probe api")
        say("DASHBOARD", f"open http://127.0.0.1:{api_port}/ (the API is there too)")
        say("", f"token for its controls: {token_note}")
        runner.start()
        if not done.wait(TIMEOUT):
            say("TIMEOUT", f"no outcome within {TIMEOUT:g}s")
            return 1
        final = outcome["final"]
        errors_seen = _count(log_path, "429")
        say("APP", f"429 errors in the log so far: {errors_seen}; watching 3s more...")
        threading.Event().wait(3.0)
        later = _count(log_path, "429") - errors_seen
        say("APP", f"new 429 errors in the last 3s: {later}")
        print()
        print("$ suture history --config suture.yaml")
        result = sidecar.call(lambda: _history(sidecar))  # the running sidecar holds the file: ask it
        print_table(result.columns, result.rows)
        print()
        ok = final.kind == "succeeded" and later == 0
        print("The demo app is healed." if ok else f"The demo ended with: {final.kind}")
        if keep or workdir:
            print(f"Try: suture history --config {root / 'suture.yaml'} --sql 'SELECT * FROM fix_steps'")
        if should_wait(wait):
            print(f"\nThe dashboard stays up at http://127.0.0.1:{api_port}/ with the app and suture running;"
                  " press Ctrl-C to stop.\n(Without a terminal, or with SUTURE_DEMO_EXIT=1, the demo ends by itself.)",
                  flush=True)
            _wait_for_ctrl_c(sidecar.stop)
        sidecar.stop.set()
        runner.join(timeout=5)
        server.shutdown()
        server.server_close()
        return 0 if ok else 1
    finally:
        if sidecar is not None:
            sidecar.stop.set()
        app.terminate()
        try:
            app.wait(timeout=5)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait()
        if app.stderr is not None:
            app.stderr.close()
        if not keep and not workdir:
            shutil.rmtree(root, ignore_errors=True)
