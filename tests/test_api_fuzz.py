"""The API fuzzed from its own OpenAPI document (schemathesis): no 5xx, answers match the document,
also with hostile header values; a foreign Host is refused on every operation."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance
from suture.engine.config import load_config
from suture.sidecar.transport import serve
from suture.sidecar.web import document

from .conftest import RATE_LIMIT, Running, dedent, write_config

pytestmark = pytest.mark.slow
TOKEN = "fuzz-token-1234"
# An invalid request must be refused with a 4xx: schemathesis' list, plus 413 for a body over the API's limit
# (a too-long `sql` string, written in JSON escapes, can pass 256 KiB: 413 is the right refusal).
CONFIG = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": [
    "400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]}}})
schema = schemathesis.openapi.from_dict(document(), config=CONFIG)
# names a DNS-rebinding page could use: never an IP literal, never localhost
FOREIGN_HOST = st.from_regex(r"[a-z][a-z0-9-]{0,15}(\.[a-z][a-z0-9-]{0,15}){1,3}(:[0-9]{1,5})?", fullmatch=True).filter(
    lambda h: not h.split(":")[0].endswith(".localhost"))
# headers the API reads, and some that proxies and browsers send (not Accept: text/event-stream would open a
# stream that lasts)
READ_HEADERS = ["Authorization", "Origin", "Last-Event-ID", "Content-Type", "Connection", "Cookie", "Forwarded",
                "X-Forwarded-Host", "Range", "If-None-Match"]
# header values in Latin-1 (what HTTP carries), less those requests refuses to send (read as whitespace)
LATIN1 = st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_characters="\x7f\x85\xa0"), max_size=120)


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


@schema.parametrize()
@schema.given(extra=st.dictionaries(st.sampled_from(READ_HEADERS), LATIN1, max_size=4))
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
def test_hostile_header_values_get_no_server_error(case, extra, live):
    """Generated requests with odd bytes in the headers the API reads: never a 5xx, answers as documented."""
    excluded = [positive_data_acceptance] if case.operation.path == "/api/sql" or "Authorization" in extra else []
    case.call_and_validate(base_url=live, headers={"Authorization": f"Bearer {TOKEN}", **extra},
                           excluded_checks=excluded)


@schema.parametrize()
@schema.given(host=FOREIGN_HOST)
@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_refuses_a_foreign_host(case, host, live):
    """Any generated request, with the token, sent with a Host that is not this server's: 421."""
    response = case.call(base_url=live, headers={"Authorization": f"Bearer {TOKEN}", "Host": host})
    assert response.status_code == 421, response.text[:300]
