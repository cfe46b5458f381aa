"""Snapshots in a real browser: copy to another region and follow its percentage live,
share it, create a volume from it.

Debian's headless Chromium through Playwright, on the session's shared server. A copy of a
one-block snapshot finishes at once, so the test puts the copy back to ``pending`` behind the
server's back (as a long copy would be) and moves its progress, to see the page follow it
without a reload.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_helpers import make_snapshot, new_account
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from harness import Creds, Server

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
VIEWPORT = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), "install Debian's chromium (scripts/setup does)"
    with sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def context(browser: Browser, server: Server) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport=VIEWPORT, base_url=server.endpoint)
    context.set_default_timeout(15_000)
    yield context
    context.close()


def sign_in(context: BrowserContext, creds: Creds) -> Page:
    page = context.new_page()
    page.goto("/console/signin")
    page.get_by_label("Access key ID, account ID or alias").fill(creds.access_key_id)
    page.get_by_label("Secret access key or console password").fill(creds.secret_access_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Images")).to_be_visible()
    return page


def test_copy_to_another_region_shows_its_progress_live(
    context: BrowserContext, server: Server
) -> None:
    owner = new_account(server)
    snap = make_snapshot(server, owner)
    page = sign_in(context, owner)
    page.get_by_role("link", name="Snapshots").click()
    page.get_by_role("link", name=snap).click()
    page.get_by_label("Destination region").select_option("eu-west-1")
    page.get_by_role("button", name="Copy snapshot").click()
    expect(page.get_by_role("status")).to_contain_text(f"Copying {snap} (us-east-1) to eu-west-1")
    copy_id = page.url.split("/console/snapshots/", 1)[1].split("?", 1)[0]
    assert page.url.endswith(f"{copy_id}?region=eu-west-1")
    expect(page.get_by_text("in eu-west-1", exact=True)).to_be_visible()

    def set_copy(state: str, progress: int) -> None:
        # What the copy task writes as chunks move, done behind the server's back.
        with sqlite3.connect(server.data_dir / "catalog.db", timeout=10) as db:
            db.execute(
                "UPDATE snapshots SET state = ?, progress = ? WHERE snapshot_id = ?",
                (state, progress, copy_id),
            )

    set_copy("pending", 40)
    page.reload()
    badge = page.locator(f'h1 [data-live-id="{copy_id}"][data-live-field="State"]')
    progress = page.locator("#snapshot-progress")
    expect(badge).to_have_text("pending")
    expect(progress).to_have_text("40%")
    assert page.locator("body").get_attribute("data-live") == (
        f"/console/snapshots/{copy_id}?region=eu-west-1"
    )
    set_copy("pending", 70)
    expect(progress).to_have_text("70%", timeout=10_000)
    set_copy("completed", 100)
    expect(badge).to_have_text("completed", timeout=10_000)
    expect(progress).to_have_text("100%")
    expect(page.locator("body")).not_to_have_attribute(
        "data-live", f"/console/snapshots/{copy_id}?region=eu-west-1"
    )


def test_share_a_snapshot_and_make_a_volume_from_it(
    browser: Browser, context: BrowserContext, server: Server
) -> None:
    owner, friend = new_account(server), new_account(server)
    snap = make_snapshot(server, owner)
    page = sign_in(context, owner)
    page.goto(f"/console/snapshots/{snap}")
    page.get_by_label("Share with accounts").fill(friend.account_id)
    page.get_by_role("button", name="Share", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text(f"Shared {snap} with {friend.account_id}")
    expect(page.get_by_role("table")).to_contain_text(friend.account_id)
    page.get_by_role("link", name="Create volume from snapshot").click()
    expect(page.get_by_label("From snapshot (optional)")).to_have_value(snap)
    page.get_by_label("Name (optional)").fill("restored")
    page.get_by_role("button", name="Create volume").click()
    expect(page.get_by_role("status")).to_contain_text("Created volume vol-")
    expect(page.locator("dl.details")).to_contain_text(snap)
    other = browser.new_context(viewport=VIEWPORT, base_url=server.endpoint)
    try:
        theirs = sign_in(other, friend)
        theirs.get_by_role("link", name="Snapshots").click()
        theirs.get_by_role("link", name="Shared with me").click()
        expect(theirs.locator("#snapshots-table tbody")).to_contain_text(snap)
        theirs.get_by_role("link", name=snap).click()
        expect(theirs.get_by_role("button", name="Delete snapshot")).to_have_count(0)
        expect(theirs.get_by_role("button", name="Make public")).to_have_count(0)
    finally:
        other.close()
