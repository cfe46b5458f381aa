"""Key pairs: CreateKeyPair, ImportKeyPair, DescribeKeyPairs, DeleteKeyPair.

Per account and region, as in EC2. The private key is generated here, returned once by
CreateKeyPair and never stored; only the public key and fingerprint are kept (the public key
is what instances receive through the metadata service).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa

from goldsmith.catalog import keypairs as rows
from goldsmith.catalog.db import Catalog
from goldsmith.service import keymaterial
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import ClientError, invalid_parameter
from goldsmith.service.filters import FilterSpec
from goldsmith.service.ids import check_id, new_id
from goldsmith.service.tags import ResourceKind, TagService, specified_tags, tag_list

KEY_TYPES = ("rsa", "ed25519")
KEY_FORMATS = ("pem", "ppk")


def _not_found(what: str) -> ClientError:
    return ClientError("InvalidKeyPair.NotFound", f"The key pair '{what}' does not exist")


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= 255 or not name.isascii():
        raise invalid_parameter("Key pair name must be 1-255 ASCII characters")
    if not name.isprintable():
        raise invalid_parameter("Key pair name must not contain control characters")
    return name


class KeyPairService:
    """The four key pair operations."""

    def __init__(self, catalog: Catalog, tags: TagService) -> None:
        self._catalog = catalog
        self._tags = tags
        tags.register(ResourceKind("key", "key-pair", self._owner_of))
        self._filters: FilterSpec[tuple[rows.KeyPairRow, dict[str, str]]] = FilterSpec(
            {
                "key-pair-id": lambda item: item[0].key_pair_id,
                "key-name": lambda item: item[0].key_name,
                "fingerprint": lambda item: item[0].fingerprint,
                "key-type": lambda item: item[0].key_type,
            },
            tags=lambda item: item[1],
        )

    @staticmethod
    def _owner_of(conn: sa.Connection, region: str, key_pair_id: str) -> str | None:
        found = rows.list_key_pairs_by_id(conn, region, key_pair_id)
        return found[0].account_id if found else None

    def public_key(self, ctx: RequestContext, key_name: str) -> rows.KeyPairRow:
        """The caller's key pair ``key_name`` (for launching instances)."""
        with self._catalog.begin() as conn:
            found = rows.list_key_pairs(conn, ctx.region, ctx.account_id, names=[key_name])
        if not found:
            raise _not_found(key_name)
        return found[0]

    def _store(
        self,
        ctx: RequestContext,
        name: str,
        key_type: str,
        fingerprint: str,
        public_key: str,
        params: Mapping[str, Any],
    ) -> tuple[rows.KeyPairRow, dict[str, str]]:
        tags = specified_tags(params.get("TagSpecifications"), "key-pair")
        row = rows.KeyPairRow(
            key_pair_id=new_id("key"),
            region=ctx.region,
            account_id=ctx.account_id,
            key_name=name,
            key_type=key_type,
            fingerprint=fingerprint,
            public_key=public_key,
            created_at=datetime.now(UTC),
        )
        with self._catalog.begin() as conn:
            try:
                rows.insert_key_pair(conn, row)
            except rows.DuplicateKeyName:
                raise ClientError(
                    "InvalidKeyPair.Duplicate", f"The keypair '{name}' already exists."
                ) from None
            self._tags.set_tags(conn, ctx, "key-pair", row.key_pair_id, tags)
        return row, tags

    def create_key_pair(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        name = _check_name(params.get("KeyName"))
        key_type = params.get("KeyType") or "rsa"
        key_format = params.get("KeyFormat") or "pem"
        if key_type not in KEY_TYPES:
            raise invalid_parameter(f"Value ({key_type}) for parameter KeyType is invalid.")
        if key_format not in KEY_FORMATS:
            raise invalid_parameter(f"Value ({key_format}) for parameter KeyFormat is invalid.")
        key = keymaterial.generate_key(
            cast(keymaterial.KeyType, key_type),
            cast(keymaterial.KeyFormat, key_format),
            comment=name,
        )
        row, tags = self._store(ctx, name, key_type, key.fingerprint, key.public_key, params)
        return {
            "KeyName": name,
            "KeyPairId": row.key_pair_id,
            "KeyFingerprint": key.fingerprint,
            "KeyMaterial": key.private_key,
            "Tags": tag_list(tags) or None,
        }

    def import_key_pair(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        name = _check_name(params.get("KeyName"))
        material = params.get("PublicKeyMaterial") or b""
        key = keymaterial.import_public_key(material)
        row, tags = self._store(ctx, name, key.key_type, key.fingerprint, key.public_key, params)
        return {
            "KeyName": name,
            "KeyPairId": row.key_pair_id,
            "KeyFingerprint": key.fingerprint,
            "Tags": tag_list(tags) or None,
        }

    def describe_key_pairs(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        names = list(params.get("KeyNames") or [])
        ids = [check_id(i, "key") for i in params.get("KeyPairIds") or []]
        predicate = self._filters.compile(params.get("Filters"))
        with self._catalog.begin() as conn:
            found = rows.list_key_pairs(conn, ctx.region, ctx.account_id, names=names, ids=ids)
            tags = self._tags.tags_of(conn, ctx.region, [r.key_pair_id for r in found])
        missing = [n for n in names if n not in {r.key_name for r in found}]
        missing += [i for i in ids if i not in {r.key_pair_id for r in found}]
        if missing:
            raise _not_found(missing[0])
        include_public = bool(params.get("IncludePublicKey"))
        items = [(r, tags.get(r.key_pair_id, {})) for r in found]
        return {
            "KeyPairs": [
                {
                    "KeyPairId": r.key_pair_id,
                    "KeyName": r.key_name,
                    "KeyType": r.key_type,
                    "KeyFingerprint": r.fingerprint,
                    "CreateTime": r.created_at,
                    "Tags": tag_list(t),
                    "PublicKey": r.public_key if include_public else None,
                }
                for r, t in items
                if predicate((r, t))
            ]
        }

    def delete_key_pair(self, ctx: RequestContext, params: Mapping[str, Any]) -> dict[str, Any]:
        name, key_id = params.get("KeyName"), params.get("KeyPairId")
        if name is None and key_id is None:
            raise ClientError(
                "MissingParameter", "The request must contain the parameter KeyName or KeyPairId"
            )
        ids = [check_id(key_id, "key")] if key_id is not None else []
        with self._catalog.begin() as conn:
            found = rows.list_key_pairs(
                conn, ctx.region, ctx.account_id, names=[name] if name else [], ids=ids
            )
            if not found and key_id is not None:
                raise _not_found(key_id)
            for row in found:
                rows.delete_key_pair(conn, row.key_pair_id)
                self._tags.forget(conn, ctx.region, row.key_pair_id)
        # EC2 answers success for a key name that does not exist.
        return {"Return": True, "KeyPairId": found[0].key_pair_id if found else None}
