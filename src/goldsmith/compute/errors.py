"""Every failure the compute layer raises, in one tree.

::

    ComputeError                      base; ``str()`` is a sentence a log or StateReason can use
    ├── HypervisorError               QEMU could not be started or controlled
    │   ├── VmStartError              QEMU refused to start (bad image, bad option, no memory)
    │   ├── VmNotRunningError         the operation needs a running VM and it is not running
    │   ├── QmpError                  the QMP monitor answered with an error or broke the protocol
    │   └── OperationTimeout          an operation did not finish within its timeout
    ├── DiskError                     hot-plug or unplug of a disk failed
    ├── UnknownInstanceTypeError      the instance type is not in the table
    ├── CapacityError                 the host cannot give the requested vCPUs/memory
    ├── NetworkError                  no free loopback address or port, or binding failed
    └── VolumeError                   a volume operation (qemu-img, qemu-nbd, base cache) failed

The service layer maps these to EC2 errors (``InvalidParameterValue`` for an unknown
instance type, ``InsufficientInstanceCapacity`` for :class:`CapacityError`, a failed
instance's ``StateReason`` from the message of the others).
"""

from __future__ import annotations


class ComputeError(Exception):
    """Base of every compute-layer error."""


class HypervisorError(ComputeError):
    """QEMU could not be started or controlled."""


class VmStartError(HypervisorError):
    """QEMU refused to start; the message carries QEMU's own diagnostic."""


class VmNotRunningError(HypervisorError):
    """The operation needs a running VM and it is stopped or crashed."""


class QmpError(HypervisorError):
    """The QMP monitor returned an error, closed, or broke the protocol."""


class OperationTimeout(HypervisorError):
    """An operation did not complete within its timeout."""


class DiskError(ComputeError):
    """Attaching or detaching a disk failed (bad spec, QEMU refused, guest did not release)."""


class UnknownInstanceTypeError(ComputeError):
    """The instance type name is not in the table."""


class CapacityError(ComputeError):
    """The host cannot give the requested vCPUs or memory."""


class NetworkError(ComputeError):
    """No free loopback address or port, or an address cannot be bound."""


class VolumeError(ComputeError):
    """A volume operation failed (qemu-img, qemu-nbd, base cache)."""
