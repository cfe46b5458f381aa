"""Tags over the API: limits, errors, filters and pagination of DescribeTags."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from harness import Server

pytestmark = pytest.mark.integration


def code_of(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return str(info.value.response["Error"]["Code"])


def _keys(ec2: Any, count: int) -> list[str]:
    return [
        ec2.create_key_pair(KeyName=f"k{i:03d}", KeyType="ed25519")["KeyPairId"]
        for i in range(count)
    ]


def test_create_describe_delete_tags(ec2: Any) -> None:
    (kid,) = _keys(ec2, 1)
    ec2.create_tags(Resources=[kid], Tags=[{"Key": "env", "Value": "prod"}, {"Key": "empty"}])
    tags = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [kid]}])["Tags"]
    assert tags == [
        {"Key": "empty", "ResourceId": kid, "ResourceType": "key-pair", "Value": ""},
        {"Key": "env", "ResourceId": kid, "ResourceType": "key-pair", "Value": "prod"},
    ]
    ec2.create_tags(Resources=[kid], Tags=[{"Key": "env", "Value": "dev"}])  # overwrite
    ec2.delete_tags(Resources=[kid], Tags=[{"Key": "env", "Value": "prod"}])  # value differs
    assert {t["Value"] for t in ec2.describe_tags()["Tags"] if t["Key"] == "env"} == {"dev"}
    ec2.delete_tags(Resources=[kid], Tags=[{"Key": "env"}])
    assert [t["Key"] for t in ec2.describe_tags()["Tags"]] == ["empty"]
    ec2.delete_tags(Resources=[kid])
    assert ec2.describe_tags()["Tags"] == []


def test_tag_errors(server: Server, ec2: Any) -> None:
    (kid,) = _keys(ec2, 1)
    assert (
        code_of(ec2.create_tags, Resources=[kid], Tags=[{"Key": "aws:x", "Value": "1"}])
        == "InvalidParameterValue"
    )
    assert (
        code_of(ec2.create_tags, Resources=[kid], Tags=[{"Key": "k" * 129, "Value": "1"}])
        == "InvalidParameterValue"
    )
    assert (
        code_of(ec2.create_tags, Resources=[kid], Tags=[{"Key": "k", "Value": "v" * 257}])
        == "InvalidParameterValue"
    )
    many = [{"Key": f"t{i}", "Value": "x"} for i in range(51)]
    assert code_of(ec2.create_tags, Resources=[kid], Tags=many) == "TagLimitExceeded"
    ec2.create_tags(Resources=[kid], Tags=many[:50])
    assert (
        code_of(ec2.create_tags, Resources=[kid], Tags=[{"Key": "one-more", "Value": ""}])
        == "TagLimitExceeded"
    )
    assert (
        code_of(
            ec2.create_tags, Resources=["key-0123456789abcdef0"], Tags=[{"Key": "a", "Value": "b"}]
        )
        == "InvalidKeyPair.NotFound"
    )
    assert (
        code_of(ec2.create_tags, Resources=["nonsense"], Tags=[{"Key": "a", "Value": "b"}])
        == "InvalidID"
    )
    other = server.client(server.new_account())
    assert (
        code_of(other.create_tags, Resources=[kid], Tags=[{"Key": "a", "Value": "b"}])
        == "InvalidKeyPair.NotFound"
    )
    assert (
        code_of(ec2.describe_tags, Filters=[{"Name": "nope", "Values": ["x"]}])
        == "InvalidParameterValue"
    )


def test_describe_tags_pagination_is_complete_and_stable(ec2: Any) -> None:
    ids = _keys(ec2, 12)
    for kid in ids:
        ec2.create_tags(Resources=[kid], Tags=[{"Key": f"t{j}", "Value": str(j)} for j in range(5)])
    seen: list[tuple[str, str]] = []
    token: str | None = None
    pages = 0
    while True:
        kwargs: dict[str, Any] = {"MaxResults": 7}
        if token:
            kwargs["NextToken"] = token
        page = ec2.describe_tags(**kwargs)
        seen += [(t["ResourceId"], t["Key"]) for t in page["Tags"]]
        pages += 1
        if pages == 2:  # a tag added behind the cursor must not shift later pages
            ec2.create_tags(Resources=[min(ids)], Tags=[{"Key": "late", "Value": "x"}])
        token = page.get("NextToken")
        if not token:
            break
    assert len(seen) == len(set(seen)) == 60
    assert seen == sorted(seen)
    assert pages == 9
    paginator = ec2.get_paginator("describe_tags")
    filtered = [
        t
        for p in paginator.paginate(
            Filters=[{"Name": "key", "Values": ["t1", "t2"]}], PaginationConfig={"PageSize": 5}
        )
        for t in p["Tags"]
    ]
    assert len(filtered) == 24


def test_pagination_token_is_tamper_proof(ec2: Any) -> None:
    ids = _keys(ec2, 2)
    for kid in ids:
        ec2.create_tags(Resources=[kid], Tags=[{"Key": f"t{j}", "Value": ""} for j in range(4)])
    token = ec2.describe_tags(MaxResults=5)["NextToken"]
    assert (
        code_of(ec2.describe_tags, MaxResults=5, NextToken=token[:-2] + "xx")
        == "InvalidPaginationToken"
    )
    assert (
        code_of(
            ec2.describe_tags,
            MaxResults=5,
            NextToken=token,
            Filters=[{"Name": "key", "Values": ["t1"]}],
        )
        == "InvalidPaginationToken"
    )
    assert code_of(ec2.describe_tags, MaxResults=4) == "InvalidParameterValue"
    assert code_of(ec2.describe_tags, MaxResults=1001) == "InvalidParameterValue"
