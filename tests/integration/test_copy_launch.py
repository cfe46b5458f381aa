"""Copy the platform's tiny image to another region and boot it there (real QEMU, TCG).

The tiny image is paravirtual: its kernel (``aki-``) and ramdisk (``ari-``) images are
copied along with it, so the copy boots in the destination with nothing from the source
region. Uses the shared build cache (``$GOLDSMITH_BUILD_CACHE`` or
``~/.cache/goldsmith-test``) like the instance end-to-end tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import Server, start_server, stop_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DST = "eu-west-1"


@pytest.fixture
def vm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # a short directory: QEMU's QMP/serial unix sockets live under the instance directory,
    # and a socket path must stay under 108 bytes
    data_dir = tmp_path_factory.mktemp("cl") / "data"
    srv = start_server(data_dir, env={"GOLDSMITH_ACCEL": "tcg"})
    try:
        yield srv
    finally:
        stop_server(srv.proc)
        for pid_file in data_dir.glob("regions/*/instances/*/qemu.pid"):
            with contextlib.suppress(ValueError, OSError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)


def wait_for(fn: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_copied_tiny_image_boots_in_the_destination(vm_server: Server) -> None:
    cache = Path(os.environ.get("GOLDSMITH_BUILD_CACHE", Path.home() / ".cache/goldsmith-test"))
    out = vm_server.cli(
        "platform", "build", "--no-debian", "--json", "--cache", str(cache), check=False
    )
    assert out.returncode == 0, out.stderr
    tiny = json.loads(out.stdout)["TinyImageId"]
    user = vm_server.new_account()
    eu = vm_server.client(user, region=DST)

    copy = eu.copy_image(SourceRegion="us-east-1", SourceImageId=tiny, Name="tiny-in-eu")
    image = wait_for(
        lambda: (
            (i := eu.describe_images(ImageIds=[copy["ImageId"]])["Images"][0])["State"] != "pending"
            and i
        ),
        120,
        "the copy",
    )
    assert image["State"] == "available", image.get("StateReason")
    assert image["KernelId"].startswith("aki-") and image["RamdiskId"].startswith("ari-")
    kernel = eu.describe_images(ImageIds=[image["KernelId"]])["Images"][0]
    assert kernel["OwnerId"] == user.account_id and kernel["SourceImageRegion"] == "us-east-1"

    iid = eu.run_instances(ImageId=copy["ImageId"], MinCount=1, MaxCount=1)["Instances"][0][
        "InstanceId"
    ]
    try:
        deadline, console = time.monotonic() + 90, ""
        while "goldsmith-tiny:" not in console and time.monotonic() < deadline:
            time.sleep(0.5)
            console = eu.get_console_output(InstanceId=iid, Latest=True).get("Output") or ""
        state = eu.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
        assert "goldsmith-tiny:" in console, (state["State"], state.get("StateReason"), console)
    finally:
        eu.terminate_instances(InstanceIds=[iid])
