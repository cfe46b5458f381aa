"""EC2 response XML: an operation's output dict → the bytes botocore's ``EC2QueryParser`` reads.

An encoder compiled from the output shape appends XML text to a list of parts (one
``"".join`` at the end is much faster than building an element tree). A structure given as
a plain dict is encoded by Python source generated for that dict's key order (tags as
constants, scalars inline, no per-member lookup): a thousand images cost a few ms. Wire form:

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
# Anything escape() changes; most text has none of it and is returned as it is.
_SPECIAL = re.compile('[&<>"\r]|[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]')
# The same for ASCII text (str.isascii is O(1)), a superset (\t, \n): searched 2-3x faster.
_ASCII_SPECIAL = re.compile('[&<>"\x00-\x1f]')

#: Appends one value, as an element whose tag is already bound, to the output parts.
Put = Callable[[list[str], Any], None]
#: A structure member, bound: (str, bool or int when the member is a scalar of that kind,
#: else None; open tag; close tag; put).
_Member = tuple[type | None, str, str, Put]


def escape(text: str) -> str:
    """``text`` as XML character data (also safe inside a double-quoted attribute)."""
    if text.isascii():
        if _ASCII_SPECIAL.search(text) is None:
            return text
    elif _SPECIAL.search(text) is None:
        return text
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
    """Appends one value of one shape, as the element ``tag``, to ``out``.

    :meth:`bind` gives the same thing specialised for one tag (open and close text made
    once): structures keep one bound function per member, which is what makes large
    outputs (a thousand images) cheap to encode.
    """

    def encode(self, out: list[str], tag: str, value: Any) -> None:
        """Append ``<tag>…</tag>`` for ``value``; raise ValueError if it does not fit."""
        self.bind(tag)(out, value)

    def bind(self, tag: str) -> Put:
        """A function appending ``<tag>…</tag>`` for a value (ValueError if it does not fit)."""
        raise NotImplementedError


class StructureEncoder(Encoder):
    """A structure: members in the order the value gives them; None members left out.

    A plain ``dict`` is encoded by a function generated for its exact key order (see
    :func:`_specialise`): handlers build their dicts from literals, so one output shape
    sees few orders and each is compiled once. Anything else (another Mapping, a key the
    shape lacks, more than :data:`MAX_ORDERS` orders) takes :meth:`encode_generic`, which
    writes the same bytes and raises the same errors.
    """

    #: Key orders compiled per structure; more (a handler building keys dynamically)
    #: fall back to the generic loop rather than grow without bound.
    MAX_ORDERS = 64

    def __init__(self, shape_name: str) -> None:
        self.shape_name = shape_name
        # Filled in by compile_encoder after registration, so recursive shapes terminate.
        self.members: dict[str, tuple[str, Encoder]] = {}
        # Bound on first use (after members are complete), for the same reason.
        self._bound: dict[str, _Member] | None = None
        # Key order → its generated encoder (None: that order takes the generic path).
        self._orders: dict[tuple[str, ...], Put | None] = {}

    def bind(self, tag: str) -> Put:
        open_tag, close_tag = f"<{tag}>", f"</{tag}>"
        encode_members = self.encode_members

        def put(out: list[str], value: Any) -> None:
            out.append(open_tag)
            encode_members(out, value)
            out.append(close_tag)

        return put

    def _bind_members(self) -> dict[str, _Member]:
        bound = {}
        for name, (tag, encoder) in self.members.items():
            fast = encoder.fast if isinstance(encoder, ScalarEncoder) else None
            bound[name] = (fast, f"<{tag}>", f"</{tag}>", encoder.bind(tag))
        self._bound = bound
        return bound

    def encode_members(self, out: list[str], value: Any) -> None:
        """Append the member elements of ``value`` without an enclosing element."""
        if type(value) is dict:
            order = tuple(value)
            try:
                encode = self._orders[order]
            except KeyError:
                encode = self._specialise(order)
            if encode is not None:
                encode(out, value)
                return
        self.encode_generic(out, value)

    def _specialise(self, order: tuple[str, ...]) -> Put | None:
        if len(self._orders) >= self.MAX_ORDERS:
            return None
        if any(key not in self.members for key in order):
            return None  # the generic path raises; not cached, as it is a handler bug
        encode = _specialise(self.shape_name, [self.members[key] for key in order])
        self._orders[order] = encode
        return encode

    def encode_generic(self, out: list[str], value: Any) -> None:
        """:meth:`encode_members` by one loop over the members, for any Mapping."""
        if type(value) is not dict and not isinstance(value, Mapping):
            raise ValueError(f"{self.shape_name} must be a mapping, not {type(value).__name__}")
        get = (self._bound or self._bind_members()).get
        append, special = out.append, _ASCII_SPECIAL.search
        for key, item in value.items():
            member = get(key)
            if member is None:
                raise ValueError(f"{self.shape_name} has no member {key!r}")
            if item is None:
                continue
            # Plain scalars are most members: encoded here, without a call per member.
            kind = member[0]
            plain = type(item) is kind  # (a variable: no type narrowing of item to object)
            if plain:
                if kind is str:
                    text = item if item.isascii() and special(item) is None else escape(item)
                elif kind is bool:
                    text = "true" if item else "false"
                else:
                    text = str(item)
                append(f"{member[1]}{text}{member[2]}")
            else:
                member[3](out, item)


# ---------------------------------------------------------------- generated structure encoders

# Tags are written into generated f-strings; anything unusual is encoded by a call instead.
_PLAIN_TAG = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")


def _specialise(shape_name: str, members: Sequence[tuple[str, Encoder]]) -> Put:
    """A function encoding dicts whose keys are exactly ``members``' names, in that order.

    Generated Python source: the values are unpacked at once, None members skipped with
    one test, plain scalars written inline with their tags as constants, nested structures
    and list items encoded by direct calls. Values of an unexpected type go through the
    same checked conversions and bound encoders as the generic path, so errors match.
    """
    scope: dict[str, Any] = {"search": _ASCII_SPECIAL.search, "escape": escape}
    lines = ["def encode(out, value):", "    append = out.append"]
    if members:
        names = ", ".join(f"v{i}" for i in range(len(members)))
        lines.append(f"    {names}, = value.values()")
    for i, (tag, encoder) in enumerate(members):
        lines.append(f"    if v{i} is not None:")
        lines += _value_source(f"v{i}", f"m{i}", tag, encoder, scope, "        ")
    source = "\n".join(lines) + "\n"
    exec(compile(source, f"<encoder for {shape_name}>", "exec"), scope)
    encode: Put = scope["encode"]
    return encode


def _value_source(
    var: str, name: str, tag: str, encoder: Encoder, scope: dict[str, Any], indent: str
) -> list[str]:
    """Source appending ``<tag>…</tag>`` for the non-None value in ``var``.

    ``name`` prefixes the objects this code needs, which are placed in ``scope``.
    """
    if _PLAIN_TAG.match(tag) is None:
        scope[f"{name}_put"] = encoder.bind(tag)
        return [f"{indent}{name}_put(out, {var})"]
    if isinstance(encoder, ScalarEncoder):
        scope[f"{name}_convert"] = encoder.convert
        checked = f'{indent}append(f"<{tag}>{{{name}_convert({var})}}</{tag}>")'
        if encoder.fast is str:
            text = f"{var} if {var}.isascii() and search({var}) is None else escape({var})"
        elif encoder.fast is bool:
            text = f"'true' if {var} else 'false'"
        elif encoder.fast is int:
            text = var  # format(int) is str(int)
        else:
            return [checked]
        scope[f"{name}_fast"] = encoder.fast
        return [
            f"{indent}if type({var}) is {name}_fast:",
            f'{indent}    append(f"<{tag}>{{{text}}}</{tag}>")',
            f"{indent}else:",
            "    " + checked,
        ]
    if isinstance(encoder, StructureEncoder):
        # encode_members' dispatch inlined (structures in lists are most of the calls):
        # a known key order goes straight to its generated function.
        scope[f"{name}_members"] = encoder.encode_members
        scope[f"{name}_order"] = encoder._orders.get
        return [
            f"{indent}append('<{tag}>')",
            f"{indent}{name}_f = {name}_order(tuple({var})) if type({var}) is dict else None",
            f"{indent}if {name}_f is None:",
            f"{indent}    {name}_members(out, {var})",
            f"{indent}else:",
            f"{indent}    {name}_f(out, {var})",
            f"{indent}append('</{tag}>')",
        ]
    if isinstance(encoder, ListEncoder):
        # Lists and tuples inline; other sequences and wrong types via the bound encoder.
        scope[f"{name}_put"] = encoder.bind(tag)
        scope[f"{name}_none"] = f"{encoder.shape_name} items must not be None"
        item = f"{name}i"
        return [
            f"{indent}if type({var}) is list or type({var}) is tuple:",
            f"{indent}    append('<{tag}>')",
            f"{indent}    for {item} in {var}:",
            f"{indent}        if {item} is None:",
            f"{indent}            raise ValueError({name}_none)",
            *_value_source(item, item, encoder.item_tag, encoder.item, scope, indent + "        "),
            f"{indent}    append('</{tag}>')",
            f"{indent}else:",
            f"{indent}    {name}_put(out, {var})",
        ]
    scope[f"{name}_put"] = encoder.bind(tag)
    return [f"{indent}{name}_put(out, {var})"]


class ListEncoder(Encoder):
    """A list: the list element wrapping one element per item."""

    def __init__(self, shape_name: str, item_tag: str, item: Encoder) -> None:
        self.shape_name = shape_name
        self.item_tag = item_tag
        self.item = item
        self._put_item: Put | None = None  # bound on first use (recursive shapes)

    def bind(self, tag: str) -> Put:
        open_tag, close_tag = f"<{tag}>", f"</{tag}>"
        shape_name = self.shape_name

        def put(out: list[str], value: Any) -> None:
            kind = type(value)
            if (kind is not list and kind is not tuple) and (
                not isinstance(value, Sequence) or isinstance(value, str | bytes | bytearray)
            ):
                raise ValueError(f"{shape_name} must be a list, not {kind.__name__}")
            put_item = self._put_item
            if put_item is None:
                put_item = self._put_item = self.item.bind(self.item_tag)
            out.append(open_tag)
            for element in value:
                if element is None:
                    raise ValueError(f"{shape_name} items must not be None")
                put_item(out, element)
            out.append(close_tag)

        return put


class ScalarEncoder(Encoder):
    """A scalar: ``convert`` returns its text (already escaped) or raises ValueError.

    ``fast`` (optional) names the one Python type whose values skip the check (``str`` for
    strings) and ``fast_convert`` converts them: the common case costs one type test.
    """

    def __init__(
        self,
        convert: Callable[[Any], str],
        fast: type | None = None,
        fast_convert: Callable[[Any], str] | None = None,
    ) -> None:
        self.convert = convert
        self.fast = fast
        self.fast_convert = fast_convert or convert

    def bind(self, tag: str) -> Put:
        open_tag, close_tag = f"<{tag}>", f"</{tag}>"
        convert, fast, fast_convert = self.convert, self.fast, self.fast_convert

        def put(out: list[str], value: Any) -> None:
            text = fast_convert(value) if type(value) is fast else convert(value)
            out.append(f"{open_tag}{text}{close_tag}")

        return put


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
        accepts, convert = _SCALARS[shape.type_name]
        fast = _FAST.get(shape.type_name)
        encoder = ScalarEncoder(_checked(shape.name, accepts, convert), fast, convert)
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


#: type name → the Python type whose values need no check (exactly that type, no subclass).
_FAST: dict[str, type] = {"string": str, "boolean": bool, "integer": int, "long": int}


def _checked(
    shape_name: str, accepts: Callable[[Any], bool], convert: Callable[[Any], str]
) -> Callable[[Any], str]:
    def checked(value: Any) -> str:
        if not accepts(value):
            raise ValueError(f"{shape_name} cannot hold {type(value).__name__} {value!r:.80}")
        return convert(value)

    return checked
