"""The console in a real browser: Debian's headless Chromium driven by Playwright.

Playwright's own browser downloads are never used: the tests launch ``/usr/bin/chromium``
(``scripts/debian-packages.txt`` installs it). Each test gets a fresh 1280×800 browser
context (its own cookies) on the session's real server. The main pages are saved as
screenshots to docs/console/*.png — the pictures in docs/console.md come from here.

Every form is found by its label or its role, so the tests also check that the markup is
accessible (labelled fields, captioned tables, named buttons).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_helpers import Images, new_account
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from harness import REPO, Creds, Server

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO / "docs" / "console"
VIEWPORT = {"width": 1280, "height": 800}
FAILED = "Sign-in failed. Check the credentials and try again."


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    assert CHROMIUM.exists(), "install Debian's chromium (scripts/setup does)"
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser, server: Server) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport=VIEWPORT, base_url=server.endpoint)
    context.set_default_timeout(15_000)
    yield context
    context.close()


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def sign_in(page: Page, name: str, secret: str) -> None:
    page.goto("/console/signin")
    page.get_by_label("Access key ID, account ID or alias").fill(name)
    page.get_by_label("Secret access key or console password").fill(secret)
    page.get_by_role("button", name="Sign in").click()


def signed_in_page(context: BrowserContext, creds: Creds) -> Page:
    page = context.new_page()
    sign_in(page, creds.access_key_id, creds.secret_access_key)
    expect(page.get_by_role("heading", name="Images")).to_be_visible()
    return page


def table_names(page: Page) -> list[str]:
    return page.locator("#images-table tbody tr td:first-child a").all_inner_texts()


def test_sign_in_wrong_secret_wrong_key_then_right(
    context: BrowserContext, server: Server, account: Creds
) -> None:
    page = context.new_page()
    sign_in(page, account.access_key_id, "not-the-secret-at-all")
    expect(page.get_by_role("alert")).to_have_text(FAILED)
    shot(page, "signin")
    sign_in(page, "AKIA" + "X" * 16, account.secret_access_key)
    expect(page.get_by_role("alert")).to_have_text(FAILED)
    sign_in(page, account.access_key_id, account.secret_access_key)
    expect(page).to_have_url(f"{server.endpoint}/console/images")
    expect(page.get_by_text(f"Account {account.account_id}")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to Goldsmith")).to_be_visible()
    page.goto("/console/keypairs")
    expect(page).to_have_url(f"{server.endpoint}/console/signin?next=/console/keypairs")


def test_find_images_by_search_filter_sort_and_page(
    context: BrowserContext, server: Server
) -> None:
    owner = new_account(server)
    images = Images(server, owner)
    for i in range(30):
        arch = "arm64" if i % 3 == 0 else "x86_64"
        images.register(f"debian-12-{arch}-202601{i + 1:02d}", Architecture=arch)
    for name in ("web-frontend-v1", "web-frontend-v2", "batch-worker"):
        images.register(name, Description=f"{name} golden image")
    page = signed_in_page(context, owner)
    expect(page.get_by_role("table")).to_contain_text("33 images")
    page.get_by_label("Search by name").fill("web-frontend")
    page.get_by_role("button", name="Apply").click()
    assert table_names(page) == ["web-frontend-v1", "web-frontend-v2"]
    page.get_by_role("link", name="Clear").click()
    page.get_by_label("Architecture").select_option("arm64")
    page.get_by_label("Per page").select_option("25")
    page.get_by_role("button", name="Apply").click()
    names = table_names(page)
    assert len(names) == 10
    assert all("arm64" in n for n in names)
    # Sort by name, descending, by clicking the column header twice.
    page.get_by_role("link", name="Name ▲").click()
    assert table_names(page) == sorted(names, reverse=True)
    page.get_by_role("link", name="Clear").click()
    page.get_by_label("Per page").select_option("25")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_text("Page 1 of 2")).to_be_visible()
    shot(page, "images")
    first = table_names(page)
    page.get_by_role("link", name="Next →").click()
    expect(page.get_by_text("Page 2 of 2")).to_be_visible()
    second = table_names(page)
    assert len(first) == 25 and len(second) == 8
    assert not set(first) & set(second)


def test_share_then_the_other_account_sees_it_shared_with_me(
    browser: Browser, context: BrowserContext, server: Server
) -> None:
    owner, friend = new_account(server), new_account(server)
    image_id = Images(server, owner).register("team-base-2026", Description="shared base")
    page = signed_in_page(context, owner)
    page.get_by_role("link", name="team-base-2026").click()
    expect(page.get_by_role("heading", name="Details")).to_be_visible()
    shot(page, "image-details")
    page.get_by_role("link", name="Permissions").click()
    page.get_by_label("Share with accounts").fill(friend.account_id)
    page.get_by_role("button", name="Share", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text(f"Shared {image_id}")
    expect(page.get_by_role("table")).to_contain_text(friend.account_id)
    shot(page, "image-permissions")
    other = browser.new_context(viewport=VIEWPORT, base_url=server.endpoint)
    try:
        theirs = signed_in_page(other, friend)
        expect(theirs.get_by_role("table")).to_contain_text("0 images")
        theirs.get_by_role("link", name="Shared with me").click()
        assert table_names(theirs) == ["team-base-2026"]
        shot(theirs, "images-shared-with-me")
    finally:
        other.close()


def test_deregister_with_snapshots_from_the_image_page(
    context: BrowserContext, server: Server
) -> None:
    owner = new_account(server)
    images = Images(server, owner)
    image_id = images.register("short-lived")
    page = signed_in_page(context, owner)
    page.goto(f"/console/images/{image_id}")
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_label("Also delete its snapshots").check()
    page.get_by_role("button", name="Deregister image").click()
    expect(page.get_by_role("status")).to_contain_text(f"{image_id} deregistered.")
    expect(page.get_by_role("table")).to_contain_text("No images match.")
    assert images.ec2.describe_images(Owners=["self"])["Images"] == []


def test_forms_without_csrf_and_crafted_posts_on_others_images_fail(
    browser: Browser, context: BrowserContext, server: Server
) -> None:
    owner, stranger = new_account(server), new_account(server)
    image_id = Images(server, owner).register("not-yours")
    page = signed_in_page(context, stranger)
    # A POST from the page's own origin, with the session cookie but without the token.
    status = page.evaluate(
        """(id) => fetch(`/console/images/${id}/deregister`, {method: 'POST',
             headers: {'Content-Type': 'application/x-www-form-urlencoded'},
             body: 'delete_snapshots=1'}).then(r => r.status)""",
        image_id,
    )
    assert status == 403
    # With the stranger's own valid token: the service refuses (the image is invisible).
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    answer = page.evaluate(
        """([id, token]) => fetch(`/console/images/${id}/deregister`, {method: 'POST',
             headers: {'Content-Type': 'application/x-www-form-urlencoded',
                       'Accept': 'application/json'},
             body: `csrf_token=${token}`}).then(r => r.json())""",
        [image_id, token],
    )
    assert answer["Error"]["Code"] == "InvalidAMIID.NotFound"
    page.goto(f"/console/images/{image_id}")
    expect(page.get_by_role("alert")).to_contain_text("InvalidAMIID.NotFound")
    assert server.client(owner).describe_images(ImageIds=[image_id])["Images"][0]["State"] == (
        "available"
    )


def test_pending_image_turns_available_without_a_reload(
    context: BrowserContext, server: Server
) -> None:
    owner = new_account(server)
    image_id = Images(server, owner).register("baking")
    catalog = server.data_dir / "catalog.db"

    def set_state(state: str) -> None:
        # What a CreateImage task does when it finishes, done behind the server's back.
        with sqlite3.connect(catalog, timeout=10) as db:
            db.execute("UPDATE images SET state = ? WHERE image_id = ?", (state, image_id))

    set_state("pending")
    page = signed_in_page(context, owner)
    badge = page.locator(f'[data-live-id="{image_id}"][data-live-field="State"]')
    expect(badge).to_have_text("pending")
    assert page.locator("body").get_attribute("data-live") == "/console/images"
    set_state("available")
    expect(badge).to_have_text("available", timeout=10_000)
    expect(page.locator("body")).not_to_have_attribute("data-live", "/console/images")


def test_copy_to_another_region_from_the_image_page(
    context: BrowserContext, server: Server
) -> None:
    owner = new_account(server)
    image_id = Images(server, owner).register("to-copy")
    page = signed_in_page(context, owner)
    page.goto(f"/console/images/{image_id}")
    page.get_by_label("Destination region").select_option("us-west-2")
    page.get_by_label("Name of the copy").fill("to-copy-west")
    page.get_by_role("button", name="Copy image").click()
    expect(page.get_by_role("status")).to_contain_text(f"Copying {image_id} to us-west-2")
    copy_row = page.get_by_role("row").filter(has_text="to-copy-west")
    expect(copy_row).to_contain_text("us-west-2")
    expect(copy_row).to_contain_text("available", timeout=30_000)
    shot(page, "image-lineage")
    page.get_by_label("Region").select_option("us-west-2")
    page.get_by_role("button", name="Switch").click()
    expect(page.get_by_role("heading", name="Images in us-west-2")).to_be_visible()
    assert table_names(page) == ["to-copy-west"]


def test_key_pairs_create_download_import_delete(
    context: BrowserContext, server: Server, account: Creds
) -> None:
    page = signed_in_page(context, account)
    page.get_by_role("link", name="Key pairs").click()
    page.get_by_label("Name").first.fill("laptop")
    page.get_by_role("button", name="Create key pair").click()
    expect(page.get_by_role("heading", name="Key pair laptop created")).to_be_visible()
    with page.expect_download() as info:
        page.get_by_role("link", name="Download laptop.pem").click()
    key = Path(info.value.path()).read_text()
    assert key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    page.get_by_role("link", name="Back to key pairs").click()
    page.locator("#i-name").fill("imported")
    page.get_by_label("Public key (OpenSSH").fill(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me"
    )
    page.get_by_role("button", name="Import key pair").click()
    expect(page.get_by_role("status")).to_contain_text("Key pair imported imported")
    expect(page.get_by_role("table")).to_contain_text("2 key pairs")
    shot(page, "keypairs")
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete laptop").click()
    expect(page.get_by_role("status")).to_contain_text("Key pair laptop deleted.")
    expect(page.get_by_role("table")).to_contain_text("1 key pair")


def test_region_selector_switches_region(context: BrowserContext, account: Creds) -> None:
    page = signed_in_page(context, account)
    page.get_by_label("Region").select_option("eu-west-1")
    page.get_by_role("button", name="Switch").click()
    expect(page.get_by_role("heading", name="Images in eu-west-1")).to_be_visible()
    page.get_by_role("link", name="Key pairs").click()
    expect(page.get_by_role("heading", name="Key pairs in eu-west-1")).to_be_visible()
