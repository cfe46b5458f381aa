"""A minimal NBD client (fixed newstyle handshake, ``NBD_OPT_GO``, simple-reply reads).

Used to read chosen byte ranges of a qcow2 volume through ``qemu-nbd`` — the only way to get
a volume's current bytes at given offsets (overlay and base resolved by QEMU's own block
layer) without converting the whole disk. Protocol: https://github.com/NetworkBlockDevice/nbd
``doc/proto.md``; only what reading needs is here.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from pathlib import Path
from types import TracebackType

from goldsmith.compute.errors import VolumeError

_NBDMAGIC = b"NBDMAGIC"
_IHAVEOPT = 0x49484156454F5054
_REPLY_MAGIC = 0x3E889045565A9
_FLAG_FIXED_NEWSTYLE = 1
_FLAG_NO_ZEROES = 2
_OPT_GO = 7
_REP_ACK = 1
_REP_INFO = 3
_INFO_EXPORT = 0
_REQUEST_MAGIC = 0x25609513
_SIMPLE_REPLY_MAGIC = 0x67446698
_CMD_READ = 0
_CMD_DISC = 2
MAX_READ = 4 * 1024 * 1024


class NbdClient:
    """One connection to one export; :meth:`read` returns exactly the bytes asked for."""

    def __init__(self, socket_path: Path, export: str = "", timeout: float = 30.0) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        self._handle = 0
        try:
            self._sock.connect(str(socket_path))
            self.size = self._handshake(export)
        except (OSError, struct.error) as exc:
            self._sock.close()
            raise VolumeError(f"NBD handshake with {socket_path} failed: {exc}") from exc
        except BaseException:
            self._sock.close()
            raise

    def __enter__(self) -> NbdClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _recv(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self._sock.recv(min(n - len(buf), 1 << 20))
            if not chunk:
                raise VolumeError("NBD server closed the connection")
            buf += chunk
        return bytes(buf)

    def _handshake(self, export: str) -> int:
        magic, opt_magic, _flags = struct.unpack(">8sQH", self._recv(18))
        if magic != _NBDMAGIC or opt_magic != _IHAVEOPT:
            raise VolumeError("not a newstyle NBD server")
        self._sock.sendall(struct.pack(">I", _FLAG_FIXED_NEWSTYLE | _FLAG_NO_ZEROES))
        name = export.encode()
        data = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
        self._sock.sendall(struct.pack(">QII", _IHAVEOPT, _OPT_GO, len(data)) + data)
        size = -1
        while True:
            magic_r, _opt, reply, length = struct.unpack(">QIII", self._recv(20))
            payload = self._recv(length)
            if magic_r != _REPLY_MAGIC:
                raise VolumeError("bad NBD option reply")
            if reply & 0x80000000:
                raise VolumeError(
                    f"NBD export {export!r} refused: {payload.decode(errors='replace')}"
                )
            if reply == _REP_INFO and struct.unpack(">H", payload[:2])[0] == _INFO_EXPORT:
                size = struct.unpack(">QH", payload[2:12])[0]
            if reply == _REP_ACK:
                if size < 0:
                    raise VolumeError("NBD server did not report the export size")
                return size

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` (split into requests of at most 4 MiB)."""
        out = bytearray()
        while length > 0:
            n = min(length, MAX_READ)
            self._handle += 1
            header = struct.pack(">IHHQQI", _REQUEST_MAGIC, 0, _CMD_READ, self._handle, offset, n)
            self._sock.sendall(header)
            magic, error, handle = struct.unpack(">IIQ", self._recv(16))
            if magic != _SIMPLE_REPLY_MAGIC or handle != self._handle:
                raise VolumeError("bad NBD reply")
            if error:
                raise VolumeError(f"NBD read at {offset} failed with error {error}")
            out += self._recv(n)
            offset += n
            length -= n
        return bytes(out)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.sendall(struct.pack(">IHHQQI", _REQUEST_MAGIC, 0, _CMD_DISC, 0, 0, 0))
        self._sock.close()
