"""GetConsoleScreenshot with the fake hypervisor: a base64 JPEG of a running instance."""

from __future__ import annotations

import base64
import io

from instance_helpers import World
from PIL import Image


def test_screenshot_of_a_running_instance_is_a_base64_jpeg(world: World) -> None:
    ctx = world.account()
    iid = world.launch(ctx, world.image(ctx))
    out = world.call(ctx, "GetConsoleScreenshot", InstanceId=iid)
    assert out["InstanceId"] == iid
    data = base64.b64decode(out["ImageData"], validate=True)
    assert data[:3] == b"\xff\xd8\xff"  # JPEG SOI + marker, as EC2 returns
    with Image.open(io.BytesIO(data)) as picture:
        assert (picture.format, picture.size) == ("JPEG", (1, 1))


def test_wake_up_presses_a_key_first(world: World) -> None:
    ctx = world.account()
    iid = world.launch(ctx, world.image(ctx))
    world.call(ctx, "GetConsoleScreenshot", InstanceId=iid)
    console = world.hypervisor.console_output(world.handle(iid))
    assert b"woken" not in console
    world.call(ctx, "GetConsoleScreenshot", InstanceId=iid, WakeUp=True)
    assert b"woken by a key press" in world.hypervisor.console_output(world.handle(iid))


def test_screenshot_errors(world: World) -> None:
    ctx = world.account()
    iid = world.launch(ctx, world.image(ctx))
    assert world.code(ctx, "GetConsoleScreenshot") == "MissingParameter"
    assert (
        world.code(ctx, "GetConsoleScreenshot", InstanceId="i-0123456789abcdef0")
        == "InvalidInstanceID.NotFound"
    )
    assert world.code(ctx, "GetConsoleScreenshot", InstanceId="ami-12345678") == (
        "InvalidInstanceID.Malformed"
    )
    stranger = world.account()
    assert (
        world.code(stranger, "GetConsoleScreenshot", InstanceId=iid) == "InvalidInstanceID.NotFound"
    )
    world.call(ctx, "StopInstances", InstanceIds=[iid])
    world.settle()
    error = world.error(ctx, "GetConsoleScreenshot", InstanceId=iid)
    assert error.code == "IncorrectInstanceState" and iid in error.message


def test_a_vm_that_died_is_not_running(world: World) -> None:
    ctx = world.account()
    iid = world.launch(ctx, world.image(ctx))
    world.hypervisor.crash(world.handle(iid))  # not yet noticed by the poller
    assert world.code(ctx, "GetConsoleScreenshot", InstanceId=iid) == "IncorrectInstanceState"
