"""Instance types: EC2's vCPU and memory figures, capped to what this host can give.

The table holds EC2's published sizes. A VM gets ``min(ec2_vcpus, host_cpus)`` vCPUs and
``min(ec2_memory, memory_cap)`` MiB, where the memory cap is a quarter of the host's
memory (rounded down to 64 MiB), so that at least four of the largest guests fit; TCG
guests touch only the memory they use, so the cap matters for admission, not for speed.
``describe`` reports EC2's own figures (what DescribeInstanceTypes answers); ``resolve``
reports what QEMU is given.

Capacity (InsufficientInstanceCapacity): the host's memory budget for guests is 80 % of
its memory minus what running VMs were given; vCPUs are overcommitted up to 4× the host's
cores (guests mostly idle), so memory is nearly always the limit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from goldsmith.compute.errors import CapacityError, UnknownInstanceTypeError


@dataclass(frozen=True)
class InstanceType:
    """EC2's figures for one type."""

    name: str
    vcpus: int
    memory_mib: int


# name: (vCPUs, memory MiB), as EC2 publishes them.
_TABLE: dict[str, tuple[int, int]] = {
    "t2.nano": (1, 512),
    "t2.micro": (1, 1024),
    "t2.small": (1, 2048),
    "t2.medium": (2, 4096),
    "t2.large": (2, 8192),
    "t3.nano": (2, 512),
    "t3.micro": (2, 1024),
    "t3.small": (2, 2048),
    "t3.medium": (2, 4096),
    "t3.large": (2, 8192),
    "t3a.nano": (2, 512),
    "t3a.micro": (2, 1024),
    "t3a.small": (2, 2048),
    "t3a.medium": (2, 4096),
    "t3a.large": (2, 8192),
    "t4g.nano": (2, 512),
    "t4g.micro": (2, 1024),
    "t4g.small": (2, 2048),
    "m5.large": (2, 8192),
    "m5.xlarge": (4, 16384),
    "m6i.large": (2, 8192),
    "c5.large": (2, 4096),
    "c5.xlarge": (4, 8192),
    "c6i.large": (2, 4096),
    "r5.large": (2, 16384),
}

INSTANCE_TYPES: dict[str, InstanceType] = {
    name: InstanceType(name, vcpus, mem) for name, (vcpus, mem) in _TABLE.items()
}

CPU_OVERCOMMIT = 4
MEMORY_BUDGET_FRACTION = 0.8


@dataclass(frozen=True)
class Host:
    """What the host offers: cores and memory (MiB). :func:`this_host` measures it."""

    cpus: int
    memory_mib: int

    @property
    def memory_cap_mib(self) -> int:
        """The most memory one guest may get: a quarter of the host, in 64 MiB steps."""
        return max(self.memory_mib // 4 // 64 * 64, 128)

    @property
    def memory_budget_mib(self) -> int:
        """Memory all guests together may be given."""
        return int(self.memory_mib * MEMORY_BUDGET_FRACTION)


def this_host() -> Host:
    """This machine's usable cores (affinity-aware) and total memory."""
    cpus = len(os.sched_getaffinity(0))
    pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    return Host(cpus, pages * page_size // (1024 * 1024))


def describe(name: str) -> InstanceType:
    """EC2's figures for ``name``; raises ``UnknownInstanceTypeError``."""
    try:
        return INSTANCE_TYPES[name]
    except KeyError:
        raise UnknownInstanceTypeError(f"The instance type '{name}' does not exist") from None


def resolve_instance_type(name: str, host: Host | None = None) -> tuple[int, int]:
    """(vCPUs, memory MiB) a VM of type ``name`` gets on ``host`` (default: this one)."""
    itype = describe(name)
    host = host or this_host()
    return min(itype.vcpus, host.cpus), min(itype.memory_mib, host.memory_cap_mib)


def capacity(
    vcpus: int, memory_mib: int, running: list[tuple[int, int]], host: Host | None = None
) -> int:
    """How many more VMs of (vcpus, memory_mib) fit beside ``running`` [(vcpus, MiB), …]."""
    host = host or this_host()
    free_mem = host.memory_budget_mib - sum(m for _, m in running)
    free_cpu = host.cpus * CPU_OVERCOMMIT - sum(c for c, _ in running)
    if vcpus <= 0 or memory_mib <= 0:
        raise ValueError("a VM needs vCPUs and memory")
    return max(min(free_mem // memory_mib, free_cpu // vcpus), 0)


def check_capacity(
    vcpus: int,
    memory_mib: int,
    count: int,
    running: list[tuple[int, int]],
    host: Host | None = None,
) -> None:
    """Raise ``CapacityError`` unless ``count`` more such VMs fit."""
    fits = capacity(vcpus, memory_mib, running, host)
    if fits < count:
        raise CapacityError(
            f"Insufficient capacity: {count} more instance(s) of {vcpus} vCPU / {memory_mib} MiB "
            f"requested, {fits} fit"
        )
