"""Instance types (EC2 figures, host caps, capacity) and instance addresses and ports."""

from __future__ import annotations

import socket

import pytest

from goldsmith.compute import CapacityError, NetworkError, UnknownInstanceTypeError
from goldsmith.compute.instance_types import (
    INSTANCE_TYPES,
    Host,
    capacity,
    check_capacity,
    describe,
    resolve_instance_type,
    this_host,
)
from goldsmith.compute.network import (
    MAX_INDEX,
    address_index,
    can_bind,
    free_port,
    loopback_address,
    next_free_index,
    private_address,
    ssh_port,
)

HOST = Host(cpus=2, memory_mib=24 * 1024)


def test_table_has_ec2_figures() -> None:
    assert describe("t2.micro").vcpus == 1 and describe("t2.micro").memory_mib == 1024
    assert (describe("t3.large").vcpus, describe("t3.large").memory_mib) == (2, 8192)
    assert (describe("m5.large").vcpus, describe("m5.large").memory_mib) == (2, 8192)
    assert (describe("c5.large").vcpus, describe("c5.large").memory_mib) == (2, 4096)
    assert {"t2.nano", "t3.nano", "t3.micro", "t3.small", "t3.medium"} <= set(INSTANCE_TYPES)


def test_resolve_caps_to_the_host() -> None:
    assert resolve_instance_type("t2.micro", HOST) == (1, 1024)
    assert resolve_instance_type("m5.xlarge", HOST) == (2, 6144)  # 4 vCPU → 2, 16 GiB → 1/4 host
    assert resolve_instance_type("t3.nano", Host(1, 2048)) == (1, 512)
    with pytest.raises(UnknownInstanceTypeError, match=r"'t9\.huge' does not exist"):
        resolve_instance_type("t9.huge", HOST)
    vcpus, memory = resolve_instance_type("t3.large")  # this machine
    assert 1 <= vcpus <= this_host().cpus and memory <= this_host().memory_mib // 4


def test_capacity_counts_memory_and_overcommitted_cpus() -> None:
    budget = HOST.memory_budget_mib  # 80 % of 24 GiB
    assert capacity(1, 1024, [], HOST) == min(budget // 1024, 2 * 4)
    assert capacity(2, 512, [], HOST) == 4  # 8 vCPUs of overcommit / 2
    assert capacity(1, 6144, [(1, 6144)] * 3, HOST) == 0
    check_capacity(1, 1024, 2, [(1, 1024)], HOST)
    with pytest.raises(CapacityError, match="Insufficient capacity: 9 more"):
        check_capacity(1, 1024, 9, [], HOST)


def test_addresses_are_a_pure_numbering() -> None:
    assert loopback_address(0) == "127.100.0.1"
    assert loopback_address(253) == "127.100.0.254"
    assert loopback_address(254) == "127.100.1.1"
    assert private_address(254) == "172.31.1.1"
    for index in (0, 1, 253, 254, 1000, MAX_INDEX):
        assert address_index(loopback_address(index)) == index
    with pytest.raises(NetworkError):
        loopback_address(MAX_INDEX + 1)
    with pytest.raises(NetworkError):
        address_index("127.100.0.255")
    assert next_free_index([]) == 0
    assert next_free_index([0, 1, 3]) == 2


def test_every_instance_address_is_bindable_and_separate() -> None:
    a, b = loopback_address(7), loopback_address(300)
    port = free_port(a)
    with socket.socket() as server:
        server.bind((a, port))
        server.listen()
        assert not can_bind(a, port)
        assert can_bind(b, port)  # same port, other instance address: free
        with socket.create_connection((a, port), timeout=5) as client:
            conn, _peer = server.accept()
            conn.close()
            assert client.getpeername() == (a, port)
    port22 = ssh_port(a)
    assert port22 == 22 or port22 > 1024
