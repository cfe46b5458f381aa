"""Instance test helpers: every service wired on a temporary data dir, the fake hypervisor.

``World`` launches through the real handler table (``dispatch``), with a real catalog and a
real chunk store; only the VMs are fake. Background actions run in the manager's workers:
``settle()`` waits for them (and for durable tasks), ``poll()`` runs one reconcile pass.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from goldsmith.compute import FakeHypervisor
from goldsmith.config import Settings
from goldsmith.service.app import Services, build_services
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import ClientError
from goldsmith.service.operations import dispatch

REGION = "us-east-1"
MIB = 1024 * 1024


@dataclass
class World:
    services: Services
    hypervisor: FakeHypervisor
    platform: RequestContext
    tmp: Path

    @property
    def manager(self) -> Any:
        return self.services.compute.manager

    def account(self) -> RequestContext:
        creds = self.services.accounts.create_account()
        return RequestContext(creds.account_id, REGION)

    def call(self, ctx: RequestContext, action: str, **params: Any) -> dict[str, Any]:
        return dispatch(self.services.operations, ctx, action, params)

    def code(self, ctx: RequestContext, action: str, **params: Any) -> str:
        with pytest.raises(ClientError) as info:
            self.call(ctx, action, **params)
        return info.value.code

    def error(self, ctx: RequestContext, action: str, **params: Any) -> ClientError:
        with pytest.raises(ClientError) as info:
            self.call(ctx, action, **params)
        return info.value

    def settle(self) -> None:
        for _ in range(3):
            self.services.compute.manager.wait()
            self.services.compute.tasks.wait(60)

    def poll(self) -> None:
        self.services.compute.manager.poll_once()
        self.settle()

    def disk_file(self, name: str, size: int, fill: bytes = b"root") -> Path:
        path = self.tmp / name
        with path.open("wb") as f:
            f.truncate(size)
            f.write(fill * (4096 // len(fill)))
        return path

    def image(
        self,
        owner: RequestContext | None = None,
        *,
        size: int = 4 * MIB,
        public: bool = False,
        paravirtual: bool = False,
        name: str | None = None,
        extra: list[dict[str, Any]] | None = None,
    ) -> str:
        """Register a machine image over a small disk (``owner`` default: platform)."""
        ctx = owner or self.platform
        snaps = self.services.snapshots
        root = snaps.create_from_file(
            ctx, self.disk_file(f"root-{os.urandom(3).hex()}", size), description="root"
        )
        params: dict[str, Any] = {
            "Name": name or f"img-{os.urandom(4).hex()}",
            "RootDeviceName": "/dev/xvda",
            "VirtualizationType": "paravirtual" if paravirtual else "hvm",
            "BlockDeviceMappings": [
                {"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": root.snapshot_id}},
                *(extra or []),
            ],
        }
        if paravirtual:
            kernel = self.services.images.register_file(
                ctx,
                self.disk_file("vmlinuz", 1 * MIB, b"kern"),
                image_type="kernel",
                name=f"k-{os.urandom(4).hex()}",
            )
            ramdisk = self.services.images.register_file(
                ctx,
                self.disk_file("initrd", 1 * MIB, b"init"),
                image_type="ramdisk",
                name=f"r-{os.urandom(4).hex()}",
            )
            params.update(KernelId=kernel.image_id, RamdiskId=ramdisk.image_id)
        image_id = str(self.call(ctx, "RegisterImage", **params)["ImageId"])
        if public:
            self.call(
                ctx,
                "ModifyImageAttribute",
                ImageId=image_id,
                LaunchPermission={"Add": [{"Group": "all"}]},
            )
        return image_id

    def run(self, ctx: RequestContext, image_id: str, **params: Any) -> dict[str, Any]:
        params.setdefault("MinCount", 1)
        params.setdefault("MaxCount", 1)
        return self.call(ctx, "RunInstances", ImageId=image_id, **params)

    def instance(self, ctx: RequestContext, instance_id: str) -> dict[str, Any]:
        out = self.call(ctx, "DescribeInstances", InstanceIds=[instance_id])
        return dict(out["Reservations"][0]["Instances"][0])

    def state(self, ctx: RequestContext, instance_id: str) -> str:
        return str(self.instance(ctx, instance_id)["State"]["Name"])

    def launch(self, ctx: RequestContext, image_id: str, **params: Any) -> str:
        out = self.run(ctx, image_id, **params)
        self.settle()
        return str(out["Instances"][0]["InstanceId"])

    def handle(self, instance_id: str) -> Any:
        return self.manager.handle(instance_id)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def make_world(tmp: Path, hypervisor: FakeHypervisor | None = None) -> World:
    settings = Settings(data_dir=tmp / "data", regions=(REGION,))
    hv = hypervisor or FakeHypervisor()
    services = build_services(settings, hypervisor=hv)
    services.accounts.bootstrap()
    with services.catalog.begin() as conn:
        from goldsmith.catalog import accounts as rows

        platform = rows.accounts_with_role(conn, "platform")[0].account_id
    return World(services, hv, RequestContext(platform, REGION), tmp)
