"""The instance operations: RunInstances, Describe*, state changes, console, attributes.

Who may do what: an instance belongs to the account that launched it; every operation
answers InvalidInstanceID.NotFound for instances of other accounts (EC2 does not reveal
them). State changes check the current state as EC2 does (IncorrectInstanceState) and write
the requested state; the :class:`InstanceManager` then does the work and writes the result.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from goldsmith.catalog import instances as rows
from goldsmith.catalog import volumes as volume_rows
from goldsmith.catalog.db import Catalog
from goldsmith.compute import ComputeError, VmNotRunningError
from goldsmith.compute.instance_types import INSTANCE_TYPES, Host
from goldsmith.compute.screen import to_jpeg
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import (
    ClientError,
    ServerError,
    invalid_parameter,
    missing_parameter,
)
from goldsmith.service.ids import check_id, new_id
from goldsmith.service.images import ImageService
from goldsmith.service.instances import describe
from goldsmith.service.instances.common import check_bool, state_dict
from goldsmith.service.instances.launch import Launcher, counts, decode_user_data, request_hash
from goldsmith.service.instances.manager import InstanceManager, now, stamp
from goldsmith.service.keypairs import KeyPairService
from goldsmith.service.operations import Operation
from goldsmith.service.pagination import Paginator
from goldsmith.service.snapshots import SnapshotService
from goldsmith.service.tags import ResourceKind, TagService

#: Terminated instances stay visible this long, as on EC2.
TERMINATED_VISIBLE = timedelta(hours=1)
#: After WakeUp's key press, time for the guest to redraw its console before the dump.
WAKE_SETTLE = 0.2


def instance_not_found(instance_id: str) -> ClientError:
    return ClientError(
        "InvalidInstanceID.NotFound", f"The instance ID '{instance_id}' does not exist"
    )


def incorrect_state(row: rows.InstanceRow, action: str) -> ClientError:
    return ClientError(
        "IncorrectInstanceState",
        f"The instance '{row.instance_id}' is not in a state from which it can be {action}.",
    )


def not_running(row: rows.InstanceRow) -> ClientError:
    return ClientError(
        "IncorrectInstanceState", f"The instance '{row.instance_id}' is not in the 'running' state."
    )


def instance_ids(params: Mapping[str, Any], required: bool = True) -> list[str]:
    ids = [str(i) for i in params.get("InstanceIds") or []]
    if required and not ids:
        raise missing_parameter("InstanceId")
    return [check_id(i, "i") for i in ids]


class InstanceService:
    """The instance operations (see :meth:`operations`) and the IMDS lookup."""

    def __init__(
        self,
        catalog: Catalog,
        tags: TagService,
        images: ImageService,
        snapshots: SnapshotService,
        keypairs: KeyPairService,
        zones: Callable[[str], list[str]],
        paginator: Paginator,
        manager: InstanceManager,
        host: Host | None = None,
    ) -> None:
        self.catalog = catalog
        self.tags = tags
        self.images = images
        self.snapshots = snapshots
        self.paginator = paginator
        self.manager = manager
        self.launcher = Launcher(snapshots, zones, keypairs, tags, host)
        tags.register(ResourceKind("i", "instance", self._owner_of))

    @staticmethod
    def _owner_of(conn: sa.Connection, region: str, instance_id: str) -> str | None:
        row = rows.get_instance(conn, region, instance_id)
        return row.account_id if row is not None else None

    # -- lookups ------------------------------------------------------------------------------

    def owned(
        self, conn: sa.Connection, ctx: RequestContext, ids: Sequence[str]
    ) -> list[rows.InstanceRow]:
        """The caller's instances ``ids`` (in that order), else InvalidInstanceID.NotFound."""
        found = {
            r.instance_id: r for r in rows.list_instances(conn, ctx.region, ctx.account_id, ids=ids)
        }
        missing = [i for i in ids if i not in found]
        if missing:
            raise ClientError(
                "InvalidInstanceID.NotFound",
                f"The instance IDs '{', '.join(missing)}' do not exist"
                if len(missing) > 1
                else f"The instance ID '{missing[0]}' does not exist",
            )
        return [found[i] for i in ids]

    def views(self, conn: sa.Connection, found: Sequence[rows.InstanceRow]) -> list[describe.View]:
        ids = [r.instance_id for r in found]
        tags = self.tags.tags_of(conn, found[0].region, ids) if found else {}
        vols = volume_rows.volumes_of(conn, ids)
        return [
            describe.View(r, tags.get(r.instance_id, {}), vols.get(r.instance_id, []))
            for r in found
        ]

    # -- RunInstances ---------------------------------------------------------------------------

    def run_instances(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        token = params.get("ClientToken")
        fingerprint = request_hash(params)
        if token:
            with self.catalog.begin() as conn:
                earlier = rows.by_client_token(conn, ctx.region, ctx.account_id, str(token))
                if earlier:
                    if earlier[0].request_hash != fingerprint:
                        raise ClientError(
                            "IdempotentParameterMismatch",
                            "The client token has already been used with different parameters.",
                        )
                    return self._reservation(conn, earlier)
        low, high = counts(params)
        launcher = self.launcher
        with self.catalog.begin() as conn:
            image = launcher.launchable_image(conn, ctx, params)
            type_name, vcpus, memory = launcher.instance_type(params)
            count = launcher.how_many(conn, vcpus, memory, low, high)
            key_name, public_key = launcher.key(ctx, params)
            user_data = decode_user_data(params.get("UserData"))
            planned = launcher.volumes(conn, ctx, image, params.get("BlockDeviceMappings") or [])
            instance_tags, volume_tags = launcher.tags_for(params)
            kernel_id, ramdisk_id = launcher.kernel_ramdisk(conn, ctx, image, params)
            tokens, endpoint, hops = launcher.metadata_options(params, image)
            behavior = launcher.shutdown_behavior(params)
            zone = launcher.zone(ctx, params)
            protect = params.get("DisableApiTermination")
            reservation = new_id("r")
            launched: list[rows.InstanceRow] = []
            taken: set[int] = set()
            at = now()
            for index in range(count):
                address = launcher.address(conn, taken)
                taken.add(address)
                row = rows.InstanceRow(
                    instance_id=new_id("i"),
                    region=ctx.region,
                    account_id=ctx.account_id,
                    reservation_id=reservation,
                    image_id=image.image_id,
                    instance_type=type_name,
                    state="pending",
                    state_reason_code=None,
                    state_reason_message=None,
                    state_transition_reason="",
                    key_name=key_name,
                    public_key=public_key,
                    user_data=user_data,
                    launch_time=at,
                    ami_launch_index=index,
                    address_index=address,
                    ssh_port=None,
                    vcpus=vcpus,
                    memory_mib=memory,
                    architecture=image.architecture,
                    virtualization_type=image.virtualization_type,
                    boot_mode=image.boot_mode
                    or ("legacy-bios" if image.virtualization_type == "hvm" else None),
                    kernel_id=kernel_id,
                    ramdisk_id=ramdisk_id,
                    root_device_name=image.root_device_name or "/dev/xvda",
                    shutdown_behavior=behavior,
                    availability_zone=zone,
                    http_tokens=tokens,
                    http_endpoint=endpoint,
                    hop_limit=hops,
                    disable_api_termination=check_bool(protect, "DisableApiTermination")
                    if protect is not None
                    else False,
                    client_token=str(token) if token else None,
                    request_hash=fingerprint,
                    terminated_at=None,
                )
                rows.insert_instance(conn, row)
                self.tags.set_tags(conn, ctx, "instance", row.instance_id, instance_tags)
                for plan in planned:
                    volume = launcher.new_volume(ctx, plan, zone, row.instance_id)
                    volume_rows.insert_volume(conn, volume)
                    self.tags.set_tags(conn, ctx, "volume", volume.volume_id, volume_tags)
                launched.append(row)
            self.images.lifecycle.record_launch(conn, image.image_id, at)
            answer = self._reservation(conn, launched)
        for row in launched:
            self.manager.submit(self.manager.launch, ctx.region, row.instance_id)
        return answer

    def _reservation(
        self, conn: sa.Connection, found: Sequence[rows.InstanceRow]
    ) -> dict[str, Any]:
        views = self.views(conn, found)
        return {
            "ReservationId": found[0].reservation_id,
            "OwnerId": found[0].account_id,
            "Groups": [],
            "Instances": [describe.instance_dict(v) for v in views],
        }

    # -- Describe -----------------------------------------------------------------------------

    def _visible(self, row: rows.InstanceRow) -> bool:
        return row.terminated_at is None or now() - row.terminated_at < TERMINATED_VISIBLE

    def describe_instances(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        ids = instance_ids(params, required=False)
        predicate = describe.FILTERS.compile(params.get("Filters"))
        if ids and params.get("MaxResults") is not None:
            raise ClientError(
                "InvalidParameterCombination",
                "The parameter instancesSet cannot be used with the parameter maxResults",
            )
        with self.catalog.begin() as conn:
            found = (
                self.owned(conn, ctx, ids)
                if ids
                else [
                    r
                    for r in rows.list_instances(conn, ctx.region, ctx.account_id)
                    if self._visible(r)
                ]
            )
            views = [v for v in self.views(conn, found) if predicate(v)]
        views.sort(key=lambda v: v.row.instance_id)
        page, token = self.paginator.page(
            views,
            key=lambda v: (v.row.instance_id,),
            operation="DescribeInstances",
            params=params,
        )
        return {"Reservations": describe.reservations(page), "NextToken": token}

    def describe_instance_status(
        self, ctx: RequestContext, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        ids = instance_ids(params, required=False)
        predicate = describe.STATUS_FILTERS.compile(params.get("Filters"))
        include_all = bool(params.get("IncludeAllInstances"))
        with self.catalog.begin() as conn:
            found = (
                self.owned(conn, ctx, ids)
                if ids
                else rows.list_instances(conn, ctx.region, ctx.account_id)
            )
            views = [
                v
                for v in self.views(conn, found)
                if predicate(v)
                and (include_all or v.row.state == "running")
                and self._visible(v.row)
            ]
        page, token = self.paginator.page(
            views,
            key=lambda v: (v.row.instance_id,),
            operation="DescribeInstanceStatus",
            params=params,
        )
        return {"InstanceStatuses": [describe.status_dict(v) for v in page], "NextToken": token}

    # -- state changes ------------------------------------------------------------------------

    def _transition(
        self,
        ctx: RequestContext,
        params: Mapping[str, Any],
        change: Callable[[sa.Connection, rows.InstanceRow], str | None],
    ) -> list[dict[str, Any]]:
        ids = instance_ids(params)
        out: list[dict[str, Any]] = []
        with self.catalog.begin() as conn:
            found = self.owned(conn, ctx, ids)
            for row in found:
                new_state = change(conn, row) or row.state
                out.append(
                    {
                        "InstanceId": row.instance_id,
                        "PreviousState": state_dict(row.state),
                        "CurrentState": state_dict(new_state),
                    }
                )
        return out

    def stop_instances(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        force = bool(params.get("Force"))
        queued: list[str] = []

        def change(conn: sa.Connection, row: rows.InstanceRow) -> str | None:
            if row.state in ("stopping", "stopped"):
                return None
            if row.state != "running":
                raise incorrect_state(row, "stopped")
            rows.update_instance(
                conn,
                row.instance_id,
                state="stopping",
                state_transition_reason=f"User initiated ({stamp(now())})",
            )
            queued.append(row.instance_id)
            return "stopping"

        out = self._transition(ctx, params, change)
        for iid in queued:
            self.manager.submit(self.manager.stop_vm, ctx.region, iid, force)
        return {"StoppingInstances": out}

    def start_instances(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        queued: list[str] = []

        def change(conn: sa.Connection, row: rows.InstanceRow) -> str | None:
            if row.state in ("pending", "running"):
                return None
            if row.state != "stopped":
                raise incorrect_state(row, "started")
            self.launcher.how_many(conn, row.vcpus, row.memory_mib, 1, 1)
            rows.update_instance(
                conn,
                row.instance_id,
                state="pending",
                state_reason_code=None,
                state_reason_message=None,
                state_transition_reason="",
            )
            queued.append(row.instance_id)
            return "pending"

        out = self._transition(ctx, params, change)
        for iid in queued:
            self.manager.submit(self.manager.start_vm, ctx.region, iid)
        return {"StartingInstances": out}

    def terminate_instances(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        queued: list[str] = []

        def change(conn: sa.Connection, row: rows.InstanceRow) -> str | None:
            if row.state in ("shutting-down", "terminated"):
                return None
            if row.disable_api_termination:
                raise ClientError(
                    "OperationNotPermitted",
                    f"The instance '{row.instance_id}' may not be terminated. Modify its "
                    "'disableApiTermination' instance attribute and try again.",
                )
            rows.update_instance(
                conn,
                row.instance_id,
                state="shutting-down",
                state_transition_reason=f"User initiated ({stamp(now())})",
            )
            queued.append(row.instance_id)
            return "shutting-down"

        out = self._transition(ctx, params, change)
        for iid in queued:
            self.manager.submit(self.manager.terminate_vm, ctx.region, iid)
        return {"TerminatingInstances": out}

    def reboot_instances(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        ids = instance_ids(params)
        with self.catalog.begin() as conn:
            found = self.owned(conn, ctx, ids)
        for row in found:
            if row.state == "terminated":
                raise incorrect_state(row, "rebooted")
        for row in found:
            if row.state == "running":
                self.manager.submit(self.manager.reboot_vm, ctx.region, row.instance_id)
        return {}

    # -- console and attributes ---------------------------------------------------------------

    def get_console_output(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        instance_id = params.get("InstanceId")
        if not instance_id:
            raise missing_parameter("InstanceId")
        with self.catalog.begin() as conn:
            (row,) = self.owned(conn, ctx, [check_id(str(instance_id), "i")])
        run_dir = self.manager.files.run_dir(row.region, row.instance_id)
        try:
            data = (run_dir / "console.log").read_bytes()[-64 * 1024 :]
        except FileNotFoundError:
            data = b""
        return {
            "InstanceId": row.instance_id,
            "Timestamp": now(),
            "Output": base64.b64encode(data).decode() if data else None,
        }

    def get_console_screenshot(
        self, ctx: RequestContext, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The screen of a running instance as a base64 JPEG (EC2's ImageData).

        ``WakeUp`` presses a key first (a blanked console shows its text again). An instance
        that does not run — or whose VM stopped under us — is IncorrectInstanceState.
        """
        instance_id = params.get("InstanceId")
        if not instance_id:
            raise missing_parameter("InstanceId")
        wake = params.get("WakeUp")
        wake = check_bool(wake, "WakeUp") if wake is not None else False
        with self.catalog.begin() as conn:
            (row,) = self.owned(conn, ctx, [check_id(str(instance_id), "i")])
        handle = self.manager.handle(row.instance_id)
        if row.state != "running" or handle is None:
            raise not_running(row)
        hypervisor = self.manager.hypervisor
        try:
            if wake:
                hypervisor.wake(handle)
                time.sleep(WAKE_SETTLE)
            picture = to_jpeg(hypervisor.screenshot(handle))
        except VmNotRunningError:
            raise not_running(row) from None
        except ComputeError as exc:
            raise ServerError(
                "InternalError", f"Could not take a screenshot of {row.instance_id}: {exc}"
            ) from exc
        return {"InstanceId": row.instance_id, "ImageData": base64.b64encode(picture).decode()}

    def describe_instance_types(
        self, _ctx: RequestContext, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        names = list(params.get("InstanceTypes") or INSTANCE_TYPES)
        unknown = [n for n in names if n not in INSTANCE_TYPES]
        if unknown:
            raise invalid_parameter(
                f"The following supplied instance types do not exist: [{', '.join(unknown)}]"
            )
        return {
            "InstanceTypes": [
                {
                    "InstanceType": n,
                    "CurrentGeneration": True,
                    "SupportedRootDeviceTypes": ["ebs"],
                    "SupportedVirtualizationTypes": ["hvm", "paravirtual"],
                    "BareMetal": False,
                    "Hypervisor": "xen",
                    "ProcessorInfo": {"SupportedArchitectures": ["x86_64"]},
                    "VCpuInfo": {"DefaultVCpus": INSTANCE_TYPES[n].vcpus},
                    "MemoryInfo": {"SizeInMiB": INSTANCE_TYPES[n].memory_mib},
                }
                for n in names
            ]
        }

    def operations(self) -> list[Operation]:
        return [
            Operation(
                "RunInstances", self.run_instances, "Launch instances (real VMs) from an image"
            ),
            Operation(
                "DescribeInstances", self.describe_instances, "List instances (filters, pages)"
            ),
            Operation(
                "DescribeInstanceStatus",
                self.describe_instance_status,
                "Instance and system status checks",
            ),
            Operation("StopInstances", self.stop_instances, "Shut instances down (keeps volumes)"),
            Operation("StartInstances", self.start_instances, "Boot stopped instances again"),
            Operation(
                "TerminateInstances",
                self.terminate_instances,
                "Terminate instances (DeleteOnTermination volumes are deleted)",
            ),
            Operation("RebootInstances", self.reboot_instances, "Reset running instances"),
            Operation("GetConsoleOutput", self.get_console_output, "The serial console (base64)"),
            Operation(
                "GetConsoleScreenshot",
                self.get_console_screenshot,
                "The screen of a running instance (base64 JPEG)",
            ),
            Operation(
                "DescribeInstanceTypes",
                self.describe_instance_types,
                "Instance types with their vCPUs and memory",
            ),
        ]
