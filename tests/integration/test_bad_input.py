"""A table of bad requests, each answered with the right EC2 error and never a 5xx.

Requests are signed correctly (botocore's SigV4) so that what is tested is the decoding
and validation behind authentication.
"""

from __future__ import annotations

import http.client
import re

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from harness import Creds, Server

pytestmark = pytest.mark.integration

V = "Version=2016-11-15"


def send(
    server: Server,
    creds: Creds,
    body: bytes,
    content_type: str = "application/x-www-form-urlencoded",
) -> tuple[int, str]:
    request = AWSRequest(
        method="POST", url=server.endpoint + "/", data=body, headers={"Content-Type": content_type}
    )
    SigV4Auth(
        Credentials(creds.access_key_id, creds.secret_access_key), "ec2", "us-east-1"
    ).add_auth(request)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("POST", "/", body=body, headers=dict(request.headers))
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def code(body: str) -> str:
    match = re.search(r"<Code>([^<]+)</Code>", body)
    return match.group(1) if match else f"<no code in {body[:200]!r}>"


CASES: list[tuple[str, bytes, str]] = [
    ("unknown action", f"Action=FlyToTheMoon&{V}".encode(), "InvalidAction"),
    ("no action", V.encode(), "MissingAction"),
    ("garbage body", b"\x00\x01\x02garbage=&&&==", "MissingAction"),
    (
        "non-utf8",
        f"Action=DescribeKeyPairs&{V}&KeyName.1=".encode() + b"\xff\xfe",
        "MalformedQueryString",
    ),
    ("missing required", f"Action=CreateKeyPair&{V}".encode(), "MissingParameter"),
    (
        "wrong type int",
        f"Action=DescribeTags&{V}&MaxResults=lots".encode(),
        "InvalidParameterValue",
    ),
    (
        "wrong type bool",
        f"Action=DescribeKeyPairs&{V}&IncludePublicKey=maybe".encode(),
        "InvalidParameterValue",
    ),
    (
        "bad enum",
        f"Action=CreateKeyPair&{V}&KeyName=a&KeyType=dsa".encode(),
        "InvalidParameterValue",
    ),
    ("unknown parameter", f"Action=DescribeKeyPairs&{V}&Colour=blue".encode(), "UnknownParameter"),
    (
        "huge index",
        f"Action=DescribeKeyPairs&{V}&KeyName.99999999=a".encode(),
        "InvalidParameterValue",
    ),
    (
        "malformed id",
        f"Action=DescribeKeyPairs&{V}&KeyPairId.1=nope".encode(),
        "InvalidKeyPair.Malformed",
    ),
    ("bad token", f"Action=DescribeTags&{V}&NextToken=abc".encode(), "InvalidPaginationToken"),
    ("unsupported model op", f"Action=DescribeVpcs&{V}".encode(), "UnsupportedOperation"),
    (
        "huge parameter list",
        (
            f"Action=DescribeKeyPairs&{V}&" + "&".join(f"KeyName.{i}=k{i}" for i in range(1, 20001))
        ).encode(),
        "InvalidParameterValue",
    ),
    (
        "bad base64 blob",
        f"Action=ImportKeyPair&{V}&KeyName=a&PublicKeyMaterial=%%%".encode(),
        "InvalidParameterValue",
    ),
]


@pytest.mark.parametrize(("name", "body", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_ec2_error(
    server: Server, account: Creds, name: str, body: bytes, expected: str
) -> None:
    status, text = send(server, account, body)
    assert status < 500, text
    assert code(text) == expected, text
    assert "<RequestID>" in text


def test_wrong_content_type(server: Server, account: Creds) -> None:
    status, text = send(server, account, b'{"Action": "DescribeRegions"}', "application/json")
    assert status == 400
    assert code(text) == "InvalidParameterValue"


def test_oversized_body_is_refused(server: Server, account: Creds) -> None:
    body = f"Action=DescribeRegions&{V}&Pad=".encode() + b"a" * (17 * 1024 * 1024)
    status, text = send(server, account, body)
    assert status == 413
    assert code(text) == "RequestEntityTooLarge"


def test_server_survives_all_of_it(server: Server, account: Creds) -> None:
    assert server.client(account).describe_regions()["Regions"]


def test_unknown_path_is_an_ec2_style_error(server: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/nowhere")
        response = conn.getresponse()
        body = response.read().decode()
    finally:
        conn.close()
    assert response.status == 404
    assert "<Code>" in body
