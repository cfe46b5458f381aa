"""Writer and GC locks over plain blobs (the protocol is in docs/design/store.md).

Writers hold shared ``writer`` locks; GC's deletion phase holds an exclusive ``gc`` lock.
Taking a lock = put own lock blob, list ``locks/``, and back off (delete own, sleep with
jitter, retry) when a conflicting live lock exists. A lock is live while its ``refreshed``
time is younger than ``stale_after`` and, if it was taken on this host, its pid still runs
— so a writer killed with -9 never blocks GC.
"""

from __future__ import annotations

import json
import os
import random
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from .backend import Backend
from .errors import BackendError, BlobNotFoundError, RepositoryBusyError

PREFIX = "locks/"
WRITER = "writer"
GC = "gc"

#: kind → kinds it conflicts with
CONFLICTS = {WRITER: {GC}, GC: {WRITER, GC}}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True, slots=True)
class LockInfo:
    """A lock blob's content."""

    name: str
    kind: str
    host: str
    pid: int
    created: float
    refreshed: float


class Lock:
    """A held lock. ``refresh`` keeps it live; ``release`` deletes it."""

    def __init__(self, manager: LockManager, name: str, kind: str) -> None:
        self.manager = manager
        self.name = name
        self.kind = kind
        self.created = manager.clock()
        self.refreshed = self.created

    def _blob(self) -> bytes:
        return json.dumps(
            {
                "kind": self.kind,
                "host": self.manager.host,
                "pid": os.getpid(),
                "created": self.created,
                "refreshed": self.refreshed,
            }
        ).encode()

    def write(self) -> None:
        self.manager.backend.put(self.name, self._blob())

    def held(self) -> bool:
        """Whether the lock blob still exists (GC may have broken it as stale)."""
        return self.manager.backend.has(self.name)

    def refresh(self, force: bool = False) -> None:
        """Rewrite the lock if a third of ``stale_after`` has passed; lost lock → busy error."""
        now = self.manager.clock()
        if not force and now - self.refreshed < self.manager.stale_after / 3:
            return
        if not self.held():
            raise RepositoryBusyError(f"lock {self.name} was broken as stale")
        self.refreshed = now
        self.write()

    def release(self) -> None:
        self.manager.backend.delete(self.name)


class LockManager:
    """Takes and inspects locks in one backend."""

    def __init__(
        self,
        backend: Backend,
        *,
        stale_after: float = 600.0,
        poll: float = 0.05,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.stale_after = stale_after
        self.poll = poll
        self.clock = clock
        self.host = socket.gethostname()

    def locks(self) -> list[LockInfo]:
        """Every lock blob that can be read (unreadable ones count as stale)."""
        out = []
        for info in self.backend.list(PREFIX):
            try:
                doc = json.loads(self.backend.get(info.name))
                out.append(
                    LockInfo(
                        info.name,
                        str(doc["kind"]),
                        str(doc["host"]),
                        int(doc["pid"]),
                        float(doc["created"]),
                        float(doc["refreshed"]),
                    )
                )
            except BlobNotFoundError:
                continue  # released while listing
            except (ValueError, KeyError, TypeError):
                out.append(LockInfo(info.name, "unknown", "", 0, 0.0, 0.0))
        return out

    def is_live(self, lock: LockInfo) -> bool:
        if self.clock() - lock.refreshed >= self.stale_after:
            return False
        return lock.host != self.host or _pid_alive(lock.pid)

    def acquire(self, kind: str, wait: float) -> Lock:
        """Take a ``kind`` lock, retrying for up to ``wait`` seconds; else busy error."""
        deadline = time.monotonic() + wait
        delay = self.poll
        while True:
            lock = Lock(self, f"{PREFIX}{kind}-{uuid.uuid4().hex}", kind)
            lock.write()
            conflicts = [
                li
                for li in self.locks()
                if li.name != lock.name and li.kind in CONFLICTS[kind] and self.is_live(li)
            ]
            if not conflicts:
                return lock
            lock.release()
            if time.monotonic() >= deadline:
                names = ", ".join(c.name for c in conflicts)
                raise RepositoryBusyError(f"could not take a {kind} lock: held by {names}")
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)

    def break_stale(self) -> list[str]:
        """Delete every lock that is not live; return their names."""
        broken = []
        for li in self.locks():
            if not self.is_live(li):
                try:
                    self.backend.delete(li.name)
                except BackendError:
                    continue
                broken.append(li.name)
        return broken
