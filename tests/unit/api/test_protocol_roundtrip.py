"""The codec against botocore itself, with values generated from the model's shapes.

Requests: botocore's ``EC2Serializer`` turns generated params into a form body (encoded on
the wire by botocore's own request preparation), and ``Ec2QueryCodec.parse`` must give the
params back. Responses: ``Ec2QueryCodec.serialize`` turns a generated output dict into XML,
and botocore's ``EC2QueryParser`` must read back the same dict.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import pytest
from botocore.awsrequest import create_request_object, prepare_request_dict
from botocore.model import OperationModel, Shape
from botocore.parsers import create_parser
from botocore.serialize import create_serializer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goldsmith.api.protocol import Ec2QueryCodec
from goldsmith.api.protocol.model import ec2_service_model

OPERATIONS = [
    # images
    "RegisterImage",
    "CreateImage",
    "CopyImage",
    "DeregisterImage",
    "DescribeImages",
    "DescribeImageAttribute",
    "ModifyImageAttribute",
    "ResetImageAttribute",
    "EnableImageDeprecation",
    "DisableImageDeprecation",
    "EnableImage",
    "DisableImage",
    "CancelImageLaunchPermission",
    "EnableImageBlockPublicAccess",
    "GetImageBlockPublicAccessState",
    # snapshots
    "CreateSnapshot",
    "CreateSnapshots",
    "CopySnapshot",
    "DeleteSnapshot",
    "DescribeSnapshots",
    "DescribeSnapshotAttribute",
    "ModifySnapshotAttribute",
    "ResetSnapshotAttribute",
    # volumes
    "CreateVolume",
    "DeleteVolume",
    "DescribeVolumes",
    "AttachVolume",
    "DetachVolume",
    # instances
    "RunInstances",
    "DescribeInstances",
    "StartInstances",
    "StopInstances",
    "RebootInstances",
    "TerminateInstances",
    "GetConsoleOutput",
    # key pairs, tags, regions
    "CreateKeyPair",
    "ImportKeyPair",
    "DescribeKeyPairs",
    "DeleteKeyPair",
    "CreateTags",
    "DeleteTags",
    "DescribeTags",
    "DescribeRegions",
    "DescribeAvailabilityZones",
]

#: Structures nested deeper than this get only their required members (requests) or
#: nothing (responses): RunInstances and DescribeInstances are otherwise enormous.
MAX_DEPTH = 5
MAX_LIST = 3

# Requests travel URL-encoded, so any character UTF-8 can encode (all but lone surrogates)
# must survive. Responses are XML 1.0, which cannot carry most
# control characters; the serializer replaces those (tested in test_protocol_codec.py).
REQUEST_TEXT = st.characters(codec="utf-8")
RESPONSE_TEXT = st.characters(exclude_categories=("Cs", "Cc", "Cn"), include_characters="\t\n\r")

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

MODEL = ec2_service_model()
CODEC = Ec2QueryCodec()


def operation(name: str) -> OperationModel:
    return MODEL.operation_model(name)


# ---------------------------------------------------------------------------- strategies


def _metadata_range(shape: Shape, low: int, high: int) -> tuple[int, int]:
    return max(low, shape.metadata.get("min", low)), min(high, shape.metadata.get("max", high))


def scalar_strategy(shape: Shape, text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    kind = shape.type_name
    if kind == "string":
        if shape.enum:
            return st.sampled_from(shape.enum)
        low, high = _metadata_range(shape, 0, 12)
        return st.text(text, min_size=low, max_size=max(low, high))
    if kind in ("integer", "long"):
        bits = 31 if kind == "integer" else 63
        low, high = _metadata_range(shape, -(2**bits), 2**bits - 1)
        return st.integers(low, high)
    if kind == "boolean":
        return st.booleans()
    if kind in ("float", "double"):
        return st.floats(
            min_value=shape.metadata.get("min"),
            max_value=shape.metadata.get("max"),
            allow_nan=False,
            allow_infinity=False,
        )
    if kind == "timestamp":
        # Years before 1000 are excluded: botocore writes them without four digits, which
        # is not ISO 8601. Requests carry microseconds, responses milliseconds (EC2's form).
        return st.datetimes(
            min_value=datetime(1000, 1, 1),
            max_value=datetime(2200, 1, 1),
            timezones=st.just(UTC),
        )
    if kind == "blob":
        return st.binary(max_size=16)
    raise AssertionError(f"no strategy for {kind} shape {shape.name}")


def request_strategy(
    shape: Shape, depth: int = 0, nonempty: bool = False
) -> st.SearchStrategy[Any]:
    """Valid params for ``shape``; ``nonempty`` for required members, which must reach the wire.

    botocore's EC2 serializer sends nothing for an empty list or structure, so a required
    one must have content; optional ones may be empty and are expected to vanish.
    """
    if shape.type_name == "structure":
        required = set(shape.required_members)
        fixed = {
            n: request_strategy(m, depth + 1, True)
            for n, m in shape.members.items()
            if n in required
        }
        optional = {}
        if depth < MAX_DEPTH:
            optional = {
                n: request_strategy(m, depth + 1)
                for n, m in shape.members.items()
                if n not in required
            }
        structure = st.fixed_dictionaries(fixed, optional=optional)
        return structure.filter(lambda d: bool(normalise_request(d))) if nonempty else structure
    if shape.type_name == "list":
        low, high = _metadata_range(
            shape, 1 if nonempty else 0, MAX_LIST if depth < MAX_DEPTH else 1
        )
        return st.lists(
            request_strategy(shape.member, depth + 1, nonempty),
            min_size=low,
            max_size=max(low, high),
        )
    return scalar_strategy(shape, REQUEST_TEXT)


def response_strategy(shape: Shape, depth: int = 0) -> st.SearchStrategy[Any]:
    """Output values for ``shape``: any subset of members, lists of up to MAX_LIST items."""
    if shape.type_name == "structure":
        if depth >= MAX_DEPTH:
            return st.just({})
        members = {n: response_strategy(m, depth + 1) for n, m in shape.members.items()}
        return st.fixed_dictionaries({}, optional=members)
    if shape.type_name == "list":
        if depth >= MAX_DEPTH:
            return st.just([])
        return st.lists(response_strategy(shape.member, depth + 1), max_size=MAX_LIST)
    if shape.type_name == "timestamp":
        return scalar_strategy(shape, RESPONSE_TEXT).map(
            lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000)
        )
    return scalar_strategy(shape, RESPONSE_TEXT)


def normalise_request(value: Any) -> Any:
    """``value`` as it survives the EC2 wire: empty lists and structures disappear."""
    if isinstance(value, dict):
        pairs = ((k, normalise_request(v)) for k, v in value.items())
        return {k: v for k, v in pairs if v not in ([], {})}
    if isinstance(value, list):
        items = (normalise_request(v) for v in value)
        return [v for v in items if v not in ([], {})]
    return value


# ---------------------------------------------------------------------------- helpers


def botocore_form(name: str, params: dict[str, Any]) -> dict[str, str]:
    """The form parameters botocore sends for ``params``, decoded as an HTTP server would."""
    request = create_serializer("ec2").serialize_to_request(params, operation(name))
    prepare_request_dict(request, endpoint_url="https://ec2.us-east-1.amazonaws.com")
    body = create_request_object(request).prepare().body
    text = body.decode() if isinstance(body, bytes) else body
    pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
    form = dict(pairs)
    assert len(form) == len(pairs)
    return form


def botocore_parse(name: str, xml: bytes) -> dict[str, Any]:
    response = {"body": xml, "headers": {}, "status_code": 200}
    parsed: dict[str, Any] = create_parser("ec2").parse(response, operation(name).output_shape)
    return parsed


def per_operation(
    build: Callable[[Shape], st.SearchStrategy[Any]], shape_of: str
) -> dict[str, Any]:
    strategies: dict[str, Any] = {}
    for name in OPERATIONS:
        shape = getattr(operation(name), shape_of)
        strategies[name] = build(shape) if shape is not None else st.just({})
    return strategies


REQUESTS = per_operation(request_strategy, "input_shape")
RESPONSES = per_operation(response_strategy, "output_shape")


# ---------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", OPERATIONS)
@SETTINGS
@given(data=st.data())
def test_parse_reads_what_botocore_sends(name: str, data: st.DataObject) -> None:
    params = data.draw(REQUESTS[name], label="params")
    form = botocore_form(name, params)

    parsed = CODEC.parse(form)

    assert parsed.action == name
    assert parsed.version == "2016-11-15"
    assert parsed.params == normalise_request(params)


@pytest.mark.parametrize("name", OPERATIONS)
@SETTINGS
@given(data=st.data())
def test_botocore_reads_what_serialize_writes(name: str, data: st.DataObject) -> None:
    output = data.draw(RESPONSES[name], label="output")

    parsed = botocore_parse(name, CODEC.serialize(name, output, request_id="req-1"))

    assert parsed.pop("ResponseMetadata")["RequestId"] == "req-1"
    assert parsed == output


ALL_OPERATIONS = sorted(set(MODEL.operation_names) - set(OPERATIONS))
BRIEFLY = settings(SETTINGS, max_examples=3)


def strategies_for(name: str) -> tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]:
    op = operation(name)
    request = request_strategy(op.input_shape) if op.input_shape is not None else st.just({})
    response = response_strategy(op.output_shape) if op.output_shape is not None else st.just({})
    return request, response


@pytest.mark.parametrize("name", ALL_OPERATIONS)
@BRIEFLY
@given(data=st.data())
def test_round_trips_for_the_rest_of_the_model(name: str, data: st.DataObject) -> None:
    """Every other operation too, with a few examples each: the codec knows no action."""
    request, response = strategies_for(name)
    params = data.draw(request, label="params")
    assert CODEC.parse(botocore_form(name, params)).params == normalise_request(params)
    output = data.draw(response, label="output")
    parsed = botocore_parse(name, CODEC.serialize(name, output, request_id="req-1"))
    parsed.pop("ResponseMetadata")
    assert parsed == output


def test_every_listed_operation_is_in_the_model() -> None:
    assert set(OPERATIONS) <= CODEC.operation_names()
    assert len(OPERATIONS) == len(set(OPERATIONS))
