"""Durable background tasks: work that outlives the request that asked for it.

A task is a catalog row (``tasks``: kind, resource, JSON payload, state) inserted in the
same transaction as the resource it finishes (a ``pending`` image, say), so the work is never
lost and never runs for a request that rolled back. :class:`TaskRunner` runs each task kind's
handler in a worker thread once the row is committed; a handler returns normally (``done``)
or raises (``failed``, the message kept in ``error`` — the handler itself records what the
client should see, such as an image's StateReason). At start, :meth:`TaskRunner.resume`
runs every task left ``queued`` or ``running`` by an earlier process again, so handlers must
be idempotent (check what is already done before doing it).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from goldsmith.catalog import instances as rows
from goldsmith.catalog.db import Catalog

log = logging.getLogger(__name__)

COMMIT_WAIT = 10.0
Handler = Callable[[rows.TaskRow, dict[str, Any]], None]


def _after_commit(conn: sa.Connection, fn: Callable[[], None]) -> None:
    sa.event.listen(conn, "commit", lambda _conn: fn(), once=True)


class TaskRunner:
    """Runs durable tasks by kind; see the module docstring."""

    def __init__(self, catalog: Catalog, *, workers: int = 2) -> None:
        self._catalog = catalog
        self._handlers: dict[str, Handler] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._workers = workers
        self._futures: set[Future[None]] = set()
        self._lock = threading.Lock()

    def register(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    def submit(
        self,
        conn: sa.Connection,
        kind: str,
        *,
        region: str,
        account_id: str,
        resource_id: str,
        payload: Mapping[str, Any],
    ) -> str:
        """Record a task in ``conn``'s transaction; it runs once the transaction commits."""
        if kind not in self._handlers:
            raise ValueError(f"no handler for task kind {kind!r}")
        stamp = datetime.now(UTC)
        row = rows.TaskRow(
            task_id=uuid.uuid4().hex,
            kind=kind,
            region=region,
            account_id=account_id,
            resource_id=resource_id,
            payload=json.dumps(dict(payload)),
            state="queued",
            attempts=0,
            error=None,
            created_at=stamp,
            updated_at=stamp,
        )
        rows.insert_task(conn, row)
        _after_commit(conn, lambda: self._schedule(row.task_id))
        return row.task_id

    def resume(self) -> int:
        """Run again every task an earlier process left unfinished; returns how many."""
        with self._catalog.begin() as conn:
            pending = rows.unfinished_tasks(conn, self._handlers)
        for task in pending:
            self._schedule(task.task_id)
        return len(pending)

    def _schedule(self, task_id: str) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="gs-task")
            future = self._pool.submit(self._run, task_id)
            self._futures.add(future)
        future.add_done_callback(self._futures.discard)

    def _run(self, task_id: str) -> None:
        try:
            self._run_one(task_id)
        except Exception:  # never lose a failure silently in the pool
            log.exception("task %s could not run", task_id)

    def _claim(self, task_id: str) -> rows.TaskRow | None:
        # SQLAlchemy's "commit" event fires just before the database commits, so the row
        # may not be visible to this thread's connection for a moment.
        deadline = time.monotonic() + COMMIT_WAIT
        while True:
            with self._catalog.begin() as conn:
                task = rows.get_task(conn, task_id)
                if task is not None:
                    if task.state not in ("queued", "running"):
                        return None
                    rows.update_task(
                        conn,
                        task_id,
                        state="running",
                        attempts=task.attempts + 1,
                        updated_at=_now(),
                    )
                    return task
            if time.monotonic() > deadline:
                log.error("task %s never became visible", task_id)
                return None
            time.sleep(0.02)

    def _run_one(self, task_id: str) -> None:
        task = self._claim(task_id)
        if task is None:
            return
        try:
            self._handlers[task.kind](task, json.loads(task.payload))
        except Exception as exc:  # a failed task must not kill the worker
            log.exception("task %s (%s %s) failed", task_id, task.kind, task.resource_id)
            self._finish(task_id, "failed", str(exc)[:255] or type(exc).__name__)
        else:
            self._finish(task_id, "done", None)

    def _finish(self, task_id: str, state: str, message: str | None) -> None:
        with self._catalog.begin() as conn:
            rows.update_task(conn, task_id, state=state, error=message, updated_at=_now())

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the tasks scheduled so far (tests, shutdown)."""
        for future in list(self._futures):
            future.result(timeout)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _now() -> datetime:
    return datetime.now(UTC)
