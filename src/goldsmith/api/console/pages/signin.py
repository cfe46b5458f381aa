"""Sign-in, sign-out and the region selector: the routes that change the session cookie.

Sign-in is protected against login CSRF too: the form carries a random token that must
match a signed, short-lived ``gs_signin`` cookie set with the form. Wrong credentials get
one generic message — never which part was wrong (see :mod:`..auth`); after 10 failures
with one name in 5 minutes, that name must wait (429) whatever it sends.
"""

from __future__ import annotations

import hmac

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from goldsmith.api.console.auth import Throttle
from goldsmith.api.console.framework import (
    Runtime,
    View,
    csrf_token,
    first,
    forbidden,
    json_response,
    new_token,
    read_form,
    safe_next,
    secure,
    wants_json,
)
from goldsmith.api.console.nav import HOME
from goldsmith.api.console.session import COOKIE_PATH, PRESESSION_COOKIE, SESSION_COOKIE, Session

FAILED = "Sign-in failed. Check the credentials and try again."
THROTTLED = "Too many failed sign-ins with this name. Try again in a few minutes."


class SignIn:
    """Handlers for ``/console/signin``, ``/console/signout`` and ``/console/region``."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.throttle = Throttle()

    def routes(self) -> list[Route]:
        return [
            Route(COOKIE_PATH + "/signin", self.form, methods=["GET"]),
            Route(COOKIE_PATH + "/signin", self.submit, methods=["POST"]),
            Route(COOKIE_PATH + "/signout", self.sign_out, methods=["POST"]),
            Route(COOKIE_PATH + "/region", self.region, methods=["POST"]),
        ]

    def _form(
        self,
        request: Request,
        message: str | None = None,
        status: int = 200,
        name: str = "",
        code: str = "AuthFailure",
    ) -> Response:
        token = new_token()
        next_path = safe_next(request.query_params.get("next")) or HOME
        if wants_json(request):
            data: dict[str, object] = {"SigninToken": token}
            if message:
                data["Error"] = {"Code": code, "Message": message}
            response = json_response(data, status)
        else:
            view = View(
                "signin.html",
                "Sign in",
                {},
                status=status,
                extra={"token": token, "next_path": next_path, "name": name},
            )
            flashes = [("error", message)] if message else []
            response = self.rt.render(request, None, view, flashes)
        response.set_cookie(
            PRESESSION_COOKIE,
            self.rt.sessions.presession.sign(token),
            max_age=1800,
            path=COOKIE_PATH,
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return response

    async def form(self, request: Request) -> Response:
        if self.rt.session_of(request) is not None and not wants_json(request):
            return self.rt.redirect(HOME)
        return self._form(request)

    async def submit(self, request: Request) -> Response:
        form = await read_form(request)
        expected = self.rt.sessions.presession.verify(request.cookies.get(PRESESSION_COOKIE))
        token = first(form, "signin_token")
        if not isinstance(expected, str) or not hmac.compare_digest(token, expected):
            return forbidden(request)
        name = first(form, "name").strip()
        secret = first(form, "secret")
        if self.throttle.blocked(name):
            return self._form(request, THROTTLED, 429, name=name, code="Throttling")
        who = await anyio.to_thread.run_sync(self.rt.auth.sign_in, name, secret)
        if who is None:
            self.throttle.failed(name)
            return self._form(request, FAILED, 401, name=name)
        self.throttle.succeeded(name)
        session = Session.new(who.account_id, self.rt.services.settings.default_region, who.cred)
        if not self.rt.services.regions.is_enabled(session.region):
            session = session.in_region(sorted(self.rt.services.regions.enabled)[0])
        if wants_json(request):
            response = json_response(
                {"Account": session.account, "Region": session.region, "CsrfToken": session.csrf}
            )
        else:
            target = safe_next(first(form, "next")) or HOME
            response = self.rt.redirect(target)
        response.delete_cookie(PRESESSION_COOKIE, path=COOKIE_PATH)
        self.rt.set_session(request, response, session)
        return response

    async def sign_out(self, request: Request) -> Response:
        session = self.rt.session_of(request)
        if session is not None:
            form = await read_form(request)
            if not session.csrf_ok(csrf_token(request, form)):
                return forbidden(request)
            self.rt.sessions.revoke(session)
        if wants_json(request):
            response = json_response({"Message": "Signed out."})
        else:
            response = self.rt.redirect(COOKIE_PATH + "/signin", ("success", "Signed out."))
        response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
        return response

    async def region(self, request: Request) -> Response:
        session = self.rt.session_of(request)
        if session is None:
            return self.rt.not_signed_in(request)
        form = await read_form(request)
        if not session.csrf_ok(csrf_token(request, form)):
            return forbidden(request)
        region = first(form, "region")
        if not self.rt.services.regions.is_enabled(region):
            return self.rt.redirect(HOME, ("error", f"InvalidParameterValue: no region {region}"))
        session = session.in_region(region)
        back = safe_next(first(form, "next")) or HOME
        response: Response
        if wants_json(request):
            response = json_response({"Region": region})
        else:
            response = self.rt.redirect(back)
        self.rt.set_session(request, response, session)
        return secure(response)
