"""The EC2 Query codec: requests in, response and error XML out, all derived from the model.

:class:`Ec2QueryCodec` is the one object the API server needs for the wire format. It holds
botocore's EC2 service model and compiles, lazily and once per shape, a request decoder
(:mod:`.query`) and a response encoder (:mod:`.response`); no action has hand-written XML.
Compiled shapes are cached on the codec, so the first request of an operation pays a few
milliseconds and later ones only walk their data. A codec is safe to share between threads:
compiling happens under a lock (a structure's decoder is cached before its members are
filled in, to end recursion), and only finished per-operation entries are read without it.

Example::

    codec = Ec2QueryCodec()
    request = codec.parse({"Action": "DescribeKeyPairs", "Version": "2016-11-15",
                           "KeyName.1": "deployer"})
    # request.params == {"KeyNames": ["deployer"]}
    body = codec.serialize("DescribeKeyPairs", {"KeyPairs": []}, request_id="…")
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.model import ServiceModel

from goldsmith.api.protocol.model import ec2_service_model
from goldsmith.api.protocol.query import (
    Decoder,
    StructureDecoder,
    build_tree,
    compile_decoder,
)
from goldsmith.api.protocol.response import (
    Encoder,
    StructureEncoder,
    compile_encoder,
    escape,
)
from goldsmith.service.errors import error

_XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
#: Request parameters that belong to the transport or to authentication, not to the action.
_ENVELOPE_PARAMS = frozenset(
    {
        "Action",
        "Version",
        "AWSAccessKeyId",
        "Signature",
        "SignatureMethod",
        "SignatureVersion",
        "SecurityToken",
        "Timestamp",
        "Expires",
    }
)


@dataclass(frozen=True)
class ParsedRequest:
    """One decoded request.

    ``params`` is shaped like the operation's input shape: member names as in the model
    (``"Filters"``, ``"KeyNames"``, ``"DryRun"``), ints, bools, aware datetimes, bytes for
    blobs, lists and nested dicts; members not sent are absent.
    """

    action: str
    version: str | None
    params: dict[str, Any]


class Ec2QueryCodec:
    """Parses EC2 Query requests and serializes EC2 responses for every modelled operation."""

    def __init__(self, service_model: ServiceModel | None = None) -> None:
        self._model: ServiceModel = service_model or ec2_service_model()
        self._operations = frozenset(self._model.operation_names)
        self._lock = threading.Lock()
        # By shape name; touched only under the lock, while compiling.
        self._decoders: dict[str, Decoder] = {}
        self._encoders: dict[str, Encoder] = {}
        # By operation name; entries are complete when stored, so they are read lock-free.
        self._request_decoders: dict[str, StructureDecoder] = {}
        self._response_encoders: dict[str, StructureEncoder | None] = {}
        self._namespace = f"http://ec2.amazonaws.com/doc/{self.api_version}/"

    @property
    def api_version(self) -> str:
        """The model's API version (``2016-11-15``)."""
        return str(self._model.api_version)

    def operation_names(self) -> frozenset[str]:
        """Every operation the model declares (the server decides which it implements)."""
        return self._operations

    def parse(self, form: Mapping[str, str]) -> ParsedRequest:
        """Decode the form (or query-string) parameters of one request.

        ``form`` holds one decoded value per parameter name, including ``Action`` and
        ``Version``; authentication parameters (``X-Amz-*``, SigV2's ``Signature`` …) are
        ignored. Raises ``Ec2Error``: ``MissingAction``, ``InvalidAction``,
        ``UnknownParameter``, ``MissingParameter`` or ``InvalidParameterValue``.
        """
        action = form.get("Action")
        if not action:
            raise error("MissingAction", "The request must contain the parameter Action")
        if action not in self._operations:
            shown = action if len(action) <= 100 else action[:100] + "…"
            raise error("InvalidAction", f"The action {shown} is not valid for this web service.")
        version = form.get("Version")
        decoder = self._request_decoder(action)
        members = decoder.members

        def is_envelope(name: str) -> bool:
            if name in members:  # a real member always wins over the envelope rules
                return False
            return name in _ENVELOPE_PARAMS or name[:6].lower() == "x-amz-"

        tree = build_tree(form, is_envelope)
        return ParsedRequest(action=action, version=version, params=decoder.decode(tree, ""))

    def serialize(self, operation: str, output: Mapping[str, Any], request_id: str) -> bytes:
        """The response document for ``operation`` carrying ``output``.

        ``output`` is shaped like the operation's output shape (None members are left out).
        A key the shape lacks or a value of the wrong type raises ValueError: handler bug.
        Operations without an output shape must pass an empty mapping and answer
        ``<return>true</return>``, as EC2 does.
        """
        if operation not in self._operations:
            raise ValueError(f"unknown operation {operation!r}")
        out = [
            _XML_DECLARATION,
            f'<{operation}Response xmlns="{self._namespace}">',
            f"<requestId>{escape(request_id)}</requestId>",
        ]
        encoder = self._response_encoder(operation)
        if encoder is None:
            if output:
                raise ValueError(f"{operation} has no output members, got {sorted(output)}")
            out.append("<return>true</return>")
        else:
            encoder.encode_members(out, output)
        out.append(f"</{operation}Response>")
        return "".join(out).encode()

    def _request_decoder(self, action: str) -> StructureDecoder:
        decoder = self._request_decoders.get(action)
        if decoder is None:
            with self._lock:
                shape = self._model.operation_model(action).input_shape
                if shape is None:
                    decoder = StructureDecoder()
                else:
                    # Compile into a copy, so a failure leaves no half-built decoder behind.
                    shapes = dict(self._decoders)
                    compiled = compile_decoder(shape, shapes)
                    assert isinstance(compiled, StructureDecoder)  # input shapes are structures
                    decoder, self._decoders = compiled, shapes
                self._request_decoders[action] = decoder
        return decoder

    def _response_encoder(self, operation: str) -> StructureEncoder | None:
        if operation in self._response_encoders:
            return self._response_encoders[operation]
        with self._lock:
            shape = self._model.operation_model(operation).output_shape
            encoder = None
            if shape is not None:
                shapes = dict(self._encoders)  # as for decoders: all or nothing
                compiled = compile_encoder(shape, shapes)
                assert isinstance(compiled, StructureEncoder)  # output shapes are structures
                encoder, self._encoders = compiled, shapes
            self._response_encoders[operation] = encoder
        return encoder

    def serialize_error(self, code: str, message: str, request_id: str) -> bytes:
        """The EC2 error envelope (``<Response><Errors><Error>…``) for one error."""
        return (
            f"{_XML_DECLARATION}<Response><Errors><Error><Code>{escape(code)}</Code>"
            f"<Message>{escape(message)}</Message></Error></Errors>"
            f"<RequestID>{escape(request_id)}</RequestID></Response>"
        ).encode()
