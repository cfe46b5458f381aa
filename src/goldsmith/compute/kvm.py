"""Is KVM usable? A probe that runs a guest through the same mode switch Linux makes.

``/dev/kvm`` being present, openable, and even ``KVM_CREATE_VM``/``KVM_CREATE_VCPU`` and a
``KVM_RUN`` of a real-mode ``hlt`` succeeding do not prove KVM works: on this kind of machine
(nested, emulated virtualisation) all of those pass, SeaBIOS runs, and then the Linux
decompressor hangs forever when it switches the CPU to long mode. So the probe does exactly
that switch itself: it builds a VM with 2 MiB of memory, identity page tables and a GDT, and
runs 16-bit code that loads the GDT, enables PAE, sets EFER.LME, turns on paging and
protection, and far-jumps into 64-bit code which writes ``K`` to the serial port and halts.
KVM is usable only when that exits with the port write and then ``hlt``.

The probe runs in a child process with a timeout (a hung ``KVM_RUN`` cannot be interrupted
from Python), and its answer is cached for the life of the process. A broken probe fails
safe: any surprise means "not usable", and QEMU falls back to TCG.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import struct
import subprocess
import sys
import threading

KVM_DEVICE = "/dev/kvm"
PROBE_TIMEOUT = 3.0  # a working KVM answers in milliseconds

_KVM_GET_API_VERSION = 0xAE00
_KVM_CREATE_VM = 0xAE01
_KVM_GET_VCPU_MMAP_SIZE = 0xAE04
_KVM_CREATE_VCPU = 0xAE41
_KVM_SET_USER_MEMORY_REGION = 0x4020AE46
_KVM_RUN = 0xAE80
_KVM_SET_REGS = 0x4090AE82
_KVM_GET_SREGS = 0x8138AE83
_KVM_SET_SREGS = 0x4138AE84
_KVM_EXIT_IO = 2
_KVM_EXIT_HLT = 5

# 16-bit code at 0x8000: cli; lgdt [0x520]; cr4 |= PAE; cr3 = 0x1000; EFER |= LME;
# cr0 |= PG|PE; jmp far 0x08:0x8100.
_REAL_MODE = bytes.fromhex(
    "FA"
    "0F01162005"  # cli; lgdt [0x0520]
    "0F20E0"
    "6683C820"
    "0F22E0"  # mov eax,cr4; or eax,0x20; mov cr4,eax
    "66B800100000"
    "0F22D8"  # mov eax,0x1000; mov cr3,eax
    "66B9800000C0"
    "0F32"
    "660D00010000"
    "0F30"  # EFER (0xC0000080) |= LME
    "0F20C0"
    "660D01000080"
    "0F22C0"  # cr0 |= PG | PE
    "66EA00810000"
    "0800"  # jmp dword 0x0008:0x00008100
)
# 64-bit code at 0x8100: mov dx,0x3f8; mov al,'K'; out dx,al; hlt
_LONG_MODE = bytes.fromhex("66BAF803B04BEEF4")

_lock = threading.Lock()
_cache: dict[str, bool] = {}


def _probe_in_process() -> bool:
    """Run the long-mode probe in this process (may hang: call it in a child)."""
    kvm = os.open(KVM_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    if fcntl.ioctl(kvm, _KVM_GET_API_VERSION, 0) != 12:
        return False
    vm = fcntl.ioctl(kvm, _KVM_CREATE_VM, 0)
    size = 0x200000
    mem = mmap.mmap(-1, size)
    struct.pack_into("=QQQ", mem, 0x1000, 0x2003, 0, 0)  # PML4[0] -> PDPT
    struct.pack_into("=Q", mem, 0x2000, 0x3003)  # PDPT[0] -> PD
    struct.pack_into("=Q", mem, 0x3000, 0x83)  # PD[0]: 2 MiB page at 0
    struct.pack_into("=QQQ", mem, 0x500, 0, 0x00AF9A000000FFFF, 0x00CF92000000FFFF)
    struct.pack_into("=HI", mem, 0x520, 23, 0x500)  # GDTR: limit, base
    mem[0x8000 : 0x8000 + len(_REAL_MODE)] = _REAL_MODE
    mem[0x8100 : 0x8100 + len(_LONG_MODE)] = _LONG_MODE
    address = ctypes.addressof(ctypes.c_char.from_buffer(mem))
    fcntl.ioctl(vm, _KVM_SET_USER_MEMORY_REGION, struct.pack("=IIQQQ", 0, 0, 0, size, address))
    vcpu = fcntl.ioctl(vm, _KVM_CREATE_VCPU, 0)
    run = mmap.mmap(vcpu, fcntl.ioctl(kvm, _KVM_GET_VCPU_MMAP_SIZE, 0))
    sregs = bytearray(312)
    fcntl.ioctl(vcpu, _KVM_GET_SREGS, sregs)
    struct.pack_into("=QIH", sregs, 0, 0, 0xFFFF, 0)  # CS: base 0, selector 0 (real mode)
    fcntl.ioctl(vcpu, _KVM_SET_SREGS, bytes(sregs))
    regs = bytearray(144)
    struct.pack_into("=QQ", regs, 128, 0x8000, 2)  # rip, rflags
    fcntl.ioctl(vcpu, _KVM_SET_REGS, bytes(regs))
    exits = []
    for _ in range(4):
        fcntl.ioctl(vcpu, _KVM_RUN, 0)
        reason = struct.unpack_from("=I", run, 8)[0]
        if reason == _KVM_EXIT_IO:
            _direction, _size, port, _count, offset = struct.unpack_from("=BBHIQ", run, 32)
            exits.append((port, run[offset : offset + 1]))
            continue
        exits.append((reason, b""))
        break
    return exits == [(0x3F8, b"K"), (_KVM_EXIT_HLT, b"")]


def probe_kvm(timeout: float = PROBE_TIMEOUT) -> bool:
    """Run the probe in a child process; True only when it completed correctly in time."""
    if not os.path.exists(KVM_DEVICE):
        return False
    try:
        done = subprocess.run(
            [sys.executable, "-m", "goldsmith.compute.kvm"],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:  # the child is killed by run()
        return False
    return done.returncode == 0 and done.stdout.strip() == b"usable"


def kvm_usable() -> bool:
    """The cached answer of :func:`probe_kvm` (probed once per process)."""
    with _lock:
        if "usable" not in _cache:
            _cache["usable"] = probe_kvm()
        return _cache["usable"]


def main() -> int:
    """Child-process entry: print ``usable`` or ``unusable: reason``."""
    try:
        ok = _probe_in_process()
    except OSError as exc:
        print(f"unusable: {exc}")
        return 1
    print("usable" if ok else "unusable: unexpected exits")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
