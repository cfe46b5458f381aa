"""Fuzzing the front door: any input gives a Caller or an Ec2Error, never another exception."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sigv4_helpers import AKID, NOW, SECRET, FakeKeys, incoming, sign_header, sign_query

from goldsmith.api.sigv4 import IncomingRequest, verify_request
from goldsmith.service.errors import Ec2Error

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text that includes lone surrogates and control characters, which real decoders can produce.
wild_text = st.text(
    st.one_of(
        st.characters(),
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
        st.sampled_from("/=&;,% \t\r\n?#[]:@AWS4-HMAC-SHA256XZ0123456789"),
    ),
    max_size=80,
)
header_names = st.one_of(
    wild_text,
    st.sampled_from(
        [
            "Authorization",
            "X-Amz-Date",
            "Date",
            "Host",
            "X-Amz-Content-SHA256",
            "X-Amz-Security-Token",
            "Content-Type",
        ]
    ),
)

SIGNED = incoming(sign_header())
PRESIGNED = incoming(sign_query())


def outcome(req: IncomingRequest) -> str:
    """Run the verifier; only a Caller or an Ec2Error may come out."""
    try:
        caller = verify_request(req, FakeKeys(), service="ec2", now=NOW)
    except Ec2Error as exc:
        assert SECRET not in str(exc)
        assert exc.message.isascii() and exc.message.isprintable()  # fit for XML and logs
        assert exc.status in {400, 401, 403}
        return exc.code
    assert caller.access_key_id == AKID
    return "ok"


@FUZZ
@given(
    method=wild_text,
    url=st.one_of(wild_text, wild_text.map(lambda s: "http://127.0.0.1:4566/" + s)),
    headers=st.dictionaries(header_names, wild_text, max_size=8),
    body=st.binary(max_size=200),
)
def test_random_requests_give_ec2_errors(
    method: str, url: str, headers: dict[str, str], body: bytes
) -> None:
    assert outcome(IncomingRequest(method, url, headers, body)) != "ok"


@FUZZ
@given(position=st.integers(min_value=0, max_value=400), insert=wild_text, cut=st.integers(0, 5))
def test_mutated_authorization_headers(position: int, insert: str, cut: int) -> None:
    auth = SIGNED.headers["Authorization"]
    position = min(position, len(auth))
    mutated = auth[:position] + insert + auth[position + cut :]
    headers = dict(SIGNED.headers) | {"Authorization": mutated}
    result = outcome(IncomingRequest(SIGNED.method, SIGNED.url, headers, SIGNED.body))
    if result == "ok":  # only whitespace or empty items between parameters may change
        assert _squeeze(mutated) == _squeeze(auth)


def _squeeze(text: str) -> str:
    return "".join(text.replace(",", " ").split())


@FUZZ
@given(name=header_names, value=wild_text, body=st.one_of(st.none(), st.binary(max_size=64)))
def test_mutated_headers_and_body(name: str, value: str, body: bytes | None) -> None:
    headers = dict(SIGNED.headers) | {name: value}
    req = IncomingRequest(SIGNED.method, SIGNED.url, headers, SIGNED.body if body is None else body)
    outcome(req)


@FUZZ
@given(position=st.integers(min_value=0, max_value=500), insert=wild_text, cut=st.integers(0, 5))
def test_mutated_presigned_urls(position: int, insert: str, cut: int) -> None:
    url = PRESIGNED.url
    position = min(position, len(url))
    mutated = url[:position] + insert + url[position + cut :]
    result = outcome(IncomingRequest("GET", mutated, PRESIGNED.headers, b""))
    if result == "ok":  # the host comes from the Host header; the query is signed
        assert urlsplit(mutated).query == urlsplit(url).query


@FUZZ
@given(
    skew=st.timedeltas(min_value=timedelta(seconds=-1), max_value=timedelta(days=3650)),
    offset=st.timedeltas(min_value=-timedelta(days=3650), max_value=timedelta(days=3650)),
)
def test_any_clock_gives_a_clean_answer(skew: timedelta, offset: timedelta) -> None:
    try:
        verify_request(SIGNED, FakeKeys(), service="ec2", now=NOW + offset, max_skew=skew)
    except Ec2Error as exc:
        assert exc.code == "RequestExpired"
