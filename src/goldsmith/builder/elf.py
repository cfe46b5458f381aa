"""Just enough ELF reading for the builders: shared-library needs and kernel-module info.

``ldd`` executes the loader on the host, which is neither safe for foreign trees nor correct
when the libraries come from unpacked packages rather than the host. Reading the file instead
gives ``DT_NEEDED`` (which libraries a binary asks for), ``PT_INTERP`` (its loader) and a
module's ``.modinfo`` strings (``depends=…``), for 64-bit little-endian ELF only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from goldsmith.builder._common import BuildError

_PT_INTERP = 3
_SHT_DYNAMIC = 6
_DT_NEEDED = 1
_DT_STRTAB = 5
_LIB_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "lib", "usr/lib")


@dataclass(frozen=True)
class _Section:
    name: str
    kind: int
    addr: int
    offset: int
    size: int
    link: int


class ElfFile:
    """A parsed ELF64 little-endian file held in memory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = path.read_bytes()
        if self.data[:4] != b"\x7fELF" or self.data[4] != 2 or self.data[5] != 1:
            raise BuildError(f"{path}: not a 64-bit little-endian ELF file")
        header = struct.unpack_from("<HHIQQQIHHHHHH", self.data, 16)
        self._phoff, self._shoff = header[4], header[5]
        self._phentsize, self._phnum = header[8], header[9]
        self._shentsize, self._shnum, shstrndx = header[10], header[11], header[12]
        raw = [self._raw_section(i) for i in range(self._shnum)]
        names = raw[shstrndx] if raw else None
        self.sections = [
            _Section(
                name=self._cstring(names[3] + sh[0]) if names else "",
                kind=sh[1],
                addr=sh[2],
                offset=sh[3],
                size=sh[4],
                link=sh[5],
            )
            for sh in raw
        ]

    def _raw_section(self, index: int) -> tuple[int, int, int, int, int, int]:
        sh = struct.unpack_from("<IIQQQQIIQQ", self.data, self._shoff + index * self._shentsize)
        return sh[0], sh[1], sh[3], sh[4], sh[5], sh[6]

    def _cstring(self, offset: int) -> str:
        end = self.data.index(b"\0", offset)
        return self.data[offset:end].decode("utf-8", "replace")

    def section(self, name: str) -> bytes | None:
        """The bytes of the named section, or None."""
        for sec in self.sections:
            if sec.name == name:
                return self.data[sec.offset : sec.offset + sec.size]
        return None

    def interpreter(self) -> str | None:
        """The program loader path (``PT_INTERP``), or None for static binaries."""
        for i in range(self._phnum):
            ptype, _flags, offset, _va, _pa, filesz = struct.unpack_from(
                "<IIQQQQ", self.data, self._phoff + i * self._phentsize
            )
            if ptype == _PT_INTERP:
                return self.data[offset : offset + filesz].rstrip(b"\0").decode()
        return None

    def needed(self) -> list[str]:
        """Shared libraries named by ``DT_NEEDED`` entries, in order."""
        for sec in self.sections:
            if sec.kind != _SHT_DYNAMIC:
                continue
            strtab = self.sections[sec.link]
            out: list[int] = []
            for pos in range(sec.offset, sec.offset + sec.size, 16):
                tag, value = struct.unpack_from("<qQ", self.data, pos)
                if tag == 0:
                    break
                if tag == _DT_NEEDED:
                    out.append(value)
            return [self._cstring(strtab.offset + value) for value in out]
        return []

    def modinfo(self) -> dict[str, str]:
        """A kernel module's ``.modinfo`` key=value strings (last value of a key wins)."""
        raw = self.section(".modinfo") or b""
        info: dict[str, str] = {}
        for item in raw.split(b"\0"):
            key, sep, value = item.decode("utf-8", "replace").partition("=")
            if sep:
                info[key] = value
        return info


def library_closure(root: Path, binaries: list[Path]) -> list[Path]:
    """Files under ``root`` that ``binaries`` need to run: loader plus DT_NEEDED closure.

    Paths are returned relative to ``root`` (symlink names as found, e.g. ``libz.so.1``;
    callers copy them with their targets). Raises when a library cannot be found.
    """
    found: dict[str, Path] = {}
    todo = list(binaries)
    result: list[Path] = []
    while todo:
        elf = ElfFile(todo.pop())
        interp = elf.interpreter()
        if interp and interp not in found:
            found[interp] = Path(interp.lstrip("/"))
            result.append(found[interp])
        for name in elf.needed():
            if name in found:
                continue
            rel = _find_library(root, name)
            found[name] = rel
            result.append(rel)
            todo.append((root / rel).resolve())
    return result


def _find_library(root: Path, name: str) -> Path:
    for directory in _LIB_DIRS:
        candidate = root / directory / name
        if candidate.exists():
            return Path(directory) / name
    raise BuildError(f"shared library {name} not found under {root}")
