"""The instance side of the composition root: manager, tasks, instances, volumes, IMDS data.

``build_instance_services`` is called by :func:`goldsmith.service.app.build_services`. It
starts no thread: ``goldsmith serve`` calls :meth:`InstanceServices.start` (adoption of
running VMs, the poll thread, unfinished tasks) once it also runs the metadata server.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from goldsmith.catalog import schema
from goldsmith.catalog import settings as stored
from goldsmith.catalog.db import Catalog
from goldsmith.compute import FakeHypervisor, Hypervisor, QemuHypervisor
from goldsmith.compute.instance_types import Host
from goldsmith.compute.network import can_bind, free_port
from goldsmith.config import Settings
from goldsmith.service.images import ImageService
from goldsmith.service.instances.attributes import InstanceAttributes
from goldsmith.service.instances.capture import ImageCapture
from goldsmith.service.instances.manager import ImdsTarget, InstanceManager
from goldsmith.service.instances.metadata import MetadataService
from goldsmith.service.instances.service import InstanceService
from goldsmith.service.keypairs import KeyPairService
from goldsmith.service.operations import Operation
from goldsmith.service.pagination import Paginator
from goldsmith.service.snapshots import SnapshotService
from goldsmith.service.tags import TagService
from goldsmith.service.tasks import TaskRunner
from goldsmith.service.volume_files import VolumeFiles
from goldsmith.service.volumes import VolumeService

IMDS_PORT = "imds_port"


def default_hypervisor() -> Hypervisor:
    """QEMU; ``GOLDSMITH_HYPERVISOR=fake`` gives the fake driver (API tests without VMs) and
    ``GOLDSMITH_ACCEL=tcg|kvm`` skips the KVM probe."""
    if os.environ.get("GOLDSMITH_HYPERVISOR") == "fake":
        return FakeHypervisor()
    return QemuHypervisor(accel=os.environ.get("GOLDSMITH_ACCEL", "auto"))


@dataclass(frozen=True)
class InstanceServices:
    """Everything instance-related, wired."""

    files: VolumeFiles
    manager: InstanceManager
    tasks: TaskRunner
    instances: InstanceService
    capture: ImageCapture
    volumes: VolumeService
    metadata: MetadataService

    def operations(self) -> list[Operation]:
        return [
            *self.instances.operations(),
            *InstanceAttributes(self.instances).operations(),
            Operation(
                "CreateImage",
                self.capture.create_image,
                "Capture an instance's volumes into a new image (pending → available)",
            ),
            *self.volumes.operations(),
        ]

    def start(self, imds: ImdsTarget) -> None:
        """Adopt VMs, start polling, resume unfinished tasks (the server calls this)."""
        self.manager.imds = imds
        self.manager.start()
        self.tasks.resume()

    def metadata_port(self, catalog: Catalog, host: str) -> int:
        """The metadata server's port: the one used before (running VMs relay to it) when it
        can still be bound, else a new one, remembered in the catalog."""
        with catalog.begin() as conn:
            port = int(stored.get_or_create(conn, IMDS_PORT, str(free_port(host))))
            if can_bind(host, port):
                return port
            port = free_port(host)
            conn.execute(
                schema.settings.update()
                .where(schema.settings.c.name == IMDS_PORT)
                .values(value=str(port))
            )
        return port

    def close(self) -> None:
        self.manager.close()
        self.tasks.close()


def build_instance_services(
    settings: Settings,
    catalog: Catalog,
    tags: TagService,
    images: ImageService,
    snapshots: SnapshotService,
    keypairs: KeyPairService,
    zones: Callable[[str], list[str]],
    paginator: Paginator,
    *,
    hypervisor: Hypervisor | None = None,
    inline: bool = False,
    host: Host | None = None,
) -> InstanceServices:
    files = VolumeFiles(settings, snapshots)
    manager = InstanceManager(catalog, hypervisor or default_hypervisor(), files, inline=inline)
    tasks = TaskRunner(catalog)
    instances = InstanceService(
        catalog, tags, images, snapshots, keypairs, zones, paginator, manager, host
    )
    capture = ImageCapture(instances, snapshots, manager, tasks)
    volumes = VolumeService(catalog, tags, snapshots, manager, tasks, paginator, zones)
    return InstanceServices(
        files, manager, tasks, instances, capture, volumes, MetadataService(catalog)
    )
