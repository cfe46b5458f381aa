"""The EBS direct API: disk bytes in and out of snapshots, block by block.

StartSnapshot → PutSnapshotBlock × n → CompleteSnapshot writes a snapshot; ListSnapshotBlocks,
ListChangedBlocks and GetSnapshotBlock read one. Blocks are 512 KiB (the store's chunk size),
every written block's SHA-256 is verified, and reads carry block tokens signed by the server
(HMAC under a secret kept in the catalog) that name the snapshot, the block and an expiry.

Who may do what: only the owner writes (others: AccessDeniedException); readers are the
owner, accounts with createVolumePermission, and callers with a read grant (an image they may
launch uses the snapshot). An unknown snapshot is ResourceNotFoundException.

Pending uploads survive a restart (they are resumable): each block goes into the store as it
arrives and its digest is recorded in the catalog (``snapshot_blocks``) in the same request.
The in-memory writer is only a cache: when it is missing (a restart, another process) or its
store lock was broken as stale, it is rebuilt from the recorded blocks. A block whose chunk GC
reclaimed meanwhile (an upload idle for longer than GC's grace period) is forgotten, so
ListSnapshotBlocks no longer lists it and CompleteSnapshot's ChangedBlocksCount check asks
the client to send it again. An upload idle for longer than its ``Timeout`` goes to ``error``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from goldsmith.catalog import settings as stored
from goldsmith.catalog import snapshots as rows
from goldsmith.catalog.snapshots import SnapshotRow
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import ClientError, Ec2Error
from goldsmith.service.snapshots import GIB, SnapshotService, now, request_hash
from goldsmith.service.tags import MAX_TAGS, validate_tags
from goldsmith.store import LineageError, RepositoryBusyError, SnapshotWriter

BLOCK_SIZE = 512 * 1024
MAX_VOLUME_GIB = 64 * 1024
TOKEN_LIFETIME = timedelta(days=7)
DEFAULT_TIMEOUT = 60
Handler = Callable[[RequestContext, Mapping[str, Any]], dict[str, Any]]


class EbsError(ClientError):
    """An EBS error: the modelled exception name, its HTTP status and a ``Reason``."""

    def __init__(self, code: str, message: str, status: int, reason: str | None = None) -> None:
        super().__init__(code, message, status)
        self.reason = reason


def invalid(message: str, reason: str = "INVALID_PARAMETER_VALUE") -> EbsError:
    return EbsError("ValidationException", message, 400, reason)


def _not_found(snapshot_id: str) -> EbsError:
    return EbsError(
        "ResourceNotFoundException",
        f"The snapshot '{snapshot_id}' does not exist.",
        404,
        "SNAPSHOT_NOT_FOUND",
    )


def _denied(snapshot_id: str) -> EbsError:
    return EbsError(
        "AccessDeniedException",
        f"You are not authorized to access snapshot '{snapshot_id}'.",
        403,
        "UNAUTHORIZED_ACCOUNT",
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class _Signer:
    """HMAC-signed opaque strings (block tokens, page tokens) in base64."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def sign(self, *fields: str) -> str:
        payload = "\x1f".join(fields).encode()
        mac = hmac.new(self._secret, payload, hashlib.sha256).digest()[:16]
        return _b64(payload + mac)

    def check(self, token: Any, count: int) -> list[str] | None:
        try:
            raw = base64.b64decode(str(token), validate=True)
        except ValueError:
            return None
        payload, mac = raw[:-16], raw[-16:]
        good = hmac.new(self._secret, payload, hashlib.sha256).digest()[:16]
        if len(raw) <= 16 or not hmac.compare_digest(mac, good):
            return None
        fields = payload.decode("utf-8", "replace").split("\x1f")
        return fields if len(fields) == count else None


class EbsService:
    """The six EBS direct API operations over :class:`SnapshotService`."""

    def __init__(self, snapshots: SnapshotService) -> None:
        self._s = snapshots
        self._catalog = snapshots.catalog
        with self._catalog.begin() as conn:
            secret = stored.get_or_create(conn, "ebs_token_secret", secrets.token_hex(32))
        self._signer = _Signer(bytes.fromhex(secret))
        self._writers: dict[str, SnapshotWriter] = {}
        self._last_used: dict[str, float] = {}
        self._writers_lock = threading.Lock()

    def operations(self) -> dict[str, Handler]:
        """Operation name → handler (the API layer routes REST-JSON requests to them)."""
        return {
            "StartSnapshot": self.start_snapshot,
            "PutSnapshotBlock": self.put_snapshot_block,
            "CompleteSnapshot": self.complete_snapshot,
            "ListSnapshotBlocks": self.list_snapshot_blocks,
            "ListChangedBlocks": self.list_changed_blocks,
            "GetSnapshotBlock": self.get_snapshot_block,
        }

    # -- access ------------------------------------------------------------------------------

    def _row(self, conn: sa.Connection, ctx: RequestContext, snapshot_id: Any) -> SnapshotRow:
        if not isinstance(snapshot_id, str) or not snapshot_id:
            raise invalid("A snapshot id is required.", "INVALID_SNAPSHOT_ID")
        try:
            row = self._s.find(conn, ctx.region, snapshot_id)
        except Ec2Error:
            raise invalid(
                f"Invalid snapshot id '{snapshot_id[:64]}'.", "INVALID_SNAPSHOT_ID"
            ) from None
        if row is None or (row.recycle_bin_enter is not None):
            raise _not_found(snapshot_id)
        return row

    def _owned_pending(
        self, conn: sa.Connection, ctx: RequestContext, snapshot_id: Any
    ) -> SnapshotRow:
        row = self._row(conn, ctx, snapshot_id)
        if row.owner_id != ctx.account_id:
            raise _denied(row.snapshot_id)
        if row.state == "pending" and row.timeout_at is not None and row.timeout_at < now():
            self._s.mark_error(conn, row, "The snapshot upload timed out")
            self._drop_writer(row.snapshot_id)
            raise invalid(f"The snapshot {row.snapshot_id} timed out.", "WRITE_REQUEST_TIMEOUT")
        if row.state != "pending":
            raise invalid(
                f"The snapshot {row.snapshot_id} is {row.state}, not pending.",
                "INVALID_SNAPSHOT_ID",
            )
        return row

    def _readable(
        self, conn: sa.Connection, ctx: RequestContext, snapshot_id: Any, *, completed: bool
    ) -> SnapshotRow:
        row = self._row(conn, ctx, snapshot_id)
        if not self._s.may_read(conn, ctx, row):
            raise _denied(row.snapshot_id)
        if completed and row.state != "completed":
            raise invalid(
                f"The snapshot {row.snapshot_id} is {row.state}, not completed.",
                "INVALID_SNAPSHOT_ID",
            )
        return row

    # -- writers -----------------------------------------------------------------------------

    def _writer(self, row: SnapshotRow, *, rebuild: bool = False) -> SnapshotWriter:
        """The upload's writer: cached, else rebuilt from the blocks the catalog recorded."""
        with self._writers_lock:
            self._last_used[row.snapshot_id] = time.monotonic()
            writer = self._writers.get(row.snapshot_id)
            if writer is not None and not rebuild:
                return writer
            if writer is not None:
                writer.abort()
            with self._catalog.begin() as conn:
                blocks = rows.blocks_of(conn, row.snapshot_id)
            writer, missing = self._s.repository(row.region).resume_writer(
                row.snapshot_id,
                row.size_bytes,
                {i: digest for i, (digest, _) in blocks.items()},
                parent=row.parent_id,
            )
            if missing:
                with self._catalog.begin() as conn:
                    rows.forget_blocks(conn, row.snapshot_id, missing)
            self._writers[row.snapshot_id] = writer
            return writer

    def _drop_writer(self, snapshot_id: str) -> None:
        with self._writers_lock:
            writer = self._writers.pop(snapshot_id, None)
            self._last_used.pop(snapshot_id, None)
        if writer is not None:
            writer.abort()

    def release_idle(self, max_idle: float) -> int:
        """Close writers unused for ``max_idle`` seconds; return how many.

        A cached writer holds a store writer lock, which keeps GC waiting; an idle upload
        must not block GC for its whole ``Timeout``. The upload stays resumable: its next
        request rebuilds the writer from the recorded blocks.
        """
        cutoff = time.monotonic() - max_idle
        with self._writers_lock:
            idle = [sid for sid in self._writers if self._last_used.get(sid, 0.0) < cutoff]
            writers = [self._writers.pop(sid) for sid in idle]
            for sid in idle:
                self._last_used.pop(sid, None)
        for writer in writers:
            writer.abort()
        return len(writers)

    def close(self) -> None:
        """Release every writer's store lock (uploads stay resumable)."""
        with self._writers_lock:
            writers, self._writers = list(self._writers.values()), {}
        for writer in writers:
            writer.abort()

    # -- StartSnapshot -----------------------------------------------------------------------

    def start_snapshot(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        size = params.get("VolumeSize")
        if not isinstance(size, int) or not 1 <= size <= MAX_VOLUME_GIB:
            raise invalid(
                f"VolumeSize must be between 1 and {MAX_VOLUME_GIB} GiB.", "INVALID_VOLUME_SIZE"
            )
        if params.get("Encrypted") or params.get("KmsKeyArn"):
            raise invalid("Encrypted snapshots are not supported by this server.")
        timeout = params.get("Timeout", DEFAULT_TIMEOUT)
        if not isinstance(timeout, int) or not 10 <= timeout <= 4320:
            raise invalid("Timeout must be between 10 and 4320 minutes.")
        description = params.get("Description") or ""
        if not isinstance(description, str) or len(description) > 255:
            raise invalid("Description must be at most 255 characters.")
        try:
            tags = validate_tags(params.get("Tags") or [])
        except ClientError as exc:
            raise invalid(exc.message, "INVALID_TAG") from None
        if len(tags) > MAX_TAGS:
            raise invalid(f"At most {MAX_TAGS} tags are allowed.", "INVALID_TAG")
        token = params.get("ClientToken")
        fingerprint = request_hash(params)
        with self._catalog.begin() as conn:
            if token:
                earlier = rows.by_client_token(conn, ctx.region, ctx.account_id, str(token))
                if earlier is not None:
                    if earlier.request_hash != fingerprint:
                        raise EbsError(
                            "ConflictException",
                            "The client token was used before with different parameters.",
                            409,
                        )
                    return self._started(conn, earlier)
            parent = params.get("ParentSnapshotId")
            if parent is not None:
                parent_row = self._readable(conn, ctx, parent, completed=True)
                if parent_row.size_bytes > size * GIB:
                    raise invalid(
                        "VolumeSize must be at least the parent snapshot's volume size.",
                        "INVALID_VOLUME_SIZE",
                    )
            row = self._s.new_row(
                ctx,
                size_bytes=size * GIB,
                description=description,
                parent=parent,
                client_token=str(token) if token else None,
                request_fingerprint=fingerprint,
                timeout_minutes=timeout,
            )
            try:
                rows.insert_snapshot(conn, row)
            except rows.DuplicateClientToken:
                raise EbsError(
                    "ConflictException", "A concurrent request used this token.", 409
                ) from None
            self._s.tags.set_tags(conn, ctx, "snapshot", row.snapshot_id, tags)
            return self._started(conn, row)

    def _started(self, conn: sa.Connection, row: SnapshotRow) -> dict[str, Any]:
        tags = self._s.tags.tags_of(conn, row.region, [row.snapshot_id]).get(row.snapshot_id, {})
        return {
            "SnapshotId": row.snapshot_id,
            "OwnerId": row.owner_id,
            "Status": row.state,
            "StartTime": row.start_time,
            "VolumeSize": row.volume_size,
            "BlockSize": row.block_size,
            "Description": row.description or None,
            "ParentSnapshotId": row.parent_id,
            "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())] or None,
        }

    # -- PutSnapshotBlock --------------------------------------------------------------------

    def put_snapshot_block(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        data = params.get("BlockData")
        if not isinstance(data, (bytes, bytearray)):
            raise invalid("BlockData is required.", "INVALID_BLOCK")
        if params.get("ChecksumAlgorithm") != "SHA256":
            raise invalid("ChecksumAlgorithm must be SHA256.")
        length = params.get("DataLength")
        if length != len(data) or length != BLOCK_SIZE:
            raise invalid(
                f"DataLength must be {BLOCK_SIZE} and match the data ({len(data)} bytes).",
                "INVALID_BLOCK",
            )
        checksum = hashlib.sha256(data).digest()
        if params.get("Checksum") != _b64(checksum):
            raise invalid("The checksum does not match the block data.", "INVALID_BLOCK")
        progress = params.get("Progress")
        if progress is not None and not (isinstance(progress, int) and 0 <= progress <= 100):
            raise invalid("Progress must be between 0 and 100.")
        index = params.get("BlockIndex")
        with self._catalog.begin() as conn:
            row = self._owned_pending(conn, ctx, params.get("SnapshotId"))
        if not isinstance(index, int) or not 0 <= index < -(-row.size_bytes // BLOCK_SIZE):
            raise invalid(f"Block index {index} is outside the volume.", "INVALID_BLOCK")
        writer = self._writer(row)
        writer.write_block(index, bytes(data))
        writer.refresh_lock()
        digest = writer.entries.get(index)
        with self._catalog.begin() as conn:
            rows.put_block(conn, row.snapshot_id, index, digest, checksum)
            values: dict[str, Any] = {}
            if row.timeout_minutes:
                values["timeout_at"] = now() + timedelta(minutes=row.timeout_minutes)
            if progress is not None:
                values["progress"] = progress
            rows.update_snapshot(conn, row.snapshot_id, **values)
        return {"Checksum": params["Checksum"], "ChecksumAlgorithm": "SHA256"}

    # -- CompleteSnapshot --------------------------------------------------------------------

    def complete_snapshot(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        count = params.get("ChangedBlocksCount")
        if not isinstance(count, int) or count < 0:
            raise invalid("ChangedBlocksCount is required.")
        with self._catalog.begin() as conn:
            row = self._owned_pending(conn, ctx, params.get("SnapshotId"))
        writer = self._writer(row)
        with self._catalog.begin() as conn:
            blocks = rows.blocks_of(conn, row.snapshot_id)
        if count != len(blocks):
            raise invalid(
                f"ChangedBlocksCount is {count} but {len(blocks)} blocks were written.",
                "INVALID_BLOCK",
            )
        self._check_aggregate(params, blocks)
        try:
            writer.complete()
        except RepositoryBusyError:
            # GC broke our idle writer's lock: rebuild from the recorded blocks and retry.
            writer = self._writer(row, rebuild=True)
            with self._catalog.begin() as conn:
                if len(rows.blocks_of(conn, row.snapshot_id)) != count:
                    raise invalid(
                        "Some blocks must be written again (their data expired).", "INVALID_BLOCK"
                    ) from None
            writer.complete()
        with self._writers_lock:
            self._writers.pop(row.snapshot_id, None)
        with self._catalog.begin() as conn:
            self._s.mark_completed(conn, row)
            rows.forget_blocks(conn, row.snapshot_id, None)
        return {"Status": "completed"}

    @staticmethod
    def _check_aggregate(
        params: Mapping[str, Any], blocks: Mapping[int, tuple[bytes | None, bytes]]
    ) -> None:
        method, checksum = params.get("ChecksumAggregationMethod"), params.get("Checksum")
        if method is None and checksum is None:
            return
        if method != "LINEAR" or params.get("ChecksumAlgorithm") != "SHA256" or not checksum:
            raise invalid("Checksum needs ChecksumAlgorithm SHA256 and aggregation LINEAR.")
        joined = b"".join(blocks[i][1] for i in sorted(blocks))
        if _b64(hashlib.sha256(joined).digest()) != checksum:
            raise invalid("The aggregated checksum does not match the blocks written.")

    # -- reading -----------------------------------------------------------------------------

    def _page(
        self, params: Mapping[str, Any], scope: str, indexes: list[int]
    ) -> tuple[list[int], str | None]:
        limit = params.get("MaxResults", 10000)
        if not isinstance(limit, int) or not 100 <= limit <= 10000:
            raise invalid("MaxResults must be between 100 and 10000.")
        start = params.get("StartingBlockIndex", 0)
        if not isinstance(start, int) or start < 0:
            raise invalid("StartingBlockIndex must be >= 0.")
        token = params.get("NextToken")
        if token is not None:
            fields = self._signer.check(token, 2)
            if fields is None or fields[0] != scope:
                raise invalid("The page token is not valid.", "INVALID_PAGE_TOKEN")
            start = max(start, int(fields[1]))
        chosen = [i for i in indexes if i >= start]
        if len(chosen) > limit:
            return chosen[:limit], self._signer.sign(scope, str(chosen[limit]))
        return chosen, None

    def _block_token(self, snapshot_id: str, index: int, expiry: datetime) -> str:
        return self._signer.sign(snapshot_id, str(index), str(int(expiry.timestamp())))

    def list_snapshot_blocks(
        self, ctx: RequestContext, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        with self._catalog.begin() as conn:
            row = self._readable(conn, ctx, params.get("SnapshotId"), completed=False)
        pending = row.state == "pending"
        recorded: dict[int, tuple[bytes | None, bytes]] = {}
        if pending:
            if row.owner_id != ctx.account_id:
                raise _denied(row.snapshot_id)
            self._writer(row)  # (re)builds it, forgetting blocks whose data did not survive
            with self._catalog.begin() as conn:
                recorded = rows.blocks_of(conn, row.snapshot_id)
        if row.state == "error":
            raise invalid(f"The snapshot {row.snapshot_id} is in error.", "INVALID_SNAPSHOT_ID")
        if pending:
            # The blocks of this upload written so far (to resume it); no tokens yet.
            indexes = sorted(i for i, (digest, _) in recorded.items() if digest is not None)
        else:
            indexes = sorted(self._s.repository(row.region).manifest(row.snapshot_id).entries)
        page, token = self._page(params, f"blocks/{row.snapshot_id}", indexes)
        expiry = now() + TOKEN_LIFETIME
        return {
            "Blocks": [
                {
                    "BlockIndex": i,
                    "BlockToken": None
                    if pending
                    else self._block_token(row.snapshot_id, i, expiry),
                }
                for i in page
            ],
            "ExpiryTime": None if pending else expiry,
            "VolumeSize": row.volume_size,
            "BlockSize": row.block_size,
            "NextToken": token,
        }

    def list_changed_blocks(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        with self._catalog.begin() as conn:
            second = self._readable(conn, ctx, params.get("SecondSnapshotId"), completed=True)
            first_id = params.get("FirstSnapshotId")
            first = (
                self._readable(conn, ctx, first_id, completed=True)
                if first_id is not None
                else None
            )
        repo = self._s.repository(ctx.region)
        try:
            changed = repo.diff(first.snapshot_id if first else None, second.snapshot_id)
        except LineageError:
            raise invalid("The snapshots are not of one lineage.", "UNRELATED_SNAPSHOTS") from None
        a = repo.manifest(first.snapshot_id).entries if first else {}
        b = repo.manifest(second.snapshot_id).entries
        page, token = self._page(
            params, f"changed/{first.snapshot_id if first else ''}/{second.snapshot_id}", changed
        )
        expiry = now() + TOKEN_LIFETIME
        blocks = []
        for i in page:
            item: dict[str, Any] = {"BlockIndex": i}
            if first is not None and i in a:
                item["FirstBlockToken"] = self._block_token(first.snapshot_id, i, expiry)
            if i in b:
                item["SecondBlockToken"] = self._block_token(second.snapshot_id, i, expiry)
            blocks.append(item)
        return {
            "ChangedBlocks": blocks,
            "ExpiryTime": expiry,
            "VolumeSize": second.volume_size,
            "BlockSize": second.block_size,
            "NextToken": token,
        }

    def get_snapshot_block(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        with self._catalog.begin() as conn:
            row = self._readable(conn, ctx, params.get("SnapshotId"), completed=True)
        index = params.get("BlockIndex")
        fields = self._signer.check(params.get("BlockToken"), 3)
        if (
            fields is None
            or fields[0] != row.snapshot_id
            or fields[1] != str(index)
            or int(fields[2]) < now().timestamp()
        ):
            raise invalid("The block token is not valid for this block.", "INVALID_BLOCK_TOKEN")
        assert isinstance(index, int)
        data = self._s.repository(row.region).read_block(row.snapshot_id, index)
        return {
            "BlockData": data,
            "DataLength": len(data),
            "Checksum": _b64(hashlib.sha256(data).digest()),
            "ChecksumAlgorithm": "SHA256",
        }
