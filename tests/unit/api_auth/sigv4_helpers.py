"""Shared helpers for the SigV4 verification tests: requests signed by botocore itself."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from unittest.mock import patch

from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from goldsmith.api.sigv4 import IncomingRequest

AKID = "AKIAGOLDSMITHTEST001"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
INACTIVE_AKID = "AKIAGOLDSMITHINACTIV"
ACCOUNT = "123456789012"
NOW = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
FORM = "application/x-www-form-urlencoded; charset=utf-8"
BODY = b"Action=DescribeImages&Version=2016-11-15"
ENDPOINT = "http://127.0.0.1:4566/"


@dataclass
class FakeKeys:
    """A key store: active keys resolve, inactive ones do not; records what was asked."""

    active: dict[str, tuple[str, str]] = field(default_factory=lambda: {AKID: (SECRET, ACCOUNT)})
    inactive: dict[str, tuple[str, str]] = field(
        default_factory=lambda: {INACTIVE_AKID: (SECRET, ACCOUNT)}
    )
    asked: list[str] = field(default_factory=list)

    def lookup(self, access_key_id: str) -> tuple[str, str] | None:
        self.asked.append(access_key_id)
        return self.active.get(access_key_id)


@contextmanager
def frozen(at: datetime) -> Iterator[None]:
    """Make botocore sign as if the clock read ``at``."""
    with patch("botocore.auth.get_current_datetime", return_value=at.replace(tzinfo=None)):
        yield


def host_of(url: str) -> str:
    return url.split("//", 1)[1].split("/", 1)[0].split("?", 1)[0]


def _as_str(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def incoming(request: AWSRequest, *, host: str | None = None) -> IncomingRequest:
    """What the server receives for a botocore request: its headers plus the Host header."""
    headers = {name: _as_str(value) for name, value in request.headers.items()}
    headers.setdefault("Host", host or host_of(request.url))
    body = request.body or b""
    return IncomingRequest(
        request.method, request.url, headers, body if isinstance(body, bytes) else body.encode()
    )


def sign_header(
    *,
    method: str = "POST",
    url: str = ENDPOINT,
    body: bytes = BODY,
    headers: Mapping[str, str] | None = None,
    service: str = "ec2",
    region: str = "us-east-1",
    key: str = AKID,
    secret: str = SECRET,
    token: str | None = None,
    at: datetime = NOW,
) -> AWSRequest:
    """A request signed with the Authorization header, exactly as botocore does it."""
    request = AWSRequest(
        method=method,
        url=url,
        data=body,
        headers=dict(headers) if headers is not None else {"Content-Type": FORM},
    )
    with frozen(at):
        SigV4Auth(Credentials(key, secret, token), service, region).add_auth(request)
    return request


def sign_query(
    *,
    method: str = "GET",
    url: str = ENDPOINT + "?Action=DescribeImages&Version=2016-11-15",
    service: str = "ec2",
    region: str = "us-east-1",
    expires: int = 300,
    key: str = AKID,
    secret: str = SECRET,
    token: str | None = None,
    at: datetime = NOW,
) -> AWSRequest:
    """A presigned URL, exactly as botocore's SigV4QueryAuth writes it."""
    request = AWSRequest(method=method, url=url)
    with frozen(at):
        SigV4QueryAuth(Credentials(key, secret, token), service, region, expires).add_auth(request)
    return request


def with_headers(req: IncomingRequest, **changes: str | None) -> IncomingRequest:
    """``req`` with headers replaced (case-insensitively) or removed (value ``None``)."""
    lowered = {k.lower(): k for k in req.headers}
    headers = dict(req.headers)
    for name, value in changes.items():
        real = lowered.get(name.lower().replace("_", "-"), name.replace("_", "-"))
        if value is None:
            headers.pop(real, None)
        else:
            headers[real] = value
    return IncomingRequest(req.method, req.url, headers, req.body)
