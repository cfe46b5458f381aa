"""Launch benchmark: RunInstances latency, tiny image boot to SSH, incremental CreateImage.

Runs a real ``goldsmith serve`` (TCG) in a temporary data directory, publishes the platform
images (``goldsmith platform build``, build cache ``$GOLDSMITH_BUILD_CACHE`` or
``~/.cache/goldsmith-test``) and prints one JSON line per metric (bench/_common.emit):

- ``run_instances_p50_ms`` (target ≤ 300) and ``run_instances_8g_vs_1g`` (p50 ratio ≤ 1.2):
  the API call for hvm images with 1 GiB and 8 GiB roots;
- ``tiny_run_to_ssh_s``: RunInstances → the SSH banner on <PublicIpAddress>:22 (≤ 6);
- ``create_image_10mib_vs_full``: CreateImage (pending → available) of a stopped instance
  whose 2 GiB root changed 10 MiB (160 × 64 KiB), vs a full snapshot of the same volume
  (export every byte + store it) (≤ 0.10).

``--quick``: fewer repetitions and less data in the 2 GiB volume.
Every QEMU process is killed by PID at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit
from harness import Server, start_server, stop_server

GIB = 1024**3
MIB = 1024**2


def build_cache() -> Path:
    return Path(os.environ.get("GOLDSMITH_BUILD_CACHE", Path.home() / ".cache" / "goldsmith-test"))


def kill_vms(data_dir: Path) -> None:
    for pid_file in data_dir.glob("regions/*/instances/*/qemu.pid"):
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)


def wait(fn: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("timed out")
        time.sleep(0.05)


def state(ec2: Any, iid: str) -> str:
    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    return str(inst["State"]["Name"])


def ssh_banner(address: str) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        if sock.connect_ex((address, 22)) != 0:
            return False
        try:
            return sock.recv(4) == b"SSH-"
        except OSError:
            return False


def sparse_disk(path: Path, size: int, data: int) -> Path:
    """A raw disk of ``size`` bytes with ``data`` bytes of random content at its start."""
    with path.open("wb") as f:
        f.truncate(size)
        left = data
        while left > 0:
            n = min(left, 8 * MIB)
            f.write(random.randbytes(n))
            left -= n
    return path


def register(server: Server, ec2: Any, account: str, path: Path, name: str) -> str:
    snap = server.cli("platform", "snapshot", str(path), "--account", account).stdout.strip()
    return str(
        ec2.register_image(
            Name=name,
            RootDeviceName="/dev/xvda",
            VirtualizationType="hvm",
            BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}],
        )["ImageId"]
    )


def bench_run_latency(server: Server, ec2: Any, account: str, tmp: Path, reps: int) -> None:
    images = {
        size: register(
            server,
            ec2,
            account,
            sparse_disk(tmp / f"d{size}", size * GIB, 8 * MIB),
            f"bench-{size}g",
        )
        for size in (1, 8)
    }
    p50: dict[int, float] = {}
    for size, image in images.items():
        times = []
        for _ in range(reps):
            started = time.perf_counter()
            iid = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t2.nano")[
                "Instances"
            ][0]["InstanceId"]
            times.append(time.perf_counter() - started)
            wait(lambda iid=iid: state(ec2, iid) != "pending")
            ec2.terminate_instances(InstanceIds=[iid])
            wait(lambda iid=iid: state(ec2, iid) == "terminated")
        p50[size] = statistics.median(times) * 1000
    emit("run_instances_p50_ms", p50[1], "ms", target="<=300", on="value")
    emit("run_instances_8g_vs_1g", p50[8], "ms", baseline=p50[1], target="<=1.2")


def bench_tiny_ssh(ec2: Any, tiny: str, reps: int) -> None:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        iid = ec2.run_instances(ImageId=tiny, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
        wait(lambda a=inst["PublicIpAddress"]: ssh_banner(a), timeout=120)
        times.append(time.perf_counter() - started)
        ec2.terminate_instances(InstanceIds=[iid])
        wait(lambda iid=iid: state(ec2, iid) == "terminated")
    emit("tiny_run_to_ssh_s", statistics.median(times), "s", target="<=6", on="value")


def bench_create_image(server: Server, ec2: Any, account: str, tmp: Path, data: int) -> None:
    from goldsmith.compute.volumes import export_changed
    from goldsmith.store import Repository

    image = register(server, ec2, account, sparse_disk(tmp / "d2", 2 * GIB, data), "bench-2g")
    iid = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t2.nano")[
        "Instances"
    ][0]["InstanceId"]
    wait(lambda: state(ec2, iid) == "running")
    ec2.stop_instances(InstanceIds=[iid])
    wait(lambda: state(ec2, iid) == "stopped")
    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    volume = inst["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    region_dir = server.data_dir / "regions" / "us-east-1"
    overlay = region_dir / "volumes" / f"{volume}.qcow2"
    rng = random.Random(5)
    commands = []
    for offset in sorted(rng.sample(range(0, 2 * GIB // (64 * 1024)), 160)):
        commands += ["-c", f"write -P {rng.randrange(1, 255)} {offset * 64 * 1024} 64k"]
    subprocess.run(
        ["qemu-io", "-f", "qcow2", *commands, str(overlay)], check=True, capture_output=True
    )
    started = time.perf_counter()
    new = ec2.create_image(InstanceId=iid, Name="bench-captured")["ImageId"]
    wait(lambda: ec2.describe_images(ImageIds=[new])["Images"][0]["State"] != "pending", 300)
    incremental = time.perf_counter() - started
    # Baseline: a full snapshot of the same volume (every byte exported and stored).
    repo = Repository.open(region_dir / "store")
    with tempfile.TemporaryDirectory(dir=region_dir) as scratch:
        raw = Path(scratch) / "full.raw"
        started = time.perf_counter()
        export_changed(overlay, raw, [(0, 2 * GIB)], align=repo.chunk_size, force_share=False)
        repo.snapshot_file(raw, "snap-0bench0full000000")
        full = time.perf_counter() - started
    repo.delete_snapshot("snap-0bench0full000000")
    emit("create_image_10mib_vs_full", incremental, "s", baseline=full, target="<=0.1")
    ec2.terminate_instances(InstanceIds=[iid])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, less data")
    args = parser.parse_args()
    reps = 5 if args.quick else 15
    with tempfile.TemporaryDirectory(prefix="gs-bench-launch-") as tmp_name:
        tmp = Path(tmp_name)
        data_dir = tmp / "data"
        server = start_server(data_dir, env={"GOLDSMITH_ACCEL": "tcg"})
        try:
            built = server.cli("platform", "build", "--json", "--cache", str(build_cache()))
            tiny = json.loads(built.stdout)["TinyImageId"]
            creds = server.new_account()
            ec2 = server.client(creds)
            bench_run_latency(server, ec2, creds.account_id, tmp, reps)
            bench_tiny_ssh(ec2, tiny, 1 if args.quick else 3)
            bench_create_image(server, ec2, creds.account_id, tmp, 256 * MIB if args.quick else GIB)
        finally:
            stop_server(server.proc)
            kill_vms(data_dir)


if __name__ == "__main__":
    main()
