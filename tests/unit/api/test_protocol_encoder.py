"""The response encoder against a plain reference: the same bytes for any output.

``Ec2QueryCodec.serialize`` encodes dicts with functions generated per key order (and
falls back to a generic loop); the round trips through botocore show the XML reads back
right, these pin the exact bytes: member order as the dict gives it, None members left
out, escaping, scalar forms. The reference walks botocore's shapes directly, one value at a
time, with character-by-character escaping.
"""

from __future__ import annotations

import base64
import math
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

import pytest
from botocore.model import Shape
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goldsmith.api.protocol import Ec2QueryCodec
from goldsmith.api.protocol.model import ec2_service_model
from goldsmith.api.protocol.response import StructureEncoder

MODEL = ec2_service_model()
CODEC = Ec2QueryCodec()
OPERATIONS = [
    "DescribeImages",
    "DescribeImageAttribute",
    "DescribeInstances",
    "DescribeSnapshots",
    "DescribeTags",
    "DescribeVolumes",
    "RunInstances",
]
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------------------- reference


def _legal(ch: str) -> bool:
    return (
        ch in "\t\n\r"
        or "\x20" <= ch <= "\ud7ff"
        or "\ue000" <= ch <= "\ufffd"
        or ch >= "\U00010000"
    )


_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;"}


def ref_text(text: str) -> str:
    return "".join(_ENTITIES.get(ch, ch if _legal(ch) else "\ufffd") for ch in text)


def ref_scalar(kind: str, value: Any) -> str:
    if kind == "string":
        return ref_text(value)
    if kind == "boolean":
        return "true" if value else "false"
    if kind in ("integer", "long"):
        return str(value)
    if kind in ("float", "double"):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(float(value))
    if kind == "timestamp":
        utc: datetime = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    assert kind == "blob"
    text: str = base64.b64encode(value).decode()
    return text


def ref_members(shape: Shape, value: Any) -> str:
    parts = []
    for name, item in value.items():
        if item is not None:
            member = shape.members[name]
            parts.append(ref_element(member, member.serialization.get("name", name), item))
    return "".join(parts)


def ref_element(shape: Shape, tag: str, value: Any) -> str:
    if shape.type_name == "structure":
        inner = ref_members(shape, value)
    elif shape.type_name == "list":
        item_tag = shape.member.serialization.get("name", "member")
        inner = "".join(ref_element(shape.member, item_tag, v) for v in value)
    else:
        inner = ref_scalar(shape.type_name, value)
    return f"<{tag}>{inner}</{tag}>"


def reference(operation: str, output: Any) -> bytes:
    shape = MODEL.operation_model(operation).output_shape
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<{operation}Response xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
        f"<requestId>r</requestId>{ref_members(shape, output)}</{operation}Response>"
    ).encode()


# ---------------------------------------------------------------------------- outputs

# Any character at all (controls, surrogates, entities), biased towards the special ones.
TEXT = st.text(
    st.one_of(st.sampled_from("&<>\"'\r\n\t\x00\x1f\ud800\ufffe\U0001f600a"), st.characters()),
    max_size=6,
)
TIMESTAMPS = st.datetimes(
    min_value=datetime(1000, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from([None, UTC, timezone(timedelta(hours=-5, minutes=-30))]),
)
SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "string": TEXT,
    "boolean": st.booleans(),
    "integer": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(),
    "double": st.floats(),
    "timestamp": TIMESTAMPS,
    "blob": st.binary(max_size=8),
}


def output_strategy(shape: Shape, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values for ``shape``: members in any order, some None; lists or tuples."""
    if shape.type_name == "structure":
        if depth >= 4:
            return st.just({})
        members = {n: st.none() | output_strategy(m, depth + 1) for n, m in shape.members.items()}
        return st.fixed_dictionaries({}, optional=members).flatmap(
            lambda d: st.permutations(list(d.items())).map(dict)
        )
    if shape.type_name == "list":
        if depth >= 4:
            return st.just([])
        items = st.lists(output_strategy(shape.member, depth + 1), max_size=3)
        return items | items.map(tuple)
    return SCALARS[shape.type_name]


STRATEGIES = {
    name: output_strategy(MODEL.operation_model(name).output_shape) for name in OPERATIONS
}


# ---------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", OPERATIONS)
@SETTINGS
@given(data=st.data())
def test_serialize_writes_the_reference_bytes(name: str, data: st.DataObject) -> None:
    output = data.draw(STRATEGIES[name], label="output")
    expected = reference(name, output)
    assert CODEC.serialize(name, output, "r") == expected
    assert CODEC.serialize(name, output, "r") == expected  # the compiled order, reused


def test_other_mappings_encode_like_dicts() -> None:
    device = {"DeviceName": "/dev/sda1", "Ebs": MappingProxyType({"VolumeSize": 8})}
    image = MappingProxyType({"ImageId": "ami-1", "BlockDeviceMappings": (device,)})
    output = {"Images": [image]}
    assert CODEC.serialize("DescribeImages", output, "r") == reference("DescribeImages", output)


def test_orders_beyond_the_limit_take_the_generic_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(StructureEncoder, "MAX_ORDERS", 1)
    codec = Ec2QueryCodec()
    tags: list[dict[str, Any]] = [
        {"Key": "k<", "Value": "v\r"},
        {"Value": "v", "Key": "k", "ResourceId": None},
        {"ResourceType": "image", "Value": "\x00"},
    ]
    for tag in tags:
        output = {"Tags": [tag, tag]}
        assert codec.serialize("DescribeTags", output, "r") == reference("DescribeTags", output)


@pytest.mark.parametrize(
    ("good", "bad", "complaint"),
    [
        ({"KeyName": "k"}, {"KeyName": 7}, "cannot hold int"),
        ({"KeyName": "k"}, {"KeyName": b"k"}, "cannot hold bytes"),
        ({"Tags": []}, {"Tags": "k"}, "must be a list, not str"),
        ({"Tags": []}, {"Tags": [None]}, "items must not be None"),
        ({"Tags": []}, {"Tags": ["k"]}, "must be a mapping, not str"),
        ({"KeyName": "k"}, {"KeyName": "k", "Extra": 1}, "no member 'Extra'"),
    ],
)
def test_a_compiled_order_rejects_handler_bugs(
    good: dict[str, Any], bad: dict[str, Any], complaint: str
) -> None:
    """The same errors once an order is compiled (a good value of that order came first)."""
    CODEC.serialize("DescribeKeyPairs", {"KeyPairs": [good]}, "r")
    with pytest.raises(ValueError, match=complaint):
        CODEC.serialize("DescribeKeyPairs", {"KeyPairs": [bad]}, "r")


def test_scalar_type_checks_hold_in_compiled_code() -> None:
    volume = {"Size": 8, "Encrypted": False}
    CODEC.serialize("DescribeVolumes", {"Volumes": [volume]}, "r")
    cases = [
        ({"Size": True, "Encrypted": False}, "cannot hold bool"),
        ({"Size": 8, "Encrypted": 1}, "cannot hold int"),
        ({"Size": 8.0, "Encrypted": False}, "cannot hold float"),
    ]
    for bad, complaint in cases:
        with pytest.raises(ValueError, match=complaint):
            CODEC.serialize("DescribeVolumes", {"Volumes": [bad]}, "r")
