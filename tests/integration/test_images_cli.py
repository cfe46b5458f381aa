"""``goldsmith images`` end to end against a real server, as a user runs it.

Every API command runs as a subprocess with the caller's credentials in the environment
(the CLI is just another boto3 client); ``register-kernel``/``register-ramdisk`` are admin
commands on the server's data directory. What the CLI did is checked through boto3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from typer.testing import CliRunner

from goldsmith.cli.main import app as main_app
from harness import Creds, Server

pytestmark = pytest.mark.integration
MiB = 1024 * 1024


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def images(server: Server, creds: Creds, *args: str, ok: bool = True) -> Ran:
    """Run ``goldsmith images ARGS`` as ``creds`` against the server.

    In-process (typer's runner) to save an interpreter start per command; the CLI still
    reaches the server only over HTTP. ``test_cli_entry_point`` runs it as a real process.
    """
    env = {
        "AWS_ACCESS_KEY_ID": creds.access_key_id,
        "AWS_SECRET_ACCESS_KEY": creds.secret_access_key,
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_PROFILE": None,
        "AWS_DEFAULT_REGION": None,
        "GOLDSMITH_ENDPOINT": None,
    }
    result = CliRunner().invoke(
        main_app, ["images", *args, "--endpoint", server.endpoint], env=env, catch_exceptions=False
    )
    done = Ran(result.exit_code, result.stdout, result.stderr)
    assert (done.returncode == 0) == ok, done.stdout + done.stderr
    return done


def listing(server: Server, creds: Creds, *args: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = json.loads(images(server, creds, "list", "--json", *args).stdout)
    return out


def small_file(tmp_path: Path, name: str, size: int = MiB) -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path


def test_images_cli_end_to_end(server: Server, tmp_path: Path) -> None:
    owner, friend = server.new_account(), server.new_account()
    ec2, friend_ec2 = server.client(owner), server.client(friend)

    # Admin commands: kernel and ramdisk images from files, owned by the account named.
    kernel = server.cli(
        "images", "register-kernel", str(small_file(tmp_path, "vmlinuz")),
        "--account", owner.account_id, "--name", "cli-kernel",
    ).stdout.strip()  # fmt: skip
    ramdisk = server.cli(
        "images", "register-ramdisk", str(small_file(tmp_path, "initrd.img")),
        "--account", owner.account_id,
    ).stdout.strip()  # fmt: skip
    assert kernel.startswith("aki-") and ramdisk.startswith("ari-")
    described = {i["ImageId"]: i for i in ec2.describe_images(ImageIds=[kernel, ramdisk])["Images"]}
    assert described[kernel]["ImageType"] == "kernel" and described[kernel]["Name"] == "cli-kernel"
    assert described[ramdisk]["ImageType"] == "ramdisk"
    assert described[ramdisk]["Name"] == "initrd.img"  # default: the file's name
    refused = server.cli(
        "images", "register-kernel", str(tmp_path / "missing"), "--account", owner.account_id,
        check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and "no such file" in refused.stderr

    # register: a paravirtual image using them.
    root = server.cli(
        "platform", "snapshot", str(small_file(tmp_path, "root.raw", 2 * MiB)),
        "--account", owner.account_id,
    ).stdout.strip()  # fmt: skip
    image_id = images(
        server, owner, "register", "--name", "cli-pv-1", "--snapshot", root,
        "--virtualization-type", "paravirtual", "--kernel", kernel, "--ramdisk", ramdisk,
        "--description", "made by the CLI",
    ).stdout.strip()  # fmt: skip
    assert image_id.startswith("ami-")
    bad = images(
        server, owner, "register", "--name", "bad-snap", "--snapshot", "snap-bad", ok=False
    )
    assert "InvalidSnapshotID.Malformed" in bad.stderr

    # list (table and JSON, by name, filter, owner) and show.
    table = images(server, owner, "list", "--owner", "self").stdout
    assert image_id in table and "cli-pv-1" in table
    assert [i["ImageId"] for i in listing(server, owner, "--name", "cli-pv-*")] == [image_id]
    by_type = listing(server, owner, "--owner", "self", "--filter", "image-type=kernel,ramdisk")
    assert {i["ImageId"] for i in by_type} == {kernel, ramdisk}
    shown = json.loads(images(server, owner, "show", image_id).stdout)
    assert shown["KernelId"] == kernel and shown["RamdiskId"] == ramdisk
    assert shown["VirtualizationType"] == "paravirtual"
    assert shown["Description"] == "made by the CLI"
    missing = images(server, friend, "show", image_id, ok=False)
    assert "InvalidAMIID.NotFound" in missing.stderr

    # share / unshare with an account; make-public / --private.
    images(server, owner, "share", image_id, "--account", friend.account_id)
    assert [i["ImageId"] for i in listing(server, friend, "--executable-by", "self")] == [image_id]
    assert "give --account" in images(server, owner, "share", image_id, ok=False).stderr
    images(server, owner, "unshare", image_id, "--account", friend.account_id)
    assert listing(server, friend, "--executable-by", "self") == []
    images(server, owner, "make-public", image_id)
    assert friend_ec2.describe_images(ImageIds=[image_id])["Images"][0]["Public"] is True
    images(server, owner, "make-public", image_id, "--private")
    with pytest.raises(ClientError):
        friend_ec2.describe_images(ImageIds=[image_id])
    # Only the owner changes it: the CLI reports EC2's error and exits non-zero.
    denied = images(server, friend, "make-public", image_id, ok=False)
    assert "InvalidAMIID.NotFound" in denied.stderr

    # deprecate at a time, then cancel; disable / enable.
    images(server, owner, "deprecate", image_id, "--at", "2031-06-01T00:00:00Z")
    (image,) = ec2.describe_images(ImageIds=[image_id])["Images"]
    assert image["DeprecationTime"] == "2031-06-01T00:00:00.000Z"
    images(server, owner, "deprecate", image_id, "--cancel")
    assert "DeprecationTime" not in ec2.describe_images(ImageIds=[image_id])["Images"][0]
    images(server, owner, "disable", image_id)
    assert listing(server, owner, "--owner", "self", "--name", "cli-pv-*") == []
    disabled = listing(server, owner, "--owner", "self", "--include-disabled", "--name", "cli-pv-*")
    assert [i["State"] for i in disabled] == ["disabled"]
    images(server, owner, "enable", image_id)

    # deregister into the recycle bin (a rule through the rbin API), restore, then for good.
    server.client(owner, service="rbin").create_rule(
        ResourceType="EC2_IMAGE",
        RetentionPeriod={"RetentionPeriodValue": 1, "RetentionPeriodUnit": "DAYS"},
        ResourceTags=[{"ResourceTagKey": "keep"}],
    )
    ec2.create_tags(Resources=[image_id], Tags=[{"Key": "keep", "Value": "yes"}])
    images(server, owner, "deregister", image_id)
    assert [i["ImageId"] for i in ec2.list_images_in_recycle_bin()["Images"]] == [image_id]
    assert "restored" in images(server, owner, "restore", image_id).stdout
    ec2.delete_tags(Resources=[image_id], Tags=[{"Key": "keep"}])
    out = images(server, owner, "deregister", image_id, "--delete-snapshots").stdout
    assert f"{root}: success" in out
    assert ec2.list_images_in_recycle_bin()["Images"] == []
    gone = images(server, owner, "show", image_id, ok=False)
    assert "InvalidAMIID.NotFound" in gone.stderr


def test_cli_entry_point(server: Server) -> None:
    """``python -m goldsmith images list`` as a real process, credentials from the environment."""
    me = server.new_account()
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": me.access_key_id,
        "AWS_SECRET_ACCESS_KEY": me.secret_access_key,
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "GOLDSMITH_ENDPOINT": server.endpoint,
    }
    cmd = [sys.executable, "-m", "goldsmith", "images", "list", "--owner", "self", "--json"]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
