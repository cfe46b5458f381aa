"""Who may sign in to the console, and whether a session's credential still holds.

Two ways in, one form (``name`` + ``secret``):

* an access key id and its secret — found exactly as SigV4 finds it
  (:meth:`AccountService.lookup`: active keys only);
* an account id or alias and the console password the admin set
  (``goldsmith accounts console-password``; only a scrypt hash is stored).

Every failure is the same ``None`` (the page shows one generic message), and the work done
does not depend on which part was wrong: a missing key is compared against a dummy secret, a
missing password against a dummy hash, always in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from dataclasses import dataclass

from goldsmith.service.accounts import KEY_ID_RE, AccountService, ConsolePasswords, password_matches

_DUMMY_SECRET = "x" * 40


@dataclass(frozen=True)
class SignedIn:
    account_id: str
    cred: str


def password_cred(stored_hash: str) -> str:
    """The session credential for a password sign-in: changes when the password does."""
    return "password:" + hashlib.sha256(stored_hash.encode()).hexdigest()[:24]


class Authenticator:
    """Checks sign-in attempts and re-checks live sessions' credentials."""

    def __init__(self, accounts: AccountService, passwords: ConsolePasswords) -> None:
        self._accounts = accounts
        self._passwords = passwords

    def sign_in(self, name: str, secret: str) -> SignedIn | None:
        name = name.strip()
        if KEY_ID_RE.match(name):
            return self._with_key(name, secret)
        return self._with_password(name, secret)

    def _with_key(self, key_id: str, secret: str) -> SignedIn | None:
        found = self._accounts.lookup(key_id)
        expected, account = found if found else (_DUMMY_SECRET, "")
        same = hmac.compare_digest(secret.encode(), expected.encode())
        return SignedIn(account, key_id) if same and found else None

    def _with_password(self, name: str, password: str) -> SignedIn | None:
        account = self._passwords.account_for(name)
        stored = self._passwords.stored_hash(account) if account else None
        if password_matches(password, stored) and account and stored:
            return SignedIn(account, password_cred(stored))
        return None

    def still_valid(self, account_id: str, cred: str) -> bool:
        """True while the credential that opened a session still signs in as its account."""
        if cred.startswith("password:"):
            stored = self._passwords.stored_hash(account_id)
            return stored is not None and hmac.compare_digest(password_cred(stored), cred)
        found = self._accounts.lookup(cred)
        return found is not None and found[1] == account_id


class Throttle:
    """Failed sign-ins per name: after ``limit`` in ``window`` seconds, the name must wait.

    Per server process, in memory (a guessing attacker is slowed, not stopped across a
    fleet; console passwords are scrypt hashes, so each guess is costly anyway). Counted by
    the name typed — what is being guessed — not by client address, which an attacker
    changes at will; the price is that whoever knows a name can make it wait.
    """

    def __init__(self, limit: int = 10, window: float = 300.0) -> None:
        self._limit = limit
        self._window = window
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, name: str) -> bool:
        with self._lock:
            return len(self._recent(name)) >= self._limit

    def failed(self, name: str) -> None:
        with self._lock:
            self._failures[name] = [*self._recent(name), time.monotonic()]
            if len(self._failures) > 10_000:  # bounded: forget names with no recent failure
                self._failures = {n: t for n, t in self._failures.items() if self._recent(n)}

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(name, None)

    def _recent(self, name: str) -> list[float]:
        horizon = time.monotonic() - self._window
        return [t for t in self._failures.get(name, ()) if t > horizon]
