"""Composition root of the service layer: build every service from the settings.

Services get their collaborators in the constructor (no globals, no mixins), so tests can
build one on a temporary data directory and the API, CLI and console share the same rules.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from goldsmith.catalog import settings as stored
from goldsmith.catalog.db import Catalog
from goldsmith.compute import Hypervisor
from goldsmith.config import Settings
from goldsmith.service.accounts import AccountService
from goldsmith.service.ebs import EbsService
from goldsmith.service.images import ImageService
from goldsmith.service.images.copy import ImageCopier
from goldsmith.service.images.rbin import RecycleBinService
from goldsmith.service.instances.wiring import InstanceServices, build_instance_services
from goldsmith.service.keypairs import KeyPairService
from goldsmith.service.operations import Operation
from goldsmith.service.pagination import Paginator
from goldsmith.service.regions import RegionService
from goldsmith.service.snapshot_bin import SnapshotRecycleBin
from goldsmith.service.snapshot_ops import SnapshotOperations
from goldsmith.service.snapshots import SnapshotService
from goldsmith.service.tags import TagService


@dataclass(frozen=True)
class Services:
    """Every service, wired together, plus the operation table built from them."""

    settings: Settings
    catalog: Catalog
    accounts: AccountService
    regions: RegionService
    tags: TagService
    keypairs: KeyPairService
    snapshots: SnapshotService
    snapshot_ops: SnapshotOperations
    ebs: EbsService
    images: ImageService
    #: CopyImage (``copy_image(ctx, params)``); its task runs on ``compute.tasks``
    image_copy: ImageCopier
    rbin: RecycleBinService
    snapshot_bin: SnapshotRecycleBin
    compute: InstanceServices
    operations: dict[str, Operation]

    def close(self) -> None:
        self.compute.close()
        self.ebs.close()
        self.catalog.dispose()

    def sweep_recycle_bin(self) -> int:
        """Delete for good every binned image and snapshot whose retention has ended."""
        at = datetime.now(UTC)
        with self.catalog.begin() as conn:
            images = self.images.lifecycle.purge_expired(conn, None, at)
            return images + self.snapshot_bin.purge_expired(conn, None, at)


def _operations(s: Services) -> list[Operation]:
    return [
        Operation("DescribeRegions", s.regions.describe_regions, "Regions this server serves"),
        Operation(
            "DescribeAvailabilityZones",
            s.regions.describe_availability_zones,
            "Availability zones of the caller's region",
        ),
        Operation(
            "CreateKeyPair", s.keypairs.create_key_pair, "Generate an RSA or ED25519 key pair"
        ),
        Operation("ImportKeyPair", s.keypairs.import_key_pair, "Import an SSH public key"),
        Operation("DescribeKeyPairs", s.keypairs.describe_key_pairs, "List key pairs with filters"),
        Operation("DeleteKeyPair", s.keypairs.delete_key_pair, "Delete a key pair"),
        Operation("CreateTags", s.tags.create_tags, "Add or overwrite tags on resources"),
        Operation("DeleteTags", s.tags.delete_tags, "Remove tags (by key or key and value)"),
        Operation("DescribeTags", s.tags.describe_tags, "List tags with filters and pagination"),
        Operation(
            "DescribeSnapshots",
            s.snapshot_ops.describe_snapshots,
            "List visible snapshots: ids, owners, restorable-by, filters, pagination",
        ),
        Operation("DeleteSnapshot", s.snapshot_ops.delete_snapshot, "Delete an unused snapshot"),
        Operation(
            "CopySnapshot",
            s.snapshot_ops.copy_snapshot,
            "Copy a snapshot within a region (shares its chunks) or from another region "
            "(moves only missing chunks; pending → completed)",
        ),
        Operation(
            "DescribeSnapshotAttribute",
            s.snapshot_ops.describe_snapshot_attribute,
            "Read createVolumePermission or productCodes",
        ),
        Operation(
            "ModifySnapshotAttribute",
            s.snapshot_ops.modify_snapshot_attribute,
            "Share a snapshot with accounts or everyone (createVolumePermission)",
        ),
        Operation(
            "ResetSnapshotAttribute",
            s.snapshot_ops.reset_snapshot_attribute,
            "Remove every createVolumePermission grant",
        ),
        Operation(
            "ListSnapshotsInRecycleBin",
            s.snapshot_bin.list_snapshots_in_recycle_bin,
            "Your deleted snapshots still in the recycle bin",
        ),
        Operation(
            "RestoreSnapshotFromRecycleBin",
            s.snapshot_bin.restore_snapshot_from_recycle_bin,
            "Bring a snapshot back from the recycle bin",
        ),
        *s.images.operations(),
        Operation(
            "CopyImage",
            s.image_copy.copy_image,
            "Copy an image from any region into the caller's (only missing chunks move; "
            "pending → available)",
        ),
        *s.compute.operations(),
    ]


def open_catalog(settings: Settings) -> Catalog:
    """The catalog of ``settings``, migrated to the newest schema."""
    catalog = Catalog(settings.catalog_url)
    catalog.migrate()
    return catalog


def build_services(
    settings: Settings, catalog: Catalog | None = None, hypervisor: Hypervisor | None = None
) -> Services:
    """Open (and migrate) the catalog and wire every service."""
    catalog = catalog or open_catalog(settings)
    with catalog.begin() as conn:
        secret = stored.get_or_create(conn, "pagination_secret", secrets.token_hex(32))
    paginator = Paginator(bytes.fromhex(secret))
    tags = TagService(catalog, paginator)
    snapshots = SnapshotService(catalog, tags, settings)
    keypairs = KeyPairService(catalog, tags)
    images = ImageService(catalog, tags, snapshots, paginator, settings.platform_alias)
    regions = RegionService(catalog, settings.regions, f"{settings.host}:{settings.port}")
    compute = build_instance_services(
        settings,
        catalog,
        tags,
        images,
        snapshots,
        keypairs,
        regions.zone_names,
        paginator,
        hypervisor=hypervisor,
    )
    snapshot_ops = SnapshotOperations(
        snapshots, paginator, settings.platform_alias, regions.is_enabled
    )
    snapshot_ops.use_tasks(compute.tasks)
    services = Services(
        settings=settings,
        catalog=catalog,
        accounts=AccountService(catalog, settings.platform_alias),
        regions=regions,
        tags=tags,
        keypairs=keypairs,
        snapshots=snapshots,
        snapshot_ops=snapshot_ops,
        ebs=EbsService(snapshots),
        images=images,
        image_copy=ImageCopier(images.deps, snapshots, compute.tasks, regions.is_enabled),
        rbin=RecycleBinService(catalog),
        snapshot_bin=SnapshotRecycleBin(snapshots, paginator),
        compute=compute,
        operations={},
    )
    services.operations.update({op.name: op for op in _operations(services)})
    return services
