"""The dashboard in a real headless Chromium (Debian's, driven by Playwright): open the
overview, find a failed flow through the list filter, open it, rewind it behind the
confirmation, and see its state change. scripts/_browser installs Chromium."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ops_browser import chromium, dashboard_thread, have_chromium
from ops_helpers import EVIL, seed
from playwright.sync_api import expect

# Skipped without Chromium on a developer's machine; in CI (CI=true) its absence fails.
pytestmark = pytest.mark.skipif(
    not have_chromium() and not os.environ.get("CI"),
    reason="needs /usr/bin/chromium (scripts/_browser installs it)",
)


def test_find_a_failed_flow_and_rewind_it(tmp_path: Path) -> None:
    with dashboard_thread(tmp_path / "d", seed, refresh_ms=250) as (url, ids), chromium() as page:
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(url)
        assert page.locator("h1").inner_text() == "Overview"
        assert page.locator("#live-status").inner_text() in ("live", "disconnected")
        expect(page.locator("#fig-rps")).not_to_have_text("-")  # a second poll came
        assert page.locator("text=Recent failures").count() == 1
        assert page.locator("#live-new").is_hidden()  # every count has its cell

        page.click("header nav >> text=Flows")
        page.select_option("#f-type", "order")
        page.select_option("#f-state", "failed")
        page.click("#f-apply")
        rows = page.locator("table.flows tbody tr")
        assert rows.count() == 1
        page.click(f"table.flows >> text={ids['failed']}")

        assert page.locator("h1 .id").inner_text() == ids["failed"]
        assert page.locator(".panel dl.fields .badge").first.inner_text() == "failed"
        page.locator("a.rewind[data-version='1']").click()  # the "created" event
        assert page.locator("h1").inner_text() == "Confirm: rewind"
        page.click("#confirm")

        page.wait_for_selector(".flash.ok")
        assert "Rewound to v1" in page.locator(".flash").inner_text()
        assert page.locator(".panel dl.fields .badge").first.inner_text() == "charge"
        assert page.locator("ol.timeline li .ev").first.inner_text() == "rewound"

        # a hostile id, state and payload render as text; no script ran
        page.goto(url + "/flows?type=order&state=" + EVIL.replace("<", "%3C").replace(">", "%3E"))
        page.click("table.flows a")
        assert page.locator("h1 .id").inner_text() == ids["evil"]
        assert EVIL in page.locator("#blob-payload").inner_text()
        page.click("button[data-value]")  # a named value, fetched on click
        expect(page.locator("#value-0")).to_contain_text("bytes")
        assert EVIL in page.locator("#value-0").inner_text()
        assert dialogs == []
