"""Compute: VMs (hypervisor drivers), instance types, instance networking, volumes.

Knows nothing of EC2's wire format; the service layer turns these calls and errors into
EC2 semantics. See docs/design/compute.md.
"""

from goldsmith.compute.errors import (
    CapacityError,
    ComputeError,
    DiskError,
    HypervisorError,
    NetworkError,
    OperationTimeout,
    QmpError,
    UnknownInstanceTypeError,
    VmNotRunningError,
    VmStartError,
    VolumeError,
)
from goldsmith.compute.fake import FakeHypervisor
from goldsmith.compute.hypervisor import CONSOLE_MAX, Hypervisor
from goldsmith.compute.qemu import QemuHypervisor
from goldsmith.compute.spec import (
    BiosBoot,
    Boot,
    DirectBoot,
    DiskSpec,
    NetSpec,
    UefiBoot,
    VmHandle,
    VmSpec,
    VmState,
)

__all__ = [
    "CONSOLE_MAX",
    "BiosBoot",
    "Boot",
    "CapacityError",
    "ComputeError",
    "DirectBoot",
    "DiskError",
    "DiskSpec",
    "FakeHypervisor",
    "Hypervisor",
    "HypervisorError",
    "NetSpec",
    "NetworkError",
    "OperationTimeout",
    "QemuHypervisor",
    "QmpError",
    "UefiBoot",
    "UnknownInstanceTypeError",
    "VmHandle",
    "VmNotRunningError",
    "VmSpec",
    "VmStartError",
    "VmState",
    "VolumeError",
]
