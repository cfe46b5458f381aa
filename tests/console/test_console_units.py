"""Console building blocks without a server: signed values, sessions, passwords, helpers."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from goldsmith.api.console.framework import safe_next
from goldsmith.api.console.session import Session, SessionCodec, Signer
from goldsmith.api.console.templating import fmt_time, with_query
from goldsmith.service.accounts import hash_password, password_matches

SECRET = b"k" * 32


def test_signer_round_trip_and_tampering() -> None:
    signer = Signer(SECRET, "test")
    token = signer.sign({"a": 1})
    assert signer.verify(token) == {"a": 1}
    payload, mac = token.split(".")
    assert signer.verify(f"{payload}x.{mac}") is None
    assert signer.verify(f"{payload}.{mac[:-1]}A") is None
    assert signer.verify(None) is None
    assert signer.verify("no-dot") is None
    # Another purpose or another secret never accepts the token.
    assert Signer(SECRET, "other").verify(token) is None
    assert Signer(b"j" * 32, "test").verify(token) is None


def test_session_expiry_and_revocation() -> None:
    codec = SessionCodec(SECRET)
    session = Session.new("123456789012", "us-east-1", "AKIAEXAMPLEEXAMPLE12")
    assert codec.decode(codec.encode(session)) == session
    expired = replace(session, exp=int(time.time()) - 1)
    assert codec.decode(codec.encode(expired)) is None
    codec.revoke(session)
    assert codec.decode(codec.encode(session)) is None
    other = Session.new("123456789012", "us-east-1", "AKIAEXAMPLEEXAMPLE12")
    assert codec.decode(codec.encode(other)) == other
    # A flash cookie is signed for another purpose: it is no session.
    assert codec.decode(codec.flash.sign({**other.__dict__})) is None


def test_session_csrf_and_credential_kind() -> None:
    session = Session.new("123456789012", "us-east-1", "password:abc")
    assert session.access_key_id == ""
    assert session.csrf_ok(session.csrf)
    assert not session.csrf_ok("")
    assert not session.csrf_ok(None)
    assert not session.csrf_ok(session.csrf + "x")
    assert Session.new("1", "r", "AKIAX").access_key_id == "AKIAX"


def test_password_hashes() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("scrypt$")
    assert password_matches("correct horse battery", stored)
    assert not password_matches("correct horse", stored)
    assert not password_matches("", None)
    assert not password_matches("anything", "garbage")
    assert hash_password("same") != hash_password("same")  # salted


@pytest.mark.parametrize(
    ("value", "safe"),
    [
        ("/console/images", True),
        ("/console/images/ami-1?tab=tags", True),
        ("//evil.example/console/", False),
        ("/console//evil.example", False),
        ("https://evil.example/console/x", False),
        ("/consolex", False),
        ("/console\\\\evil", False),
        ("", False),
        (None, False),
    ],
)
def test_safe_next_stays_in_the_console(value: str | None, safe: bool) -> None:
    assert safe_next(value) == (value if safe else None)


def test_template_helpers() -> None:
    assert with_query("/console/images", {"q": "a", "page": "2"}, page=None) == (
        "/console/images?q=a"
    )
    assert with_query("/console/images", {}, scope="shared") == "/console/images?scope=shared"
    assert fmt_time("2026-01-02T03:04:05.000Z") == "2026-01-02 03:04 UTC"
    assert fmt_time(None) == ""
