"""Text from the watched world never renders as markup in a report (issue 17 item 4): checked by parsing the
Markdown with a real CommonMark parser (markdown-it-py, with GFM tables and strikethrough on) and looking at
the tokens: hostile text is only ever code or text, never HTML, a link, an image, a heading or emphasis."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from suture.engine.decide import decide
from suture.engine.executor import Outcome
from suture.engine.playbook import Learning
from suture.engine.report import build_report, render_markdown
from suture.engine.report_text import MAX_LINE, clean, code, fenced, inline
from suture.engine.report_values import Excerpt, LogLine, Report

from .test_report import make, pb_of

markdown_it = pytest.importorskip("markdown_it", reason="SKIPPED LOUDLY: pip install markdown-it-py (test extra)")

HOSTILE = [
    "```", "````not closed", "~~~", "<script>alert(1)</script>", "[x](javascript:alert(1))", "![i](http://e/x.png)",
    "# heading", "=====", "---", "> quote", "* item", "1. item", "**bold** _em_ ~~struck~~", "<http://auto.link>",
    "&amp; &lt;b&gt;", "| a | b |", "\x1b[31mred\x1b[0m and \x1b]0;title\x07", "nul \x00 bell \x07 cr \r del \x7f",
    "trailing backslash \\", "`code` and ``more``", "<!-- comment -->", "x" * 5000,
]
OURS = {"Outcome", "Decision", "Verdict"}  # the only strong text the report writes itself


def parser() -> Any:
    return markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"])


def tokens(text: str) -> list[Any]:
    out = []
    for token in parser().parse(text):
        out.append(token)
        out.extend(token.children or [])
    return out


def assert_no_markup_from_the_world(text: str) -> None:
    found = tokens(text)
    kinds = {t.type for t in found}
    assert not kinds & {"html_block", "html_inline", "link_open", "image", "s_open", "em_open", "blockquote_open",
                        "hr", "ordered_list_open", "code_block"}, kinds
    headings = [found[i + 1].content for i, t in enumerate(found) if t.type == "heading_open"]
    assert headings[0].startswith("Fix ") and all(h.startswith(("Fix ", "What ", "Why ", "Steps")) for h in headings[1:])
    strong = [found[i + 1].content for i, t in enumerate(found) if t.type == "strong_open"]
    assert len(strong) <= 3, strong
    assert "\x1b" not in text and "\x00" not in text and "\x07" not in text and "\r" not in text


@pytest.fixture
def hostile_report(config, target, clock) -> tuple[Report, str]:
    ex, store, backups = make(config)
    pb = pb_of()
    labels = {h[:40]: h for h in HOSTILE[:12]}
    evidence = {"lines": [{"source": "app<b>", "lines": [{"at": clock() - 1, "text": h, "matched": i % 2 == 0}
                                                          for i, h in enumerate(HOSTILE)]}],
                "probes": {"api": {"healthy": False, "latency_ms": 1.0, "detail": "<img src=x onerror=alert(1)>",
                                   "at": clock()}},
                "metrics": {"cpu_percent{host=\"[x](y)\"}": 1.0},
                "alerts": [{"name": "A*b*", "labels": {"note": "[click](javascript:x)", "h": "# head"},
                            "state": "<i>firing</i>", "fingerprint": "`", "at": clock()}]}
    decision = decide(pb, key="", labels=labels, outcomes=store.outcomes(pb.id), gate=store.gate(pb.id, "", clock()),
                      threshold=95, learning=Learning(), fixes_per_hour=100, now=clock())
    outcome = ex.start(pb, decision, now=clock(), facts=("[f](javascript:x)",), evidence=evidence)
    assert isinstance(outcome, Outcome)
    report = build_report(store, outcome.fix_id, backups)
    store.close()
    return report, render_markdown(report)


def test_hostile_lines_labels_and_alerts_render_as_code_or_text(hostile_report):
    _report, text = hostile_report
    assert_no_markup_from_the_world(text)
    fences = [t for t in tokens(text) if t.type == "fence"]
    (log,) = [t for t in fences if "<script>" in t.content]
    shown = [line[16:] for line in log.content.splitlines()]
    for line, hostile in zip(shown, HOSTILE, strict=True):
        if len(hostile) > MAX_LINE:
            assert line == hostile[:MAX_LINE] + f" [... cut: {len(hostile) - MAX_LINE} more characters]"
        else:
            assert line == clean(hostile)
    assert "red and " in shown[HOSTILE.index("\x1b[31mred\x1b[0m and \x1b]0;title\x07")]
    assert shown[HOSTILE.index("nul \x00 bell \x07 cr \r del \x7f")] == "nul ? bell ? cr ? del ?"
    code_spans = {t.content for t in tokens(text) if t.type == "code_inline"}
    assert "[click](javascript:x)" in code_spans and "# head" in code_spans and "`" in code_spans
    texts = "".join(t.content for t in tokens(text) if t.type == "text")
    assert "<img src=x onerror=alert(1)>" in texts and "<i>firing</i>" in texts


def test_the_json_keeps_the_text_as_journaled(hostile_report):
    report, _ = hostile_report
    lines = report.as_json()["seen"]["excerpts"][0]["lines"]
    assert [line["text"] for line in lines] == HOSTILE  # JSON escapes them; the Markdown is where they are made safe


@pytest.mark.parametrize("hostile", HOSTILE)
def test_each_way_in_keeps_its_text(hostile):
    """A code span gives back the text, an escaped inline gives it back as text, a fence as its content."""
    want = clean(hostile, tabs=False)
    if len(want) > MAX_LINE:
        want = want[:MAX_LINE] + f" [... cut: {len(want) - MAX_LINE} more characters]"
    para = tokens("a " + code(hostile) + " b")
    assert [t.content for t in para if t.type == "code_inline"] == [want]
    rendered = [t for t in tokens("a " + inline(hostile) + " b") if t.type != "softbreak"]
    assert {t.type for t in rendered} <= {"paragraph_open", "paragraph_close", "inline", "text"}, rendered
    assert "".join(t.content for t in rendered if t.type == "text") == f"a {want} b".rstrip()
    (fence,) = [t for t in tokens(fenced([hostile])) if t.type == "fence"]
    assert fence.content == clean(hostile)[:MAX_LINE] + (
        f" [... cut: {len(clean(hostile)) - MAX_LINE} more characters]" if len(clean(hostile)) > MAX_LINE else "") + "\n"


LINE = st.text(st.characters(blacklist_categories=("Cc", "Cs")),
               max_size=MAX_LINE)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(LINE, min_size=1, max_size=6))
def test_any_log_text_comes_back_verbatim_as_code(hostile_report, texts):
    """Whatever a log line says (no control characters, within the cap), the parsed report holds it verbatim as
    the content of a code block, and the rest of the report is still the report's own."""
    report, _ = hostile_report
    excerpt = Excerpt(source="app", lines=tuple(LogLine(at=1_790_000_000.0 + i, text=t, matched=True)
                                                for i, t in enumerate(texts)))
    seen = dataclasses.replace(report.seen, excerpts=(excerpt,))
    text = render_markdown(dataclasses.replace(report, seen=seen))
    (fence,) = [t for t in tokens(text) if t.type == "fence" and t.info == "text"]
    assert [line[16:] for line in fence.content.split("\n")[:-1]] == texts
    assert_no_markup_from_the_world(text)
