"""End to end with real QEMU (TCG): platform images, RunInstances, SSH, CreateImage, relaunch.

One server for the module (its own data dir) and one ``goldsmith platform build`` (the build
cache is reused: ``$GOLDSMITH_BUILD_CACHE`` or ``~/.cache/goldsmith-test``). Every QEMU
process the server started is killed by PID at the end, whatever happened.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from PIL import Image

from goldsmith.store import Repository
from goldsmith.store.chunks import PackedChunks
from goldsmith.store.formats import chunk_name
from harness import Creds, Server, start_server, stop_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BOOT_TIMEOUT = 90.0


def build_cache() -> Path:
    return Path(os.environ.get("GOLDSMITH_BUILD_CACHE", Path.home() / ".cache" / "goldsmith-test"))


def kill_vms(data_dir: Path) -> None:
    for pid_file in data_dir.glob("regions/*/instances/*/qemu.pid"):
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)


@pytest.fixture(scope="module")
def vm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("gs-vm") / "data"
    srv = start_server(data_dir, env={"GOLDSMITH_ACCEL": "tcg"})
    try:
        yield srv
    finally:
        stop_server(srv.proc)
        kill_vms(data_dir)


@pytest.fixture(scope="module")
def platform_images(vm_server: Server) -> dict[str, str]:
    out = vm_server.cli("platform", "build", "--json", "--cache", str(build_cache()), check=False)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


@pytest.fixture(scope="module")
def tiny_image(platform_images: dict[str, str]) -> str:
    return platform_images["TinyImageId"]


def wait_state(
    ec2: Any, instance_id: str, *states: str, timeout: float = BOOT_TIMEOUT
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        inst = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
        if inst["State"]["Name"] in states:
            return dict(inst)
        assert time.monotonic() < deadline, f"{instance_id} stuck in {inst['State']}"
        time.sleep(0.3)


def ssh(
    key: Path, address: str, command: str, timeout: float = BOOT_TIMEOUT, user: str = "ec2-user"
) -> str:
    """Run ``command`` as ``user``, retrying until SSH answers (the guest may be booting)."""
    deadline = time.monotonic() + timeout
    while True:
        done = subprocess.run(
            [
                "ssh",
                "-i",
                str(key),
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "ConnectTimeout=3",
                "-o",
                "BatchMode=yes",
                "-o",
                "LogLevel=ERROR",
                f"{user}@{address}",
                command,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode == 0:
            return done.stdout
        assert time.monotonic() < deadline, f"ssh to {address} failed: {done.stderr}"
        time.sleep(0.5)


def new_key(ec2: Any, tmp_path: Path, name: str) -> Path:
    material = ec2.create_key_pair(KeyName=name)["KeyMaterial"]
    path = tmp_path / f"{name}.pem"
    path.write_text(material)
    path.chmod(0o600)
    return path


def wait_image(ec2: Any, image_id: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        image = ec2.describe_images(ImageIds=[image_id])["Images"][0]
        if image["State"] != "pending":
            return dict(image)
        assert time.monotonic() < deadline
        time.sleep(0.3)


def test_launch_ssh_create_image_and_find_the_file(
    vm_server: Server, tiny_image: str, tmp_path: Path
) -> None:
    account = vm_server.new_account()
    ec2 = vm_server.client(account)
    key = new_key(ec2, tmp_path, "e2e")
    started = time.monotonic()
    reply = ec2.run_instances(
        ImageId=tiny_image,
        MinCount=1,
        MaxCount=1,
        KeyName="e2e",
        InstanceType="t2.micro",
        UserData="#!/bin/sh\necho from-user-data > /home/ec2-user/ud.txt\n",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "e2e"}]}],
    )
    iid = reply["Instances"][0]["InstanceId"]
    inst = wait_state(ec2, iid, "running")
    address = inst["PublicIpAddress"]
    assert address.startswith("127.100.")
    assert ssh(key, address, "id -un").strip() == "ec2-user"
    boot_seconds = time.monotonic() - started
    # The user data ran (after SSH came up: wait for it).
    assert (
        ssh(key, address, "while [ ! -s ud.txt ]; do sleep 0.2; done; cat ud.txt").strip()
        == "from-user-data"
    )
    assert "goldsmith-tiny: ssh ready" in ec2.get_console_output(InstanceId=iid)["Output"]
    ssh(key, address, "echo precious > keep.txt && sync")

    image_id = ec2.create_image(
        InstanceId=iid,
        Name="e2e-image",
        Description="from e2e",
        BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 1}}],
        TagSpecifications=[
            {"ResourceType": "image", "Tags": [{"Key": "kind", "Value": "img"}]},
            {"ResourceType": "snapshot", "Tags": [{"Key": "kind", "Value": "snap"}]},
        ],
    )["ImageId"]
    image = wait_image(ec2, image_id)
    assert image["State"] == "available", image.get("StateReason")
    assert image["SourceInstanceId"] == iid
    assert {"Key": "kind", "Value": "img"} in image["Tags"]
    snap_id = image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    snap = ec2.describe_snapshots(SnapshotIds=[snap_id])["Snapshots"][0]
    assert snap["State"] == "completed" and {"Key": "kind", "Value": "snap"} in snap["Tags"]
    # The source instance came back after the clean shutdown.
    again = wait_state(ec2, iid, "running")
    assert ssh(key, again["PublicIpAddress"], "cat keep.txt").strip() == "precious"

    child = ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, KeyName="e2e")
    child_id = child["Instances"][0]["InstanceId"]
    child_inst = wait_state(ec2, child_id, "running")
    assert ssh(key, child_inst["PublicIpAddress"], "cat keep.txt").strip() == "precious"
    # The image's extra empty volume (CreateImage BlockDeviceMappings) is the guest's 2nd disk.
    assert [m["DeviceName"] for m in child_inst["BlockDeviceMappings"]] == ["/dev/xvda", "/dev/sdf"]
    sectors = ssh(key, child_inst["PublicIpAddress"], "cat /sys/block/vdb/size").strip()
    assert int(sectors) * 512 == 1024**3
    ec2.terminate_instances(InstanceIds=[iid, child_id])
    wait_state(ec2, iid, "terminated")
    wait_state(ec2, child_id, "terminated")
    print(f"RunInstances → SSH: {boot_seconds:.1f}s")


def test_stop_start_keeps_data_and_terminate_deletes_the_root_volume(
    vm_server: Server, tiny_image: str, tmp_path: Path
) -> None:
    ec2 = vm_server.client(vm_server.new_account())
    key = new_key(ec2, tmp_path, "ss")
    iid = ec2.run_instances(ImageId=tiny_image, MinCount=1, MaxCount=1, KeyName="ss")["Instances"][
        0
    ]["InstanceId"]
    inst = wait_state(ec2, iid, "running")
    ssh(key, inst["PublicIpAddress"], "echo survives > data.txt && sync")
    root = inst["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    ec2.stop_instances(InstanceIds=[iid])
    stopped = wait_state(ec2, iid, "stopped")
    assert stopped["StateReason"]["Code"] == "Client.UserInitiatedShutdown"
    ec2.start_instances(InstanceIds=[iid])
    inst = wait_state(ec2, iid, "running")
    assert ssh(key, inst["PublicIpAddress"], "cat data.txt").strip() == "survives"
    # A guest-initiated poweroff stops the instance (InstanceInitiatedShutdownBehavior=stop).
    subprocess.run(
        [
            "ssh",
            "-i",
            str(key),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            f"root@{inst['PublicIpAddress']}",
            "poweroff",
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    stopped = wait_state(ec2, iid, "stopped", timeout=60)
    assert stopped["StateReason"]["Code"] == "Client.InstanceInitiatedShutdown"
    ec2.terminate_instances(InstanceIds=[iid])
    wait_state(ec2, iid, "terminated")
    assert [v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]] == []
    with pytest.raises(ClientError) as info:
        ec2.describe_volumes(VolumeIds=[root])
    assert info.value.response["Error"]["Code"] == "InvalidVolume.NotFound"


def test_private_images_are_launched_only_by_grantees(
    vm_server: Server, tiny_image: str, tmp_path: Path
) -> None:
    owner: Creds = vm_server.new_account()
    grantee = vm_server.new_account()
    stranger = vm_server.new_account()
    ec2 = vm_server.client(owner)
    iid = ec2.run_instances(ImageId=tiny_image, MinCount=1, MaxCount=1)["Instances"][0][
        "InstanceId"
    ]
    wait_state(ec2, iid, "running")
    image_id = ec2.create_image(InstanceId=iid, Name="private-one", NoReboot=True)["ImageId"]
    assert wait_image(ec2, image_id)["State"] == "available"
    ec2.terminate_instances(InstanceIds=[iid])
    with pytest.raises(ClientError) as info:
        vm_server.client(stranger).run_instances(ImageId=image_id, MinCount=1, MaxCount=1)
    assert info.value.response["Error"]["Code"] == "InvalidAMIID.NotFound"
    ec2.modify_image_attribute(
        ImageId=image_id, LaunchPermission={"Add": [{"UserId": grantee.account_id}]}
    )
    theirs = vm_server.client(grantee)
    gid = theirs.run_instances(ImageId=image_id, MinCount=1, MaxCount=1)["Instances"][0][
        "InstanceId"
    ]
    assert wait_state(theirs, gid, "running")["ImageId"] == image_id
    theirs.terminate_instances(InstanceIds=[gid])
    wait_state(theirs, gid, "terminated")
    wait_state(ec2, iid, "terminated")


def test_bad_input(vm_server: Server, tiny_image: str) -> None:
    ec2 = vm_server.client(vm_server.new_account())

    def code(**params: Any) -> str:
        with pytest.raises(ClientError) as info:
            ec2.run_instances(**{"ImageId": tiny_image, "MinCount": 1, "MaxCount": 1, **params})
        return str(info.value.response["Error"]["Code"])

    assert code(InstanceType="z9.mega") == "InvalidParameterValue"
    assert code(InstanceType="r5.large", MinCount=15, MaxCount=15) == "InsufficientInstanceCapacity"
    assert code(ImageId="ami-0123456789abcdef0") == "InvalidAMIID.NotFound"
    assert code(KeyName="missing") == "InvalidKeyPair.NotFound"
    with pytest.raises(ClientError) as info:
        ec2.stop_instances(InstanceIds=["i-0123456789abcdef0"])
    assert info.value.response["Error"]["Code"] == "InvalidInstanceID.NotFound"


def test_cli_run_list_console_terminate(vm_server: Server, tiny_image: str) -> None:
    endpoint = ["--endpoint", vm_server.endpoint]
    out = vm_server.cli("run", tiny_image, "--name", "from-cli", "--json", *endpoint)
    (inst,) = json.loads(out.stdout)
    iid = inst["InstanceId"]
    assert inst["State"]["Name"] == "running" and "SSH accepting" in out.stderr
    listed = json.loads(vm_server.cli("instances", "list", "--json", *endpoint).stdout)
    assert iid in [i["InstanceId"] for i in listed]
    console = vm_server.cli("console", iid, *endpoint).stdout
    assert "goldsmith-tiny:" in console
    done = vm_server.cli("instances", "terminate", iid, *endpoint).stdout
    assert f"{iid}: running → shutting-down" in done
    wait_state(vm_server.client(), iid, "terminated")


def damage_chunks(store_dir: Path, snapshot_id: str) -> int:
    """Flip a byte in the middle of every stored chunk record of ``snapshot_id`` (on disk,
    behind the running server's back, as a failing disk would)."""
    repo = Repository.open(store_dir, create=False)
    damaged = 0
    repo.chunks.refresh()  # packs written since the index was read
    for digest in set(repo.manifest(snapshot_id).entries.values()):
        if isinstance(repo.chunks, PackedChunks):
            where = repo.chunks.locate(digest)
            assert where is not None
            name, offset, length = where
        else:
            name, offset = chunk_name(digest), 0
            length = (store_dir / name).stat().st_size
        with (store_dir / name).open("r+b") as f:
            f.seek(offset + length // 2)
            byte = f.read(1)
            f.seek(offset + length // 2)
            f.write(bytes([byte[0] ^ 0xFF]))
        damaged += 1
    return damaged


def ebs_snapshot(vm_server: Server, account: Creds, blocks: int = 2) -> str:
    """A 1 GiB snapshot with ``blocks`` random 512 KiB blocks (EBS direct API), completed."""
    ebs = vm_server.client(account, service="ebs")
    sid = str(ebs.start_snapshot(VolumeSize=1)["SnapshotId"])
    for index in range(blocks):
        data = os.urandom(512 * 1024)
        ebs.put_snapshot_block(
            SnapshotId=sid,
            BlockIndex=index,
            BlockData=data,
            DataLength=len(data),
            Checksum=base64.b64encode(hashlib.sha256(data).digest()).decode(),
            ChecksumAlgorithm="SHA256",
        )
    ebs.complete_snapshot(SnapshotId=sid, ChangedBlocksCount=blocks)
    ec2 = vm_server.client(account)
    deadline = time.monotonic() + 60
    while ec2.describe_snapshots(SnapshotIds=[sid])["Snapshots"][0]["State"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    return sid


def test_corrupt_snapshot_fails_the_launch_and_breaks_nothing_else(
    vm_server: Server, tiny_image: str
) -> None:
    """Issue 5's bad-input case: the instance of an image whose snapshot is damaged ends
    ``terminated`` with a reason naming the snapshot; the other VM keeps running (and shows
    its screen: GetConsoleScreenshot), the server answers, ``store check`` names it."""
    account = vm_server.new_account()
    ec2 = vm_server.client(account)
    other = ec2.run_instances(ImageId=tiny_image, MinCount=1, MaxCount=1)["Instances"][0][
        "InstanceId"
    ]
    sid = ebs_snapshot(vm_server, account)
    broken = ec2.register_image(
        Name="corrupt-root",
        RootDeviceName="/dev/xvda",
        VirtualizationType="hvm",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": sid}}],
    )["ImageId"]
    assert damage_chunks(vm_server.data_dir / "regions" / "us-east-1" / "store", sid) == 2
    iid = ec2.run_instances(ImageId=broken, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    failed = wait_state(ec2, iid, "terminated", timeout=60)
    assert failed["StateReason"]["Code"] == "Server.InternalError"
    message = failed["StateReason"]["Message"]
    assert message.startswith("Server.InternalError: Internal error on launch") and sid in message
    # Nothing else broke: the other instance runs and answers, the server answers.
    running = wait_state(ec2, other, "running")
    assert running["State"]["Name"] == "running"
    shot = ec2.get_console_screenshot(InstanceId=other, WakeUp=True)
    assert shot["InstanceId"] == other
    with Image.open(io.BytesIO(base64.b64decode(shot["ImageData"]))) as picture:
        assert picture.format == "JPEG" and picture.size[0] >= 320 and picture.size[1] >= 200
    assert ec2.describe_images(ImageIds=[broken])["Images"][0]["State"] == "available"
    ec2.terminate_instances(InstanceIds=[other])
    with pytest.raises(ClientError) as info:
        ec2.get_console_screenshot(InstanceId=iid)
    assert info.value.response["Error"]["Code"] == "IncorrectInstanceState"
    wait_state(ec2, other, "terminated")
    # The store check reports the damage and names the snapshot.
    check = vm_server.cli("store", "check", "--read-data", check=False)
    assert check.returncode == 1
    assert sid in check.stdout + check.stderr


def test_pv_grub_boots_the_kernel_in_the_root_volumes_boot(
    vm_server: Server, tiny_image: str, tmp_path: Path
) -> None:
    """A paravirtual image without KernelId: the tiny image's root with the platform kernel
    and initramfs copied into its /boot (debugfs, no mount) boots to its SSH prompt."""
    admin = vm_server.client()
    tiny = admin.describe_images(ImageIds=[tiny_image])["Images"][0]
    repo = Repository.open(vm_server.data_dir / "regions" / "us-east-1" / "store", create=False)

    def restore(image_id: str, dest: Path) -> Path:
        image = admin.describe_images(ImageIds=[image_id])["Images"][0]
        repo.restore(image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"], dest)
        return dest

    disk = restore(tiny_image, tmp_path / "root.raw")
    kernel = restore(tiny["KernelId"], tmp_path / "vmlinuz")
    initrd = restore(tiny["RamdiskId"], tmp_path / "initrd")
    script = (
        "mkdir /boot\n"
        f"write {kernel} /boot/vmlinuz-6.1.0-goldsmith\n"
        f"write {initrd} /boot/initrd.img-6.1.0-goldsmith\n"
    )
    (tmp_path / "cmds").write_text(script)
    subprocess.run(
        ["debugfs", "-w", "-f", str(tmp_path / "cmds"), str(disk)], check=True, capture_output=True
    )
    uploaded = vm_server.cli(
        "snapshots", "upload", str(disk), "--json", "--endpoint", vm_server.endpoint
    )
    snap = json.loads(uploaded.stdout)["SnapshotId"]
    image_id = admin.register_image(
        Name="pv-grub-tiny",
        RootDeviceName=tiny["RootDeviceName"],
        VirtualizationType="paravirtual",
        BlockDeviceMappings=[{"DeviceName": tiny["RootDeviceName"], "Ebs": {"SnapshotId": snap}}],
    )["ImageId"]
    iid = admin.run_instances(ImageId=image_id, MinCount=1, MaxCount=1)["Instances"][0][
        "InstanceId"
    ]
    try:
        inst = wait_state(admin, iid, "running")
        assert "KernelId" not in inst
        deadline = time.monotonic() + BOOT_TIMEOUT
        while "goldsmith-tiny: ssh ready" not in (
            admin.get_console_output(InstanceId=iid).get("Output") or ""
        ):
            assert time.monotonic() < deadline, "the PV-GRUB boot did not reach SSH"
            time.sleep(0.5)
    finally:
        admin.terminate_instances(InstanceIds=[iid])
    wait_state(admin, iid, "terminated")


DEBIAN_BOOT_TIMEOUT = 240.0


def test_debian_image_boots_with_uefi_and_applies_key_pair_and_user_data(
    vm_server: Server, platform_images: dict[str, str], tmp_path: Path
) -> None:
    account = vm_server.new_account()
    ec2 = vm_server.client(account)
    debian = platform_images["DebianImageId"]
    image = ec2.describe_images(ImageIds=[debian])["Images"][0]
    assert (image["VirtualizationType"], image["BootMode"], image["Public"]) == (
        "hvm",
        "uefi",
        True,
    )
    assert image["Name"].startswith("goldsmith-debian-12-")
    key = new_key(ec2, tmp_path, "deb")
    started = time.monotonic()
    iid = ec2.run_instances(
        ImageId=debian,
        MinCount=1,
        MaxCount=1,
        KeyName="deb",
        InstanceType="t3.micro",
        UserData="#!/bin/bash\necho debian-user-data-$(id -un) > /home/admin/ud.txt\n",
    )["Instances"][0]["InstanceId"]
    try:
        inst = wait_state(ec2, iid, "running", timeout=DEBIAN_BOOT_TIMEOUT)
        assert inst["BootMode"] == "uefi"
        address = inst["PublicIpAddress"]
        run_dir = next(vm_server.data_dir.glob(f"regions/*/instances/{iid}"))
        assert (run_dir / "OVMF_VARS.fd").is_file()  # the instance's own UEFI variables
        who = ssh(key, address, "id -un", timeout=DEBIAN_BOOT_TIMEOUT, user="admin")
        assert who.strip() == "admin"
        print(f"\nDebian: RunInstances -> SSH as admin in {time.monotonic() - started:.1f} s")
        user_data = ssh(
            key,
            address,
            "while [ ! -s ud.txt ]; do sleep 0.5; done; cat ud.txt",
            timeout=60,
            user="admin",
        )
        assert user_data.strip() == "debian-user-data-root"  # run once, as root
        hostname = ssh(key, address, "hostname", user="admin").strip()
        assert hostname == inst["PrivateDnsName"].split(".")[0]
        assert ssh(key, address, "sudo -n id -u", user="admin").strip() == "0"
    finally:
        ec2.terminate_instances(InstanceIds=[iid])
    wait_state(ec2, iid, "terminated", timeout=120)


def test_first_start_builds_and_publishes_the_platform_images(
    tmp_path_factory: pytest.TempPathFactory, vm_server: Server, platform_images: dict[str, str]
) -> None:
    """A fresh server (build on start on, warm build cache) publishes the images by itself
    while the API answers; the images are the same builds ``platform build`` made."""
    data_dir = tmp_path_factory.mktemp("gs-first") / "data"
    env = {"GOLDSMITH_PLATFORM_BUILD_ON_START": "1", "GOLDSMITH_BUILD_CACHE": str(build_cache())}
    srv = start_server(data_dir, env={"GOLDSMITH_HYPERVISOR": "fake", **env})
    try:
        ec2 = srv.client(srv.new_account())
        expected = {"goldsmith-tiny", "goldsmith-debian-12"}
        deadline = time.monotonic() + 180
        while True:
            images = ec2.describe_images(Owners=["amazon"])["Images"]
            series = {i["Name"].rsplit("-", 2)[0] for i in images if i["ImageType"] == "machine"}
            if expected <= series:
                break
            assert srv.proc.poll() is None
            assert time.monotonic() < deadline, srv.log_path.read_text()[-3000:]
            time.sleep(0.5)
        log = srv.log_path.read_text()
        assert "platform build: " in log and "%]" in log  # progress lines
        assert "platform build: done" in log
        # The same builds as the module's `platform build` (names end with the build key).
        theirs = vm_server.client(vm_server.new_account()).describe_images(
            ImageIds=[platform_images["TinyImageId"], platform_images["DebianImageId"]]
        )["Images"]
        assert {i["Name"].rsplit("-", 1)[1] for i in theirs} == {
            i["Name"].rsplit("-", 1)[1] for i in images if i["ImageType"] == "machine"
        }
    finally:
        stop_server(srv.proc)
    # A restart with images present does not build again.
    srv = start_server(data_dir, env={"GOLDSMITH_HYPERVISOR": "fake", **env})
    try:
        assert "building the platform images" not in srv.log_path.read_text()
    finally:
        stop_server(srv.proc)
