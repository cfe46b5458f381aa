"""Compute fixtures: the test guest, a metadata stand-in, and VM bookkeeping that kills by pid."""

from __future__ import annotations

import http.server
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from compute_guest import CMDLINE, Guest, build_guest
from compute_helpers import Driver

from goldsmith.compute import (
    DirectBoot,
    DiskSpec,
    FakeHypervisor,
    Hypervisor,
    NetSpec,
    QemuHypervisor,
    VmSpec,
)
from goldsmith.compute.network import free_port


@pytest.fixture(scope="session")
def guest() -> Guest:
    return build_guest()


class _MetadataHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"i-from-{self.client_address[0]}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def imds() -> Iterator[tuple[str, int]]:
    """An HTTP server answering ``i-from-<client address>`` on 127.0.0.1."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MetadataHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "127.0.0.1", int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def vm_reaper() -> Iterator[list[Path]]:
    """Run directories whose QEMU is SIGKILLed (by pid file) at teardown, whatever happened."""
    dirs: list[Path] = []
    yield dirs
    for run_dir in dirs:
        try:
            pid = int((run_dir / "qemu.pid").read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if str(run_dir).encode() in cmdline:
            os.kill(pid, signal.SIGKILL)


def _qemu() -> Hypervisor:
    return QemuHypervisor(start_timeout=30, qmp_timeout=10)


def _fake() -> Hypervisor:
    return FakeHypervisor()


@pytest.fixture(params=["qemu", "fake"])
def driver(request: pytest.FixtureRequest) -> Driver:
    make = _qemu if request.param == "qemu" else _fake
    return Driver(request.param, make, make())


@pytest.fixture
def make_spec(
    guest: Guest, imds: tuple[str, int], tmp_path: Path, vm_reaper: list[Path]
) -> Callable[..., VmSpec]:
    """A spec for the test guest; every run dir it hands out is reaped at teardown."""
    counter = iter(range(1, 1000))

    def make(
        disks: tuple[DiskSpec, ...] = (),
        net: bool = False,
        cmdline: str = CMDLINE,
        vm_id: str | None = None,
    ) -> VmSpec:
        n = next(counter)
        run_dir = tmp_path / f"vm{n}"
        vm_reaper.append(run_dir)
        netspec = None
        if net:
            address = f"127.100.{os.getpid() % 200}.{n}"
            netspec = NetSpec(address, free_port(address), imds[0], imds[1])
        return VmSpec(
            vm_id=vm_id or f"i-test{n}",
            vcpus=1,
            memory_mib=256,
            boot=DirectBoot(guest.kernel, guest.initrd, cmdline),
            disks=disks,
            net=netspec,
            run_dir=run_dir,
        )

    return make
