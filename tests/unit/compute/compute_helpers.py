"""Helpers shared by the compute tests (kept out of conftest.py so tests can import them)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from goldsmith.compute import FakeHypervisor, Hypervisor, VmHandle


@dataclass
class Driver:
    """A hypervisor under test plus the few things the conformance suite cannot do generically."""

    name: str
    make: Callable[[], Hypervisor]
    hv: Hypervisor

    def wait_ready(self, handle: VmHandle, timeout: float = 60.0) -> None:
        """Wait until the guest has booted (QEMU: the init's disk listing is on the console)."""
        if self.name == "fake":
            return
        wait_console(self.hv, handle, b"GUEST-DISKS", timeout)

    def crash(self, handle: VmHandle) -> None:
        """Make the VM die unasked."""
        if isinstance(self.hv, FakeHypervisor):
            self.hv.crash(handle)
        else:
            os.kill(handle.pid, signal.SIGKILL)
            wait_for(lambda: not Path(f"/proc/{handle.pid}/cmdline").read_bytes(), 10)


def wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except OSError:
            return  # a /proc file vanished: the process is gone
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def wait_console(
    hv: Hypervisor, handle: VmHandle, marker: bytes, timeout: float = 60.0, count: int = 1
) -> bytes:
    """Wait until ``marker`` is on the console (``count`` times); return the console."""
    deadline = time.monotonic() + timeout
    while True:
        out = hv.console_output(handle)
        if out.count(marker) >= count:
            return out
        if time.monotonic() > deadline:
            raise AssertionError(f"{marker!r} not on the console:\n{out.decode(errors='replace')}")
        time.sleep(0.1)
