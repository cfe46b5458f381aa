"""Console sessions: signed cookies, their expiry, and the per-session CSRF token.

A session is a small JSON document in a cookie, signed with HMAC-SHA256 under a server
secret kept in the catalog's ``settings`` table (``console_session_secret``), so every API
process of one deployment accepts the sessions of the others. The cookie is ``HttpOnly``,
``SameSite=Strict``, scoped to ``/console`` and ``Secure`` when the request came over https.

What a session holds, and why:

* ``account`` and ``region`` — the :class:`RequestContext` every page runs with;
* ``cred`` — what signed in (an access key id, or ``password:<fingerprint of the stored
  hash>``): each request re-checks it (:mod:`.auth`), so deactivating the key or changing
  the password ends the session at once;
* ``csrf`` — a random token every form carries back (checked on every POST);
* ``sid`` and ``exp`` — an id for sign-out (revoked ids are refused until they expire) and
  an absolute expiry (``SESSION_SECONDS``).

The signature is checked before anything in the cookie is read; a bad or expired cookie is
the same as none.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

SESSION_COOKIE = "gs_session"
FLASH_COOKIE = "gs_flash"
PRESESSION_COOKIE = "gs_signin"
COOKIE_PATH = "/console"
SESSION_SECONDS = 8 * 3600


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Signs and verifies small JSON values (``<payload>.<mac>``, both base64url)."""

    def __init__(self, secret: bytes, purpose: str) -> None:
        # One key per purpose: a flash cookie can never pass for a session.
        self._key = hmac.new(secret, purpose.encode(), hashlib.sha256).digest()

    def sign(self, value: Any) -> str:
        payload = _b64(json.dumps(value, separators=(",", ":")).encode())
        return f"{payload}.{self._mac(payload)}"

    def verify(self, token: str | None) -> Any:
        """The signed value, or None for a missing, malformed or forged token."""
        if not token or token.count(".") != 1:
            return None
        payload, mac = token.split(".")
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            return json.loads(_unb64(payload))
        except ValueError:
            return None

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())


@dataclass(frozen=True)
class Session:
    """A signed-in browser: who, where, and the tokens that protect it."""

    account: str
    region: str
    cred: str
    csrf: str
    sid: str
    exp: int

    @classmethod
    def new(cls, account: str, region: str, cred: str, lifetime: int = SESSION_SECONDS) -> Session:
        return cls(
            account=account,
            region=region,
            cred=cred,
            csrf=secrets.token_urlsafe(24),
            sid=secrets.token_urlsafe(12),
            exp=int(time.time()) + lifetime,
        )

    def in_region(self, region: str) -> Session:
        return replace(self, region=region)

    @property
    def access_key_id(self) -> str:
        """The access key that signed in ('' for a console password)."""
        return "" if self.cred.startswith("password:") else self.cred

    def csrf_ok(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token), self.csrf)


class SessionCodec:
    """Session ⇄ cookie value, with expiry and sign-out revocation."""

    def __init__(self, secret: bytes) -> None:
        self._signer = Signer(secret, "console-session")
        self.flash = Signer(secret, "console-flash")
        self.presession = Signer(secret, "console-signin")
        self._revoked: dict[str, int] = {}
        self._lock = threading.Lock()

    def encode(self, session: Session) -> str:
        return self._signer.sign(asdict(session))

    def decode(self, token: str | None) -> Session | None:
        value = self._signer.verify(token)
        if not isinstance(value, dict):
            return None
        try:
            session = Session(**value)
        except TypeError:
            return None
        if session.exp <= time.time() or session.sid in self._revoked:
            return None
        return session

    def revoke(self, session: Session) -> None:
        """Refuse ``session`` from now on (this process; the cookie is cleared as well)."""
        with self._lock:
            now = time.time()
            self._revoked = {sid: exp for sid, exp in self._revoked.items() if exp > now}
            self._revoked[session.sid] = session.exp
