"""The one pagination mechanism: MaxResults / NextToken, stable and tamper-proof.

A token names the sort key of the last item returned, the operation and a fingerprint of
the request's other parameters, and carries an HMAC under a server secret kept in the
catalog. So a token cannot be forged, edited, or replayed against a different query (→
``InvalidPaginationToken``), and pages stay stable while items are added or removed: the
next page starts strictly after the last key seen, whatever happened in between.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from goldsmith.service.errors import ClientError, invalid_parameter

T = TypeVar("T")
Key = tuple[str, ...]


def _fingerprint(operation: str, params: Mapping[str, Any]) -> str:
    scoped = {k: v for k, v in params.items() if k not in {"NextToken", "MaxResults", "DryRun"}}
    blob = json.dumps([operation, scoped], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _bad_token() -> ClientError:
    return ClientError("InvalidPaginationToken", "The pagination token is not valid.")


@dataclass(frozen=True)
class Paginator:
    """Encodes and checks NextTokens with ``secret``."""

    secret: bytes

    def _mac(self, payload: bytes) -> str:
        digest = hmac.new(self.secret, payload, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def encode(self, key: Key, operation: str, params: Mapping[str, Any]) -> str:
        """A token resuming after ``key`` for this operation and these parameters."""
        body = json.dumps({"k": list(key), "q": _fingerprint(operation, params)})
        payload = base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")
        return f"{payload}.{self._mac(payload.encode())}"

    def decode(self, token: str | None, operation: str, params: Mapping[str, Any]) -> Key | None:
        """The key to resume after, or None without a token; bad tokens are errors."""
        if token is None:
            return None
        payload, _, mac = token.partition(".")
        if not payload or not hmac.compare_digest(mac, self._mac(payload.encode())):
            raise _bad_token()
        try:
            body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            key = tuple(str(part) for part in body["k"])
            scope = body["q"]
        except (ValueError, KeyError, TypeError) as exc:
            raise _bad_token() from exc
        if scope != _fingerprint(operation, params):
            raise ClientError(
                "InvalidPaginationToken",
                "The pagination token does not match the request's other parameters.",
            )
        return key

    def page(
        self,
        items: Iterable[T],
        *,
        key: Callable[[T], Key],
        operation: str,
        params: Mapping[str, Any],
        limits: tuple[int, int] = (5, 1000),
        default: int | None = None,
    ) -> tuple[list[T], str | None]:
        """One page of ``items`` (already filtered and sorted by ``key``) and the next token.

        Items at or before the token's key are skipped, so callers may pass a full sorted
        list or a stream that already starts after it.
        """
        after = self.decode(params.get("NextToken"), operation, params)
        limit = max_results(params.get("MaxResults"), limits, default)
        out: list[T] = []
        for item in items:
            if after is not None and key(item) <= after:
                continue
            if limit is not None and len(out) == limit:
                return out, self.encode(key(out[-1]), operation, params)
            out.append(item)
        return out, None


def max_results(value: Any, limits: tuple[int, int], default: int | None) -> int | None:
    """Validate MaxResults against the operation's range (``None`` → ``default``)."""
    if value is None:
        return default
    low, high = limits
    if not low <= int(value) <= high:
        raise invalid_parameter(
            f"Value ( {value} ) for parameter maxResults is invalid. "
            f"Expecting a value between {low} and {high}."
        )
    return int(value)
