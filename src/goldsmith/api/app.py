"""The ASGI application: routes of the HTTP front door.

``POST /`` (and ``GET /`` with a query string) is the EC2 Query API. Health is at
``/_goldsmith/health`` (unauthenticated, says nothing about accounts).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from goldsmith import __version__
from goldsmith.api.ec2 import Ec2Endpoint
from goldsmith.api.protocol import Ec2QueryCodec
from goldsmith.service.app import Services


async def _health(_request: Request) -> Response:
    return JSONResponse({"status": "ok", "version": __version__})


def create_app(services: Services, codec: Ec2QueryCodec | None = None) -> Starlette:
    """The whole HTTP surface over ``services``."""
    ec2 = Ec2Endpoint(services, codec or Ec2QueryCodec())
    return Starlette(
        routes=[
            Route("/_goldsmith/health", _health, methods=["GET"]),
            Route("/", ec2, methods=["GET", "POST"]),
        ],
    )
