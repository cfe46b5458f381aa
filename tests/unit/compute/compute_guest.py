"""A throwaway test guest: Debian's cloud kernel plus a busybox initramfs, built from packages.

The compute tests must not depend on the platform-image builder, so they make their own
guest: ``apt-get download`` of ``linux-image-<version>-cloud-amd64`` and ``busybox-static``
(cached in ``$GOLDSMITH_TEST_CACHE`` or ``~/.cache/goldsmith-test/compute``), unpacked with
``dpkg-deb -x``, and an uncompressed newc initramfs written here. Its ``/init`` prints
markers the tests wait for:

- ``GUEST-HELLO`` once init runs;
- ``GUEST-IP <addr>`` after DHCP, ``GUEST-IMDS <body>`` after a GET of
  ``http://169.254.169.254/latest/meta-data/instance-id``;
- ``GUEST-DISKS [vda:serial vdb:serial]`` whenever the set of virtio disks changes;
- ``GUEST-POWERBUTTON`` when the ACPI power button is pressed (then it powers off).

It also answers TCP port 22 with a one-line banner (``SSH-2.0-goldsmith-test``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

MODULES = ["virtio_pci", "virtio_blk", "virtio_net", "button", "evdev"]

INIT = r"""#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s /bin
export PATH=/bin
for m in $(cat /etc/modules); do insmod /lib/modules/$m; done
echo GUEST-HELLO
for e in /sys/class/input/event*; do
  if grep -q "Power Button" $e/device/name 2>/dev/null; then
    ( dd if=/dev/input/${e##*/} bs=24 count=1 of=/dev/null 2>/dev/null
      echo GUEST-POWERBUTTON; sync; poweroff -f ) &
  fi
done
nc -ll -p 22 -e echo SSH-2.0-goldsmith-test &
ip link set lo up
if ip link set eth0 up 2>/dev/null; then
  udhcpc -i eth0 -q -n -t 5 -s /etc/udhcpc.sh >/dev/null 2>&1
  echo "GUEST-IP $(ip -4 -o addr show eth0 | awk '{print $4}')"
  # busybox's static wget crashes on NSS look-ups in an empty root: speak HTTP with nc
  printf 'GET /latest/meta-data/instance-id HTTP/1.0\r\nHost: 169.254.169.254\r\n\r\n' \
    | nc 169.254.169.254 80 | tail -n 1 | sed 's/^/GUEST-IMDS /'
  echo
fi
old=none
while true; do
  new=""
  for b in /sys/block/vd*; do
    [ -e "$b" ] && new="$new ${b##*/}:$(cat $b/serial 2>/dev/null)"
  done
  if [ "$new" != "$old" ]; then echo "GUEST-DISKS [${new# }]"; old="$new"; fi
  sleep 0.3
done
"""

UDHCPC = """#!/bin/sh
case "$1" in
  bound|renew)
    ip addr add $ip/${mask:-24} dev $interface
    [ -n "$router" ] && ip route add default via ${router%% *} dev $interface ;;
esac
exit 0
"""

CMDLINE = "console=ttyS0 quiet panic=-1"


@dataclass(frozen=True)
class Guest:
    kernel: Path
    initrd: Path


def cache_dir() -> Path:
    root = os.environ.get("GOLDSMITH_TEST_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "goldsmith-test"
    path = base / "compute"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _download(debs: Path, package: str) -> Path:
    """The cached .deb of ``package`` (apt-get download on first use)."""
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        subprocess.run(["apt-get", "download", package], cwd=debs, check=True, timeout=600)
        found = sorted(debs.glob(f"{package}_*.deb"))
    return found[-1]


def _kernel_package() -> str:
    out = subprocess.run(
        ["apt-cache", "depends", "linux-image-cloud-amd64"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in out.splitlines():
        name = line.strip().removeprefix("Depends: ")
        if name.startswith("linux-image-") and name != "linux-image-cloud-amd64":
            return name
    raise RuntimeError("cannot resolve linux-image-cloud-amd64")


def _module_order(moddir: Path, wanted: list[str]) -> list[str]:
    """Module paths (relative to ``moddir``) in load order: dependencies first.

    The package ships no modules.dep (depmod makes it at install time), so dependencies are
    read from each module's ``.modinfo`` strings (``depends=a,b``).
    """
    by_name = {p.name.removesuffix(".ko").replace("-", "_"): p for p in moddir.rglob("*.ko")}
    order: list[str] = []

    def visit(name: str) -> None:
        path = by_name[name.replace("-", "_")]
        rel = str(path.relative_to(moddir))
        if rel in order:
            return
        for field in path.read_bytes().split(b"\0"):
            if field.startswith(b"depends="):
                for dep in filter(None, field[8:].decode().split(",")):
                    visit(dep)
        order.append(rel)

    for name in wanted:
        visit(name)
    return order


def _cpio(entries: list[tuple[str, int, bytes, int]]) -> bytes:
    """A newc archive of (name, mode, data, rdev-major<<8|minor) entries."""
    out = bytearray()
    for ino, (name, mode, data, rdev) in enumerate([*entries, ("TRAILER!!!", 0, b"", 0)], 1):
        encoded = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev >> 8, rdev & 0xFF, len(encoded), 0]
        out += b"070701" + b"".join(f"{v:08x}".encode() for v in fields) + encoded
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def build_guest() -> Guest:
    """Build (or return the cached) test guest kernel and initramfs."""
    cache = cache_dir()
    debs = cache / "debs"
    debs.mkdir(exist_ok=True)
    kernel_deb = _download(debs, _kernel_package())
    busybox_deb = _download(debs, "busybox-static")
    key = hashlib.sha256(
        f"{kernel_deb.name}|{busybox_deb.name}|{INIT}|{UDHCPC}|{MODULES}".encode()
    ).hexdigest()[:16]
    out = cache / f"guest-{key}"
    if (out / "initrd.img").exists():
        return Guest(out / "vmlinuz", out / "initrd.img")
    with tempfile.TemporaryDirectory(dir=cache) as tmp_name:
        tmp = Path(tmp_name)
        for deb in (kernel_deb, busybox_deb):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp / "root")], check=True)
        root = tmp / "root"
        vmlinuz = next((root / "boot").glob("vmlinuz-*"))
        moddir = next((root / "lib" / "modules").iterdir())
        modules = _module_order(moddir, MODULES)
        entries: list[tuple[str, int, bytes, int]] = [
            (d, 0o040755, b"", 0)
            for d in ["bin", "dev", "etc", "proc", "sys", "tmp", "lib", "lib/modules"]
        ]
        entries += [
            ("dev/console", 0o020600, b"", (5 << 8) | 1),
            ("bin/busybox", 0o100755, (root / "bin" / "busybox").read_bytes(), 0),
            ("init", 0o100755, INIT.encode(), 0),
            ("etc/udhcpc.sh", 0o100755, UDHCPC.encode(), 0),
            ("etc/modules", 0o100644, "\n".join(Path(m).name for m in modules).encode(), 0),
        ]
        entries += [
            (f"lib/modules/{Path(m).name}", 0o100644, (moddir / m).read_bytes(), 0) for m in modules
        ]
        staged = tmp / "out"
        staged.mkdir()
        shutil.copyfile(vmlinuz, staged / "vmlinuz")
        (staged / "initrd.img").write_bytes(_cpio(entries))
        try:
            staged.rename(out)
        except OSError:
            if not (out / "initrd.img").exists():  # not a concurrent builder: a real error
                raise
    return Guest(out / "vmlinuz", out / "initrd.img")


def boot_sector(message: bytes) -> bytes:
    """A 512-byte MBR that writes ``message`` to COM1 and halts (for the BIOS boot test)."""
    code = bytes.fromhex("31C08ED8FCBAF803BE157CAC84C07403EEEBF8FAF4")
    assert len(code) == 21  # the message starts at 0x7C15, as the `mov si` above says
    sector = code + message + b"\0"
    return sector.ljust(510, b"\0") + b"\x55\xaa"
