"""Key pairs: list, create (the private key is shown once), import, delete."""

from __future__ import annotations

from goldsmith.api.console.framework import Console, Done, Spec, View, action, page
from goldsmith.service.errors import missing_parameter

BACK = "/console/keypairs"


def list_key_pairs(c: Console) -> View:
    out = c.call("DescribeKeyPairs", {})
    pairs = sorted(out.get("KeyPairs") or [], key=lambda k: str(k.get("KeyName")))
    return View("keypairs.html", "Key pairs", {"KeyPairs": pairs}, nav="keypairs")


def create(c: Console) -> View:
    """The new key's private half is in this one answer only: it is never stored."""
    name = c.field("name")
    if not name:
        raise missing_parameter("KeyName")
    out = c.call(
        "CreateKeyPair",
        {
            "KeyName": name,
            "KeyType": c.field("key_type") or "ed25519",
            "KeyFormat": c.field("key_format") or "pem",
        },
    )
    suffix = "ppk" if c.field("key_format") == "ppk" else "pem"
    extra = {"filename": f"{name}.{suffix}"}
    return View("keypair_created.html", "Key pair created", dict(out), nav="keypairs", extra=extra)


def import_key(c: Console) -> Done:
    name = c.field("name")
    material = c.field("public_key")
    if not name:
        raise missing_parameter("KeyName")
    if not material:
        raise missing_parameter("PublicKeyMaterial")
    out = c.call("ImportKeyPair", {"KeyName": name, "PublicKeyMaterial": material.encode()})
    return Done(BACK, f"Key pair {name} imported ({out['KeyFingerprint']}).", dict(out))


def delete(c: Console) -> Done:
    name = c.field("name")
    if not name:
        raise missing_parameter("KeyName")
    c.call("DeleteKeyPair", {"KeyName": name})
    return Done(BACK, f"Key pair {name} deleted.")


PAGES: list[Spec] = [
    page("/keypairs", list_key_pairs),
    action("/keypairs/create", create),
    action("/keypairs/import", import_key),
    action("/keypairs/delete", delete),
]
