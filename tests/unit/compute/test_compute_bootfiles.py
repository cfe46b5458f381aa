"""PV-GRUB boot files: the kernel and initrd found in a raw disk's /boot with debugfs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from goldsmith.compute.bootfiles import extract_boot_files, filesystem_offset, find_boot_files
from goldsmith.compute.errors import VolumeError

MIB = 1024 * 1024


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def ext4(image: Path, root: Path, offset: int = 0, size: int = 8 * MIB) -> Path:
    if not image.exists():
        image.write_bytes(b"")
        subprocess.run(["truncate", "-s", str(size + offset), str(image)], check=True)
    args = ["mkfs.ext4", "-q", "-F", "-d", str(root)]
    if offset:
        args += ["-E", f"offset={offset}"]
    subprocess.run([*args, str(image), f"{size // 1024}k"], check=True, capture_output=True)
    return image


def partitioned(image: Path, root: Path, label: str) -> Path:
    subprocess.run(["truncate", "-s", str(10 * MIB), str(image)], check=True)
    kind = "83" if label == "dos" else "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
    subprocess.run(
        ["sfdisk", "-q", str(image)],
        input=f"label: {label}\nstart=2048, size=16384, type={kind}\n",
        text=True,
        check=True,
        capture_output=True,
    )
    return ext4(image, root, offset=MIB)


KERNELS = {
    "/boot/vmlinuz-6.9.0-1-amd64": b"kernel 6.9",
    "/boot/vmlinuz-6.10.0-2-amd64": b"kernel 6.10",
    "/boot/initrd.img-6.10.0-2-amd64": b"initrd 6.10",
    "/boot/config-6.10.0-2-amd64": b"config",
    "/etc/hostname": b"guest\n",
}


def test_the_newest_kernel_version_and_its_initrd(tmp_path: Path) -> None:
    image = ext4(tmp_path / "disk.raw", tree(tmp_path / "root", KERNELS))
    found = find_boot_files(image)
    assert (found.kernel, found.initrd, found.offset) == (
        "/boot/vmlinuz-6.10.0-2-amd64",  # 6.10 > 6.9 in version order, not text order
        "/boot/initrd.img-6.10.0-2-amd64",
        0,
    )
    run = tmp_path / "run"
    run.mkdir()
    kernel, initrd = extract_boot_files(image, run)
    assert kernel.read_bytes() == b"kernel 6.10" and kernel == run / "kernel"
    assert initrd is not None and initrd.read_bytes() == b"initrd 6.10"
    assert sorted(p.name for p in run.iterdir()) == ["initrd", "kernel"]


def test_menu_lst_names_the_kernel(tmp_path: Path) -> None:
    menu = (
        b"default 0\ntimeout 0\n\ntitle Old\n  root (hd0)\n"
        b"  kernel (hd0)/boot/vmlinuz-6.9.0-1-amd64 root=/dev/xvda1 ro console=hvc0\n"
        b"title New\n  kernel /boot/vmlinuz-6.10.0-2-amd64\n"
        b"  initrd /boot/initrd.img-6.10.0-2-amd64\n"
    )
    root = tree(tmp_path / "root", {**KERNELS, "/boot/grub/menu.lst": menu})
    found = find_boot_files(ext4(tmp_path / "disk.raw", root))
    assert (found.kernel, found.initrd) == ("/boot/vmlinuz-6.9.0-1-amd64", None)


def test_plain_vmlinuz_without_a_version(tmp_path: Path) -> None:
    root = tree(tmp_path / "root", {"/boot/vmlinuz": b"k", "/boot/initrd.img": b"i"})
    found = find_boot_files(ext4(tmp_path / "disk.raw", root))
    assert (found.kernel, found.initrd) == ("/boot/vmlinuz", "/boot/initrd.img")


@pytest.mark.parametrize("label", ["dos", "gpt"])
def test_the_first_linux_partition(tmp_path: Path, label: str) -> None:
    image = partitioned(tmp_path / "disk.raw", tree(tmp_path / "root", KERNELS), label)
    assert filesystem_offset(image) == MIB
    run = tmp_path / "run"
    run.mkdir()
    kernel, _ = extract_boot_files(image, run)
    assert kernel.read_bytes() == b"kernel 6.10"


def test_disks_without_a_kernel_are_volume_errors(tmp_path: Path) -> None:
    blank = tmp_path / "blank.raw"
    subprocess.run(["truncate", "-s", str(4 * MIB), str(blank)], check=True)
    with pytest.raises(VolumeError, match="neither an ext filesystem nor a partition table"):
        find_boot_files(blank)
    no_boot = ext4(tmp_path / "noboot.raw", tree(tmp_path / "r1", {"/etc/x": b"x"}))
    with pytest.raises(VolumeError, match="no /boot"):
        find_boot_files(no_boot)
    no_kernel = ext4(tmp_path / "nokernel.raw", tree(tmp_path / "r2", {"/boot/config": b"x"}))
    with pytest.raises(VolumeError, match="no kernel in /boot"):
        find_boot_files(no_kernel)
