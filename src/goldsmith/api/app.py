"""The ASGI application: routes of the HTTP front door.

``POST /`` (and ``GET /`` with a query string) is the EC2 Query API; paths under
``/snapshots`` are the EBS direct API and ``/rules``, ``/list-rules``, ``/tags`` the recycle
bin (``rbin``) — both REST-JSON (``api.restjson``), told apart by path, each verifying that
the SigV4 credential scope names its own service. The web console is under ``/console``
(``api.console``: cookie sessions, its own error pages). Health is at
``/_goldsmith/health`` (unauthenticated, says nothing about accounts).
"""

from __future__ import annotations

import uuid

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from goldsmith import __version__
from goldsmith.api.console import console_routes
from goldsmith.api.ec2 import XML, Ec2Endpoint
from goldsmith.api.protocol import Ec2QueryCodec
from goldsmith.api.restjson import RestJsonCodec
from goldsmith.api.restjson.endpoint import RestJsonEndpoint
from goldsmith.service.app import Services


async def _health(_request: Request) -> Response:
    return JSONResponse({"status": "ok", "version": __version__})


def create_app(services: Services, codec: Ec2QueryCodec | None = None) -> Starlette:
    """The whole HTTP surface over ``services``."""
    codec = codec or Ec2QueryCodec()
    ec2 = Ec2Endpoint(services, codec)
    # EBS direct API (REST-JSON): every path under /snapshots.
    ebs = RestJsonEndpoint(services, RestJsonCodec("ebs"), "ebs", services.ebs.operations())
    # Recycle bin (REST-JSON): /rules, /list-rules, /tags (no overlap with EBS's paths).
    rbin_codec = RestJsonCodec("rbin")
    rbin = RestJsonEndpoint(services, rbin_codec, "rbin", services.rbin.handlers())
    rest_methods = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"]
    rbin_routes = [
        Route(path, rbin.handle, methods=rest_methods)
        for prefix in rbin_codec.prefixes
        for path in (prefix, prefix + "/{rest:path}")
    ]

    async def http_error(_request: Request, exc: Exception) -> Response:
        # Unknown paths and methods still answer in EC2's error envelope.
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        message = exc.detail if isinstance(exc, HTTPException) else "internal error"
        body = codec.serialize_error("InvalidAction", str(message), str(uuid.uuid4()))
        return Response(body, status_code=status, media_type=XML)

    return Starlette(
        routes=[
            Route("/_goldsmith/health", _health, methods=["GET"]),
            Route("/", ec2.handle, methods=["GET", "POST"]),
            Route("/snapshots", ebs.handle, methods=rest_methods),
            Route("/snapshots/{rest:path}", ebs.handle, methods=rest_methods),
            *rbin_routes,
            *console_routes(services),
        ],
        exception_handlers={HTTPException: http_error},
    )
