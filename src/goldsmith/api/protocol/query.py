"""EC2 Query request parsing: flat form parameters → the operation's input dict.

A request arrives as flat ``name=value`` pairs (``Filter.1.Name=owner-id``,
``Filter.1.Value.2=self``, ``DryRun=true``). :func:`build_tree` splits the names on dots into
a tree of nested dicts whose leaves are the values; a decoder compiled from the input shape
then walks that tree and returns a dict keyed by *member* names with typed values
(``{"Filters": [{"Name": "owner-id", "Values": [..., "self"]}], "DryRun": True}``).

Wire form, as botocore's ``EC2Serializer`` writes it: a member is named by
:func:`~goldsmith.api.protocol.model.query_name`; a list is ``Name.1``, ``Name.2``, … (the
list member's own name is *not* used, unlike the plain Query protocol); a structure's members
follow its name after a dot. Empty lists are not sent at all.

Everything a client can get wrong raises an ``Ec2Error``: unknown parameters
(``UnknownParameter``), missing required members (``MissingParameter``, naming the wire
parameter), values of the wrong type or outside an enum, and bad or absurd list indexes
(``InvalidParameterValue``). Limits keep a hostile parameter list from costing much: at most
:data:`MAX_LIST_ITEMS` items per list, indexes up to :data:`MAX_LIST_INDEX`, names of at
most :data:`MAX_NAME_PARTS` parts. The work is linear in the size of the form.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeAlias

from botocore.model import Shape

from goldsmith.api.protocol.model import query_name, unsupported
from goldsmith.service.errors import ClientError, error, invalid_parameter, missing_parameter

#: A parsed form: nested dicts keyed by name parts, with the values as leaves.
Node: TypeAlias = "str | dict[str, Node]"

MAX_LIST_ITEMS = 10_000
MAX_LIST_INDEX = 1_000_000
MAX_NAME_PARTS = 32
#: Longest value echoed back in an error message.
_MAX_SHOWN = 200

_INDEX = re.compile(r"[1-9][0-9]{0,6}", re.ASCII)
_INTEGER = re.compile(r"[+-]?[0-9]{1,20}", re.ASCII)
_FLOAT = re.compile(
    r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?|[+-]?Infinity|NaN", re.ASCII
)
_INT_RANGES = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_BOOLEANS = {"true": True, "false": False}


def build_tree(form: Mapping[str, str], skip: Callable[[str], bool]) -> dict[str, Node]:
    """Split dotted parameter names into a tree; names for which ``skip`` is true are left out.

    A name that is both a value and a prefix of other names (``A=1`` and ``A.B=2``) is
    rejected, as is a name with more than :data:`MAX_NAME_PARTS` parts.
    """
    root: dict[str, Node] = {}
    for name, value in form.items():
        if skip(name):
            continue
        parts = name.split(".")
        if len(parts) > MAX_NAME_PARTS:
            raise error("UnknownParameter", f"The parameter {_shown(name)} is not recognized")
        node = root
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if isinstance(child, str):
                raise _value_and_prefix(".".join(parts[: depth + 1]))
            node = child
        if parts[-1] in node:
            raise _value_and_prefix(name)
        node[parts[-1]] = value
    return root


class Decoder:
    """Turns one node of the parameter tree into a value of one shape."""

    def decode(self, node: Node, path: str) -> Any:
        """The value of ``node``, found at wire name ``path`` (used in error messages)."""
        raise NotImplementedError


class StructureDecoder(Decoder):
    """A structure: each key names a member by its wire name; required members must appear."""

    def __init__(self) -> None:
        # Filled in by compile_decoder after registration, so recursive shapes terminate.
        self.members: dict[str, tuple[str, Decoder]] = {}
        self.required: list[str] = []

    def decode(self, node: Node, path: str) -> dict[str, Any]:
        if isinstance(node, str):
            raise invalid_parameter(f"The parameter {path} needs sub-parameters, not a value.")
        result: dict[str, Any] = {}
        for wire, child in node.items():
            member = self.members.get(wire)
            child_path = f"{path}.{wire}" if path else wire
            if member is None:
                raise error(
                    "UnknownParameter", f"The parameter {_shown(child_path)} is not recognized"
                )
            result[member[0]] = member[1].decode(child, child_path)
        for wire in self.required:
            if wire not in node:
                raise missing_parameter(f"{path}.{wire}" if path else wire)
        return result


class ListDecoder(Decoder):
    """A list: keys are 1-based indexes, possibly with gaps; items are taken in index order."""

    def __init__(self, item: Decoder) -> None:
        self.item = item

    def decode(self, node: Node, path: str) -> list[Any]:
        if isinstance(node, str):
            if node == "":  # the plain Query protocol's spelling of an empty list
                return []
            raise invalid_parameter(f"The parameter {path} needs indexed sub-parameters.")
        if len(node) > MAX_LIST_ITEMS:
            raise invalid_parameter(f"The parameter {path} has more than {MAX_LIST_ITEMS} items.")
        indexed: list[tuple[int, Node]] = []
        for key, child in node.items():
            if not _INDEX.fullmatch(key) or int(key) > MAX_LIST_INDEX:
                raise invalid_parameter(
                    f"Invalid index ({_shown(key)}) in parameter {path}: "
                    f"expected an integer from 1 to {MAX_LIST_INDEX}."
                )
            indexed.append((int(key), child))
        indexed.sort(key=lambda pair: pair[0])
        return [self.item.decode(child, f"{path}.{index}") for index, child in indexed]


class ScalarDecoder(Decoder):
    """A scalar: a leaf converted by ``convert``, which returns None when the text is bad."""

    def __init__(self, convert: Callable[[str], Any], expected: str) -> None:
        self.convert = convert
        self.expected = expected

    def decode(self, node: Node, path: str) -> Any:
        if not isinstance(node, str):
            first = next(iter(node))
            raise error(
                "UnknownParameter", f"The parameter {_shown(f'{path}.{first}')} is not recognized"
            )
        value = self.convert(node)
        if value is None:
            raise invalid_parameter(
                f"Value ({_shown(node)}) for parameter {path} is invalid. {self.expected}"
            )
        return value


def compile_decoder(shape: Shape, cache: dict[str, Decoder]) -> Decoder:
    """The decoder for ``shape``, built once per shape name and kept in ``cache``."""
    cached = cache.get(shape.name)
    if cached is not None:
        return cached
    problem = unsupported(shape)
    if problem is not None:
        raise NotImplementedError(f"cannot parse {problem}")
    decoder: Decoder
    if shape.type_name == "structure":
        struct = StructureDecoder()
        cache[shape.name] = struct  # before the members: shapes may be recursive
        for name, member in shape.members.items():
            reason = unsupported(member)
            if reason is not None:
                raise NotImplementedError(f"cannot parse {reason}")
            struct.members[query_name(member, name)] = (name, compile_decoder(member, cache))
        struct.required = [query_name(shape.members[n], n) for n in shape.required_members]
        return struct
    if shape.type_name == "list":
        decoder = ListDecoder(compile_decoder(shape.member, cache))
    else:
        decoder = _scalar_decoder(shape)
    cache[shape.name] = decoder
    return decoder


def _scalar_decoder(shape: Shape) -> ScalarDecoder:
    kind = shape.type_name
    if kind == "string":
        enum: list[str] = shape.enum
        if not enum:
            return ScalarDecoder(lambda text: text, "")
        allowed = frozenset(enum)
        listed = ", ".join(enum) if len(enum) <= 20 else f"one of {len(enum)} known values"
        return ScalarDecoder(
            lambda text: text if text in allowed else None, f"Valid values: {listed}."
        )
    if kind in _INT_RANGES:
        low, high = _INT_RANGES[kind]
        return ScalarDecoder(lambda text: _to_int(text, low, high), f"Expected an {kind}.")
    converters: dict[str, tuple[Callable[[str], Any], str]] = {
        "boolean": (lambda text: _BOOLEANS.get(text.lower()), "Expected true or false."),
        "float": (_to_float, "Expected a number."),
        "double": (_to_float, "Expected a number."),
        "timestamp": (_to_datetime, "Expected an ISO 8601 timestamp."),
        "blob": (_to_bytes, "Expected base64-encoded data."),
    }
    if kind not in converters:
        raise NotImplementedError(f"cannot parse {kind} shape {shape.name}")
    return ScalarDecoder(*converters[kind])


def _to_int(text: str, low: int, high: int) -> int | None:
    if not _INTEGER.fullmatch(text):
        return None
    value = int(text)
    return value if low <= value <= high else None


def _to_float(text: str) -> float | None:
    return float(text) if _FLOAT.fullmatch(text) else None


def _to_datetime(text: str) -> datetime | None:
    if len(text) > 64:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    # A timestamp without an offset is UTC, as everywhere in EC2.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _to_bytes(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII text
        return None


def _shown(text: str) -> str:
    """``text`` shortened for an error message (the envelope escapes it)."""
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "…"


def _value_and_prefix(name: str) -> ClientError:
    return invalid_parameter(
        f"The parameter {_shown(name)} is given both a value and sub-parameters."
    )
