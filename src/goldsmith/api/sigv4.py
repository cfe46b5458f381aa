"""AWS Signature Version 4 verification: the API's front door.

Every API request (the EC2 Query API, later the EBS direct API) passes through
:func:`verify_request`, which returns the authenticated :class:`Caller` or raises an
:class:`~goldsmith.service.errors.Ec2Error` -- and nothing else, whatever the input.

Two forms are accepted, as AWS does:

* the ``Authorization`` header, ``AWS4-HMAC-SHA256 Credential=AKID/YYYYMMDD/region/service/
  aws4_request, SignedHeaders=a;b, Signature=hex`` with ``X-Amz-Date`` (or ``Date``);
* the presigned query string (``X-Amz-Algorithm``, ``X-Amz-Credential``, ``X-Amz-Date``,
  ``X-Amz-Expires``, ``X-Amz-SignedHeaders``, ``X-Amz-Signature``), as botocore's
  ``SigV4QueryAuth`` writes it (for instance the ``PresignedUrl`` of CopySnapshot).

The canonical request, string to sign and signature are botocore's own (``SigV4Auth``),
fed with the client's ``SignedHeaders`` list instead of "every header": a request signed by
botocore therefore verifies by construction. Two liberties, both for clients that are not
botocore: if the raw query string is not already in canonical percent-encoding, the
spec's decode-and-re-encode form is tried as well; and the payload hash is the
``X-Amz-Content-SHA256`` header when present (checked against the body unless it is
``UNSIGNED-PAYLOAD``), else ``sha256(body)`` -- which is what botocore signs in both forms.

Errors follow EC2 for service ``"ec2"`` and AWS's generic codes for other services:

==============================================  =========================  ====================
failure                                         ec2                        other services
==============================================  =========================  ====================
no credentials at all                           MissingParameter (400)     MissingAuthenti-
                                                                           cationToken
malformed header or query, unsupported          IncompleteSignature (400)  IncompleteSignature
algorithm, Signature Version 2, streaming body
date outside ``max_skew``, presigned expired    RequestExpired (400)       RequestExpired
unknown or inactive access key                  AuthFailure (401)          InvalidClientTokenId
                                                                           (403)
wrong signature; body, URL or a signed header   AuthFailure (401)          SignatureDoesNot-
tampered; scope date, service, terminator or                               Match (403)
region wrong; X-Amz-Security-Token present
==============================================  =========================  ====================

A region that ``allowed_regions`` refuses is answered the way EC2 answers a region the
account has not opted in to: AuthFailure, here with the reason appended. Secrets never appear
in a message; client text echoed in one is clipped and escaped to printable ASCII (safe in
XML); signatures are compared with :func:`hmac.compare_digest`.

The caller should build :class:`IncomingRequest` from the raw request: the path exactly as
sent (ASGI ``raw_path``, not the decoded ``path``) and the headers with every value (a
Starlette ``Headers`` object is fine; ``dict(headers)`` drops repeated headers).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from hashlib import sha256
from typing import Any, Protocol
from urllib.parse import SplitResult, unquote, unquote_plus, urlsplit

from botocore.auth import SIGV4_TIMESTAMP, UNSIGNED_PAYLOAD, SigV4Auth
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials

from goldsmith.service.errors import Ec2Error, error

__all__ = [
    "AUTH_FAILURE_MESSAGE",
    "Caller",
    "IncomingRequest",
    "KeyLookup",
    "verify_request",
]

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
#: EC2's message for every credential it cannot validate.
AUTH_FAILURE_MESSAGE = "AWS was not able to validate the provided access credentials"
#: AWS caps presigned URLs at seven days.
MAX_EXPIRES = 7 * 24 * 3600

_AMZ_DATE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_QUERY_AUTH_PARAMS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
)
_SIGV2_MARKERS = frozenset({"SignatureVersion", "SignatureMethod", "AWSAccessKeyId"})


@dataclass(frozen=True)
class IncomingRequest:
    """An HTTP request as the server received it.

    ``url`` is the full URL as the client addressed it (scheme and host from the Host
    header) with the path and the raw query string exactly as sent; ``headers`` may be any
    mapping (names compared case-insensitively; a mapping whose ``items()`` yields a name
    more than once, like Starlette's ``Headers``, gives that header several values).
    """

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Caller:
    """Who signed the request, and for which region and service (the credential scope)."""

    access_key_id: str
    account_id: str
    region: str
    service: str


class KeyLookup(Protocol):
    """Where access keys are found."""

    def lookup(self, access_key_id: str) -> tuple[str, str] | None:
        """``(secret_access_key, account_id)`` for an active key, else ``None``."""
        ...


@dataclass(frozen=True, slots=True)
class _Claim:
    """What the client asserts: the parsed signature parameters of either form."""

    presigned: bool
    access_key_id: str
    scope_date: str
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signature: str
    timestamp: str  # the SIGV4_TIMESTAMP that the string to sign carries
    when: datetime
    expires: int  # presigned only; 0 for the header form
    query: str  # the raw query string the signature covers
    security_token: bool


def verify_request(
    req: IncomingRequest,
    keys: KeyLookup,
    *,
    service: str,
    now: datetime | None = None,
    max_skew: timedelta = timedelta(minutes=15),
    allowed_regions: Callable[[str], bool] | None = None,
) -> Caller:
    """Authenticate ``req`` as a SigV4 request for ``service``; return who signed it.

    Raises ``Ec2Error`` (see the module's table) for every failure; exceptions from
    ``keys.lookup`` and ``allowed_regions`` (the server's own collaborators) pass through.
    ``now`` defaults to the current time; a naive ``now`` is taken as UTC.
    """
    current = _utc(now) if now is not None else datetime.now(UTC)
    try:
        headers = _lower_headers(req.headers)
        parts = urlsplit(req.url)
        claim = _parse_claim(parts, headers, req.body, service)
        _check_time(claim, current, max_skew)
        _check_scope(claim, service)
        payload_hash = _payload_hash(req.body, headers, service)
    except Ec2Error:
        raise
    except Exception:  # any input we did not foresee: never a 500, never a leak
        raise error("IncompleteSignature", _NOT_CONFORMING) from None
    if allowed_regions is not None and not allowed_regions(claim.region):
        raise _mismatch(
            service, f"Credential should be scoped to a valid region, not '{_shown(claim.region)}'."
        )
    found = keys.lookup(claim.access_key_id)
    if found is None:
        raise _unknown_key(service)
    secret, account_id = found
    if claim.security_token:
        raise _mismatch(
            service, "Temporary credentials (X-Amz-Security-Token) are not supported here."
        )
    try:
        good = _signature_matches(req.method, parts, headers, claim, secret, payload_hash)
    except Exception:  # the client cannot have signed what we cannot even canonicalise
        good = False
    if not good:
        raise _mismatch(service)
    return Caller(claim.access_key_id, account_id, claim.region, claim.service)


# --- parsing ---------------------------------------------------------------------------------

_NOT_CONFORMING = "The request signature does not conform to AWS standards."


def _parse_claim(
    parts: SplitResult, headers: Mapping[str, list[str]], body: bytes, service: str
) -> _Claim:
    """Find the signature parameters (header or presigned query), or say why there are none."""
    pairs = _raw_pairs(parts.query)
    query_auth = any(unquote(k) == "X-Amz-Algorithm" for k, _ in pairs)
    authorization = headers.get("authorization")
    if authorization is not None and query_auth:
        raise error(
            "IncompleteSignature",
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the "
            "Authorization header should be specified.",
        )
    if authorization is not None:
        return _parse_header_claim(",".join(authorization), headers, parts.query)
    if query_auth:
        return _parse_query_claim(pairs, headers)
    if _looks_like_sigv2(pairs, headers, body):
        raise error(
            "IncompleteSignature",
            "AWS Signature Version 2 is not supported; sign requests with Signature Version 4 "
            f"({ALGORITHM}).",
        )
    if service == "ec2":
        raise error("MissingParameter", "The request must contain the parameter AWSAccessKeyId")
    raise error("MissingAuthenticationToken", "Request is missing Authentication Token")


def _parse_header_claim(value: str, headers: Mapping[str, list[str]], query: str) -> _Claim:
    pieces = value.split(None, 1)  # any whitespace may follow the algorithm
    algorithm = pieces[0] if pieces else ""
    rest = pieces[1] if len(pieces) > 1 else ""
    if algorithm != ALGORITHM:
        raise _unsupported_algorithm(algorithm)
    params: dict[str, str] = {}
    for raw_item in rest.split(","):
        item = raw_item.strip()
        if not item:
            continue
        name, eq, val = item.partition("=")
        if not eq:
            raise error(
                "IncompleteSignature",
                f"'{_shown(name)}' not a valid key=value pair (missing equal-sign) in "
                "Authorization header.",
            )
        if name in params:
            raise error(
                "IncompleteSignature", f"Duplicate '{_shown(name)}' in Authorization header."
            )
        params[name] = val.strip()
    missing = [
        f"Authorization header requires '{n}' parameter."
        for n in ("Credential", "Signature", "SignedHeaders")
        if not params.get(n)
    ]
    date_values = headers.get("x-amz-date") or headers.get("date")
    if not date_values:
        missing.append(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    if missing or date_values is None:
        raise error("IncompleteSignature", " ".join(missing))
    if "x-amz-date" in headers:
        timestamp, when = _parse_amz_date(date_values[-1])
    else:
        timestamp, when = _parse_http_date(date_values[-1])
    return _claim(
        presigned=False,
        credential=params["Credential"],
        signed_headers=params["SignedHeaders"],
        signature=params["Signature"],
        timestamp=timestamp,
        when=when,
        expires=0,
        query=query,
        security_token="x-amz-security-token" in headers,
    )


def _parse_query_claim(pairs: list[tuple[str, str]], headers: Mapping[str, list[str]]) -> _Claim:
    found: dict[str, str] = {}
    kept: list[str] = []  # the raw pairs the signature covers: all but X-Amz-Signature
    for raw_key, raw_value in pairs:
        key = unquote(raw_key)
        if key in _QUERY_AUTH_PARAMS:
            if key in found:
                raise error("IncompleteSignature", f"Duplicate query parameter '{key}'.")
            found[key] = unquote(raw_value)
        if key != "X-Amz-Signature":
            kept.append(f"{raw_key}={raw_value}")
    if any(not found.get(k) for k in _QUERY_AUTH_PARAMS):
        raise error(
            "IncompleteSignature",
            f"AWS query-string parameters must include {_names(_QUERY_AUTH_PARAMS)}. "
            "Re-examine the query-string parameters.",
        )
    if found["X-Amz-Algorithm"] != ALGORITHM:
        raise _unsupported_algorithm(found["X-Amz-Algorithm"])
    expires_text = found["X-Amz-Expires"]
    if not (expires_text.isascii() and expires_text.isdigit()) or len(expires_text) > 7:
        raise error("IncompleteSignature", "X-Amz-Expires should be a number of seconds.")
    expires = int(expires_text)
    if not 0 < expires <= MAX_EXPIRES:
        raise error(
            "IncompleteSignature",
            f"X-Amz-Expires must be between 1 and {MAX_EXPIRES} seconds (one week).",
        )
    timestamp, when = _parse_amz_date(found["X-Amz-Date"])
    query_names = {unquote(k) for k, _ in pairs}
    return _claim(
        presigned=True,
        credential=found["X-Amz-Credential"],
        signed_headers=found["X-Amz-SignedHeaders"],
        signature=found["X-Amz-Signature"],
        timestamp=timestamp,
        when=when,
        expires=expires,
        query="&".join(kept),
        security_token="X-Amz-Security-Token" in query_names or "x-amz-security-token" in headers,
    )


def _claim(
    *,
    presigned: bool,
    credential: str,
    signed_headers: str,
    signature: str,
    timestamp: str,
    when: datetime,
    expires: int,
    query: str,
    security_token: bool,
) -> _Claim:
    scope = credential.split("/")
    if len(scope) != 5 or not all(scope):
        raise error(
            "IncompleteSignature",
            "Credential must have exactly 5 non-empty slash-delimited elements, e.g. "
            f"keyid/date/region/service/term, got '{_shown(credential)}'",
        )
    names = tuple(n.strip().lower() for n in signed_headers.split(";"))
    if not all(names):
        raise error("IncompleteSignature", f"Malformed SignedHeaders '{_shown(signed_headers)}'.")
    if "host" not in names:
        raise error(
            "IncompleteSignature", "'Host' must be a 'SignedHeader' in the AWS Authorization."
        )
    return _Claim(
        presigned=presigned,
        access_key_id=scope[0],
        scope_date=scope[1],
        region=scope[2],
        service=scope[3],
        terminator=scope[4],
        signed_headers=names,
        signature=signature,
        timestamp=timestamp,
        when=when,
        expires=expires,
        query=query,
        security_token=security_token,
    )


def _parse_amz_date(text: str) -> tuple[str, datetime]:
    if not _AMZ_DATE.fullmatch(text):
        raise _bad_date(text)
    try:  # by hand: strptime is a tenth of the whole verification's cost
        when = datetime(
            int(text[0:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[9:11]),
            int(text[11:13]),
            int(text[13:15]),
            tzinfo=UTC,
        )
    except ValueError:
        raise _bad_date(text) from None
    return text, when


def _parse_http_date(text: str) -> tuple[str, datetime]:
    """A ``Date`` header (RFC 1123); botocore signs its SIGV4_TIMESTAMP rendering."""
    try:
        when = _utc(parsedate_to_datetime(text))
    except (TypeError, ValueError, IndexError, OverflowError):
        raise _bad_date(text) from None
    return when.strftime(SIGV4_TIMESTAMP), when


def _raw_pairs(query: str) -> list[tuple[str, str]]:
    """``key=value`` pairs of a raw query string, still percent-encoded (as botocore splits)."""
    if not query:
        return []
    pairs = []
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        pairs.append((key, value))
    return pairs


def _lower_headers(headers: Mapping[str, str]) -> dict[str, list[str]]:
    """Header values by lower-cased name; a repeated name keeps all its values in order."""
    lowered: dict[str, list[str]] = {}
    for name, value in headers.items():
        lowered.setdefault(name.lower(), []).append(value)
    return lowered


def _looks_like_sigv2(
    pairs: list[tuple[str, str]], headers: Mapping[str, list[str]], body: bytes
) -> bool:
    """Signature Version 2 puts AWSAccessKeyId, Signature* in the query or the form body."""
    names = {unquote_plus(k) for k, _ in pairs}
    content_type = ",".join(headers.get("content-type", ())).lower()
    if "application/x-www-form-urlencoded" in content_type:
        text = body.decode("utf-8", "replace")
        names.update(unquote_plus(p.partition("=")[0]) for p in text.split("&"))
    return bool(names & _SIGV2_MARKERS)


# --- checks ----------------------------------------------------------------------------------


def _check_time(claim: _Claim, now: datetime, max_skew: timedelta) -> None:
    stamp = claim.timestamp
    server = _stamp(now)
    if claim.when > now + max_skew:
        raise error(
            "RequestExpired",
            f"Request is not yet valid: signature date {stamp} is later than "
            f"{_stamp(now + max_skew)} (server time {server} + {_span(max_skew)}).",
        )
    if claim.presigned:
        deadline = claim.when + timedelta(seconds=claim.expires)
        if now > deadline:
            raise error(
                "RequestExpired",
                f"Request has expired: the presigned URL signed at {stamp} for "
                f"{claim.expires} seconds expired at {_stamp(deadline)} (server time {server}).",
            )
    elif claim.when < now - max_skew:
        raise error(
            "RequestExpired",
            f"Request has expired: signature date {stamp} is earlier than "
            f"{_stamp(now - max_skew)} (server time {server} - {_span(max_skew)}).",
        )


def _check_scope(claim: _Claim, service: str) -> None:
    problems = []
    if claim.service != service:
        problems.append(f"Credential should be scoped to correct service: '{service}'.")
    if claim.terminator != TERMINATOR:
        problems.append(
            f"Credential should be scoped with a valid terminator: '{TERMINATOR}', "
            f"not '{_shown(claim.terminator)}'."
        )
    if claim.scope_date != claim.timestamp[:8]:
        problems.append(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{_shown(claim.scope_date)}' != '{claim.timestamp[:8]}', from "
            f"'{claim.timestamp}'."
        )
    if problems:
        raise _mismatch(service, " ".join(problems))


def _payload_hash(body: bytes, headers: Mapping[str, list[str]], service: str) -> str:
    """The payload hash the canonical request carries (see the module docstring)."""
    actual = sha256(body).hexdigest()
    declared = headers.get("x-amz-content-sha256")
    if declared is None:
        return actual
    value = declared[-1].strip()
    if value == UNSIGNED_PAYLOAD:
        return value
    if value.startswith("STREAMING-"):
        raise error(
            "IncompleteSignature", f"Streaming payloads ({_shown(value)}) are not supported."
        )
    if value != actual:
        raise _mismatch(
            service, "The provided 'x-amz-content-sha256' header does not match what was computed."
        )
    return value


# --- the signature, computed by botocore --------------------------------------------------------


class _Request:
    """The attributes of a botocore ``AWSRequest`` that ``SigV4Auth.canonical_request`` reads.

    ``headers`` stays empty: botocore would read ``X-Amz-Content-SHA256`` from it, and
    :meth:`_Verifier.payload` returns that value (already checked) instead.
    """

    __slots__ = ("context", "headers", "method", "params", "url")

    def __init__(self, method: str, url: str, params: list[tuple[str, str]], timestamp: str):
        self.method = method
        self.url = url
        self.params = params
        self.headers: dict[str, str] = {}
        self.context = {"timestamp": timestamp}


class _Verifier(SigV4Auth):  # type: ignore[misc]  # botocore is untyped
    """botocore's signer, restricted to the headers the client says it signed."""

    def __init__(
        self,
        claim: _Claim,
        secret: str,
        headers: Mapping[str, list[str]],
        host: str,
        payload_hash: str,
    ) -> None:
        super().__init__(Credentials(claim.access_key_id, secret), claim.service, claim.region)
        self._names = claim.signed_headers
        self._headers = headers
        self._host = host
        self._payload_hash = payload_hash

    def headers_to_sign(self, request: Any) -> Any:
        header_map = HTTPHeaders()
        for name in self._names:
            values = self._headers.get(name)
            if values is None and name == "host":
                values = [self._host]  # as botocore does: the URL's host when none was sent
            for value in values or ():
                header_map[name] = value  # HTTPHeaders appends: repeated headers join with ","
        return header_map

    def payload(self, request: Any) -> str:
        return self._payload_hash

    def sign(self, request: _Request) -> str:
        canonical = self.canonical_request(request)
        result: str = self.signature(self.string_to_sign(request, canonical), request)
        return result


def _signature_matches(
    method: str,
    parts: SplitResult,
    headers: Mapping[str, list[str]],
    claim: _Claim,
    secret: str,
    payload_hash: str,
) -> bool:
    if not _SIGNATURE.fullmatch(claim.signature):
        return False
    signer = _Verifier(claim, secret, headers, parts.netloc, payload_hash)
    url = f"{parts.scheme}://{parts.netloc}{parts.path}?{claim.query}"
    request = _Request(method, url, [], claim.timestamp)
    if hmac.compare_digest(signer.sign(request), claim.signature):
        return True
    # Clients that follow the spec rather than botocore re-encode the decoded query; botocore
    # takes the raw query as already canonical. Try the spec's form only if it differs.
    decoded = [(unquote(k), unquote(v)) for k, v in _raw_pairs(claim.query)]
    if signer._canonical_query_string_params(decoded) == signer.canonical_query_string(request):
        return False
    request.params = decoded
    return hmac.compare_digest(signer.sign(request), claim.signature)


# --- errors ----------------------------------------------------------------------------------


def _mismatch(service: str, detail: str | None = None) -> Ec2Error:
    """The signature (or something it covers) is wrong: EC2's AuthFailure, else AWS's code."""
    if service == "ec2":
        return error(
            "AuthFailure", f"{AUTH_FAILURE_MESSAGE}. {detail}" if detail else AUTH_FAILURE_MESSAGE
        )
    base = (
        "The request signature we calculated does not match the signature you provided. "
        "Check your AWS Secret Access Key and signing method."
    )
    return error("SignatureDoesNotMatch", detail or base)


def _unknown_key(service: str) -> Ec2Error:
    if service == "ec2":
        return error("AuthFailure", AUTH_FAILURE_MESSAGE)
    return error("InvalidClientTokenId", "The security token included in the request is invalid.")


def _unsupported_algorithm(algorithm: str) -> Ec2Error:
    return error(
        "IncompleteSignature",
        f"Unsupported AWS 'algorithm': '{_shown(algorithm)}' (only {ALGORITHM}).",
    )


def _bad_date(text: str) -> Ec2Error:
    return error(
        "IncompleteSignature",
        f"Date must be in ISO-8601 'basic format' (YYYYMMDD'T'HHMMSS'Z'). Got '{_shown(text)}'.",
    )


# --- small helpers ---------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _stamp(moment: datetime) -> str:
    return moment.strftime(SIGV4_TIMESTAMP)


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    return f"{seconds // 60} min." if seconds % 60 == 0 else f"{seconds} s"


def _shown(text: str, limit: int = 64) -> str:
    """Client text fit to echo in a message: short, ASCII, printable (safe in XML and logs)."""
    clipped = text[:limit].encode("unicode_escape").decode("ascii")
    return clipped + "..." if len(text) > limit else clipped


def _names(items: Iterable[str]) -> str:
    return ", ".join(f"'{i}'" for i in items)
