"""A REST-JSON service endpoint: authenticate (SigV4), route, decode, dispatch, encode.

One :class:`RestJsonEndpoint` per service (``ebs``, ``rbin``) wraps a
:class:`RestJsonCodec` and a table of handlers (operation name → ``(ctx, params) → dict``).
Failures become the service's JSON errors: a modelled error shape keeps its name and status
(``EbsError``'s ``reason`` becomes ``Reason``); SigV4 failures keep AWS's generic codes
(``SignatureDoesNotMatch``, ``InvalidClientTokenId`` … with their statuses); any other
client error is a ``ValidationException``, and anything unexpected an
``InternalServerException`` (500) without details.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from goldsmith.api.restjson.codec import Response as Encoded
from goldsmith.api.restjson.codec import RestJsonCodec, RestJsonError
from goldsmith.api.sigv4 import IncomingRequest, verify_request
from goldsmith.service.app import Services
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import AuthError, Ec2Error

log = logging.getLogger("goldsmith.api")

MAX_BODY = 16 * 1024 * 1024
Handler = Callable[[RequestContext, Mapping[str, Any]], dict[str, Any]]


def _raw_url(request: Request) -> str:
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string") or b""
    host = request.headers.get("host", "localhost")
    url = f"{request.url.scheme}://{host}{raw_path.decode('latin-1')}"
    return f"{url}?{query.decode('latin-1')}" if query else url


class RestJsonEndpoint:
    """The ASGI handler for one REST-JSON service's paths."""

    def __init__(
        self,
        services: Services,
        codec: RestJsonCodec,
        service: str,
        handlers: Mapping[str, Handler],
    ) -> None:
        self._services = services
        self._codec = codec
        self._service = service
        self._handlers = handlers
        self._skew = timedelta(seconds=services.settings.max_clock_skew_seconds)

    async def handle(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        started = time.perf_counter()
        name, status = "-", 500
        try:
            body = await self._read_body(request)
            encoded, name = await anyio.to_thread.run_sync(self._serve, request, body)
        except Exception as exc:  # every failure is an error document, never a bare 500
            encoded = self._error(exc, name, request_id)
        status = encoded.status
        headers = {**encoded.headers, "x-amzn-RequestId": request_id}
        log.info(
            "%s %s:%s status=%d %.1fms",
            request_id,
            self._service,
            name,
            status,
            (time.perf_counter() - started) * 1000,
        )
        return Response(encoded.body, status_code=status, headers=headers)

    async def _read_body(self, request: Request) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                raise Ec2Error("ValidationException", "The request body is too large.", 413)
            chunks.append(chunk)
        return b"".join(chunks)

    def _serve(self, request: Request, body: bytes) -> tuple[Encoded, str]:
        caller = verify_request(
            IncomingRequest(request.method, _raw_url(request), request.headers, body),
            self._services.accounts,
            service=self._service,
            max_skew=self._skew,
            allowed_regions=self._services.regions.is_enabled,
        )
        query = parse_qsl(request.url.query, keep_blank_values=True)
        # Route on the raw (still percent-encoded) path: a label such as rbin's resourceArn
        # carries an encoded "/" that must not split it.
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        routed = self._codec.route(request.method, raw_path.decode("latin-1"), query)
        if routed is None or routed[0].name not in self._handlers:
            raise Ec2Error(
                "UnknownOperationException",
                f"No operation at {request.method} {request.url.path[:100]}",
                404,
            )
        op, labels = routed
        params = self._codec.parse(op, labels, query, request.headers, body)
        self._services.regions.ensure(caller.region)
        ctx = RequestContext(
            account_id=caller.account_id,
            region=caller.region,
            access_key_id=caller.access_key_id,
        )
        return self._codec.serialize(op, self._handlers[op.name](ctx, params)), op.name

    def _error(self, exc: Exception, name: str, request_id: str) -> Encoded:
        if isinstance(exc, RestJsonError):
            return self._codec.serialize_error(
                "ValidationException", str(exc), 400, {"Reason": "INVALID_PARAMETER_VALUE"}
            )
        if isinstance(exc, Ec2Error):
            reason = getattr(exc, "reason", None)
            modelled = self._codec.error_status(exc.code)
            if modelled is not None or isinstance(exc, AuthError) or exc.status in (403, 404):
                # A modelled error answers with the model's status (rbin's
                # ResourceNotFoundException is a 404 whoever raised it).
                return self._codec.serialize_error(
                    exc.code, exc.message, modelled or exc.status, {"Reason": reason}
                )
            if exc.status < 500:
                return self._codec.serialize_error(
                    "ValidationException",
                    exc.message,
                    400,
                    {"Reason": "INVALID_PARAMETER_VALUE"},
                )
        log.exception("internal error in request %s (%s:%s)", request_id, self._service, name)
        return self._codec.serialize_error(
            "InternalServerException", "An internal error has occurred.", 500
        )
