"""The EC2 Query endpoint: authenticate, decode, dispatch, encode.

Each request goes through the same steps, and every failure along the way becomes an EC2
error envelope with the right status — never a bare 500 page, never a hang:

1. read the body (bounded: larger than ``MAX_BODY`` → 413 ``RequestEntityTooLarge``);
2. verify SigV4 (header or presigned query) → the caller's account and region;
3. decode the form (strict UTF-8) and parse it against botocore's model;
4. run the handler in a worker thread (handlers are synchronous and touch the catalog);
5. serialize the output dict to EC2's XML.

Anything unexpected is logged with its traceback and answered ``InternalError`` (500)
without details. Secrets never reach the log.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qsl

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from goldsmith.api.protocol import Ec2QueryCodec
from goldsmith.api.sigv4 import Caller, IncomingRequest, verify_request
from goldsmith.service.app import Services
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import ClientError, Ec2Error
from goldsmith.service.operations import dispatch

log = logging.getLogger("goldsmith.api")

MAX_BODY = 16 * 1024 * 1024
XML = "text/xml;charset=UTF-8"


def _decode_form(raw: bytes, what: str) -> list[tuple[str, str]]:
    try:
        text = raw.decode("utf-8", errors="strict")
        return parse_qsl(text, keep_blank_values=True, strict_parsing=False, errors="strict")
    except UnicodeDecodeError as exc:
        raise ClientError(
            "MalformedQueryString", f"The {what} is not valid UTF-8 (byte {exc.start})."
        ) from None
    except ValueError as exc:
        raise ClientError("MalformedQueryString", f"The {what} cannot be parsed: {exc}") from None


def _form(request: Request, body: bytes) -> dict[str, str]:
    """Query string and form body merged (the body wins on a repeated name)."""
    pairs = _decode_form(request.url.query.encode("latin-1", "replace"), "query string")
    content_type = request.headers.get("content-type", "")
    if body and (not content_type or "x-www-form-urlencoded" in content_type):
        pairs += _decode_form(body, "request body")
    elif body:
        raise ClientError(
            "InvalidParameterValue", f"Unsupported content type for the EC2 API: {content_type}"
        )
    return dict(pairs)


@dataclass
class _Outcome:
    """What the access log line reports about a request."""

    action: str = "-"
    account: str = "-"
    status: int = 500


class Ec2Endpoint:
    """The ASGI-facing handler for ``/`` (the EC2 Query API)."""

    def __init__(self, services: Services, codec: Ec2QueryCodec) -> None:
        self._services = services
        self._codec = codec
        self._skew = services.settings.max_clock_skew_seconds

    async def handle(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        started = time.perf_counter()
        outcome = _Outcome()
        try:
            body = await self._read_body(request)
            # One hop to a worker thread for everything that may block (catalog lookups).
            payload = await anyio.to_thread.run_sync(
                self._serve, request, body, request_id, outcome
            )
            outcome.status = 200
            return Response(payload, status_code=200, media_type=XML)
        except Ec2Error as exc:
            outcome.status = exc.status
            return self._error(exc.code, exc.message, exc.status, request_id)
        except Exception:
            log.exception("internal error in request %s (%s)", request_id, outcome.action)
            return self._error("InternalError", "An internal error has occurred.", 500, request_id)
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            log.info(
                "%s %s account=%s status=%d %.1fms",
                request_id,
                outcome.action,
                outcome.account,
                outcome.status,
                elapsed,
            )

    def _serve(self, request: Request, body: bytes, request_id: str, outcome: _Outcome) -> bytes:
        caller = self._authenticate(request, body)
        outcome.account = caller.account_id
        form = _form(request, body)
        outcome.action = form.get("Action", "-")[:64]
        return self._run(caller, form, request_id)

    async def _read_body(self, request: Request) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                raise Ec2Error(
                    "RequestEntityTooLarge", f"The request body exceeds {MAX_BODY} bytes.", 413
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _authenticate(self, request: Request, body: bytes) -> Caller:
        incoming = IncomingRequest(
            method=request.method,
            url=_raw_url(request),
            headers=request.headers,
            body=body,
        )
        return verify_request(
            incoming,
            self._services.accounts,
            service="ec2",
            max_skew=timedelta(seconds=self._skew),
            allowed_regions=self._services.regions.is_enabled,
        )

    def _run(self, caller: Caller, form: Mapping[str, str], request_id: str) -> bytes:
        parsed = self._codec.parse(form)
        if parsed.action not in self._services.operations:
            raise ClientError(
                "UnsupportedOperation",
                f"The action {parsed.action} is not supported by this server.",
            )
        self._services.regions.ensure(caller.region)
        ctx = RequestContext(
            account_id=caller.account_id,
            region=caller.region,
            request_id=request_id,
            access_key_id=caller.access_key_id,
        )
        output = dispatch(self._services.operations, ctx, parsed.action, parsed.params)
        return self._codec.serialize(parsed.action, output, request_id)

    def _error(self, code: str, message: str, status: int, request_id: str) -> Response:
        body = self._codec.serialize_error(code, message, request_id)
        return Response(body, status_code=status, media_type=XML)


def _raw_url(request: Request) -> str:
    """The URL exactly as the client wrote it (raw path and query: what it signed)."""
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string") or b""
    host = request.headers.get("host", "localhost")
    url = f"{request.url.scheme}://{host}{raw_path.decode('latin-1')}"
    return f"{url}?{query.decode('latin-1')}" if query else url
