"""The console's page framework: what a page is, and how every request to one is served.

A page module declares routes with :func:`page` (GET: a :class:`View`) and :func:`action`
(POST: a :class:`Done`, or a :class:`View` shown once). Their functions are synchronous and
receive a :class:`Console`: the signed-in account's :class:`RequestContext` in the selected
region, the query and form, and :meth:`Console.call`, which runs an EC2 operation through
``goldsmith.service.operations.dispatch`` — the same table, permissions and validation as
the API. The framework does the rest, the same way for every page:

1. the session cookie is verified (signature, expiry, sign-out) — none → the sign-in page
   (HTML) or 401 (JSON);
2. POST only: the CSRF token (form field ``csrf_token`` or header ``X-CSRF-Token``) must
   match the session's — missing or wrong → 403, nothing runs;
3. one hop to a worker thread re-checks that the session's credential still holds and runs
   the page function (which may make several service calls);
4. the answer is HTML, or its JSON twin when the URL has ``?format=json`` or the request
   ``Accept``\\ s ``application/json`` — the very ``data`` the template rendered;
5. an :class:`Ec2Error` becomes a flash message with its EC2 code (JSON: ``{"Error":
   {"Code", "Message"}}`` with the error's HTTP status); an action's error returns to the
   page the form came from. Any other exception is logged and shown as ``InternalError``
   (500) without details.

Every answer carries a strict Content-Security-Policy (only this server's own script and
stylesheet) and ``Cache-Control: no-store`` (pages hold CSRF tokens and private data).
"""

from __future__ import annotations

import json
import logging
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qsl

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from goldsmith.api.console.auth import Authenticator
from goldsmith.api.console.nav import HOME, NAV
from goldsmith.api.console.session import (
    COOKIE_PATH,
    FLASH_COOKIE,
    SESSION_COOKIE,
    Session,
    SessionCodec,
)
from goldsmith.api.console.templating import build_environment
from goldsmith.service.app import Services
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import Ec2Error
from goldsmith.service.operations import dispatch

log = logging.getLogger("goldsmith.console")

#: Largest form body the console reads (an imported public key is the biggest legitimate one).
MAX_FORM = 256 * 1024

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@dataclass
class View:
    """A page to show: its template, title, and ``data`` (the JSON twin, also given to the
    template). ``live`` makes the page poll its JSON twin (pending work on it); ``extra``
    reaches only the template."""

    template: str
    title: str
    data: dict[str, Any]
    nav: str = ""
    live: bool = False
    status: int = 200
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Done:
    """An action that worked: where to go next, what to tell the user, and JSON extras."""

    location: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)


class SessionEnded(Exception):
    """The session's credential no longer signs in (key deactivated, password changed)."""


@dataclass
class Console:
    """What a page function gets: who and where, the request's values, the service layer."""

    services: Services
    session: Session
    ctx: RequestContext
    path: Mapping[str, str]
    query: Mapping[str, str]
    form: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def call(self, action: str, params: Mapping[str, Any], region: str | None = None) -> Any:
        """Run the EC2 operation ``action`` as the signed-in account (Ec2Error on failure).

        ``region`` runs it in another region (CopyImage is called in its destination).
        """
        if action not in self.services.operations:
            raise Ec2Error("UnsupportedOperation", f"The action {action} is not supported.")
        ctx = self.ctx
        if region is not None and region != ctx.region:
            if not self.services.regions.is_enabled(region):
                raise Ec2Error("InvalidParameterValue", f"Unknown region {region}.")
            ctx = RequestContext(ctx.account_id, region, ctx.request_id, ctx.access_key_id)
        self.services.regions.ensure(ctx.region)
        return dispatch(self.services.operations, ctx, action, params)

    def supports(self, action: str) -> bool:
        return action in self.services.operations

    def field(self, name: str, default: str = "") -> str:
        values = self.form.get(name)
        return values[0].strip() if values else default

    def fields(self, name: str) -> list[str]:
        return [v.strip() for v in self.form.get(name, ()) if v.strip()]

    def arg(self, name: str, default: str = "") -> str:
        return self.query.get(name, default).strip()

    @property
    def regions(self) -> list[str]:
        return sorted(self.services.regions.enabled)


PageFn = Callable[[Console], View]
ActionFn = Callable[[Console], "Done | View"]


@dataclass(frozen=True)
class Spec:
    """One console route, before the runtime binds it to the services."""

    path: str
    kind: Literal["page", "action"]
    fn: Callable[[Console], Any]


def page(path: str, fn: PageFn) -> Spec:
    """A GET page at ``/console`` + ``path``."""
    return Spec(path, "page", fn)


def action(path: str, fn: ActionFn) -> Spec:
    """A POST action at ``/console`` + ``path`` (CSRF-checked)."""
    return Spec(path, "action", fn)


def wants_json(request: Request) -> bool:
    if request.query_params.get("format") == "json":
        return True
    accept = request.headers.get("accept", "")
    return accept.split(",")[0].strip().startswith("application/json")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def json_response(data: Any, status: int = 200) -> Response:
    body = json.dumps(data, default=_json_default, separators=(",", ":"))
    return secure(Response(body, status_code=status, media_type="application/json"))


def secure(response: Response) -> Response:
    """Headers every console answer carries."""
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def safe_next(value: str | None) -> str | None:
    """``value`` when it is a console path (never another site), else None."""
    if value and value.startswith(COOKIE_PATH + "/") and "//" not in value and "\\" not in value:
        return value
    return None


class Runtime:
    """Binds page specs to the services: sessions, CSRF, rendering, JSON twins, errors."""

    def __init__(self, services: Services, secret: bytes) -> None:
        from goldsmith.service.accounts import ConsolePasswords

        self.services = services
        self.sessions = SessionCodec(secret)
        self.auth = Authenticator(services.accounts, ConsolePasswords(services.catalog))
        self.templates = build_environment()

    # -- routes -------------------------------------------------------------------------

    def route(self, spec: Spec) -> Route:
        fn = spec.fn
        if spec.kind == "page":

            async def get(request: Request) -> Response:
                return await self._page(request, fn)

            return Route(COOKIE_PATH + spec.path, get, methods=["GET"])

        async def post(request: Request) -> Response:
            return await self._action(request, fn)

        return Route(COOKIE_PATH + spec.path, post, methods=["POST"])

    async def _page(self, request: Request, fn: Callable[[Console], Any]) -> Response:
        session = self.session_of(request)
        if session is None:
            return self.not_signed_in(request)
        try:
            view = await anyio.to_thread.run_sync(self._run, request, session, {}, fn)
        except SessionEnded:
            return self.not_signed_in(request, clear=True)
        except Exception as exc:
            error = _as_ec2_error(exc, request)
            if wants_json(request):
                return error_json(error)
            data = {"Error": error_dict(error)}
            view = View("error.html", "Error", data, status=error.status)
            return self.render(request, session, view, [("error", _message(error))])
        if wants_json(request):
            return json_response(view.data, view.status)
        return self.render(request, session, view, self.take_flashes(request))

    async def _action(self, request: Request, fn: Callable[[Console], Any]) -> Response:
        session = self.session_of(request)
        if session is None:
            return self.not_signed_in(request)
        form = await read_form(request)
        if not session.csrf_ok(csrf_token(request, form)):
            return forbidden(request)
        back = safe_next(first(form, "next")) or HOME
        try:
            outcome = await anyio.to_thread.run_sync(self._run, request, session, form, fn)
        except SessionEnded:
            return self.not_signed_in(request, clear=True)
        except Exception as exc:
            error = _as_ec2_error(exc, request)
            if wants_json(request):
                return error_json(error)
            return self.redirect(back, ("error", _message(error)))
        if isinstance(outcome, View):
            if wants_json(request):
                return json_response(outcome.data, outcome.status)
            return self.render(request, session, outcome, [])
        if wants_json(request):
            return json_response({"Message": outcome.message, **outcome.data})
        return self.redirect(outcome.location, ("success", outcome.message))

    def _run(
        self,
        request: Request,
        session: Session,
        form: Mapping[str, Sequence[str]],
        fn: Callable[[Console], Any],
    ) -> Any:
        if not self.auth.still_valid(session.account, session.cred):
            raise SessionEnded()
        ctx = RequestContext(
            account_id=session.account,
            region=session.region,
            request_id=str(uuid.uuid4()),
            access_key_id=session.access_key_id,
        )
        console = Console(
            self.services,
            session,
            ctx,
            dict(request.path_params),
            dict(request.query_params),
            form,
        )
        return fn(console)

    # -- sessions and flashes -----------------------------------------------------------

    def session_of(self, request: Request) -> Session | None:
        session = self.sessions.decode(request.cookies.get(SESSION_COOKIE))
        if session is not None and not self.services.regions.is_enabled(session.region):
            return None
        return session

    def not_signed_in(self, request: Request, clear: bool = False) -> Response:
        if wants_json(request):
            response = json_response(
                {"Error": {"Code": "AuthFailure", "Message": "Sign in to the console first."}},
                401,
            )
        else:
            target = request.url.path if request.method == "GET" else HOME
            response = secure(RedirectResponse(f"{COOKIE_PATH}/signin?next={target}", 303))
        if clear:
            response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
        return response

    def set_session(self, request: Request, response: Response, session: Session) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            self.sessions.encode(session),
            max_age=max(0, session.exp - int(datetime.now().timestamp())),
            path=COOKIE_PATH,
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )

    def redirect(self, location: str, flash: tuple[str, str] | None = None) -> Response:
        response = secure(RedirectResponse(location, 303))
        if flash is not None:
            response.set_cookie(
                FLASH_COOKIE,
                self.sessions.flash.sign([list(flash)]),
                max_age=60,
                path=COOKIE_PATH,
                httponly=True,
                samesite="strict",
            )
        return response

    def take_flashes(self, request: Request) -> list[tuple[str, str]]:
        value = self.sessions.flash.verify(request.cookies.get(FLASH_COOKIE))
        if not isinstance(value, list):
            return []
        return [(str(kind), str(text)) for kind, text in value]

    # -- rendering ----------------------------------------------------------------------

    def render(
        self,
        request: Request,
        session: Session | None,
        view: View,
        flashes: Sequence[tuple[str, str]],
    ) -> Response:
        template = self.templates.get_template(view.template)
        html = template.render(
            view=view,
            data=view.data,
            session=session,
            csrf=session.csrf if session else "",
            flashes=flashes,
            nav=NAV,
            regions=sorted(self.services.regions.enabled),
            path=request.url.path,
            here=str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""),
            query=dict(request.query_params),
            **view.extra,
        )
        response = secure(Response(html, status_code=view.status, media_type="text/html"))
        if request.cookies.get(FLASH_COOKIE):
            response.delete_cookie(FLASH_COOKIE, path=COOKIE_PATH)
        return response


async def read_form(request: Request) -> dict[str, list[str]]:
    """The URL-encoded form of a POST as lists of strings.

    Console forms are plain ``application/x-www-form-urlencoded`` (no uploads: a public key
    file is read into its text area by the page's script), read up to ``MAX_FORM`` bytes;
    any other body is an empty form, so its CSRF check fails.
    """
    if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
        return {}
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return {}
    out: dict[str, list[str]] = {}
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=500)
    except (UnicodeDecodeError, ValueError):
        return {}
    for name, value in pairs:
        out.setdefault(name, []).append(value)
    return out


def first(form: Mapping[str, Sequence[str]], name: str) -> str:
    """The first value of ``name`` in ``form`` ('' when absent)."""
    values = form.get(name)
    return values[0] if values else ""


def csrf_token(request: Request, form: Mapping[str, Sequence[str]]) -> str:
    """The CSRF token a POST carries: the form field, else the ``X-CSRF-Token`` header."""
    return first(form, "csrf_token") or request.headers.get("x-csrf-token", "")


def _as_ec2_error(exc: Exception, request: Request) -> Ec2Error:
    """``exc`` as the client sees it: an Ec2Error as is, anything else InternalError
    (logged with its traceback, no details shown)."""
    if isinstance(exc, Ec2Error):
        return exc
    log.error("console: internal error on %s", request.url.path, exc_info=exc)
    return Ec2Error("InternalError", "An internal error has occurred.", 500)


def error_dict(exc: Ec2Error) -> dict[str, str]:
    return {"Code": exc.code, "Message": exc.message}


def _message(exc: Ec2Error) -> str:
    return f"{exc.code}: {exc.message}"


def error_json(exc: Ec2Error) -> Response:
    return json_response({"Error": error_dict(exc)}, exc.status)


def forbidden(request: Request) -> Response:
    message = "The form's security token is missing or wrong. Reload the page and try again."
    if wants_json(request):
        return json_response({"Error": {"Code": "InvalidCsrfToken", "Message": message}}, 403)
    html = f"<!doctype html><title>Forbidden</title><h1>Forbidden</h1><p>{message}</p>"
    return secure(Response(html, status_code=403, media_type="text/html"))


def new_token() -> str:
    return secrets.token_urlsafe(24)
