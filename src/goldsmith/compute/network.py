"""Addresses and ports for instances: one loopback address each, like a public IP.

Linux routes all of 127.0.0.0/8 to ``lo`` (``local 127.0.0.0/8 dev lo``), so any 127.x.y.z can
be bound without configuration. Each instance gets its own address from 127.100.0.0/16
(its ``PublicIpAddress``); QEMU forwards that address's SSH port to the guest's port 22, so
``ssh user@127.100.0.5`` works as on EC2 when port 22 is bindable (root, or
``CAP_NET_BIND_SERVICE``), and ``ssh -p PORT`` otherwise.

The index → address mapping is a pure function so the caller persists only the index (or
the address) in the catalog; :func:`next_free_index` picks the lowest index not in use. The
same index also names the instance's private address in a VPC-like 172.31.0.0/16
(``PrivateIpAddress``, the metadata service's ``local-ipv4``).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterable

from goldsmith.compute.errors import NetworkError

LOOPBACK_BASE = ipaddress.IPv4Address("127.100.0.0")
PRIVATE_BASE = ipaddress.IPv4Address("172.31.0.0")
HOSTS_PER_BLOCK = 254  # .1 … .254 of each /24: no .0 or .255, which look like broadcast
MAX_INDEX = 256 * HOSTS_PER_BLOCK - 1


def _offset(index: int) -> int:
    if not 0 <= index <= MAX_INDEX:
        raise NetworkError(f"address index {index} outside 0…{MAX_INDEX}")
    return (index // HOSTS_PER_BLOCK) * 256 + index % HOSTS_PER_BLOCK + 1


def loopback_address(index: int) -> str:
    """The ``index``-th instance address: 0 → 127.100.0.1, 254 → 127.100.1.1."""
    return str(LOOPBACK_BASE + _offset(index))


def private_address(index: int) -> str:
    """The ``index``-th private address in 172.31.0.0/16 (same numbering)."""
    return str(PRIVATE_BASE + _offset(index))


def address_index(address: str) -> int:
    """Inverse of :func:`loopback_address`."""
    offset = int(ipaddress.IPv4Address(address)) - int(LOOPBACK_BASE)
    block, host = divmod(offset, 256)
    if not (0 <= block < 256 and 1 <= host <= HOSTS_PER_BLOCK):
        raise NetworkError(f"{address} is not an instance address")
    return block * HOSTS_PER_BLOCK + host - 1


def next_free_index(used: Iterable[int]) -> int:
    """The lowest index not in ``used``; raises ``NetworkError`` when all are taken."""
    taken = set(used)
    for index in range(MAX_INDEX + 1):
        if index not in taken:
            return index
    raise NetworkError("no free instance address")


def can_bind(host: str, port: int) -> bool:
    """True when a TCP listener could bind ``host:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in {errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL}:
                return False
            raise NetworkError(f"cannot bind {host}:{port}: {exc}") from exc
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (the kernel picks it; racy by nature, so bind soon)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, 0))
        except OSError as exc:
            raise NetworkError(f"cannot bind {host}: {exc}") from exc
        return int(sock.getsockname()[1])


def ssh_port(host: str) -> int:
    """22 when it can be bound on ``host`` (as on EC2), else a free high port."""
    return 22 if can_bind(host, 22) else free_port(host)
