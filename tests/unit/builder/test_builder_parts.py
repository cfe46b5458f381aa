"""The builders' parts without booting: cpio, ELF, sparse copies, APT, the IMDS client, cache."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from builder_vm import Metadata, build_cache, imds

from goldsmith.builder import BuildError, DiskImage, apt, build_tiny, cpio
from goldsmith.builder._common import copy_sparse, read_manifest
from goldsmith.builder.elf import ElfFile
from goldsmith.builder.initramfs import module_index, module_order
from goldsmith.builder.tiny_files import IMDS_SH


def _parse_newc(blob: bytes) -> dict[str, tuple[int, bytes, tuple[int, int]]]:
    """name → (mode, data, (rdev major, minor)) for a newc archive."""
    entries: dict[str, tuple[int, bytes, tuple[int, int]]] = {}
    pos = 0
    while True:
        assert blob[pos : pos + 6] == b"070701"
        fields = [int(blob[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = fields[11], fields[6]
        name_start = pos + 110
        name = blob[name_start : name_start + namesize - 1].decode()
        data_start = name_start + namesize + (-(110 + namesize) % 4)
        data = blob[data_start : data_start + filesize]
        pos = data_start + filesize + (-filesize % 4)
        if name == "TRAILER!!!":
            return entries
        entries[name] = (fields[1], data, (fields[9], fields[10]))


def test_cpio_archive_holds_files_links_dirs_and_device_nodes(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/tool").write_bytes(b"abc")
    (tmp_path / "bin/tool").chmod(0o755)
    (tmp_path / "sh").symlink_to("bin/tool")
    entries = _parse_newc(cpio.archive(tmp_path, [cpio.CONSOLE]))
    assert entries["bin/tool"][1] == b"abc"
    assert stat.S_IMODE(entries["bin/tool"][0]) == 0o755
    assert entries["sh"][1] == b"bin/tool" and stat.S_ISLNK(entries["sh"][0])
    assert stat.S_ISDIR(entries["bin"][0])
    mode, _data, rdev = entries["dev/console"]
    assert stat.S_ISCHR(mode) and rdev == (5, 1)
    listing = subprocess.run(
        ["cpio", "-it", "--quiet"], input=cpio.archive(tmp_path), capture_output=True, check=True
    ).stdout.decode()
    assert listing.split() == ["bin", "sh", "bin/tool"]


def test_elf_reader_finds_loader_and_libraries() -> None:
    elf = ElfFile(Path(os.path.realpath(sys.executable)))
    assert elf.interpreter() == "/lib64/ld-linux-x86-64.so.2"
    assert "libc.so.6" in elf.needed()


def test_copy_sparse_places_data_at_offset_and_keeps_holes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    with open(src, "wb") as handle:
        handle.truncate(8 << 20)
        handle.seek(1 << 20)
        handle.write(b"x" * 5000)
        handle.seek((7 << 20) + 3)
        handle.write(b"tail")
    dst = tmp_path / "dst"
    with open(dst, "wb") as handle:
        handle.truncate(16 << 20)
    copy_sparse(src, dst, offset=4 << 20)
    data = dst.read_bytes()
    assert len(data) == 16 << 20
    assert data[(5 << 20) : (5 << 20) + 5000] == b"x" * 5000
    assert data[(11 << 20) + 3 : (11 << 20) + 7] == b"tail"
    assert data.count(0) == len(data) - 5004
    assert os.stat(dst).st_blocks * 512 <= 256 << 10


def test_apt_closure_resolves_versioned_dependencies() -> None:
    packages = {p.name: p for p in apt.closure(["dropbear-bin"])}
    assert {"dropbear-bin", "libc6", "zlib1g"} <= set(packages)
    assert all(p.version and p.filename.endswith(".deb") for p in packages.values())
    with pytest.raises(BuildError):
        apt.closure(["no-such-package-goldsmith"])


def test_kernel_modules_load_after_their_dependencies(tiny_image: DiskImage) -> None:
    assert tiny_image.kernel is not None
    manifest = read_manifest(build_cache() / "kernel" / tiny_image.kernel.key)
    assert manifest is not None
    modules = manifest["modules"]
    assert {"virtio_pci", "virtio_blk", "virtio_net", "button", "evdev"} <= set(modules)
    assert modules.index("virtio") < modules.index("virtio_blk")
    assert modules.index("net_failover") < modules.index("virtio_net")
    image_pkg = tiny_image.kernel.package.replace("=", "_").replace(":", "%3a")
    modroot = next((build_cache() / "unpacked").glob(f"{image_pkg}_*")) / "lib/modules"
    index = module_index(next(modroot.iterdir()))
    assert module_order(index, ["virtio_blk"])[-1] == "virtio_blk"


def _busybox() -> Path:
    return next((build_cache() / "unpacked").glob("busybox-static_*")) / "bin/busybox"


@pytest.mark.parametrize("offer_token", [True, False])
def test_imds_client_uses_v2_tokens_and_falls_back_to_v1(
    tiny_image: DiskImage, tmp_path: Path, offer_token: bool
) -> None:
    script = tmp_path / "imds.sh"
    script.write_text(IMDS_SH)
    for applet in ("nc", "wget", "timeout", "usleep", "sed", "tr"):
        (tmp_path / applet).symlink_to(_busybox())
    meta = Metadata(public_key="ssh-ed25519 AAAA test", offer_token=offer_token)
    meta.require_token = offer_token
    with imds(meta) as port:
        done = subprocess.run(
            [
                _busybox(),
                "sh",
                "-c",
                f". {script}; imds_wait 3 && "
                "imds_get meta-data/public-keys/0/openssh-key && ! imds_get user-data",
            ],
            env={"IMDS": f"127.0.0.1:{port}", "PATH": f"{tmp_path}:{os.environ['PATH']}"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ssh-ed25519 AAAA test\n"
    tokens = {token for method, _path, token in meta.requests if method == "GET"}
    assert tokens == ({"test-token-AQAEAJ"} if offer_token else {None})


def test_tiny_image_contents_and_warm_rebuild(tiny_image: DiskImage, tmp_path: Path) -> None:
    def debugfs(request: str) -> str:
        return subprocess.run(
            ["debugfs", "-R", request, tiny_image.path], capture_output=True, text=True, check=True
        ).stdout

    assert "User:  1000   Group:  1000" in debugfs("stat /home/ec2-user/.ssh")
    assert "/bin/busybox" in debugfs("stat /sbin/init")
    assert "ec2-user:x:1000:1000" in debugfs("cat /etc/passwd")
    assert "libc.so.6" in debugfs("ls /lib/x86_64-linux-gnu")
    fsck = subprocess.run(["e2fsck", "-fn", tiny_image.path], capture_output=True, check=False)
    assert fsck.returncode == 0
    label = subprocess.run(
        ["e2label", tiny_image.path], capture_output=True, text=True, check=True
    ).stdout
    assert label == "root\n"

    entry = build_cache() / "tiny" / tiny_image.key / "root.img"
    before = entry.stat().st_mtime_ns
    started = time.monotonic()
    again = build_tiny(build_cache(), tmp_path / "out")
    assert time.monotonic() - started < 30
    assert again.key == tiny_image.key
    assert entry.stat().st_mtime_ns == before
    assert again.path.read_bytes() == tiny_image.path.read_bytes()
