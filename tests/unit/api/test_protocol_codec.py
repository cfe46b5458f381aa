"""Ec2QueryCodec: error cases, parsing details, the error envelope and serializer contracts."""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from botocore.model import ServiceModel
from botocore.parsers import create_parser

import goldsmith.api.protocol
from goldsmith.api.protocol import Ec2QueryCodec, ParsedRequest
from goldsmith.api.protocol.model import ec2_service_model
from goldsmith.service.errors import Ec2Error

CODEC = Ec2QueryCodec()
VERSION = {"Version": "2016-11-15"}


def parse(action: str, **params: str) -> dict[str, Any]:
    return CODEC.parse({"Action": action, **VERSION, **params}).params


def parse_form(form: dict[str, str]) -> dict[str, Any]:
    return CODEC.parse(form).params


def botocore_read(operation: str, body: bytes, status: int = 200) -> dict[str, Any]:
    shape = ec2_service_model().operation_model(operation).output_shape
    response = {"body": body, "headers": {}, "status_code": status}
    parsed: dict[str, Any] = create_parser("ec2").parse(response, shape)
    return parsed


# ---------------------------------------------------------------------------- interface


def test_public_names() -> None:
    assert goldsmith.api.protocol.__all__ == ["Ec2QueryCodec", "ParsedRequest"]


def test_default_model_is_loaded_once_and_describes_ec2() -> None:
    assert ec2_service_model() is ec2_service_model()
    assert CODEC.api_version == "2016-11-15"
    assert {"DescribeImages", "RunInstances", "CreateTags"} <= CODEC.operation_names()
    assert len(CODEC.operation_names()) > 500


def test_parse_returns_action_version_and_params() -> None:
    request = CODEC.parse({"Action": "DescribeKeyPairs", "KeyName.1": "deployer"})
    assert request == ParsedRequest("DescribeKeyPairs", None, {"KeyNames": ["deployer"]})


# ---------------------------------------------------------------------------- parse errors

ERROR_CASES: list[tuple[str, dict[str, str], str, str]] = [
    # (case, form without Version, code, text the message must contain)
    ("missing action", {}, "MissingAction", "Action"),
    ("empty action", {"Action": ""}, "MissingAction", "Action"),
    (
        "unknown action",
        {"Action": "DescribeUnicorns"},
        "InvalidAction",
        "The action DescribeUnicorns is not valid for this web service.",
    ),
    (
        "missing required",
        {"Action": "CreateTags", "Tag.1.Key": "k"},
        "MissingParameter",
        "The request must contain the parameter ResourceId",
    ),
    (
        "missing required in a nested structure",
        {"Action": "CreateSnapshots", "InstanceSpecification.ExcludeBootVolume": "true"},
        "MissingParameter",
        "InstanceSpecification.InstanceId",
    ),
    (
        "bad integer",
        {"Action": "RunInstances", "MinCount": "one", "MaxCount": "1"},
        "InvalidParameterValue",
        "Value (one) for parameter MinCount is invalid",
    ),
    (
        "integer out of range",
        {"Action": "RunInstances", "MinCount": "1", "MaxCount": "4294967296"},
        "InvalidParameterValue",
        "parameter MaxCount",
    ),
    (
        "integer with underscores",
        {"Action": "RunInstances", "MinCount": "1_0", "MaxCount": "1"},
        "InvalidParameterValue",
        "parameter MinCount",
    ),
    (
        "bad boolean",
        {"Action": "DescribeImages", "DryRun": "yes"},
        "InvalidParameterValue",
        "Value (yes) for parameter DryRun is invalid",
    ),
    (
        "bad enum",
        {"Action": "DescribeImageAttribute", "ImageId": "ami-1", "Attribute": "colour"},
        "InvalidParameterValue",
        "Value (colour) for parameter Attribute is invalid",
    ),
    (
        "bad timestamp",
        {"Action": "EnableImageDeprecation", "ImageId": "ami-1", "DeprecateAt": "next week"},
        "InvalidParameterValue",
        "parameter DeprecateAt",
    ),
    (
        "bad base64 blob",
        {"Action": "ImportKeyPair", "KeyName": "k", "PublicKeyMaterial": "not base64!"},
        "InvalidParameterValue",
        "parameter PublicKeyMaterial",
    ),
    (
        "non-ASCII blob",
        {"Action": "ImportKeyPair", "KeyName": "k", "PublicKeyMaterial": "é"},
        "InvalidParameterValue",
        "parameter PublicKeyMaterial",
    ),
    (
        "unknown parameter",
        {"Action": "DescribeImages", "Colour": "red"},
        "UnknownParameter",
        "The parameter Colour is not recognized",
    ),
    (
        "member name instead of wire name",
        {"Action": "DescribeImages", "ImageIds.1": "ami-1"},
        "UnknownParameter",
        "ImageIds",
    ),
    (
        "unknown nested parameter",
        {"Action": "DescribeImages", "Filter.1.Colour": "red"},
        "UnknownParameter",
        "Filter.1.Colour",
    ),
    (
        "sub-parameter of a scalar",
        {"Action": "DescribeImages", "DryRun.1": "true"},
        "UnknownParameter",
        "DryRun.1",
    ),
    (
        "value for a structure",
        {"Action": "CreateSnapshots", "InstanceSpecification": "i-1"},
        "InvalidParameterValue",
        "InstanceSpecification",
    ),
    (
        "value for a list",
        {"Action": "DescribeImages", "ImageId": "ami-1"},
        "InvalidParameterValue",
        "ImageId",
    ),
    (
        "value and sub-parameters",
        {"Action": "DescribeImages", "Filter.1": "x", "Filter.1.Name": "name"},
        "InvalidParameterValue",
        "Filter.1",
    ),
    (
        "huge index",
        {"Action": "DescribeImages", "ImageId.1000001": "ami-1"},
        "InvalidParameterValue",
        "ImageId",
    ),
    (
        "non-numeric index",
        {"Action": "DescribeImages", "Filter.first.Name": "name"},
        "InvalidParameterValue",
        "Invalid index (first) in parameter Filter",
    ),
    ("zero index", {"Action": "DescribeImages", "ImageId.0": "a"}, "InvalidParameterValue", "(0)"),
    (
        "negative index",
        {"Action": "DescribeImages", "ImageId.-1": "a"},
        "InvalidParameterValue",
        "(-1)",
    ),
    (
        "leading zero index",
        {"Action": "DescribeImages", "ImageId.01": "a"},
        "InvalidParameterValue",
        "(01)",
    ),
    (
        "non-ASCII digit index",
        {"Action": "DescribeImages", "ImageId.١": "a"},
        "InvalidParameterValue",
        "ImageId",
    ),
    (
        "empty index",
        {"Action": "DescribeImages", "Filter..Name": "n"},
        "InvalidParameterValue",
        "()",
    ),
    (
        "too deep a name",
        {"Action": "DescribeImages", "Filter" + ".1" * 40: "x"},
        "UnknownParameter",
        "is not recognized",
    ),
]


@pytest.mark.parametrize(
    ("form", "code", "text"), [case[1:] for case in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_parse_rejects(form: dict[str, str], code: str, text: str) -> None:
    with pytest.raises(Ec2Error) as caught:
        CODEC.parse({**form, **VERSION})
    assert caught.value.code == code
    assert caught.value.status == 400
    assert text in caught.value.message


def test_too_many_list_items_are_rejected_quickly() -> None:
    form = {"Action": "DescribeImages", **{f"ImageId.{i}": "ami-1" for i in range(1, 10_002)}}
    started = time.perf_counter()
    with pytest.raises(Ec2Error) as caught:
        CODEC.parse(form)
    assert caught.value.code == "InvalidParameterValue"
    assert "more than 10000 items" in caught.value.message
    assert time.perf_counter() - started < 1.0


def test_huge_values_are_not_echoed_in_full() -> None:
    with pytest.raises(Ec2Error) as caught:
        parse("DescribeImages", DryRun="x" * 100_000)
    assert len(caught.value.message) < 500


# ---------------------------------------------------------------------------- parse details


def test_list_indexes_may_have_gaps_and_sort_numerically() -> None:
    params = parse("DescribeKeyPairs", **{"KeyName.10": "c", "KeyName.2": "b", "KeyName.1": "a"})
    assert params == {"KeyNames": ["a", "b", "c"]}


def test_nested_lists_and_structures() -> None:
    params = parse(
        "DescribeImages",
        **{
            "Filter.1.Name": "owner-id",
            "Filter.1.Value.2": "self",
            "Filter.1.Value.1": "123456789012",
            "Filter.2.Name": "name",
            "Owner.1": "amazon",
        },
    )
    assert params == {
        "Filters": [
            {"Name": "owner-id", "Values": ["123456789012", "self"]},
            {"Name": "name"},
        ],
        "Owners": ["amazon"],
    }


def test_wire_names_follow_query_name_then_location_name() -> None:
    params = parse(
        "ModifyImageAttribute",
        ImageId="ami-1",
        **{
            "LaunchPermission.Add.1.UserId": "111122223333",
            "LaunchPermission.Remove.1.Group": "all",
        },
    )
    assert params["LaunchPermission"] == {
        "Add": [{"UserId": "111122223333"}],
        "Remove": [{"Group": "all"}],
    }
    params = parse(
        "RunInstances",
        MinCount="1",
        MaxCount="2",
        **{
            "BlockDeviceMapping.1.Ebs.SnapshotId": "snap-1",
            "TagSpecification.1.Tag.1.Key": "Name",
        },
    )
    assert params == {
        "MinCount": 1,
        "MaxCount": 2,
        "BlockDeviceMappings": [{"Ebs": {"SnapshotId": "snap-1"}}],
        "TagSpecifications": [{"Tags": [{"Key": "Name"}]}],
    }


def test_empty_value_for_a_list_is_an_empty_list() -> None:
    assert parse("DescribeKeyPairs", KeyName="") == {"KeyNames": []}


@pytest.mark.parametrize(
    ("text", "expected"), [("true", True), ("TRUE", True), ("False", False), ("false", False)]
)
def test_booleans_ignore_case(text: str, expected: bool) -> None:
    assert parse("DescribeImages", DryRun=text) == {"DryRun": expected}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-23T10:47:03Z", datetime(2026, 11, 23, 10, 47, 3, tzinfo=UTC)),
        ("2026-11-23T10:47:03.250Z", datetime(2026, 11, 23, 10, 47, 3, 250_000, tzinfo=UTC)),
        ("2026-11-23T10:47:03", datetime(2026, 11, 23, 10, 47, 3, tzinfo=UTC)),
        ("2026-11-23T12:47:03+02:00", datetime(2026, 11, 23, 10, 47, 3, tzinfo=UTC)),
    ],
)
def test_timestamps_are_aware(text: str, expected: datetime) -> None:
    value = parse("EnableImageDeprecation", ImageId="ami-1", DeprecateAt=text)["DeprecateAt"]
    assert value == expected
    assert value.tzinfo is not None


def test_blobs_are_base64_decoded() -> None:
    params = parse("ImportKeyPair", KeyName="k", PublicKeyMaterial="c3NoLXJzYSBB")
    assert params["PublicKeyMaterial"] == b"ssh-rsa A"


def test_integers_may_carry_a_sign() -> None:
    assert parse("RunInstances", MinCount="+1", MaxCount="-1") == {"MinCount": 1, "MaxCount": -1}


def test_authentication_parameters_are_ignored() -> None:
    form = {
        "Action": "DescribeRegions",
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": "AKID/20261123/us-east-1/ec2/aws4_request",
        "X-Amz-Date": "20261123T104703Z",
        "X-Amz-SignedHeaders": "host",
        "X-Amz-Signature": "abc",
        "X-Amz-Security-Token": "tok",
        "AWSAccessKeyId": "AKID",
        "Signature": "sig",
        "SignatureMethod": "HmacSHA256",
        "SignatureVersion": "2",
        "Timestamp": "2026-11-23T10:47:03Z",
    }
    assert parse_form(form) == {}


def test_any_string_survives() -> None:
    text = "\x00\ud800 <&> \r\n ☃ \U0001f600"
    assert parse("DescribeKeyPairs", **{"KeyName.1": text}) == {"KeyNames": [text]}


def test_parse_of_a_large_request_is_fast() -> None:
    form = {"Action": "CreateTags", "ResourceId.1": "ami-1"}
    for i in range(1, 1001):
        form[f"Tag.{i}.Key"] = f"key-{i}"
        form[f"Tag.{i}.Value"] = f"value-{i}"
    CODEC.parse(form)  # compile the shapes
    started = time.perf_counter()
    params = CODEC.parse(form).params
    elapsed = time.perf_counter() - started
    assert len(params["Tags"]) == 1000
    assert params["Tags"][999] == {"Key": "key-1000", "Value": "value-1000"}
    assert elapsed < 0.1  # a few ms in practice; the bound only catches pathologies


# ---------------------------------------------------------------------------- serialize


def test_response_document_shape() -> None:
    body = CODEC.serialize("DescribeKeyPairs", {"KeyPairs": [{"KeyName": "k"}]}, "req-9")
    assert body == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<DescribeKeyPairsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
        b"<requestId>req-9</requestId>"
        b"<keySet><item><keyName>k</keyName></item></keySet>"
        b"</DescribeKeyPairsResponse>"
    )


def test_operation_without_output_answers_return_true() -> None:
    body = CODEC.serialize("CreateTags", {}, "req-1")
    assert b"<requestId>req-1</requestId><return>true</return></CreateTagsResponse>" in body
    assert botocore_read("CreateTags", body)["ResponseMetadata"]["RequestId"] == "req-1"


def test_scalars_are_written_as_ec2_does() -> None:
    created = datetime(2026, 11, 23, 12, 47, 3, 123_999, tzinfo=timezone(timedelta(hours=2)))
    output = {
        "Volumes": [
            {"Size": 8, "Encrypted": False, "CreateTime": created, "MultiAttachEnabled": True}
        ]
    }
    body = CODEC.serialize("DescribeVolumes", output, "r").decode()
    assert "<size>8</size>" in body
    assert "<encrypted>false</encrypted>" in body
    assert "<multiAttachEnabled>true</multiAttachEnabled>" in body
    assert "<createTime>2026-11-23T10:47:03.123Z</createTime>" in body


def test_naive_datetimes_are_utc() -> None:
    output = {"Volumes": [{"CreateTime": datetime(2026, 11, 23, 10, 47, 3)}]}
    body = CODEC.serialize("DescribeVolumes", output, "r")
    assert b"<createTime>2026-11-23T10:47:03.000Z</createTime>" in body


def test_none_members_are_left_out() -> None:
    body = CODEC.serialize(
        "DescribeKeyPairs", {"KeyPairs": [{"KeyName": "k", "KeyFingerprint": None}]}, "r"
    )
    assert b"keyFingerprint" not in body


def test_text_is_escaped_and_unrepresentable_characters_replaced() -> None:
    value = "a\x00b\x1f<&>\"'\r\n\tc\ud800\ufffe"
    body = CODEC.serialize("DescribeTags", {"Tags": [{"Value": value}]}, "r")
    ET.fromstring(body)  # well-formed
    tags = botocore_read("DescribeTags", body)["Tags"]
    assert tags == [{"Value": "a\ufffdb\ufffd<&>\"'\r\n\tc\ufffd\ufffd"}]


@pytest.mark.parametrize(
    ("operation", "output", "complaint"),
    [
        ("DescribeKeyPairs", {"KeyPair": []}, "no member 'KeyPair'"),
        ("DescribeKeyPairs", {"KeyPairs": [{"keyName": "k"}]}, "no member 'keyName'"),
        ("DescribeKeyPairs", {"KeyPairs": [{"KeyName": 7}]}, "cannot hold int"),
        ("DescribeKeyPairs", {"KeyPairs": "k"}, "must be a list"),
        ("DescribeKeyPairs", {"KeyPairs": [None]}, "must not be None"),
        ("DescribeKeyPairs", {"KeyPairs": ["k"]}, "must be a mapping"),
        ("DescribeVolumes", {"Volumes": [{"Size": True}]}, "cannot hold bool"),
        ("DescribeVolumes", {"Volumes": [{"Encrypted": "true"}]}, "cannot hold str"),
        ("DescribeVolumes", {"Volumes": [{"CreateTime": "2026-01-01"}]}, "cannot hold str"),
        ("CreateTags", {"Return": True}, "no output members"),
        ("DescribeUnicorns", {}, "unknown operation"),
    ],
)
def test_serialize_rejects_handler_bugs(
    operation: str, output: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        CODEC.serialize(operation, output, "r")


def test_serialize_of_a_large_response_is_fast() -> None:
    tags = [
        {"Key": f"key-{i}", "Value": f"value <{i}>", "ResourceId": "ami-1", "ResourceType": "image"}
        for i in range(1000)
    ]
    CODEC.serialize("DescribeTags", {"Tags": tags[:1]}, "r")  # compile the shapes
    started = time.perf_counter()
    body = CODEC.serialize("DescribeTags", {"Tags": tags}, "r")
    elapsed = time.perf_counter() - started
    assert botocore_read("DescribeTags", body)["Tags"] == tags
    assert elapsed < 0.1  # a few ms in practice; the bound only catches pathologies


# ---------------------------------------------------------------------------- errors


def test_error_envelope_is_what_ec2_sends() -> None:
    body = CODEC.serialize_error(
        "InvalidAMIID.NotFound", "The image id 'ami-1' does not exist", "r-1"
    )
    assert body == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b"<Response><Errors><Error><Code>InvalidAMIID.NotFound</Code>"
        b"<Message>The image id 'ami-1' does not exist</Message></Error></Errors>"
        b"<RequestID>r-1</RequestID></Response>"
    )


@pytest.mark.parametrize("message", ["plain", 'with <xml> & "quotes"', "control \x01 char", ""])
def test_botocore_reads_the_error_envelope(message: str) -> None:
    body = CODEC.serialize_error("InvalidParameterValue", message, "req-7")
    parsed = botocore_read("DescribeImages", body, status=400)
    assert parsed["Error"]["Code"] == "InvalidParameterValue"
    assert parsed["Error"]["Message"] == (message.replace("\x01", "\ufffd") or None)
    assert parsed["ResponseMetadata"]["RequestId"] == "req-7"


# ---------------------------------------------------------------------------- other models

MINI_MODEL = {
    "metadata": {
        "apiVersion": "2000-01-01",
        "protocol": "ec2",
        "endpointPrefix": "mini",
        "serviceId": "Mini",
        "signatureVersion": "v4",
    },
    "operations": {
        "Measure": {
            "name": "Measure",
            "input": {"shape": "MeasureRequest"},
            "output": {"shape": "MeasureResult"},
        },
        "Label": {
            "name": "Label",
            "input": {"shape": "LabelRequest"},
            "output": {"shape": "LabelRequest"},
        },
    },
    "shapes": {
        "MeasureRequest": {
            "type": "structure",
            "members": {"Ratio": {"shape": "Double"}, "Weight": {"shape": "Float"}},
        },
        "MeasureResult": {
            "type": "structure",
            "members": {"Ratio": {"shape": "Double", "locationName": "ratio"}},
        },
        "LabelRequest": {
            "type": "structure",
            "members": {"Ratio": {"shape": "Double"}, "Labels": {"shape": "Labels"}},
        },
        "Labels": {"type": "map", "key": {"shape": "Float"}, "value": {"shape": "Float"}},
        "Double": {"type": "double"},
        "Float": {"type": "float"},
    },
}


def test_another_model_and_floating_point_members() -> None:
    codec = Ec2QueryCodec(ServiceModel(MINI_MODEL, service_name="mini"))
    assert codec.api_version == "2000-01-01"
    assert codec.operation_names() == frozenset({"Measure", "Label"})
    params = codec.parse({"Action": "Measure", "Ratio": "1.5e3", "Weight": "-0.25"}).params
    assert params == {"Ratio": 1500.0, "Weight": -0.25}
    with pytest.raises(Ec2Error, match="parameter Ratio"):
        codec.parse({"Action": "Measure", "Ratio": "1,5"})
    body = codec.serialize("Measure", {"Ratio": 0.1}, "r")
    assert b'xmlns="http://ec2.amazonaws.com/doc/2000-01-01/"' in body
    assert b"<ratio>0.1</ratio>" in body


def test_shapes_ec2_does_not_have_are_refused_every_time() -> None:
    codec = Ec2QueryCodec(ServiceModel(MINI_MODEL, service_name="mini"))
    for _ in range(2):  # a failed compile must not leave a half-built decoder behind
        with pytest.raises(NotImplementedError, match="map shape Labels"):
            codec.parse({"Action": "Label", "Ratio": "1"})
        with pytest.raises(NotImplementedError, match="map shape Labels"):
            codec.serialize("Label", {"Ratio": 1.0}, "r")
    assert codec.parse({"Action": "Measure", "Ratio": "1"}).params == {"Ratio": 1.0}


def test_concurrent_first_use_sees_complete_decoders() -> None:
    codec = Ec2QueryCodec()
    form = {"Action": "RunInstances", "MinCount": "1", "MaxCount": "1", "Placement.Tenancy": "host"}
    barrier = threading.Barrier(8)

    def work() -> dict[str, Any]:
        barrier.wait()
        return codec.parse(form).params

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: work(), range(8)))
    assert results == [{"MinCount": 1, "MaxCount": 1, "Placement": {"Tenancy": "host"}}] * 8


def test_every_operation_in_the_model_compiles() -> None:
    codec = Ec2QueryCodec()
    for name in sorted(codec.operation_names()):
        try:
            codec.parse({"Action": name})
        except Ec2Error as exc:  # only required members may be missing from an empty request
            assert exc.code == "MissingParameter", (name, exc)
        assert codec.serialize(name, {}, "r").endswith(f"</{name}Response>".encode())
