"""REST-JSON codec round trips against botocore itself (EBS and rbin models).

botocore's serializer → our router and parser must give back the params; our serializer →
botocore's parser must give back the output dict; our errors → botocore's modelled errors.
"""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import botocore.parsers
import botocore.serialize
import pytest
from botocore.response import StreamingBody

from goldsmith.api.restjson import RestJsonCodec

EBS = RestJsonCodec("ebs")
RBIN = RestJsonCodec("rbin")
STAMP = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def _through_botocore(codec: RestJsonCodec, operation: str, params: dict[str, Any]) -> Any:
    op = codec.model.operation_model(operation)
    serializer = botocore.serialize.create_serializer("rest-json", include_validation=True)
    request = serializer.serialize_to_request(params, op)
    parts = urlsplit(request["url_path"])
    query: list[tuple[str, str]] = []
    for key, value in request["query_string"].items():
        values = value if isinstance(value, list) else [value]
        query += [(key, str(v)) for v in values]
    routed = codec.route(request["method"], parts.path, query)
    assert routed is not None, request
    found, labels = routed
    assert found.name == operation
    body = request["body"]
    body = body.encode() if isinstance(body, str) else bytes(body or b"")
    return codec.parse(found, labels, query, request["headers"], body)


REQUESTS = [
    (
        EBS,
        "StartSnapshot",
        {
            "VolumeSize": 8,
            "Description": "d",
            "ClientToken": "t",
            "Tags": [{"Key": "k", "Value": "v"}],
            "Timeout": 60,
        },
    ),
    (
        EBS,
        "PutSnapshotBlock",
        {
            "SnapshotId": "snap-0123456789abcdef0",
            "BlockIndex": 7,
            "BlockData": b"\x00\x01" * 8,
            "DataLength": 16,
            "Checksum": "abc=",
            "ChecksumAlgorithm": "SHA256",
            "Progress": 50,
        },
    ),
    (
        EBS,
        "CompleteSnapshot",
        {
            "SnapshotId": "snap-0123456789abcdef0",
            "ChangedBlocksCount": 3,
            "ChecksumAggregationMethod": "LINEAR",
        },
    ),
    (
        EBS,
        "ListSnapshotBlocks",
        {"SnapshotId": "snap-01", "MaxResults": 100, "StartingBlockIndex": 4, "NextToken": "abc="},
    ),
    (EBS, "ListChangedBlocks", {"SecondSnapshotId": "snap-02", "FirstSnapshotId": "snap-01"}),
    (EBS, "GetSnapshotBlock", {"SnapshotId": "snap-01", "BlockIndex": 0, "BlockToken": "a+/="}),
    (
        RBIN,
        "CreateRule",
        {
            "RetentionPeriod": {"RetentionPeriodValue": 7, "RetentionPeriodUnit": "DAYS"},
            "ResourceType": "EC2_IMAGE",
            "Description": "x",
            "ResourceTags": [{"ResourceTagKey": "a", "ResourceTagValue": "b"}],
        },
    ),
    (RBIN, "GetRule", {"Identifier": "abcdefghijk"}),
    (RBIN, "ListRules", {"ResourceType": "EBS_SNAPSHOT", "MaxResults": 5}),
    (RBIN, "DeleteRule", {"Identifier": "abcdefghijk"}),
]


@pytest.mark.parametrize(("codec", "operation", "params"), REQUESTS)
def test_botocore_request_parses_back(
    codec: RestJsonCodec, operation: str, params: dict[str, Any]
) -> None:
    assert _through_botocore(codec, operation, params) == params


def _parsed(codec: RestJsonCodec, operation: str, output: dict[str, Any]) -> dict[str, Any]:
    op = codec.model.operation_model(operation)
    encoded = codec.serialize(op, output)
    parser = botocore.parsers.create_parser("rest-json")
    body: Any = encoded.body
    if op.has_streaming_output:  # botocore hands its parser the raw stream then
        body = StreamingBody(io.BytesIO(encoded.body), len(encoded.body))
    got = parser.parse(
        {"status_code": encoded.status, "headers": encoded.headers, "body": body},
        op.output_shape,
    )
    got.pop("ResponseMetadata", None)
    if isinstance(got.get("BlockData"), StreamingBody):
        got["BlockData"] = got["BlockData"].read()
    return dict(got)


def test_outputs_parse_back_in_botocore() -> None:
    start = {
        "SnapshotId": "snap-01",
        "OwnerId": "123456789012",
        "Status": "pending",
        "StartTime": STAMP,
        "VolumeSize": 8,
        "BlockSize": 524288,
        "Tags": [{"Key": "k", "Value": "v"}],
        "Description": "d",
    }
    assert _parsed(EBS, "StartSnapshot", start) == start
    listed = {
        "Blocks": [{"BlockIndex": 1, "BlockToken": "tok="}],
        "ExpiryTime": STAMP,
        "VolumeSize": 8,
        "BlockSize": 524288,
        "NextToken": "n=",
    }
    assert _parsed(EBS, "ListSnapshotBlocks", listed) == listed
    block = {
        "BlockData": b"x" * 64,
        "DataLength": 64,
        "Checksum": "c=",
        "ChecksumAlgorithm": "SHA256",
    }
    assert _parsed(EBS, "GetSnapshotBlock", block) == block
    assert _parsed(EBS, "PutSnapshotBlock", {"Checksum": "c=", "ChecksumAlgorithm": "SHA256"}) == {
        "Checksum": "c=",
        "ChecksumAlgorithm": "SHA256",
    }
    status = EBS.serialize(EBS.model.operation_model("StartSnapshot"), start).status
    assert status == 201


def test_errors_parse_as_modelled_exceptions() -> None:
    assert EBS.error_status("ValidationException") == 400
    assert EBS.error_status("ResourceNotFoundException") == 404
    assert EBS.error_status("NoSuchThing") is None
    encoded = EBS.serialize_error(
        "ValidationException", "bad block", 400, {"Reason": "INVALID_BLOCK"}
    )
    parser = botocore.parsers.create_parser("rest-json")
    headers = {k.lower(): v for k, v in encoded.headers.items()}  # as HTTPHeaders would
    response = {"status_code": 400, "headers": headers, "body": encoded.body}
    got = parser.parse(response, None)
    assert got["Error"]["Code"] == "ValidationException"
    assert got["Error"]["Message"] == "bad block"
    modelled = parser.parse(response, EBS.model.shape_for("ValidationException"))
    assert modelled["Reason"] == "INVALID_BLOCK"


def test_bad_input_is_a_codec_error() -> None:
    from goldsmith.api.restjson import RestJsonError

    op = EBS.model.operation_model("StartSnapshot")
    with pytest.raises(RestJsonError):
        EBS.parse(op, {}, [], {}, b"{not json")
    with pytest.raises(RestJsonError):
        EBS.parse(op, {}, [], {}, b'{"VolumeSize": "eight"}')
    get = EBS.model.operation_model("GetSnapshotBlock")
    with pytest.raises(RestJsonError):
        EBS.parse(get, {"snapshotId": "snap-1", "blockIndex": "x"}, [], {}, b"")
    assert EBS.route("DELETE", "/snapshots", []) is None
    assert base64  # imported for readers: blobs in JSON are base64
