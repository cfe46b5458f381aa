"""DescribeImages at scale: Goldsmith against moto's server, same images, same queries.

What it does, in one run:

1. **Fill** a fresh data directory with ``--images`` images (100,000; ``--quick``: 5,000)
   across 50 accounts, in bulk through the catalog layer — not through 100,000 RegisterImage
   calls: it is the data that is measured, not the fill. Every image is valid as
   RegisterImage would have made it: its mappings name real, completed snapshots of its
   owner (two small snapshots per account, written through the snapshot store and shared
   by that account's images), names are unique per owner, tags are real tag rows, ~10 % of
   the images are public, ~10 % are shared with 1–3 other accounts (launch permissions),
   ~2 % are deprecated.
2. **Measure Goldsmith**: start the real server on that directory (``tests/harness.py``),
   and send each query, SigV4-signed, sequentially over ONE keep-alive HTTP connection as
   account 0 of the 50. p50/p99 latency per query, and the server's VmRSS afterwards.
3. **Measure moto** (the baseline): a separate virtualenv (``--moto-venv``, default
   ``~/.cache/goldsmith-bench/moto-venv``, created with ``pip install 'moto[server]'`` when
   missing) runs ``bench/moto_loader.py``, which loads the same images (same ids, owners,
   names, tags, public flags, grants) straight into moto's in-memory EC2 backend and then
   serves them with moto's own threaded server on a loopback port — loading 100,000 images
   through moto's HTTP API would take far longer than the measurement itself (the time per
   RegisterImage call is measured and reported as ``moto_register_image_ms``). The same
   signed requests, over one keep-alive connection, give moto's p50/p99.

The queries (the caller is account 0; ``Owners=self`` etc. resolve to it):

- ``ids10``: ``ImageIds`` with 10 ids (own, public and shared-with-me images);
- ``owners_self``: ``Owners=self`` (2,000 images per account at full size), ``MaxResults``
  1000 — the first page, as a paginating EC2 caller asks for it;
- ``name_arch``: ``Filter name=debian-12-*`` and ``architecture=arm64``;
- ``tag``: ``Filter tag:team=team-07``;
- ``exec_self``: ``ExecutableUsers=self`` (images explicitly shared with the caller);
- ``page1000``: no scoping at all, ``MaxResults=1000`` (the first full page).

Filtered queries carry no ``MaxResults``: their answers fit one page. Result counts are
reported for both servers (``*_count``), so differences in what moto implements show.
Throughput ratio = our requests/s ÷ moto's requests/s, each from the p50 (robust on a shared
machine). Targets (issue 4): p50 ≤ 50 ms for every filtered query; ratio ≥ 20 on each;
server RSS ≤ 500 MiB.

Usage: ``.venv/bin/python bench/images.py [--quick] [--no-moto]`` — one JSON object per
metric line (``bench/_common.py``), progress on stderr. ``--quick`` is a smoke test: moto's
cost grows with the number of images while ours grows with the size of the answer, so the
ratios only mean something at full size.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))
from _common import emit  # noqa: E402
from goldsmith.catalog import images as image_rows  # noqa: E402
from goldsmith.catalog.images import (  # noqa: E402
    image_block_devices,
    image_launch_permissions,
    images,
)
from goldsmith.catalog.schema import tags as tag_table  # noqa: E402
from goldsmith.config import Settings  # noqa: E402
from goldsmith.service.app import build_services  # noqa: E402
from goldsmith.service.context import RequestContext  # noqa: E402
from goldsmith.service.ids import new_id  # noqa: E402
from harness import free_port, start_server, stop_server  # noqa: E402

REGION = "us-east-1"
ACCOUNTS = 50
FAMILIES = (
    "ubuntu-22.04",
    "ubuntu-24.04",
    "debian-12",
    "debian-11",
    "al2023",
    "rhel-9",
    "rocky-9",
    "fedora-40",
)
TEAMS = 20
ENVS = ("prod", "staging", "dev")
MOTO_VENV = Path.home() / ".cache" / "goldsmith-bench" / "moto-venv"


def log(message: str) -> None:
    print(f"[images bench] {message}", file=sys.stderr, flush=True)


@dataclass
class Account:
    account_id: str
    access_key_id: str
    secret_access_key: str


@dataclass
class Dataset:
    """What was loaded: accounts (0 is the caller), and per-image facts moto needs too."""

    accounts: list[Account]
    images: list[dict[str, Any]] = field(default_factory=list)

    @property
    def caller(self) -> Account:
        return self.accounts[0]


# Fill ------------------------------------------------------------------------------------


def _snapshots(services: Any, account: Account, tmp: Path) -> list[tuple[str, int]]:
    """Two real, completed snapshots of ``account`` (1 MiB disks with distinct content)."""
    ctx = RequestContext(account.account_id, REGION)
    out = []
    for n in range(2):
        disk = tmp / f"disk-{account.account_id}-{n}.raw"
        disk.write_bytes(os.urandom(64 * 1024) + bytes(1024 * 1024 - 64 * 1024))
        snap = services.snapshots.create_from_file(ctx, disk, description=f"bench root {n}")
        disk.unlink()
        out.append((snap.snapshot_id, snap.volume_size))
    return out


def _image(
    rng: random.Random,
    index: int,
    owner: int,
    accounts: list[Account],
    snaps: list[tuple[str, int]],
    base: datetime,
) -> dict[str, Any]:
    """One image's facts (the plain data both servers get)."""
    family = FAMILIES[index % len(FAMILIES)]
    arch = "arm64" if rng.random() < 0.3 else "x86_64"
    name = f"{family}-{arch}-{index:06d}"
    snap, size = snaps[index % 2]
    devices: list[dict[str, Any]] = [
        {"device_name": "/dev/xvda", "snapshot_id": snap, "volume_size": max(size, 8)}
    ]
    roll = rng.random()
    if roll < 0.25:
        other, _ = snaps[(index + 1) % 2]
        devices.append({"device_name": "/dev/xvdb", "snapshot_id": other, "volume_size": 20})
    elif roll < 0.35:
        devices.append({"device_name": "/dev/sdb", "virtual_name": "ephemeral0"})
    public = rng.random() < 0.10
    shared: list[str] = []
    if not public and rng.random() < 0.11:
        others = [a for i, a in enumerate(accounts) if i != owner]
        shared = [a.account_id for a in rng.sample(others, rng.randint(1, 3))]
    return {
        "image_id": new_id("ami"),
        "owner": accounts[owner].account_id,
        "name": name,
        "description": f"{family} {arch} build {index}",
        "architecture": arch,
        "boot_mode": "uefi" if arch == "arm64" else "legacy-bios",
        "created_at": base + timedelta(seconds=index),
        "public": public,
        "shared": shared,
        "deprecated": rng.random() < 0.02,
        "devices": devices,
        "tags": {
            "Name": name,
            "team": f"team-{rng.randrange(TEAMS):02d}",
            "env": ENVS[rng.randrange(len(ENVS))],
        },
    }


def _rows(image: dict[str, Any], base: datetime) -> tuple[dict[str, Any], list[Any], list[Any]]:
    """The catalog rows of one image: images row, mapping rows, launch permission rows."""
    row = image_rows.ImageRow(
        image_id=image["image_id"],
        region=REGION,
        account_id=image["owner"],
        name=image["name"],
        description=image["description"],
        state="available",
        image_type="machine",
        architecture=image["architecture"],
        virtualization_type="hvm",
        root_device_name="/dev/xvda",
        root_device_type="ebs",
        image_location=None,
        kernel_id=None,
        ramdisk_id=None,
        boot_mode=image["boot_mode"],
        tpm_support=None,
        uefi_data=None,
        imds_support="v2.0",
        ena_support=True,
        sriov_net_support="simple",
        platform=None,
        hypervisor="xen",
        is_public=image["public"],
        billing_products=(),
        created_at=image["created_at"],
        deprecation_time=base - timedelta(days=1) if image["deprecated"] else None,
    )
    values = {name: getattr(row, name) for name in image_rows.IMAGE_COLUMNS}
    values["billing_products"] = "[]"
    devices = []
    for position, d in enumerate(image["devices"]):
        ebs = "snapshot_id" in d
        devices.append(
            {
                "image_id": row.image_id,
                "position": position,
                "region": REGION,
                "device_name": d["device_name"],
                "virtual_name": d.get("virtual_name"),
                "no_device": False,
                "snapshot_id": d.get("snapshot_id"),
                "volume_size": d.get("volume_size"),
                "volume_type": "gp3" if ebs else None,
                "delete_on_termination": True if ebs else None,
                "encrypted": False if ebs else None,
                "iops": 3000 if ebs else None,
                "throughput": 125 if ebs else None,
            }
        )
    grants = [
        {"region": REGION, "image_id": row.image_id, "kind": "user", "value": account}
        for account in image["shared"]
    ]
    return values, devices, grants


def fill(data_dir: Path, total: int, seed: int = 4) -> Dataset:
    """Create the accounts, their snapshots and ``total`` images in ``data_dir``."""
    services = build_services(Settings(data_dir=data_dir))
    try:
        accounts = [
            Account(c.account_id, c.access_key_id, c.secret_access_key)
            for c in (services.accounts.create_account() for _ in range(ACCOUNTS))
        ]
        dataset = Dataset(accounts)
        rng = random.Random(seed)
        base = datetime(2025, 1, 1, tzinfo=UTC)
        with tempfile.TemporaryDirectory() as tmp:
            snaps = [_snapshots(services, a, Path(tmp)) for a in accounts]
        for index in range(total):
            owner = index % ACCOUNTS
            dataset.images.append(_image(rng, index, owner, accounts, snaps[owner], base))
        for start in range(0, total, 5000):
            image_values, device_values, grant_values, tag_values = [], [], [], []
            for image in dataset.images[start : start + 5000]:
                values, devices, grants = _rows(image, base)
                image_values.append(values)
                device_values += devices
                grant_values += grants
                tag_values += [
                    {
                        "region": REGION,
                        "resource_id": image["image_id"],
                        "key": key,
                        "value": value,
                        "resource_type": "image",
                        "owner_id": image["owner"],
                    }
                    for key, value in image["tags"].items()
                ]
            with services.catalog.begin() as conn:
                conn.execute(images.insert(), image_values)
                conn.execute(image_block_devices.insert(), device_values)
                if grant_values:
                    conn.execute(image_launch_permissions.insert(), grant_values)
                conn.execute(tag_table.insert(), tag_values)
        if services.catalog.url.startswith("sqlite"):
            with services.catalog.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
        return dataset
    finally:
        services.close()


# Queries ---------------------------------------------------------------------------------


def queries(dataset: Dataset) -> dict[str, dict[str, str]]:
    """The six DescribeImages requests, as EC2 Query parameters, for the caller (account 0)."""
    me = dataset.caller.account_id
    own = [i["image_id"] for i in dataset.images if i["owner"] == me]
    public = [i["image_id"] for i in dataset.images if i["public"] and i["owner"] != me]
    shared = [i["image_id"] for i in dataset.images if me in i["shared"]]
    pick = own[:4] + public[:4] + shared[:2]
    ids = {f"ImageId.{n + 1}": image_id for n, image_id in enumerate(pick)}
    return {
        "ids10": ids,
        "owners_self": {"Owner.1": "self", "MaxResults": "1000"},
        "name_arch": {
            "Filter.1.Name": "name",
            "Filter.1.Value.1": "debian-12-*",
            "Filter.2.Name": "architecture",
            "Filter.2.Value.1": "arm64",
        },
        "tag": {"Filter.1.Name": "tag:team", "Filter.1.Value.1": "team-07"},
        "exec_self": {"ExecutableBy.1": "self"},
        "page1000": {"MaxResults": "1000"},
    }


class Connection:
    """One keep-alive connection sending SigV4-signed EC2 Query requests as one account."""

    def __init__(self, port: int, account: Account) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        self.creds = Credentials(account.access_key_id, account.secret_access_key)

    def call(self, params: dict[str, str]) -> bytes:
        body = urlencode({**params, "Version": "2016-11-15"}).encode()
        request = AWSRequest(
            method="POST",
            url=f"http://127.0.0.1:{self.port}/",
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        SigV4Auth(self.creds, "ec2", REGION).add_auth(request)
        self.conn.request("POST", "/", body=body, headers=dict(request.headers))
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{params.get('Action')}: {response.status} {data[:300]!r}")
        return data

    def close(self) -> None:
        self.conn.close()


def count_images(xml: bytes) -> int:
    """Images in a DescribeImages response (each has exactly one ``<imageId>``)."""
    return xml.count(b"<imageId>")


@dataclass
class Timing:
    samples: list[float]
    count: int

    def pct(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def measure(
    conn: Connection, name: str, query: dict[str, str], budget_s: float, min_n: int, max_n: int
) -> Timing:
    """Send ``query`` repeatedly: at least ``min_n`` times, then until the time budget."""
    params = {"Action": "DescribeImages", **query}
    t0 = time.perf_counter()
    count = count_images(conn.call(params))  # warm-up (caches, first page faults)
    log(f"  {name}: {count} images, first call {time.perf_counter() - t0:.3f}s")
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < max_n and (
        len(samples) < min_n or time.perf_counter() - started < budget_s
    ):
        t0 = time.perf_counter()
        conn.call(params)
        samples.append(time.perf_counter() - t0)
    return Timing(samples, count)


def rss_mib(pid: int) -> float:
    """VmRSS of ``pid`` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def run_goldsmith(
    data_dir: Path, dataset: Dataset, plan: dict[str, dict[str, str]], budget: float
) -> tuple[dict[str, Timing], float]:
    server = start_server(data_dir, "--log-level", "warning")
    try:
        conn = Connection(server.port, dataset.caller)
        out = {name: measure(conn, name, q, budget, 20, 2000) for name, q in plan.items()}
        conn.close()
        return out, rss_mib(server.proc.pid)
    finally:
        stop_server(server.proc)


# moto --------------------------------------------------------------------------------------


def moto_python(venv: Path) -> Path:
    """The moto venv's python, creating the venv (``pip install 'moto[server]'``) if needed."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import moto.server, flask"]
    if python.exists() and subprocess.run(probe, check=False, capture_output=True).returncode == 0:
        return python
    log(f"creating moto venv in {venv} (pip install 'moto[server]')")
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "moto[server]"]
    subprocess.run(pip, check=True)
    return python


@contextmanager
def moto_server(python: Path, dataset: Dataset, workdir: Path) -> Iterator[int]:
    """moto loaded with ``dataset`` (see bench/moto_loader.py), serving on a free port."""
    spec = workdir / "moto-dataset.json"
    spec.write_text(
        json.dumps(
            {
                "region": REGION,
                "accounts": [a.__dict__ for a in dataset.accounts],
                "images": [
                    {**i, "created_at": i["created_at"].isoformat()} for i in dataset.images
                ],
            }
        )
    )
    port = free_port()
    ready = workdir / "moto-ready"
    log_path = workdir / "moto.log"
    env = {**os.environ, "MOTO_EC2_LOAD_DEFAULT_AMIS": "false"}
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [str(python), str(HERE / "moto_loader.py"), str(spec), str(port), str(ready)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 3600
        while not ready.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"moto exited early:\n{log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("moto did not load in an hour")
            time.sleep(0.2)
        log(f"moto: {ready.read_text().strip()}")
        yield port
    finally:
        stop_server(proc)  # type: ignore[arg-type]


def run_moto(
    venv: Path, dataset: Dataset, plan: dict[str, dict[str, str]], budget: float, workdir: Path
) -> tuple[dict[str, Timing], float]:
    python = moto_python(venv)
    with moto_server(python, dataset, workdir) as port:
        conn = Connection(port, dataset.caller)
        out = {name: measure(conn, name, q, budget, 3, 200) for name, q in plan.items()}
        # After the queries (the probes add images): what an HTTP fill would have cost.
        register = {
            "Action": "RegisterImage",
            "Name": "bench-register-probe",
            "RootDeviceName": "/dev/xvda",
            "BlockDeviceMapping.1.DeviceName": "/dev/xvda",
            "BlockDeviceMapping.1.Ebs.VolumeSize": "8",
        }
        probe = []
        for n in range(5):
            t0 = time.perf_counter()
            conn.call({**register, "Name": f"bench-register-probe-{n}"})
            probe.append(time.perf_counter() - t0)
        conn.close()
    return out, sorted(probe)[len(probe) // 2] * 1000


# Main --------------------------------------------------------------------------------------


def report(ours: dict[str, Timing], moto: dict[str, Timing] | None) -> None:
    for name, timing in ours.items():
        p50, p99 = timing.pct(0.5), timing.pct(0.99)
        base = moto[name] if moto else None
        filtered = name != "page1000"
        emit(f"describe_images_{name}_count", timing.count, "images", base.count if base else None)
        emit(
            f"describe_images_{name}_p50",
            p50,
            "ms",
            base.pct(0.5) if base else None,
            "<=50" if filtered else None,
            on="value",
        )
        emit(f"describe_images_{name}_p99", p99, "ms", base.pct(0.99) if base else None)
        if base:
            emit(
                f"describe_images_{name}_throughput",
                1000 / p50,
                "req/s",
                1000 / base.pct(0.5),
                ">=20",
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 images, short budgets")
    parser.add_argument("--images", type=int, help="number of images (default 100,000)")
    parser.add_argument("--no-moto", action="store_true", help="skip the moto baseline")
    parser.add_argument("--moto-venv", type=Path, default=MOTO_VENV)
    parser.add_argument("--keep", type=Path, help="fill this directory and keep it")
    args = parser.parse_args()
    total = args.images or (5000 if args.quick else 100_000)
    budget = 2.0 if args.quick else 8.0
    with tempfile.TemporaryDirectory(prefix="goldsmith-images-bench-") as tmp:
        work = args.keep or Path(tmp)
        data_dir = work / "data"
        started = time.perf_counter()
        dataset = fill(data_dir, total)
        fill_s = time.perf_counter() - started
        log(f"filled {total} images in {fill_s:.1f}s")
        emit("fill_images_per_s", total / fill_s, "images/s")
        plan = queries(dataset)
        ours, rss = run_goldsmith(data_dir, dataset, plan, budget)
        moto = None
        if not args.no_moto:
            moto, register_ms = run_moto(args.moto_venv, dataset, plan, budget, work)
            emit("moto_register_image_ms", register_ms, "ms")
            log(f"moto: a RegisterImage over HTTP takes {register_ms:.1f} ms")
        report(ours, moto)
        emit("server_rss_mib", rss, "MiB", None, "<=500", on="value")


if __name__ == "__main__":
    main()
