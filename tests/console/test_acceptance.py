"""The console's acceptance test: the whole job in a real browser, with a real VM.

Debian's headless Chromium, driven by Playwright, on a server of its own that runs QEMU
(TCG) and has the platform images published (``goldsmith platform build --no-debian``,
from the build cache shared with tests/integration/test_instances_e2e.py:
``$GOLDSMITH_BUILD_CACHE`` or ``~/.cache/goldsmith-test``). One account signs in, finds
the platform's tiny image by filter, launches it through the wizard (creating a key pair and
downloading its private key), watches the instance reach ``running`` without reloading,
connects with the ``ssh`` command the page shows, reads the console output, creates an image
from the instance, watches it become ``available``, shares it with a second account — who
signs in and finds it under "Shared with me" — and finally deregisters it.

Screenshots of the instances page, the launch wizard, the snapshots and the volumes pages
are saved to docs/console/*.png (1280×800). Every QEMU process the server started is killed
by PID at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_helpers import new_account
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from harness import REPO, Creds, Server, start_server, stop_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO / "docs" / "console"
VIEWPORT = {"width": 1280, "height": 800}
BOOT_TIMEOUT_MS = 90_000
SSH_OPTIONS = ["ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
SSH_OPTIONS += ["-o", "ConnectTimeout=3", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]


def build_cache() -> Path:
    return Path(os.environ.get("GOLDSMITH_BUILD_CACHE", Path.home() / ".cache" / "goldsmith-test"))


def kill_vms(data_dir: Path) -> None:
    for pid_file in data_dir.glob("regions/*/instances/*/qemu.pid"):
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)


@pytest.fixture(scope="module")
def vm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("gs-console-vm") / "data"
    srv = start_server(data_dir, env={"GOLDSMITH_ACCEL": "tcg"})
    try:
        yield srv
    finally:
        stop_server(srv.proc)
        kill_vms(data_dir)


@pytest.fixture(scope="module")
def tiny_image(vm_server: Server) -> str:
    out = vm_server.cli(
        "platform", "build", "--json", "--no-debian", "--cache", str(build_cache()), check=False
    )
    assert out.returncode == 0, out.stderr
    return str(json.loads(out.stdout)["TinyImageId"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), "install Debian's chromium (scripts/setup does)"
    with sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


def new_context(browser: Browser, server: Server) -> BrowserContext:
    context = browser.new_context(
        viewport=VIEWPORT, base_url=server.endpoint, accept_downloads=True
    )
    context.set_default_timeout(20_000)
    return context


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def sign_in(context: BrowserContext, creds: Creds) -> Page:
    page = context.new_page()
    page.goto("/console/signin")
    page.get_by_label("Access key ID, account ID or alias").fill(creds.access_key_id)
    page.get_by_label("Secret access key or console password").fill(creds.secret_access_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Images")).to_be_visible()
    return page


def ssh(key: Path, command_shown: str, remote: str, timeout: float = 60) -> str:
    """Run the page's ``ssh -i KEY.pem user@address`` with the downloaded key, retrying
    while the guest's SSH server comes up."""
    user_at = command_shown.rsplit(maxsplit=1)[-1]
    deadline = time.monotonic() + timeout
    while True:
        done = subprocess.run(
            [*SSH_OPTIONS, "-i", str(key), user_at, remote],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode == 0:
            return done.stdout
        assert time.monotonic() < deadline, f"{command_shown}: {done.stderr}"
        time.sleep(0.5)


def launch_from_the_image_page(page: Page, tmp_path: Path) -> tuple[str, Path]:
    """Find the tiny image by filter, launch it through the wizard; the instance id and the
    downloaded private key."""
    page.get_by_role("link", name="Public images").click()
    page.get_by_label("Search by name").fill("goldsmith-tiny")
    page.get_by_label("Virtualization type").select_option("paravirtual")
    page.get_by_role("button", name="Apply").click()
    images = page.locator("#images-table tbody tr td:first-child a")
    expect(images).to_have_count(1)
    images.first.click()
    page.get_by_role("link", name="Launch with options…").click()
    expect(page.get_by_role("heading", name="Launch an instance")).to_be_visible()
    expect(page.locator("#chosen-image")).to_contain_text("goldsmith-tiny")
    page.get_by_label("Name", exact=True).fill("acceptance-box")
    page.get_by_label("t2.micro").check()
    page.get_by_label("Create a new key pair").check()
    page.get_by_label("New key pair name").fill("acceptance")
    page.get_by_label("User data").fill(
        "#!/bin/sh\necho from-the-console > /home/ec2-user/ud.txt\n"
    )
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "launch-wizard")
    page.get_by_role("button", name="Launch instance").click()
    expect(
        page.get_by_role("heading", name="Launched with the new key pair acceptance")
    ).to_be_visible()
    with page.expect_download() as info:
        page.get_by_role("link", name="Download acceptance.pem").click()
    key = tmp_path / "acceptance.pem"
    key.write_text(Path(info.value.path()).read_text())
    key.chmod(0o600)
    instance_id = page.locator(".flash-success a code").first.inner_text()
    assert re.fullmatch(r"i-[0-9a-f]{17}", instance_id)
    return instance_id, key


def test_find_launch_watch_capture_share_and_deregister(
    vm_server: Server, tiny_image: str, browser: Browser, tmp_path: Path
) -> None:
    owner, friend = new_account(vm_server), new_account(vm_server)
    ec2 = vm_server.client(owner)
    context = new_context(browser, vm_server)
    try:
        page = sign_in(context, owner)
        instance_id, key = launch_from_the_image_page(page, tmp_path)

        # The instances table turns the state to running by itself (no reload by the test).
        page.get_by_role("link", name="Go to instances").click()
        badge = page.locator(f'#instances-table [data-live-id="{instance_id}"]')
        expect(badge).to_have_text("running", timeout=BOOT_TIMEOUT_MS)
        command = page.locator("#instances-table code.ssh")
        expect(command).to_contain_text("ssh -i acceptance.pem ec2-user@127.100.")
        assert ssh(key, command.inner_text(), "id -un").strip() == "ec2-user"
        waited = "while [ ! -s ud.txt ]; do sleep 0.2; done; cat ud.txt"
        assert ssh(key, command.inner_text(), waited).strip() == "from-the-console"
        shot(page, "instances")

        # The console output viewer, refreshable.
        page.get_by_role("link", name=instance_id).click()
        page.get_by_role("link", name="Console output").click()
        page.get_by_role("link", name="Refresh").click()
        expect(page.locator("#console-output")).to_contain_text("goldsmith-tiny: ssh ready")

        # Create image (no reboot): the image page follows it from pending to available.
        page.get_by_role("link", name="Details").click()
        page.get_by_label("Image name").fill("acceptance-image")
        page.get_by_label("Description").fill("made in the console")
        page.get_by_label("No reboot").check()
        page.get_by_role("button", name="Create image").click()
        expect(page.get_by_role("status")).to_contain_text("Creating image ami-")
        image_id = page.url.rsplit("/", 1)[-1].split("?")[0]
        state = page.locator(f'h1 [data-live-id="{image_id}"][data-live-field="State"]')
        expect(state).to_have_text("available", timeout=60_000)

        # Share it with the friend.
        page.get_by_role("link", name="Permissions").click()
        page.get_by_label("Share with accounts").fill(friend.account_id)
        page.get_by_role("button", name="Share", exact=True).click()
        expect(page.get_by_role("status")).to_contain_text(f"Shared {image_id}")

        # The snapshot behind the image, and the instance's root volume.
        page.get_by_role("link", name="Snapshots").click()
        expect(page.locator("#snapshots-table")).to_contain_text("completed")
        shot(page, "snapshots")
        page.get_by_role("link", name="Volumes").click()
        expect(page.locator("#volumes-table")).to_contain_text(instance_id)
        shot(page, "volumes")

        # The friend signs in and sees it under "Shared with me".
        other = new_context(browser, vm_server)
        try:
            theirs = sign_in(other, friend)
            theirs.get_by_role("link", name="Shared with me").click()
            names = theirs.locator("#images-table tbody tr td:first-child a")
            expect(names).to_have_text(["acceptance-image"])
        finally:
            other.close()

        # The owner deregisters it.
        page.goto(f"/console/images/{image_id}")
        page.on("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Deregister image").click()
        expect(page.get_by_role("status")).to_contain_text(f"{image_id} deregistered.")
        assert ec2.describe_images(Owners=["self"])["Images"] == []
        # The instance it came from is unaffected.
        found = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]
        assert found["Instances"][0]["State"]["Name"] == "running"
    finally:
        context.close()
        with contextlib.suppress(Exception):
            ids = [
                i["InstanceId"]
                for r in ec2.describe_instances()["Reservations"]
                for i in r["Instances"]
            ]
            if ids:
                ec2.terminate_instances(InstanceIds=ids)
