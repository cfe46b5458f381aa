"""A small synchronous QMP client (QEMU Machine Protocol: JSON lines over a unix socket).

Why not the ``qemu.qmp`` package: it is asyncio-based, and the driver's callers are plain
threads; what the driver needs is four things — greeting and capability negotiation, a
command with a reply matched by ``id``, events collected while waiting, and a deadline on
every read. That fits in this module with no dependency.

QEMU's QMP socket serves one client at a time (others wait in the listen backlog), so the
driver opens a connection per operation and closes it; events that arrive while a
connection is open are kept in :attr:`QmpClient.events` for :meth:`QmpClient.wait_event`.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from goldsmith.compute.errors import OperationTimeout, QmpError

Event = dict[str, Any]


class QmpClient:
    """One negotiated QMP connection. Use as a context manager."""

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._buf = b""
        self._next_id = 0
        self.events: list[Event] = []
        deadline = time.monotonic() + timeout
        try:
            self._sock.settimeout(timeout)
            self._sock.connect(str(path))
            greeting = self._read_message(deadline)
            if "QMP" not in greeting:
                raise QmpError(f"not a QMP greeting: {greeting!r}")
            self.execute("qmp_capabilities", timeout=max(deadline - time.monotonic(), 0.1))
        except OSError as exc:
            self._sock.close()
            raise QmpError(f"cannot talk to QMP at {path}: {exc}") from exc
        except BaseException:
            self._sock.close()
            raise

    def __enter__(self) -> QmpClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def execute(
        self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 10.0
    ) -> Any:
        """Run one command and return its ``return`` value; raise ``QmpError`` on ``error``."""
        self._next_id += 1
        ident = f"gs-{self._next_id}"
        request: dict[str, Any] = {"execute": command, "id": ident}
        if arguments:
            request["arguments"] = arguments
        deadline = time.monotonic() + timeout
        try:
            self._sock.sendall(json.dumps(request).encode() + b"\n")
        except OSError as exc:
            raise QmpError(f"QMP {command}: {exc}") from exc
        while True:
            message = self._read_message(deadline, what=command)
            if "event" in message:
                self.events.append(message)
                continue
            if message.get("id") != ident:
                continue  # a reply to someone else's command cannot happen; ignore stray ones
            if "error" in message:
                error = message["error"]
                raise QmpError(f"QMP {command}: {error.get('class')}: {error.get('desc')}")
            return message.get("return")

    def wait_event(
        self,
        name: str,
        timeout: float,
        match: Callable[[Event], bool] | None = None,
    ) -> Event:
        """Return (and consume) the first event ``name`` that ``match`` accepts."""
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("event") == name and (match is None or match(event)):
                    return self.events.pop(i)
            message = self._read_message(deadline, what=f"event {name}")
            if "event" in message:
                self.events.append(message)

    def _read_message(self, deadline: float, what: str = "greeting") -> dict[str, Any]:
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise OperationTimeout(f"QMP: no answer for {what} in time")
            self._sock.settimeout(remaining)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError as exc:
                raise OperationTimeout(f"QMP: no answer for {what} in time") from exc
            except OSError as exc:
                raise QmpError(f"QMP connection failed during {what}: {exc}") from exc
            if not chunk:
                raise QmpError(f"QMP connection closed during {what}")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise QmpError(f"QMP sent invalid JSON: {line[:200]!r}") from exc
        if not isinstance(message, dict):
            raise QmpError(f"QMP sent a non-object: {line[:200]!r}")
        return message
