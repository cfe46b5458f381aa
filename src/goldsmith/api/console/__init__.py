"""The web console, served under ``/console`` by the same server as the API.

:func:`console_routes` is all the application mounts. Pages are thin views over the service
layer's operation table (:mod:`.framework`); see docs/console.md for how to add one.
"""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from goldsmith.api.console.framework import Console, Runtime, Spec, View, page
from goldsmith.api.console.nav import HOME, NAV, NavEntry
from goldsmith.api.console.pages.images import PAGES as IMAGE_PAGES
from goldsmith.api.console.pages.instances import PAGES as INSTANCE_PAGES
from goldsmith.api.console.pages.keypairs import PAGES as KEYPAIR_PAGES
from goldsmith.api.console.pages.recycle_bin import PAGES as RECYCLE_BIN_PAGES
from goldsmith.api.console.pages.signin import SignIn
from goldsmith.api.console.pages.snapshots import PAGES as SNAPSHOT_PAGES
from goldsmith.api.console.pages.volumes import PAGES as VOLUME_PAGES
from goldsmith.catalog import settings as stored
from goldsmith.service.app import Services
from goldsmith.service.errors import Ec2Error

__all__ = ["PAGES", "console_routes"]

#: Every page module's routes. A new resource adds its module's ``PAGES`` here.
# The recycle bin comes before the images: /images/recycle-bin is not an image id.
PAGES: list[Spec] = [
    *RECYCLE_BIN_PAGES,
    *IMAGE_PAGES,
    *KEYPAIR_PAGES,
    *INSTANCE_PAGES,
    *SNAPSHOT_PAGES,
    *VOLUME_PAGES,
]


def _coming(entry: NavEntry) -> Spec:
    def view(_c: Console) -> View:
        return View("coming.html", entry.label, {"Coming": entry.label}, nav=entry.key)

    return page(entry.path.removeprefix("/console"), view)


def _no_such_page(c: Console) -> View:
    path = c.path.get("rest", "")
    raise Ec2Error("NotFound", f"There is no console page /console/{path}.", 404)


def console_routes(services: Services) -> list[BaseRoute]:
    """The console's routes over ``services`` (mounted at the application's root)."""
    with services.catalog.begin() as conn:
        secret = stored.get_or_create(conn, "console_session_secret", secrets.token_hex(32))
    runtime = Runtime(services, bytes.fromhex(secret))
    served = {spec.path for spec in PAGES if spec.kind == "page"}
    coming = [_coming(e) for e in NAV if e.path.removeprefix("/console") not in served]

    async def home(request: Request) -> Response:
        return runtime.redirect(HOME)

    return [
        Route("/console", home, methods=["GET"]),
        Route("/console/", home, methods=["GET"]),
        Mount(
            "/console/static",
            StaticFiles(packages=[("goldsmith.api.console", "static")]),
            name="console-static",
        ),
        *SignIn(runtime).routes(),
        *[runtime.route(spec) for spec in [*PAGES, *coming]],
        # Last: any other GET under /console is the console's own "not found" page.
        runtime.route(page("/{rest:path}", _no_such_page)),
    ]
