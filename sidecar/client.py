"""Talking to a running sidecar from the CLI, through its HTTP API.

DuckDB lets one process open the history file, so while `suture run` holds it
the CLI asks the sidecar instead (history, proposals, approve, explain, ...).
"""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Mapping
from typing import Any

from suture.engine.config import Config
from suture.engine.errors import SutureError


class ApiUnavailable(SutureError):
    """No sidecar answers at the configured address."""


class Client:
    def __init__(self, config: Config, env: Mapping[str, str] | None = None, timeout: float = 30.0) -> None:
        api = config.api
        host = "127.0.0.1" if api.host in ("0.0.0.0", "") else ("::1" if api.host == "::" else api.host)
        self.host, self.port = host, api.port
        self.token_env = api.token_env
        self.token = (os.environ if env is None else env).get(api.token_env)
        self.timeout = timeout
        self.enabled = api.enabled and api.port != 0

    def running(self) -> bool:
        if not self.enabled:
            return False
        try:
            self.request("GET", "/api/monitoring/health", timeout=1.0)
            return True
        except (ApiUnavailable, SutureError):
            return False

    def raw(self, method: str, path: str) -> bytes:
        """The bytes of an answer that is not JSON (e.g. a Parquet export)."""
        return bytes(self.request(method, path, raw=True))

    def request(self, method: str, path: str, body: Any = None, *, timeout: float | None = None,
                raw: bool = False) -> Any:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout or self.timeout)
        headers = {"Content-Type": "application/json", "User-Agent": "suture-cli"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            conn.request(method, path, body=json.dumps(body).encode() if body is not None else None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError as exc:
            raise ApiUnavailable(f"no sidecar answers at {self.host}:{self.port} ({exc})") from exc
        finally:
            conn.close()
        if raw and resp.status < 400:
            return data
        try:
            payload = json.loads(data) if data else {}
        except ValueError:
            payload = {"error": data[:200].decode(errors="replace")}
        if resp.status == 401:
            hint = "" if self.token else f" (set ${self.token_env} to the sidecar's token)"
            raise SutureError(f"the sidecar refused: {payload.get('error', resp.reason)}{hint}")
        if resp.status >= 400:
            raise SutureError(f"the sidecar answered {resp.status}: {payload.get('error', resp.reason)}")
        return payload
