"""The EC2 error tree: every failure a client can see, with its code and HTTP status.

EC2 reports errors as ``<Response><Errors><Error><Code>…`` with a code string and an HTTP
status. botocore's model does not declare these codes, so they live here, in one table, and
every layer above raises them by code::

    Ec2Error                      any error the API reports (code, message, status)
    ├── ClientError               the request is wrong (HTTP 400 unless the table says else)
    │   ├── AuthError             AuthFailure, SignatureDoesNotMatch, RequestExpired, …
    │   ├── PermissionError_      UnauthorizedOperation (403)
    │   ├── DryRunOperation       the DryRun succeeded (412)
    │   └── …                     InvalidParameterValue, MissingParameter, *.NotFound, …
    └── ServerError               our fault (500/503): InternalError, ServiceUnavailable

Raise with :func:`error` or the helpers; the API layer turns any ``Ec2Error`` into the
envelope and any other exception into ``InternalError`` (500) without leaking details.
"""

from __future__ import annotations

#: HTTP status for codes that are not plain 400s (EC2's own behaviour).
STATUS_BY_CODE: dict[str, int] = {
    "AuthFailure": 401,
    "UnauthorizedOperation": 403,
    "SignatureDoesNotMatch": 403,
    "InvalidClientTokenId": 403,
    "MissingAuthenticationToken": 403,
    "OptInRequired": 403,
    "Blocked": 403,
    "DryRunOperation": 412,
    "RequestLimitExceeded": 503,
    "InternalError": 500,
    "ServiceUnavailable": 503,
    "Unavailable": 503,
}

#: Resource id prefix → (NotFound code, Malformed code), as EC2 spells them.
RESOURCE_CODES: dict[str, tuple[str, str]] = {
    "ami": ("InvalidAMIID.NotFound", "InvalidAMIID.Malformed"),
    "aki": ("InvalidAMIID.NotFound", "InvalidAMIID.Malformed"),
    "ari": ("InvalidAMIID.NotFound", "InvalidAMIID.Malformed"),
    "snap": ("InvalidSnapshot.NotFound", "InvalidSnapshotID.Malformed"),
    "vol": ("InvalidVolume.NotFound", "InvalidVolumeID.Malformed"),
    "i": ("InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"),
    "key": ("InvalidKeyPair.NotFound", "InvalidKeyPair.Malformed"),
    "r": ("InvalidReservationID.NotFound", "InvalidReservationID.Malformed"),
}


class Ec2Error(Exception):
    """An error the API reports to the client as an EC2 error envelope."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status if status is not None else STATUS_BY_CODE.get(code, 400)


class ClientError(Ec2Error):
    """The request is wrong; retrying it unchanged fails the same way."""


class AuthError(ClientError):
    """The caller could not be authenticated (AuthFailure, RequestExpired, …)."""


class PermissionDenied(ClientError):
    """The caller is authenticated but may not do this (UnauthorizedOperation)."""


class DryRunOperation(ClientError):
    """A DryRun request that would have succeeded."""

    def __init__(self) -> None:
        super().__init__("DryRunOperation", "Request would have succeeded, but DryRun flag is set.")


class ServerError(Ec2Error):
    """Our fault: the client may retry."""


_AUTH_CODES = frozenset(
    {
        "AuthFailure",
        "SignatureDoesNotMatch",
        "RequestExpired",
        "InvalidClientTokenId",
        "IncompleteSignature",
        "MissingAuthenticationToken",
    }
)


def error(code: str, message: str) -> Ec2Error:
    """Build the right ``Ec2Error`` subclass for ``code`` (by its status class)."""
    status = STATUS_BY_CODE.get(code, 400)
    if status >= 500:
        return ServerError(code, message, status)
    if code in _AUTH_CODES:
        return AuthError(code, message, status)
    if code == "UnauthorizedOperation":
        return PermissionDenied(code, message, status)
    return ClientError(code, message, status)


def invalid_parameter(message: str) -> ClientError:
    """InvalidParameterValue: a member has the wrong type, range or enum value."""
    return ClientError("InvalidParameterValue", message)


def missing_parameter(name: str) -> ClientError:
    """MissingParameter: a required member is absent."""
    return ClientError("MissingParameter", f"The request must contain the parameter {name}")


def unauthorized(action: str) -> PermissionDenied:
    """UnauthorizedOperation for ``action``."""
    return PermissionDenied(
        "UnauthorizedOperation", f"You are not authorized to perform this operation ({action})."
    )


def not_authorized_for(what: str, message: str | None = None) -> ClientError:
    """AuthFailure for a resource the caller can see but may not act on.

    EC2 answers this one with HTTP 400 (unlike a credentials AuthFailure, 401).
    """
    return ClientError("AuthFailure", message or f"Not authorized for {what}", 400)


def not_found(resource_id: str, message: str | None = None) -> ClientError:
    """The resource's ``.NotFound`` code, chosen by the id's prefix."""
    code = RESOURCE_CODES.get(resource_id.split("-", 1)[0], ("InvalidID", ""))[0]
    return ClientError(code, message or f"The ID '{resource_id}' does not exist")


def malformed(resource_id: str, prefix: str) -> ClientError:
    """The ``.Malformed`` code for a resource id that does not have the expected form."""
    code = RESOURCE_CODES.get(prefix, ("", "InvalidID"))[1] or "InvalidID"
    return ClientError(code, f'Invalid id: "{resource_id}" (expecting "{prefix}-...")')
