"""Describe/Modify/ResetInstanceAttribute.

Every attribute of EC2's list can be read. What can change, and when (as on EC2):

========================================  ===============================================
attribute                                 change
========================================  ===============================================
instanceType, userData, kernel, ramdisk   only while the instance is ``stopped``
disableApiTermination                     any time
instanceInitiatedShutdownBehavior         any time
blockDeviceMapping                        DeleteOnTermination of attached volumes, any time
sourceDestCheck, ebsOptimized,            only to the value they have (true, false, true,
enaSupport, disableApiStop                false): Goldsmith has no other; anything else
                                          is UnsupportedOperation rather than a silent no-op
========================================  ===============================================

ModifyInstanceAttribute takes the structured members (``InstanceType={"Value": …}``) or the
older ``Attribute`` + ``Value`` pair. ResetInstanceAttribute resets ``kernel``/``ramdisk``
(to the image's) and ``sourceDestCheck``, the three EC2 allows. A kernel change takes effect
at the next start: the staged kernel files of the instance are dropped.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from goldsmith.catalog import images as image_rows
from goldsmith.catalog import instances as rows
from goldsmith.catalog import volumes as volume_rows
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import ClientError, invalid_parameter, missing_parameter
from goldsmith.service.ids import check_id
from goldsmith.service.images.common import check_image_id, get_visible
from goldsmith.service.instances import describe
from goldsmith.service.instances.common import check_bool
from goldsmith.service.instances.service import InstanceService, incorrect_state
from goldsmith.service.operations import Operation

#: attribute name (the request's) → output member.
ATTRIBUTES = {
    "instanceType": "InstanceType",
    "kernel": "KernelId",
    "ramdisk": "RamdiskId",
    "userData": "UserData",
    "disableApiTermination": "DisableApiTermination",
    "instanceInitiatedShutdownBehavior": "InstanceInitiatedShutdownBehavior",
    "rootDeviceName": "RootDeviceName",
    "blockDeviceMapping": "BlockDeviceMappings",
    "productCodes": "ProductCodes",
    "sourceDestCheck": "SourceDestCheck",
    "groupSet": "Groups",
    "ebsOptimized": "EbsOptimized",
    "sriovNetSupport": "SriovNetSupport",
    "enaSupport": "EnaSupport",
    "enclaveOptions": "EnclaveOptions",
    "disableApiStop": "DisableApiStop",
}
#: Legacy ``Attribute``/``Value`` → the structured member it stands for.
LEGACY = {
    "instanceType": "InstanceType",
    "kernel": "Kernel",
    "ramdisk": "Ramdisk",
    "userData": "UserData",
    "disableApiTermination": "DisableApiTermination",
    "instanceInitiatedShutdownBehavior": "InstanceInitiatedShutdownBehavior",
    "sourceDestCheck": "SourceDestCheck",
    "ebsOptimized": "EbsOptimized",
    "enaSupport": "EnaSupport",
    "disableApiStop": "DisableApiStop",
}
#: Attributes with one possible value here: member → that value.
FIXED = {
    "SourceDestCheck": True,
    "EbsOptimized": False,
    "EnaSupport": True,
    "DisableApiStop": False,
}
RESETTABLE = ("kernel", "ramdisk", "sourceDestCheck")


def _value(member: Any) -> Any:
    """``{"Value": x}`` → x; a bare value (legacy form, or EnaSupport's shape) as it is."""
    return member.get("Value") if isinstance(member, Mapping) else member


def _legacy(params: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(params)
    attribute = params.get("Attribute")
    if attribute is None:
        return out
    if attribute not in LEGACY:
        raise invalid_parameter(f"Value ({attribute}) for parameter attribute is invalid.")
    if params.get("Value") is None:
        raise missing_parameter("Value")
    out[LEGACY[str(attribute)]] = {"Value": params["Value"]}
    return out


class InstanceAttributes:
    """The three attribute operations over :class:`InstanceService`'s rows."""

    def __init__(self, instances: InstanceService) -> None:
        self._instances = instances
        self._catalog = instances.catalog

    def _row(
        self, conn: sa.Connection, ctx: RequestContext, params: Mapping[str, Any]
    ) -> rows.InstanceRow:
        instance_id = params.get("InstanceId")
        if not instance_id:
            raise missing_parameter("InstanceId")
        (row,) = self._instances.owned(conn, ctx, [check_id(str(instance_id), "i")])
        return row

    # -- Describe -------------------------------------------------------------------------

    def describe_instance_attribute(
        self, ctx: RequestContext, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        attribute = params.get("Attribute")
        if attribute is None:
            raise missing_parameter("Attribute")
        if attribute not in ATTRIBUTES:
            raise invalid_parameter(f"Value ({attribute}) for parameter attribute is invalid.")
        with self._catalog.begin() as conn:
            row = self._row(conn, ctx, params)
            (view,) = self._instances.views(conn, [row])
        value: Any = {
            "instanceType": {"Value": row.instance_type},
            "kernel": {"Value": row.kernel_id} if row.kernel_id else {},
            "ramdisk": {"Value": row.ramdisk_id} if row.ramdisk_id else {},
            "userData": {"Value": base64.b64encode(row.user_data).decode()}
            if row.user_data
            else {},
            "disableApiTermination": {"Value": row.disable_api_termination},
            "instanceInitiatedShutdownBehavior": {"Value": row.shutdown_behavior},
            "rootDeviceName": {"Value": row.root_device_name},
            "blockDeviceMapping": describe.block_devices(view),
            "productCodes": [],
            "sourceDestCheck": {"Value": FIXED["SourceDestCheck"]},
            "groupSet": [],
            "ebsOptimized": {"Value": FIXED["EbsOptimized"]},
            "sriovNetSupport": {},
            "enaSupport": {"Value": FIXED["EnaSupport"]},
            "enclaveOptions": {"Enabled": False},
            "disableApiStop": {"Value": FIXED["DisableApiStop"]},
        }[attribute]
        return {"InstanceId": row.instance_id, ATTRIBUTES[attribute]: value}

    # -- Modify ---------------------------------------------------------------------------

    def modify_instance_attribute(
        self, ctx: RequestContext, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        params = _legacy(params)
        launcher = self._instances.launcher
        values: dict[str, Any] = {}
        changed = False
        with self._catalog.begin() as conn:
            row = self._row(conn, ctx, params)
            for member, fixed in FIXED.items():
                if params.get(member) is not None:
                    wanted = check_bool(_value(params[member]), member)
                    if wanted != fixed:
                        raise ClientError(
                            "UnsupportedOperation",
                            f"{member} can only be {str(fixed).lower()} on Goldsmith instances.",
                        )
                    changed = True
            if params.get("DisableApiTermination") is not None:
                values["disable_api_termination"] = check_bool(
                    _value(params["DisableApiTermination"]), "DisableApiTermination"
                )
            behavior = _value(params.get("InstanceInitiatedShutdownBehavior"))
            if behavior is not None:
                values["shutdown_behavior"] = launcher.shutdown_behavior(
                    {"InstanceInitiatedShutdownBehavior": behavior}
                )
            values.update(self._stopped_only(conn, ctx, row, params))
            if params.get("BlockDeviceMappings"):
                self._delete_on_termination(conn, row, params["BlockDeviceMappings"])
                changed = True
            if not values and not changed:
                raise missing_parameter("Attribute")
            if values:
                rows.update_instance(conn, row.instance_id, **values)
        if "kernel_id" in values or "ramdisk_id" in values:
            self._drop_staged_kernel(row)
        return {}

    def _stopped_only(
        self,
        conn: sa.Connection,
        ctx: RequestContext,
        row: rows.InstanceRow,
        params: Mapping[str, Any],
    ) -> dict[str, Any]:
        """instanceType, userData, kernel, ramdisk: only while stopped."""
        itype = _value(params.get("InstanceType"))
        user_data = params.get("UserData")
        kernel = _value(params.get("Kernel"))
        ramdisk = _value(params.get("Ramdisk"))
        if all(v is None for v in (itype, user_data, kernel, ramdisk)):
            return {}
        if row.state != "stopped":
            raise incorrect_state(row, "modified")
        values: dict[str, Any] = {}
        if itype is not None:
            name, vcpus, memory = self._instances.launcher.instance_type({"InstanceType": itype})
            values.update(instance_type=name, vcpus=vcpus, memory_mib=memory)
        if user_data is not None:
            raw = _value(user_data)
            if isinstance(raw, str):
                raw = raw.encode()
            values["user_data"] = raw if isinstance(raw, bytes) and raw else None
        if kernel is not None:
            values["kernel_id"] = self._boot_image(conn, ctx, kernel, "kernel")
        if ramdisk is not None:
            values["ramdisk_id"] = self._boot_image(conn, ctx, ramdisk, "ramdisk")
        return values

    @staticmethod
    def _boot_image(conn: sa.Connection, ctx: RequestContext, image_id: Any, kind: str) -> str:
        found, _ = get_visible(conn, ctx, check_image_id(str(image_id)))
        if found.image_type != kind:
            raise invalid_parameter(f"The image {image_id} is not a {kind} image")
        return found.image_id

    @staticmethod
    def _delete_on_termination(conn: sa.Connection, row: rows.InstanceRow, specs: Any) -> None:
        attached = {
            str(v.device): v
            for v in volume_rows.volumes_of(conn, [row.instance_id])[row.instance_id]
        }
        for spec in specs:
            device = spec.get("DeviceName")
            volume = attached.get(str(device))
            if volume is None:
                raise ClientError(
                    "InvalidInstanceAttributeValue", f"No device is currently mapped at {device}"
                )
            ebs = spec.get("Ebs") or {}
            wanted_volume = ebs.get("VolumeId")
            if wanted_volume is not None and wanted_volume != volume.volume_id:
                raise ClientError(
                    "InvalidInstanceAttributeValue",
                    f"The volume {wanted_volume} is not attached at {device}",
                )
            dot = ebs.get("DeleteOnTermination")
            if dot is None:
                raise missing_parameter("BlockDeviceMapping.Ebs.DeleteOnTermination")
            volume_rows.update_volume(
                conn,
                volume.volume_id,
                delete_on_termination=check_bool(dot, "DeleteOnTermination"),
            )

    def _drop_staged_kernel(self, row: rows.InstanceRow) -> None:
        """The next start stages the new kernel/ramdisk (see InstanceManager)."""
        run_dir = self._instances.manager.files.run_dir(row.region, row.instance_id)
        for name in ("kernel", "initrd"):
            (run_dir / name).unlink(missing_ok=True)

    # -- Reset ----------------------------------------------------------------------------

    def reset_instance_attribute(
        self, ctx: RequestContext, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        attribute = params.get("Attribute")
        if attribute is None:
            raise missing_parameter("Attribute")
        if attribute not in RESETTABLE:
            raise invalid_parameter(
                f"Value ({attribute}) for parameter attribute is invalid. Only kernel, ramdisk "
                "and sourceDestCheck can be reset."
            )
        with self._catalog.begin() as conn:
            row = self._row(conn, ctx, params)
            if attribute == "sourceDestCheck":
                return {}
            if row.state != "stopped":
                raise incorrect_state(row, "modified")
            image = image_rows.get_images(conn, [row.image_id]).get(row.image_id)
            column = "kernel_id" if attribute == "kernel" else "ramdisk_id"
            default = getattr(image, column) if image is not None else None
            rows.update_instance(conn, row.instance_id, **{column: default})
        self._drop_staged_kernel(row)
        return {}

    def operations(self) -> list[Operation]:
        return [
            Operation(
                "DescribeInstanceAttribute",
                self.describe_instance_attribute,
                "Read one instance attribute",
            ),
            Operation(
                "ModifyInstanceAttribute",
                self.modify_instance_attribute,
                "Change type, user data, kernel/ramdisk, shutdown behaviour, termination "
                "protection, DeleteOnTermination of attached volumes",
            ),
            Operation(
                "ResetInstanceAttribute",
                self.reset_instance_attribute,
                "Reset kernel/ramdisk (to the image's) or sourceDestCheck",
            ),
        ]
