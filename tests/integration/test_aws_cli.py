"""The real ``aws`` CLI against the server, as the README tells users to run it."""

from __future__ import annotations

import json

import pytest

from harness import Creds, Server

pytestmark = pytest.mark.integration


def test_describe_regions_with_printed_credentials(server: Server) -> None:
    done = server.aws("ec2", "describe-regions")
    assert done.returncode == 0, done.stderr
    assert "us-east-1" in {r["RegionName"] for r in json.loads(done.stdout)["Regions"]}


def test_wrong_secret_fails_with_auth_failure(server: Server) -> None:
    bad = Creds(server.admin.account_id, server.admin.access_key_id, "wrong" * 8)
    done = server.aws("ec2", "describe-regions", creds=bad)
    assert done.returncode != 0
    assert "AuthFailure" in done.stderr


def test_key_pairs_and_tags_round_trip(server: Server, account: Creds) -> None:
    made = server.aws(
        "ec2",
        "create-key-pair",
        "--key-name",
        "cli",
        "--key-type",
        "ed25519",
        "--tag-specifications",
        "ResourceType=key-pair,Tags=[{Key=owner,Value=cli}]",
        creds=account,
    )
    assert made.returncode == 0, made.stderr
    kid = json.loads(made.stdout)["KeyPairId"]
    listed = server.aws(
        "ec2", "describe-key-pairs", "--filters", "Name=tag:owner,Values=cli", creds=account
    )
    assert [k["KeyPairId"] for k in json.loads(listed.stdout)["KeyPairs"]] == [kid]
    tags = server.aws(
        "ec2", "describe-tags", "--filters", f"Name=resource-id,Values={kid}", creds=account
    )
    assert json.loads(tags.stdout)["Tags"][0]["Value"] == "cli"
    gone = server.aws("ec2", "delete-key-pair", "--key-pair-id", kid, creds=account)
    assert gone.returncode == 0, gone.stderr
