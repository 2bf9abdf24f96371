"""The dashboard in headless Chromium against a real sidecar beside the demo app.

It loads clean under its strict CSP, follows the sidecar live, and every change it
makes needs the API token. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import http.client
import re
import time
from urllib.parse import urlsplit

import pytest
from suture.sidecar.dashboard import MAX_STREAMS

from .browser import TOKEN, chromium_fixture, open_tab_fixture, screenshot, wait_until, world_fixture  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def request(world, path, headers=None):
    url = urlsplit(world.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    return resp, resp.read(), conn


def luminance(css: str) -> float:
    r, g, b = (int(v) / 255 for v in re.findall(r"\d+", css)[:3])
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_the_page_loads_clean_with_strict_headers(open_tab, world):
    """Self-only CSP, no framing; probes, sources and playbooks render; nothing is logged as an error."""
    tab, response = open_tab(world.url + "/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    page = tab.page
    page.wait_for_selector("#probes li[data-name=api]")
    page.wait_for_selector("#sources li[data-name=app]")
    page.wait_for_selector("#playbooks tr[data-playbook=rate-limit-backoff]")
    page.wait_for_selector("#live.on")
    assert tab.errors == []


def test_a_fix_appears_on_the_timeline_within_seconds(open_tab, world):
    """Opened before anything happens, the page shows the proposal and the source turning critical."""
    tab, _ = open_tab(world.url + "/")
    event = world.proposal()
    row = tab.page.locator(f'#timeline li[data-fix="{event.data["fix_id"]}"]')
    row.wait_for(timeout=5000)
    assert time.time() - event.at < 3.0, "on the timeline within seconds of the decision"
    assert "proposed" in row.inner_text() and "0.1" in row.inner_text() and "0.3" in row.inner_text()
    tab.page.wait_for_selector("#sources li[data-name=app].critical", timeout=5000)
    assert tab.errors == []


def test_approving_needs_the_token_and_the_page_says_why_not(open_tab, world):
    """A wrong token is refused (401 shown on the page, nothing applied); the right one applies the fix."""
    fix_id = world.proposal().data["fix_id"]
    tab, _ = open_tab(world.url + "/")
    page = tab.page
    proposal = page.locator(f'#proposals li[data-fix="{fix_id}"]')
    proposal.get_by_role("button", name="Approve").click()
    page.fill("#token-input", "not-the-token")
    page.click("#token-ok")
    error = proposal.locator(".row-error")
    error.wait_for()
    assert "refused (401)" in error.inner_text() and "token" in error.inner_text()
    assert "refused (401)" in page.inner_text("#toast")
    assert "approved" not in world.running.kinds()

    proposal.get_by_role("button", name="Approve").click()
    page.fill("#token-input", TOKEN)
    page.fill("#token-name", "alice")
    page.click("#token-ok")
    approved = world.running.wait_for(lambda e: e.kind == "approved")
    assert approved.data["by"] == "alice"
    page.wait_for_selector("#toast:has-text('Approved')")
    page.wait_for_selector("#timeline li[data-status=validating]", timeout=5000)
    assert all("401" in e for e in tab.errors), tab.errors  # only the refused request, logged by the browser


def test_a_rollback_shows_what_will_change_before_it_happens(open_tab, world):
    """The confirmation lists the backup's files and their state; confirming restores the file."""
    settings = world.root / "config" / "settings.yaml"
    if "approved" not in world.running.kinds():  # run on its own: approve through the API
        fix_id = world.proposal().data["fix_id"]
        url = urlsplit(world.url)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        conn.request("POST", f"/api/proposals/{fix_id}/approve", body=b"{}",
                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        assert conn.getresponse().status == 200
        conn.close()
    assert wait_until(lambda: "request_delay_s: 0.3" in settings.read_text())
    tab, _ = open_tab(world.url + "/")
    page = tab.page
    page.locator("#backups li button").first.click()
    body = page.locator("#rollback-body")
    body.wait_for()
    assert "config/settings.yaml" in body.inner_text() and "will be restored" in body.inner_text()
    assert "- 0.3" in body.inner_text() and "+ 0.1" in body.inner_text()
    page.click("#rollback-confirm")
    page.fill("#token-input", TOKEN)
    page.click("#token-ok")
    page.wait_for_selector("#toast:has-text('Rolled back')")
    assert "request_delay_s: 0.1" in settings.read_text()
    assert tab.errors == []


@pytest.mark.parametrize("width, height", [(1280, 800), (390, 844)])
def test_usable_on_a_laptop_and_a_phone(open_tab, world, width, height):
    """No horizontal scrolling; every section is on the page; a screenshot is kept."""
    tab, _ = open_tab(world.url + "/")
    page = tab.page
    page.set_viewport_size({"width": width, "height": height})
    page.wait_for_timeout(400)  # charts redraw for the new width
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    for section in ("health", "proposals-section", "fixes-section", "trends-section", "playbooks-section",
                    "backups-section", "events-section"):
        box = page.locator(f"#{section}").bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, section
    assert screenshot(page, f"dashboard-{width}x{height}").stat().st_size > 10_000
    assert tab.errors == []


def test_readable_in_dark_mode(open_tab, world):
    """With the browser in dark mode the page is dark and its text keeps its contrast."""
    tab, _ = open_tab(world.url + "/", color_scheme="dark")
    page = tab.page
    colours = page.evaluate("""() => {
        const css = (sel, prop) => getComputedStyle(document.querySelector(sel))[prop];
        return {page: css("html", "backgroundColor"), panel: css("section", "backgroundColor"),
                text: css("h2", "color"), muted: css("#playbooks-meta", "color")};
    }""")
    assert luminance(colours["page"]) < 0.05 and luminance(colours["panel"]) < 0.05, colours
    assert contrast(colours["text"], colours["panel"]) >= 7, colours
    assert contrast(colours["muted"], colours["panel"]) >= 4.5, colours
    screenshot(page, "dashboard-dark")
    assert tab.errors == []


@pytest.mark.parametrize("path, status, content_type", [
    ("/static/app.js", 200, "application/javascript"),
    ("/static/dashboard.css", 200, "text/css"),
    ("/static/suture.svg", 200, "image/svg+xml"),
    ("/static/missing.js", 404, None),
    ("/static/index.js", 404, None),
    ("/static/index.html", 404, None),
    ("/static/sub/app.js", 404, None),
    ("/static/..%2Fdashboard.py", 404, None),
    ("/static/..%2F..%2Fengine%2Fstore.js", 404, None),
    ("/static/%2e%2e.js", 400, None),
    ("/static/.app.js", 400, None),
])
def test_static_files_are_served_by_name_only(world, path, status, content_type):
    """Only files in static/, with their own content type; traversal and folders are refused."""
    resp, _, conn = request(world, path)
    conn.close()
    assert resp.status == status
    if content_type:
        assert resp.getheader("Content-Type").startswith(content_type)


def test_the_event_stream_is_live_and_capped(world):
    """Each stream holds a server thread: past the cap a client gets 503; a closed stream frees its slot."""
    accept = {"Accept": "text/event-stream"}
    url = urlsplit(world.url)
    streams: list[http.client.HTTPResponse] = []  # a response without a length owns the connection

    def one_more() -> bool:  # tabs closed by earlier tests free their slot within a second or two
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
        conn.request("GET", "/api/dashboard/events", headers=accept)
        resp = conn.getresponse()
        if resp.status != 200:
            resp.read()
            conn.close()
            return False
        streams.append(resp)
        assert resp.fp.readline() == b"retry: 2000\n"
        return True

    try:
        for _ in range(MAX_STREAMS):
            assert wait_until(one_more, timeout=5, step=0.3)
        resp, body, conn = request(world, "/api/dashboard/events", accept)
        conn.close()
        assert resp.status == 503 and resp.getheader("Retry-After"), body
        resp, body, conn = request(world, "/api/dashboard/events?after=0")  # no Accept: answers at once
        conn.close()
        assert resp.status == 200 and re.search(rb"^id: [0-9]+-1$", body, re.M)
    finally:
        for resp in streams:
            resp.close()
    streams.clear()
    assert wait_until(one_more, timeout=5, step=0.3), "a closed stream frees its slot"
    streams[0].close()


def test_the_event_stream_resumes_after_the_last_event_seen(world):
    """Last-Event-ID of this run resumes after it; an id from an earlier run of the sidecar gets everything."""
    _, body, conn = request(world, "/api/dashboard/events")
    conn.close()
    ids = re.findall(rb"^id: ([0-9]+)-([0-9]+)$", body, re.M)
    run, last = ids[-1][0].decode(), int(ids[-1][1])

    def first_id(last_event_id: str) -> str:
        url = urlsplit(world.url)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
        conn.request("GET", "/api/dashboard/events",
                     headers={"Accept": "text/event-stream", "Last-Event-ID": last_event_id})
        resp = conn.getresponse()
        try:
            while not (line := resp.fp.readline()).startswith(b"id: "):
                assert line, "the stream ended"
            return line.decode().strip()
        finally:
            resp.close()

    assert first_id(f"{run}-{last - 1}") == f"id: {run}-{last}"
    assert first_id(f"1-{last}") == f"id: {run}-1"
