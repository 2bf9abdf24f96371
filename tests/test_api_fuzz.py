"""The API fuzzed from its own OpenAPI document (schemathesis): no 5xx, answers match the document."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from suture.engine.config import load_config
from suture.sidecar.api import Api, serve

from .conftest import RATE_LIMIT, Running, dedent, write_config

pytestmark = pytest.mark.slow
TOKEN = "fuzz-token-1234"
schema = schemathesis.openapi.from_dict(Api(None).openapi())  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    target = tmp / "target"
    (target / "config").mkdir(parents=True)
    (target / "logs").mkdir()
    (target / "config" / "settings.yaml").write_text("upstream:\n  request_delay_s: 0.5\n")
    (target / "logs" / "app.log").write_text("")
    write_config(tmp, target, threshold=95)
    config = load_config(tmp / "suture.yaml", env={"SUTURE_TOKEN": TOKEN})
    (config.playbooks / "rate.yaml").write_text(dedent(RATE_LIMIT))
    running = Running(config).start()
    server = serve(running.sidecar)
    with open(target / "logs" / "app.log", "a") as fh:  # leave a proposal and some history to fuzz against
        fh.write("ERROR 429 Too Many Requests\n" * 3)
    running.wait_for(lambda e: e.kind == "proposed")
    yield running.sidecar.api_url
    server.shutdown()
    server.server_close()
    running.stop()


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_answers_every_generated_request_without_a_server_error(case, live):
    """Valid and invalid requests alike: never a 5xx, and every answer conforms to the document.

    A schema-valid SQL string is usually not valid SQL, so /api/sql may reject "valid" bodies (400).
    """
    excluded = [positive_data_acceptance] if case.operation.path == "/api/sql" else []
    case.call_and_validate(base_url=live, headers={"Authorization": f"Bearer {TOKEN}"}, excluded_checks=excluded)
