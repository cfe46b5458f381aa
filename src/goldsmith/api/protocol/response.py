"""EC2 response XML: an operation's output dict → the bytes botocore's ``EC2QueryParser`` reads.

An encoder compiled from the output shape appends XML text to a list of parts (one
``"".join`` at the end is much faster than building an element tree). Wire form:

- a structure member is an element named by
  :func:`~goldsmith.api.protocol.model.xml_name`; members that are None are left out;
- a list is its element wrapping one element per item, named by the list member's
  ``locationName`` (``item``): ``<tagSet><item>…</item></tagSet>``;
- booleans are ``true``/``false``, timestamps ISO 8601 UTC with milliseconds
  (``2026-11-23T10:47:03.000Z``; naive datetimes are taken as UTC), blobs base64, numbers in
  decimal.

Text is escaped for XML 1.0; characters XML 1.0 cannot carry at all (most C0 controls, lone
surrogates, U+FFFE/U+FFFF) are replaced by U+FFFD, so any ``str`` gives well-formed output.

Output dicts come from our own handlers, so a key the shape does not have, or a value of the
wrong type, is a programming error: :class:`ValueError`, not an EC2 error.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from botocore.model import Shape

from goldsmith.api.protocol.model import item_name, unsupported, xml_name

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def escape(text: str) -> str:
    """``text`` as XML character data (also safe inside a double-quoted attribute)."""
    if _NOT_XML.search(text):
        text = _NOT_XML.sub("\ufffd", text)
    # \r must be a character reference: a parser turns a literal \r into \n.
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("\r", "&#13;")
    )


class Encoder:
    """Appends one value of one shape, as the element ``tag``, to ``out``."""

    def encode(self, out: list[str], tag: str, value: Any) -> None:
        """Append ``<tag>…</tag>`` for ``value``; raise ValueError if it does not fit."""
        raise NotImplementedError


class StructureEncoder(Encoder):
    """A structure: members in the order the value gives them; None members left out."""

    def __init__(self, shape_name: str) -> None:
        self.shape_name = shape_name
        # Filled in by compile_encoder after registration, so recursive shapes terminate.
        self.members: dict[str, tuple[str, Encoder]] = {}

    def encode(self, out: list[str], tag: str, value: Any) -> None:
        out.append(f"<{tag}>")
        self.encode_members(out, value)
        out.append(f"</{tag}>")

    def encode_members(self, out: list[str], value: Any) -> None:
        """Append the member elements of ``value`` without an enclosing element."""
        if not isinstance(value, Mapping):
            raise ValueError(f"{self.shape_name} must be a mapping, not {type(value).__name__}")
        members = self.members
        for key, item in value.items():
            member = members.get(key)
            if member is None:
                raise ValueError(f"{self.shape_name} has no member {key!r}")
            if item is not None:
                member[1].encode(out, member[0], item)


class ListEncoder(Encoder):
    """A list: the list element wrapping one element per item."""

    def __init__(self, shape_name: str, item_tag: str, item: Encoder) -> None:
        self.shape_name = shape_name
        self.item_tag = item_tag
        self.item = item

    def encode(self, out: list[str], tag: str, value: Any) -> None:
        if not isinstance(value, Sequence) or isinstance(value, str | bytes | bytearray):
            raise ValueError(f"{self.shape_name} must be a list, not {type(value).__name__}")
        out.append(f"<{tag}>")
        item_tag, encode = self.item_tag, self.item.encode
        for element in value:
            if element is None:
                raise ValueError(f"{self.shape_name} items must not be None")
            encode(out, item_tag, element)
        out.append(f"</{tag}>")


class ScalarEncoder(Encoder):
    """A scalar: ``convert`` returns its text (already escaped) or raises ValueError."""

    def __init__(self, convert: Callable[[Any], str]) -> None:
        self.convert = convert

    def encode(self, out: list[str], tag: str, value: Any) -> None:
        out.append(f"<{tag}>{self.convert(value)}</{tag}>")


def compile_encoder(shape: Shape, cache: dict[str, Encoder]) -> Encoder:
    """The encoder for ``shape``, built once per shape name and kept in ``cache``."""
    cached = cache.get(shape.name)
    if cached is not None:
        return cached
    problem = unsupported(shape)
    if problem is not None:
        raise NotImplementedError(f"cannot serialize {problem}")
    encoder: Encoder
    if shape.type_name == "structure":
        struct = StructureEncoder(shape.name)
        cache[shape.name] = struct  # before the members: shapes may be recursive
        for name, member in shape.members.items():
            reason = unsupported(member)
            if reason is not None:
                raise NotImplementedError(f"cannot serialize {reason}")
            struct.members[name] = (xml_name(member, name), compile_encoder(member, cache))
        return struct
    if shape.type_name == "list":
        encoder = ListEncoder(shape.name, item_name(shape), compile_encoder(shape.member, cache))
    elif shape.type_name in _SCALARS:
        encoder = ScalarEncoder(_checked(shape.name, *_SCALARS[shape.type_name]))
    else:
        raise NotImplementedError(f"cannot serialize {shape.type_name} shape {shape.name}")
    cache[shape.name] = encoder
    return encoder


def format_timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with milliseconds, as EC2 writes it; a naive datetime is taken as UTC."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}."
        f"{value.microsecond // 1000:03d}Z"
    )


def _format_float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(float(value))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: type name → (accepts the Python value?, its escaped text)
_SCALARS: dict[str, tuple[Callable[[Any], bool], Callable[[Any], str]]] = {
    "string": (lambda v: isinstance(v, str), escape),
    "boolean": (lambda v: isinstance(v, bool), lambda v: "true" if v else "false"),
    "integer": (_is_int, str),
    "long": (_is_int, str),
    "float": (lambda v: _is_int(v) or isinstance(v, float), _format_float),
    "double": (lambda v: _is_int(v) or isinstance(v, float), _format_float),
    "timestamp": (lambda v: isinstance(v, datetime), format_timestamp),
    "blob": (
        lambda v: isinstance(v, bytes | bytearray | memoryview),
        lambda v: base64.b64encode(v).decode("ascii"),
    ),
}


def _checked(
    shape_name: str, accepts: Callable[[Any], bool], convert: Callable[[Any], str]
) -> Callable[[Any], str]:
    def checked(value: Any) -> str:
        if not accepts(value):
            raise ValueError(f"{shape_name} cannot hold {type(value).__name__} {value!r:.80}")
        return convert(value)

    return checked
