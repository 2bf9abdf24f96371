"""What a fix's matched step keeps of what its diagnosis saw: matched lines with the lines before them,
and the probe, metric and alert values of its conditions.

The core is a real sidecar opened on a DuckDB file (no threads: the test is its clock and its only
source); lines arrive one by one and in blocks, as the tailer hands them over.
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from suture.engine.alerts import AlertState
from suture.sidecar.evidence import CONTEXT, KEEP, MAX_TEXT, Evidence, lines_before
from suture.sidecar.observations import Alerts, Lines, ProbeResult
from suture.sidecar.runtime import Sidecar
from suture.sidecar.sources.base import Block, Line

from .conftest import Clock, dedent, write_config

BURST = """
    id: db-down
    when:
      all:
        - log: {source: app, pattern: 'ERROR db', at_least: 3, within: 1m}
        - probe: {name: api, status: unhealthy}
        - alert: {name: DbDown, state: firing}
    confidence: 50
    fix: [{adjust: {file: config/settings.yaml, key: upstream.timeout_s, add: 1}}]
    validate: {window: 1m, expect: [{log: {source: app, pattern: 'ERROR db', at_most: 0}}]}
"""


def opened(tmp_path, target, clock: Clock) -> Sidecar:
    cfg = write_config(tmp_path, target, extra="probes:\n  api: {http: 'http://127.0.0.1:9/health'}\n")
    (tmp_path / "playbooks" / "db.yaml").write_text(dedent(BURST))
    sc = Sidecar(cfg, clock=clock)
    sc.open()
    return sc


def evidence_of(sc: Sidecar) -> dict:
    rows = sc.store.query("SELECT s.detail FROM fix_steps s WHERE s.step = 'matched'").rows
    assert len(rows) == 1, rows
    return json.loads(rows[0][0])["evidence"]


def line(text: str, at: float) -> Line:
    return Line(source="app", text=text, at=at)


def test_the_matched_step_shows_each_matching_line_after_the_lines_before_it(tmp_path, target, clock):
    sc = opened(tmp_path, target, clock)
    sc.core.observe(ProbeResult(name="api", healthy=False, latency_ms=None, at=clock.now, detail="HTTP 503"))
    sc.core.observe(Alerts([AlertState(fingerprint="f1", name="DbDown", labels=(("service", "orders"),),
                                       state="firing", starts_at=None, ends_at=None, at=clock.now)]))
    texts = ["INFO boot", "INFO a", "INFO b", "INFO c", "INFO d", "ERROR db refused", "INFO retry",
             "ERROR db refused again", "INFO e", "INFO f", "INFO g", "INFO h", "ERROR db gone"]
    for text in texts:
        sc.core.observe(Lines("app", [line(text, clock.advance(1))]))
    evidence = evidence_of(sc)
    [excerpt] = evidence["lines"]
    shown = [(x["text"], x["matched"]) for x in excerpt["lines"]]
    assert shown == [("INFO b", False), ("INFO c", False), ("INFO d", False), ("ERROR db refused", True),
                     ("INFO retry", False), ("ERROR db refused again", True),
                     ("INFO f", False), ("INFO g", False), ("INFO h", False), ("ERROR db gone", True)]
    assert excerpt["source"] == "app" and excerpt["lines"][-1]["at"] == clock.now
    assert evidence["probes"] == {"api": {"healthy": False, "latency_ms": None, "detail": "HTTP 503",
                                          "at": evidence["probes"]["api"]["at"]}}
    assert evidence["alerts"][0] | {"at": 0} == {"name": "DbDown", "labels": {"service": "orders"},
                                                  "state": "firing", "fingerprint": "f1", "at": 0}
    sc.shutdown()


def test_a_block_keeps_the_lines_before_its_matches(tmp_path, target, clock):
    sc = opened(tmp_path, target, clock)
    sc.core.observe(ProbeResult(name="api", healthy=False, latency_ms=3.0, at=clock.now))
    sc.core.observe(Alerts([AlertState(fingerprint="f1", name="DbDown", labels=(), state="firing",
                                       starts_at=None, ends_at=None, at=clock.now)]))
    data = b"".join(f"INFO {i}\n".encode() for i in range(50)) + b"ERROR db 1\nINFO x\nERROR db 2\nERROR db 3\n"
    sc.core.observe(Lines("app", [Block(source="app", data=data, lines=54, at=clock.advance(1))]))
    [excerpt] = evidence_of(sc)["lines"]
    assert [x["text"] for x in excerpt["lines"]] == ["INFO 47", "INFO 48", "INFO 49", "ERROR db 1", "INFO x",
                                                     "ERROR db 2", "ERROR db 3"]
    sc.shutdown()


# -- the ring itself ---------------------------------------------------------------------------


@given(st.lists(st.text(alphabet="ab\r", max_size=5), min_size=1, max_size=12), st.data())
def test_lines_before_are_the_previous_lines_of_the_block(texts, data):
    """Checked against splitting the block: the CONTEXT lines before line k, in order."""
    block = "".join(t + "\n" for t in texts).encode()
    k = data.draw(st.integers(min_value=0, max_value=len(texts) - 1))
    start = sum(len(t) + 1 for t in texts[:k])
    assert lines_before(block, start) == [t.rstrip("\r") for t in texts[max(0, k - CONTEXT):k]]


def test_the_ring_is_bounded_per_source_and_per_line():
    ev = Evidence()
    for i in range(KEEP * 3):
        ev.line("app", "x" * (MAX_TEXT * 2) if i == KEEP * 3 - 1 else f"line {i}", float(i), {"sig"})
    from suture.engine.playbook import LogCondition, Where

    leaf = LogCondition(source="app", pattern="line", at=Where(file="p", line=1, path="when"))
    ring = ev._recent["app"]
    assert len(ring) == KEEP and ring[0].text == f"line {KEEP * 2}"
    assert ring[-1].text.endswith(f"... [{MAX_TEXT} more characters]") and len(ring[-1].text) < MAX_TEXT + 40
    assert ev.excerpts([leaf]) == []  # lines matched another condition's signal, not this one's
