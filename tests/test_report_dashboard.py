"""The fix's report on the dashboard, in headless Chromium against a real sidecar beside the demo app: the row's
report button shows the Markdown as text (a log line's markup is not rendered), Copy puts it on the clipboard,
through navigator.clipboard and, where the page cannot use it, through a selected textarea."""

from __future__ import annotations

import json
import urllib.request

import pytest

from .browser import chromium_fixture, open_tab_fixture, world_fixture  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def open_report(open_tab, world):
    fix_id = world.proposal().data["fix_id"]
    with urllib.request.urlopen(f"{world.url}/api/fixes/{fix_id}/report", timeout=10) as resp:
        markdown = json.loads(resp.read())["markdown"]
    tab, _ = open_tab(world.url + "/")
    page = tab.page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=world.url)
    row = page.locator(f'#timeline li[data-fix="{fix_id}"]')
    row.get_by_role("button", name="report").click()
    text = row.locator("pre.report-text")
    text.wait_for()
    return tab, row, text, markdown


def test_the_row_shows_the_report_as_text(open_tab, world):
    tab, row, text, markdown = open_report(open_tab, world)
    assert text.inner_text() == markdown.rstrip("\n") or text.inner_text() == markdown
    assert "## What was seen" in text.inner_text() and "suture approve" in text.inner_text()
    assert row.locator(".report h2, .report a, .report script").count() == 0  # text, never parsed as HTML
    assert row.get_by_role("button", name="report").get_attribute("aria-expanded") == "true"
    assert tab.errors == []


def test_copy_puts_the_markdown_on_the_clipboard(open_tab, world):
    tab, row, _, markdown = open_report(open_tab, world)
    page = tab.page
    row.get_by_role("button", name="Copy").click()
    page.wait_for_selector("#toast:has-text('Report copied')")
    assert page.evaluate("navigator.clipboard.readText()") == markdown
    assert tab.errors == []


def test_copy_falls_back_to_a_selected_textarea(open_tab, world):
    tab, row, _, markdown = open_report(open_tab, world)
    page = tab.page
    page.evaluate("""() => { window.realClipboard = navigator.clipboard;
        window.realClipboard.writeText('');
        Object.defineProperty(navigator, 'clipboard', { value: undefined, configurable: true }); }""")
    row.get_by_role("button", name="Copy").click()
    page.wait_for_selector("#toast:has-text('Report copied')")
    assert page.evaluate("window.realClipboard.readText()") == markdown
    assert page.locator("textarea.copy-buffer").count() == 0  # removed after the copy
    assert tab.errors == []
