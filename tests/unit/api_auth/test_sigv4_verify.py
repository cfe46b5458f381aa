"""SigV4 verification: requests signed by botocore verify; every tampering is refused."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from hashlib import sha256
from typing import Any
from urllib.parse import parse_qs

import boto3
import pytest
from botocore.auth import SigV2Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from sigv4_helpers import (
    ACCOUNT,
    AKID,
    BODY,
    ENDPOINT,
    FORM,
    INACTIVE_AKID,
    NOW,
    SECRET,
    FakeKeys,
    frozen,
    incoming,
    sign_header,
    sign_query,
    with_headers,
)
from starlette.datastructures import Headers

from goldsmith.api.sigv4 import (
    AUTH_FAILURE_MESSAGE,
    Caller,
    IncomingRequest,
    verify_request,
)
from goldsmith.service.errors import AuthError, Ec2Error


def verify(req: IncomingRequest, **kwargs: Any) -> Caller:
    kwargs.setdefault("service", "ec2")
    kwargs.setdefault("now", NOW)
    keys = kwargs.pop("keys", FakeKeys())
    return verify_request(req, keys, **kwargs)


def refused(req: IncomingRequest, code: str, status: int, **kwargs: Any) -> Ec2Error:
    with pytest.raises(Ec2Error) as caught:
        verify(req, **kwargs)
    assert (caught.value.code, caught.value.status) == (code, status), caught.value.message
    assert SECRET not in str(caught.value)
    return caught.value


# --- what must verify ------------------------------------------------------------------------


def test_botocore_header_signed_request_verifies() -> None:
    caller = verify(incoming(sign_header()))
    assert caller == Caller(AKID, ACCOUNT, "us-east-1", "ec2")


def test_region_comes_from_the_credential_scope() -> None:
    assert verify(incoming(sign_header(region="eu-west-3"))).region == "eu-west-3"


@pytest.mark.parametrize(
    ("url", "body"),
    [
        pytest.param(
            ENDPOINT, "Action=Run&Name=café ☃ +%2B&N=%E2%98%83".encode(), id="unicode-form"
        ),
        pytest.param(ENDPOINT + "?a=1&a=0&b=&a=2", b"", id="repeated-query-params"),
        pytest.param(ENDPOINT + "?", b"", id="empty-query"),
        pytest.param("http://127.0.0.1:4566", b"", id="no-path"),
        pytest.param("http://127.0.0.1:4566/snapshots/snap-1/blocks/7", b"", id="deep-path"),
        pytest.param("http://127.0.0.1:4566/a%20b/c~d", b"", id="encoded-path"),
        pytest.param("http://localhost:8080/?X=%E2%98%83&Y=a%2Fb", b"", id="encoded-query"),
        pytest.param("http://[::1]:4566/", BODY, id="ipv6-host"),
        pytest.param("https://ec2.example.test/", BODY, id="https-default-port"),
    ],
)
def test_shapes_of_request_verify(url: str, body: bytes) -> None:
    assert verify(incoming(sign_header(url=url, body=body))).account_id == ACCOUNT


def test_header_values_with_extra_spaces_verify() -> None:
    headers = {"Content-Type": FORM, "X-Amz-Meta": "  two   spaces\tand tab  "}
    req = incoming(sign_header(headers=headers))
    assert "x-amz-meta" in req.headers["Authorization"]
    assert verify(req).access_key_id == AKID


def test_header_names_are_case_insensitive() -> None:
    req = incoming(sign_header())
    shouted = {k.upper(): v for k, v in req.headers.items()}
    assert verify(IncomingRequest(req.method, req.url, shouted, req.body)).access_key_id == AKID


def test_repeated_headers_from_starlette_join_like_botocore() -> None:
    request = AWSRequest(method="POST", url=ENDPOINT, data=BODY, headers={"Content-Type": FORM})
    request.headers["X-Amz-Meta"] = "a"
    request.headers["X-Amz-Meta"] = " b "  # botocore's HTTPHeaders keeps both values
    with frozen(NOW):
        SigV4Auth(Credentials(AKID, SECRET), "ec2", "us-east-1").add_auth(request)
    raw = [(k.lower().encode(), str(v).encode()) for k, v in request.headers.items()]
    raw.append((b"host", b"127.0.0.1:4566"))
    req = IncomingRequest("POST", ENDPOINT, Headers(raw=raw), BODY)
    assert verify(req).access_key_id == AKID


def test_date_header_instead_of_x_amz_date_verifies() -> None:
    request = sign_header(headers={"Content-Type": FORM, "Date": "whatever"})
    assert "X-Amz-Date" not in request.headers
    assert verify(incoming(request)).access_key_id == AKID


def test_unsigned_extra_header_is_allowed() -> None:
    req = with_headers(incoming(sign_header()), X_Forwarded_For="10.0.0.1", User_Agent="other")
    assert verify(req).access_key_id == AKID


def test_time_within_skew_verifies_both_ways() -> None:
    req = incoming(sign_header())
    verify(req, now=NOW + timedelta(minutes=15))
    verify(req, now=NOW - timedelta(minutes=15))


def test_content_sha256_header_matching_the_body_verifies() -> None:
    headers = {"Content-Type": FORM, "X-Amz-Content-SHA256": sha256(BODY).hexdigest()}
    assert verify(incoming(sign_header(headers=headers))).access_key_id == AKID


def test_unsigned_payload_verifies_whatever_the_body() -> None:
    request = AWSRequest(method="PUT", url="https://127.0.0.1:4566/snapshots/s/blocks/0", data=b"x")
    request.context["payload_signing_enabled"] = False  # what botocore does for unsigned bodies
    with frozen(NOW):
        SigV4Auth(Credentials(AKID, SECRET), "ebs", "us-east-1").add_auth(request)
    assert request.headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    req = incoming(request)
    other_body = IncomingRequest(req.method, req.url, req.headers, b"different block")
    assert verify(other_body, service="ebs").service == "ebs"


def test_presigned_url_verifies_until_it_expires() -> None:
    req = incoming(sign_query(expires=300))
    assert verify(req).access_key_id == AKID
    assert verify(req, now=NOW + timedelta(seconds=300)).access_key_id == AKID
    error = refused(req, "RequestExpired", 400, now=NOW + timedelta(seconds=301))
    assert "20261123T100000Z" in error.message
    assert "20261123T100500Z" in error.message


def test_presigned_url_with_query_and_path_verifies() -> None:
    url = "http://127.0.0.1:4566/some/path?Filter.1.Value.1=caf%C3%A9&a=1"
    assert verify(incoming(sign_query(url=url))).access_key_id == AKID


def test_spec_style_query_encoding_verifies() -> None:
    """A client that signs the re-encoded query but sends '/' raw (legal in a query)."""
    request = AWSRequest(method="GET", url=ENDPOINT, params={"Path": "a/b c"})
    with frozen(NOW):
        SigV4Auth(Credentials(AKID, SECRET), "ec2", "us-east-1").add_auth(request)
    headers = {k: str(v) for k, v in request.headers.items()} | {"Host": "127.0.0.1:4566"}
    req = IncomingRequest("GET", ENDPOINT + "?Path=a/b%20c", headers, b"")
    assert verify(req).access_key_id == AKID


@pytest.fixture(scope="module")
def captured() -> Iterator[Callable[[str, str], IncomingRequest]]:
    """Run a boto3 EC2 call and return the request it would have sent."""
    session = boto3.session.Session(
        aws_access_key_id=AKID, aws_secret_access_key=SECRET, region_name="us-west-2"
    )
    client = session.client("ec2", endpoint_url="http://127.0.0.1:4566")
    sent: list[Any] = []

    class Stop(Exception):
        pass

    def grab(request: Any, **_: Any) -> None:
        sent.append(request)
        raise Stop

    client.meta.events.register("before-send.ec2.*", grab)

    def call(operation: str, kwargs_json: str) -> IncomingRequest:
        with pytest.raises(Stop):
            getattr(client, operation)(**json.loads(kwargs_json))
        return incoming(sent[-1])

    yield call


def test_boto3_ec2_client_request_verifies(
    captured: Callable[[str, str], IncomingRequest],
) -> None:
    req = captured(
        "describe_images",
        '{"ImageIds": ["ami-1", "ami-2"], "Filters": [{"Name": "name", "Values": ["é ☃ +/&="]}]}',
    )
    caller = verify_request(req, FakeKeys(), service="ec2")  # signed with the real clock
    assert caller == Caller(AKID, ACCOUNT, "us-west-2", "ec2")


def test_boto3_copy_snapshot_presigned_url_verifies(
    captured: Callable[[str, str], IncomingRequest],
) -> None:
    req = captured(
        "copy_snapshot", '{"SourceRegion": "eu-central-1", "SourceSnapshotId": "snap-1"}'
    )
    url = parse_qs(req.body.decode())["PresignedUrl"][0]
    presigned = IncomingRequest("GET", url, {"Host": "127.0.0.1:4566"}, b"")
    assert verify_request(presigned, FakeKeys(), service="ec2").region == "eu-central-1"


# --- what must be refused --------------------------------------------------------------------


def test_no_credentials_is_ec2s_missing_parameter() -> None:
    req = IncomingRequest("POST", ENDPOINT, {"Host": "127.0.0.1:4566"}, BODY)
    error = refused(req, "MissingParameter", 400)
    assert error.message == "The request must contain the parameter AWSAccessKeyId"


def test_no_credentials_for_other_services_is_missing_authentication_token() -> None:
    req = IncomingRequest("GET", ENDPOINT + "snapshots", {"Host": "127.0.0.1:4566"}, b"")
    refused(req, "MissingAuthenticationToken", 403, service="ebs")


def test_unknown_key_is_auth_failure() -> None:
    error = refused(incoming(sign_header(key="AKIANOSUCHKEY0000000")), "AuthFailure", 401)
    assert error.message == AUTH_FAILURE_MESSAGE
    assert isinstance(error, AuthError)


def test_inactive_key_is_auth_failure() -> None:
    keys = FakeKeys()
    refused(incoming(sign_header(key=INACTIVE_AKID)), "AuthFailure", 401, keys=keys)
    assert keys.asked == [INACTIVE_AKID]


def test_wrong_secret_is_auth_failure_for_ec2() -> None:
    error = refused(incoming(sign_header(secret="not-the-secret")), "AuthFailure", 401)
    assert error.message == AUTH_FAILURE_MESSAGE


def test_wrong_secret_is_signature_does_not_match_for_other_services() -> None:
    req = incoming(sign_header(service="ebs", secret="not-the-secret"))
    refused(req, "SignatureDoesNotMatch", 403, service="ebs")


def test_unknown_key_for_other_services_is_invalid_client_token_id() -> None:
    req = incoming(sign_header(service="ebs", key="AKIANOSUCHKEY0000000"))
    refused(req, "InvalidClientTokenId", 403, service="ebs")


def test_tampered_body_is_refused() -> None:
    req = incoming(sign_header())
    tampered = IncomingRequest(req.method, req.url, req.headers, BODY + b"&DryRun=true")
    refused(tampered, "AuthFailure", 401)


@pytest.mark.parametrize(
    "change",
    [
        {"Content_Type": "text/plain"},
        {"Host": "127.0.0.1:4567"},
        {"X_Amz_Date": "20261123T100001Z"},
        {"Content_Type": None},
    ],
    ids=["content-type", "host", "date", "removed"],
)
def test_tampered_signed_header_is_refused(change: dict[str, str | None]) -> None:
    refused(with_headers(incoming(sign_header()), **change), "AuthFailure", 401)


@pytest.mark.parametrize(
    "url",
    [
        ENDPOINT + "?x=1",
        "http://127.0.0.1:4566/other",
        "http://127.0.0.1:4566/./",
    ],
    ids=["query-added", "path-changed", "dot-path"],
)
def test_tampered_url_is_refused(url: str) -> None:
    req = incoming(sign_header())
    moved = IncomingRequest(req.method, url, req.headers, req.body)
    if url.endswith("/./"):  # botocore normalises dot segments: same canonical path
        assert verify(moved).access_key_id == AKID
    else:
        refused(moved, "AuthFailure", 401)


def test_tampered_method_is_refused() -> None:
    req = incoming(sign_header())
    refused(IncomingRequest("PUT", req.url, req.headers, req.body), "AuthFailure", 401)


def test_wrong_content_sha256_is_refused() -> None:
    headers = {"Content-Type": FORM, "X-Amz-Content-SHA256": "0" * 64}
    error = refused(incoming(sign_header(headers=headers)), "AuthFailure", 401)
    assert "x-amz-content-sha256" in error.message


def test_streaming_payload_is_refused_clearly() -> None:
    headers = {"Content-Type": FORM, "X-Amz-Content-SHA256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"}
    error = refused(incoming(sign_header(headers=headers)), "IncompleteSignature", 400)
    assert "Streaming" in error.message


@pytest.mark.parametrize("direction", [1, -1], ids=["future", "past"])
def test_skewed_time_is_request_expired(direction: int) -> None:
    now = NOW - direction * timedelta(minutes=15, seconds=1)
    error = refused(incoming(sign_header()), "RequestExpired", 400, now=now)
    assert "20261123T100000Z" in error.message  # the signature's time
    assert now.strftime("%Y%m%dT%H%M%SZ") in error.message  # the server's time
    assert isinstance(error, AuthError)


def test_custom_max_skew_is_honoured() -> None:
    req = incoming(sign_header())
    verify(req, now=NOW + timedelta(minutes=4), max_skew=timedelta(minutes=5))
    refused(
        req, "RequestExpired", 400, now=NOW + timedelta(minutes=6), max_skew=timedelta(minutes=5)
    )


def test_presigned_url_from_the_future_is_refused() -> None:
    req = incoming(sign_query(at=NOW + timedelta(minutes=20)))
    refused(req, "RequestExpired", 400)


def test_wrong_service_in_scope_is_refused() -> None:
    error = refused(incoming(sign_header(service="s3")), "AuthFailure", 401)
    assert "Credential should be scoped to correct service: 'ec2'" in error.message
    error = refused(
        incoming(sign_header(service="ec2")), "SignatureDoesNotMatch", 403, service="ebs"
    )
    assert "'ebs'" in error.message


def test_scope_date_must_match_the_request_date() -> None:
    req = incoming(sign_header())
    auth = req.headers["Authorization"].replace("/20261123/", "/20261122/")
    error = refused(with_headers(req, Authorization=auth), "AuthFailure", 401)
    assert "'20261122' != '20261123'" in error.message


def test_scope_terminator_must_be_aws4_request() -> None:
    req = incoming(sign_header())
    auth = req.headers["Authorization"].replace("/aws4_request", "/aws5_request")
    refused(with_headers(req, Authorization=auth), "AuthFailure", 401)


def test_region_refused_by_allowed_regions() -> None:
    req = incoming(sign_header(region="ap-east-1"))
    error = refused(req, "AuthFailure", 401, allowed_regions=lambda r: r != "ap-east-1")
    assert "'ap-east-1'" in error.message
    assert verify(req, allowed_regions=lambda r: r == "ap-east-1").region == "ap-east-1"


def test_security_token_is_refused() -> None:
    error = refused(incoming(sign_header(token="FwoGZXIvYXdzEXAMPLE")), "AuthFailure", 401)
    assert "X-Amz-Security-Token" in error.message
    refused(incoming(sign_query(token="FwoGZXIvYXdzEXAMPLE")), "AuthFailure", 401)


def test_sigv2_request_is_refused_clearly() -> None:
    request = AWSRequest(method="POST", url=ENDPOINT, data={"Action": "DescribeImages"})
    SigV2Auth(Credentials(AKID, SECRET)).add_auth(request)
    prepared = request.prepare()
    headers = {"Host": "127.0.0.1:4566", "Content-Type": FORM}
    req = IncomingRequest("POST", ENDPOINT, headers, prepared.body.encode())
    error = refused(req, "IncompleteSignature", 400)
    assert "Signature Version 2" in error.message
    query = IncomingRequest("GET", ENDPOINT + "?" + prepared.body, {"Host": "h"}, b"")
    refused(query, "IncompleteSignature", 400)


def test_lookup_is_not_asked_about_malformed_requests() -> None:
    keys = FakeKeys()
    req = with_headers(incoming(sign_header()), Authorization="AWS4-HMAC-SHA256 Credential=x")
    refused(req, "IncompleteSignature", 400, keys=keys)
    assert keys.asked == []


GOOD_AUTH = (
    f"AWS4-HMAC-SHA256 Credential={AKID}/20261123/us-east-1/ec2/aws4_request, "
    "SignedHeaders=content-type;host;x-amz-date, Signature=" + "0" * 64
)


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        ("AWS4-HMAC-SHA256", "IncompleteSignature"),
        ("", "IncompleteSignature"),
        (GOOD_AUTH.replace("Credential=", "Credentials="), "IncompleteSignature"),
        (GOOD_AUTH.replace(", Signature=" + "0" * 64, ""), "IncompleteSignature"),
        (GOOD_AUTH.replace("SignedHeaders=", "SignedHeaders"), "IncompleteSignature"),
        (GOOD_AUTH.replace("/aws4_request", ""), "IncompleteSignature"),
        (GOOD_AUTH.replace("/us-east-1/", "//"), "IncompleteSignature"),
        (GOOD_AUTH.replace("content-type;host;x-amz-date", ""), "IncompleteSignature"),
        (GOOD_AUTH.replace("content-type;host;", ""), "IncompleteSignature"),
        (GOOD_AUTH.replace("host;", "host;;"), "IncompleteSignature"),
        (GOOD_AUTH + ", Signature=" + "1" * 64, "IncompleteSignature"),
        (GOOD_AUTH.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512"), "IncompleteSignature"),
        (f"AWS {AKID}:c2lnbmF0dXJl", "IncompleteSignature"),
        ("Bearer abc.def.ghi", "IncompleteSignature"),
        (GOOD_AUTH, "AuthFailure"),
        (GOOD_AUTH.replace("0" * 64, "Z" * 64), "AuthFailure"),
        (GOOD_AUTH.replace("0" * 64, "é" * 64), "AuthFailure"),
        (GOOD_AUTH.replace("0" * 64, "0" * 63), "AuthFailure"),
    ],
    ids=[
        "algorithm-only",
        "empty",
        "misspelt-credential",
        "no-signature",
        "no-equal-sign",
        "4-part-credential",
        "empty-region",
        "empty-signed-headers",
        "host-not-signed",
        "empty-header-name",
        "duplicate-signature",
        "sha512",
        "sigv2-header",
        "bearer",
        "wrong-signature",
        "non-hex-signature",
        "non-ascii-signature",
        "short-signature",
    ],
)
def test_malformed_authorization_header(authorization: str, code: str) -> None:
    req = with_headers(incoming(sign_header()), Authorization=authorization)
    refused(req, code, 401 if code == "AuthFailure" else 400)


@pytest.mark.parametrize(
    "date",
    ["2026-11-23T10:00:00Z", "20261123T100000", "20261323T100000Z", "", "x" * 200],
    ids=["extended", "no-zone", "month-13", "empty", "long"],
)
def test_malformed_x_amz_date(date: str) -> None:
    req = with_headers(incoming(sign_header()), X_Amz_Date=date)
    error = refused(req, "IncompleteSignature", 400)
    assert len(error.message) < 300


def test_missing_date_is_incomplete_signature() -> None:
    error = refused(
        with_headers(incoming(sign_header()), X_Amz_Date=None), "IncompleteSignature", 400
    )
    assert "'X-Amz-Date' or a 'Date'" in error.message


def test_malformed_date_header() -> None:
    req = incoming(sign_header(headers={"Content-Type": FORM, "Date": "x"}))
    refused(with_headers(req, Date="not a date"), "IncompleteSignature", 400)


def test_header_and_query_auth_together_are_refused() -> None:
    presigned = incoming(sign_query())
    both = with_headers(presigned, Authorization=GOOD_AUTH)
    error = refused(both, "IncompleteSignature", 400)
    assert "Only one auth mechanism" in error.message


def _query_variant(old: str, new: str) -> IncomingRequest:
    req = incoming(sign_query())
    assert old in req.url
    return IncomingRequest(req.method, req.url.replace(old, new), req.headers, req.body)


@pytest.mark.parametrize(
    ("old", "new", "code"),
    [
        ("X-Amz-Expires=300", "X-Amz-Expires=abc", "IncompleteSignature"),
        ("X-Amz-Expires=300", "X-Amz-Expires=604801", "IncompleteSignature"),
        ("X-Amz-Expires=300", "X-Amz-Expires=0", "IncompleteSignature"),
        ("X-Amz-Expires=300&", "", "IncompleteSignature"),
        ("X-Amz-Expires=300", "X-Amz-Expires=300&X-Amz-Expires=300", "IncompleteSignature"),
        (
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Algorithm=AWS4-ECDSA-P256-SHA256",
            "IncompleteSignature",
        ),
        ("X-Amz-Expires=300", "X-Amz-Expires=301", "AuthFailure"),
        ("Action=DescribeImages", "Action=DeregisterImage", "AuthFailure"),
        ("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=x-amz-date", "IncompleteSignature"),
    ],
    ids=[
        "expires-not-number",
        "expires-over-a-week",
        "expires-zero",
        "expires-missing",
        "expires-twice",
        "sigv4a",
        "expires-extended",
        "action-changed",
        "host-not-signed",
    ],
)
def test_malformed_or_tampered_presigned_url(old: str, new: str, code: str) -> None:
    refused(_query_variant(old, new), code, 401 if code == "AuthFailure" else 400)


# --- inputs no client sends, which must still give a clean answer ------------------------------


def _edge(kind: str) -> IncomingRequest:
    req = incoming(sign_header())
    tampered_auth = req.headers["Authorization"].replace("content-type", "content-type\udc80")
    return {
        "bad-ipv6-url": IncomingRequest("POST", "http://[::1/", req.headers, req.body),
        "surrogate-path": IncomingRequest("POST", ENDPOINT + "\udc80", req.headers, req.body),
        "surrogate-query": IncomingRequest("POST", ENDPOINT + "?a=\udc80", req.headers, req.body),
        "surrogate-header": with_headers(req, Content_Type="a\udc80"),
        "surrogate-signed-name": with_headers(req, Authorization=tampered_auth),
        "surrogate-date": with_headers(req, X_Amz_Date="2026\udc80\x00"),
        "control-algorithm": with_headers(req, Authorization="\x00\udc80 x"),
    }[kind]


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("bad-ipv6-url", "IncompleteSignature"),
        ("surrogate-path", "AuthFailure"),
        ("surrogate-query", "AuthFailure"),
        ("surrogate-header", "AuthFailure"),
        ("surrogate-signed-name", "AuthFailure"),
        ("surrogate-date", "IncompleteSignature"),
        ("control-algorithm", "IncompleteSignature"),
    ],
)
def test_undecodable_input_gives_a_clean_error(kind: str, code: str) -> None:
    error = refused(_edge(kind), code, 401 if code == "AuthFailure" else 400)
    assert error.message.isascii() and error.message.isprintable()  # safe to put in XML


def test_non_ascii_signed_header_value_verifies() -> None:
    req = incoming(sign_header(headers={"Content-Type": FORM, "X-Amz-Meta": "café ☃"}))
    assert verify(req).access_key_id == AKID


def test_echoed_client_text_is_clipped() -> None:
    req = with_headers(incoming(sign_header()), Authorization="A" * 10_000 + " x")
    assert len(refused(req, "IncompleteSignature", 400).message) < 200


def test_any_whitespace_may_follow_the_algorithm() -> None:
    req = incoming(sign_header())
    auth = req.headers["Authorization"].replace(" ", "\t ", 1)
    assert verify(with_headers(req, Authorization=auth)).access_key_id == AKID
