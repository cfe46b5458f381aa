"""A REST-JSON codec derived from botocore's model of one service (EBS today, rbin next).

``RestJsonCodec("ebs")`` compiles, for every operation of the model, a route (HTTP method and
``requestUri`` with ``{label}``/``{label+}`` placeholders) and reads the members' locations:

* request → params: ``uri`` labels, ``querystring`` (lists repeat the name), ``header``,
  ``headers`` (prefix maps), and the body — the ``payload`` member's raw bytes (blob) or JSON
  (structure), else a JSON object holding every member without a location;
* output dict → response: the status (``responseCode``, default 200), ``header`` members,
  and the body — a blob payload as bytes (streamed by the caller), else JSON;
* errors: the modelled error shape's status, ``x-amzn-ErrorType`` and a JSON body with the
  shape's members (``Message``, ``Reason`` …), which botocore turns back into the exception.

Types on the wire (as botocore's ``RestJSONSerializer``/``RestJSONParser`` write and read
them): timestamps are epoch seconds in JSON and ISO 8601 in headers and query strings;
blobs in JSON are base64; booleans in headers and query strings are ``true``/``false``.
"""

from __future__ import annotations

import base64
import calendar
import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import botocore.session
from botocore.model import OperationModel, ServiceModel, Shape
from botocore.utils import parse_timestamp

JSON = "application/json"


class RestJsonError(Exception):
    """The request cannot be decoded against the model (answered as a validation error)."""


@functools.cache
def service_model(name: str) -> ServiceModel:
    """botocore's model of service ``name`` (loaded once per process)."""
    return botocore.session.get_session().get_service_model(name)


@dataclass(frozen=True)
class Route:
    """One operation's HTTP route."""

    operation: OperationModel
    method: str
    pattern: re.Pattern[str]
    labels: tuple[str, ...]
    literal_query: tuple[tuple[str, str], ...]
    specificity: tuple[int, int]


@dataclass(frozen=True)
class Response:
    """An encoded response: status, headers, and the body bytes."""

    status: int
    headers: dict[str, str]
    body: bytes


def _compile(op: OperationModel) -> Route:
    uri = str(op.http["requestUri"])
    path, _, query = uri.partition("?")
    labels: list[str] = []
    regex = ""
    for part in re.split(r"(\{[^}]+\})", path):
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            greedy = name.endswith("+")
            labels.append(name.rstrip("+"))
            regex += f"(?P<{name.rstrip('+')}>{'.+' if greedy else '[^/]+'})"
        else:
            regex += re.escape(part)
    literal = tuple(
        (k, v) for k, _, v in (item.partition("=") for item in query.split("&") if item)
    )
    literals = len(re.sub(r"\{[^}]+\}", "", path))
    return Route(
        op,
        str(op.http["method"]).upper(),
        re.compile(f"^{regex}/?$" if path != "/" else "^/$"),
        tuple(labels),
        literal,
        (literals, len(literal)),
    )


def _scalar(shape: Shape, text: str) -> Any:
    """A header/query/uri string → the member's Python value."""
    kind = shape.type_name
    try:
        if kind in ("integer", "long"):
            return int(text)
        if kind in ("float", "double"):
            return float(text)
        if kind == "boolean":
            if text.lower() not in ("true", "false"):
                raise ValueError(text)
            return text.lower() == "true"
        if kind == "timestamp":
            return parse_timestamp(text)
        if kind == "blob":
            return base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as exc:
        raise RestJsonError(f"invalid value for {shape.name}: {text[:64]!r}") from exc
    if kind == "string" and shape.serialization.get("jsonvalue"):
        return json.loads(base64.b64decode(text))
    return text


def _from_json(shape: Shape, value: Any) -> Any:
    kind = shape.type_name
    if value is None:
        return None
    if kind == "structure":
        if not isinstance(value, dict):
            raise RestJsonError(f"{shape.name} must be an object")
        out = {}
        for name, member in shape.members.items():
            key = member.serialization.get("name", name)
            if key in value:
                out[name] = _from_json(member, value[key])
        return out
    if kind == "list":
        if not isinstance(value, list):
            raise RestJsonError(f"{shape.name} must be a list")
        return [_from_json(shape.member, v) for v in value]
    if kind == "map":
        if not isinstance(value, dict):
            raise RestJsonError(f"{shape.name} must be an object")
        return {k: _from_json(shape.value, v) for k, v in value.items()}
    if kind == "timestamp":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        return parse_timestamp(str(value))
    if kind == "blob":
        try:
            return base64.b64decode(str(value), validate=True)
        except ValueError as exc:
            raise RestJsonError(f"{shape.name} is not valid base64") from exc
    if kind in ("integer", "long") and (isinstance(value, bool) or not isinstance(value, int)):
        raise RestJsonError(f"{shape.name} must be an integer")
    if kind == "boolean" and not isinstance(value, bool):
        raise RestJsonError(f"{shape.name} must be a boolean")
    if kind == "string" and not isinstance(value, str):
        raise RestJsonError(f"{shape.name} must be a string")
    return value


def _epoch(value: datetime) -> float | int:
    seconds = calendar.timegm(value.utctimetuple()) + value.microsecond / 1e6
    return int(seconds) if seconds == int(seconds) else round(seconds, 3)


def _to_json(shape: Shape, value: Any) -> Any:
    kind = shape.type_name
    if kind == "structure":
        return {
            member.serialization.get("name", name): _to_json(member, value[name])
            for name, member in shape.members.items()
            if value.get(name) is not None
        }
    if kind == "list":
        return [_to_json(shape.member, v) for v in value]
    if kind == "map":
        return {k: _to_json(shape.value, v) for k, v in value.items()}
    if kind == "timestamp":
        return _epoch(value) if isinstance(value, datetime) else value
    if kind == "blob":
        return base64.b64encode(value).decode()
    return value


def _header_text(shape: Shape, value: Any) -> str:
    kind = shape.type_name
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "timestamp":
        moment = value.astimezone(UTC) if isinstance(value, datetime) else value
        return moment.strftime("%a, %d %b %Y %H:%M:%S GMT")
    if kind == "blob":
        return base64.b64encode(value).decode()
    if kind == "string" and shape.serialization.get("jsonvalue"):
        return base64.b64encode(json.dumps(value).encode()).decode()
    return str(value)


class RestJsonCodec:
    """Routing, request parsing and response/error encoding for one REST-JSON service."""

    def __init__(self, service_name: str) -> None:
        self.model = service_model(service_name)
        if self.model.protocol != "rest-json":
            raise ValueError(f"{service_name} is not a rest-json service")
        routes = [_compile(self.model.operation_model(n)) for n in self.model.operation_names]
        # Most literal characters first, so /a/b beats /a/{x} for the same request.
        self.routes = sorted(routes, key=lambda r: r.specificity, reverse=True)
        #: first path segments of every route (``/snapshots`` for EBS), for the HTTP router.
        self.prefixes = sorted(
            {"/" + str(r.operation.http["requestUri"]).split("/")[1].split("?")[0] for r in routes}
        )

    # -- requests ---------------------------------------------------------------------------

    def route(
        self, method: str, path: str, query: Sequence[tuple[str, str]]
    ) -> tuple[OperationModel, dict[str, str]] | None:
        """The operation for ``method path`` and its raw (undecoded) uri labels, or None."""
        names = {k for k, _ in query}
        for route in self.routes:
            if route.method != method.upper():
                continue
            match = route.pattern.match(path)
            if match and all(k in names for k, _ in route.literal_query):
                return route.operation, match.groupdict()
        return None

    def parse(
        self,
        op: OperationModel,
        labels: Mapping[str, str],
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> dict[str, Any]:
        """The operation's input params from the request's parts (``RestJsonError`` if bad).

        ``headers`` is looked up case-insensitively (give a lower-cased mapping or
        Starlette's ``Headers``); required members are the handler's to check.
        """
        shape = op.input_shape
        params: dict[str, Any] = {}
        if shape is None:
            return params
        lowered = {k.lower(): v for k, v in headers.items()}
        body_members: dict[str, Shape] = {}
        payload = shape.serialization.get("payload")
        for name, member in shape.members.items():
            location = member.serialization.get("location")
            wire = member.serialization.get("name", name)
            if location == "uri":
                if wire in labels:
                    params[name] = _scalar(member, unquote(labels[wire]))
            elif location == "querystring":
                self._query_member(params, name, member, wire, query)
            elif location == "header":
                if wire.lower() in lowered:
                    params[name] = self._header_member(member, lowered[wire.lower()])
            elif location == "headers":
                prefix = wire.lower()
                found = {k[len(prefix) :]: v for k, v in lowered.items() if k.startswith(prefix)}
                if found:
                    params[name] = found
            elif name != payload:
                body_members[name] = member
        if payload is not None:
            member = shape.members[payload]
            if member.type_name in ("blob", "string"):
                if body or member.serialization.get("streaming"):
                    params[payload] = body if member.type_name == "blob" else body.decode()
            elif body:
                params[payload] = _from_json(member, self._json(body))
        elif body_members and body.strip():
            document = self._json(body)
            if not isinstance(document, dict):
                raise RestJsonError("the request body must be a JSON object")
            for name, member in body_members.items():
                wire = member.serialization.get("name", name)
                if wire in document:
                    params[name] = _from_json(member, document[wire])
        return params

    @staticmethod
    def _json(body: bytes) -> Any:
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RestJsonError(f"the request body is not valid JSON: {exc}") from exc

    @staticmethod
    def _query_member(
        params: dict[str, Any],
        name: str,
        member: Shape,
        wire: str,
        query: Sequence[tuple[str, str]],
    ) -> None:
        if member.type_name == "list":
            values = [v for k, v in query if k == wire]
            if values:
                params[name] = [_scalar(member.member, v) for v in values]
        elif member.type_name == "map":
            params[name] = {k: v for k, v in query}
        else:
            values = [v for k, v in query if k == wire]
            if values:
                params[name] = _scalar(member, values[-1])

    @staticmethod
    def _header_member(member: Shape, text: str) -> Any:
        if member.type_name == "list":
            return [_scalar(member.member, v.strip()) for v in text.split(",")]
        return _scalar(member, text)

    # -- responses --------------------------------------------------------------------------

    def serialize(self, op: OperationModel, output: Mapping[str, Any]) -> Response:
        """Encode the handler's output dict (``None`` members are left out)."""
        status = int(op.http.get("responseCode", 200))
        shape = op.output_shape
        headers: dict[str, str] = {}
        if shape is None:
            return Response(status, headers, b"")
        payload = shape.serialization.get("payload")
        document: dict[str, Any] = {}
        body = b""
        for name, member in shape.members.items():
            value = output.get(name)
            if value is None:
                continue
            location = member.serialization.get("location")
            wire = member.serialization.get("name", name)
            if location == "header":
                headers[wire] = _header_text(member, value)
            elif location == "headers":
                headers.update({wire + k: str(v) for k, v in value.items()})
            elif location == "statusCode":
                status = int(value)
            elif name == payload:
                if member.type_name == "blob":
                    body = bytes(value)
                    headers["Content-Type"] = "application/octet-stream"
                elif member.type_name == "string":
                    body = str(value).encode()
                else:
                    body = json.dumps(_to_json(member, value)).encode()
                    headers["Content-Type"] = JSON
            else:
                document[wire] = _to_json(member, value)
        if payload is None:
            body = json.dumps(document).encode()
            headers["Content-Type"] = JSON
        return Response(status, headers, body)

    def error_status(self, code: str) -> int | None:
        """The status the model gives error shape ``code`` (None if it is not modelled)."""
        try:
            shape = self.model.shape_for(code)
        except Exception:  # botocore raises NoShapeFoundError
            return None
        error = shape.metadata.get("error") if shape.metadata.get("exception") else None
        return int(error.get("httpStatusCode", 400)) if error else None

    def serialize_error(
        self, code: str, message: str, status: int, fields: Mapping[str, Any] | None = None
    ) -> Response:
        """An error response: ``x-amzn-ErrorType`` and ``{"Message": …, <fields>}``."""
        document: dict[str, Any] = {"Message": message}
        document.update({k: v for k, v in (fields or {}).items() if v is not None})
        headers = {"x-amzn-ErrorType": code, "Content-Type": JSON}
        return Response(status, headers, json.dumps(document).encode())
