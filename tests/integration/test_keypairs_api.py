"""Key pairs over the API: create (rsa/ed25519, pem/ppk), import, describe, delete."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from harness import Server

pytestmark = pytest.mark.integration


def code_of(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return str(info.value.response["Error"]["Code"])


@pytest.mark.parametrize(
    ("key_type", "key_format"), [("rsa", "pem"), ("ed25519", "pem"), ("rsa", "ppk")]
)
def test_create_returns_private_key_once(ec2: Any, key_type: str, key_format: str) -> None:
    made = ec2.create_key_pair(
        KeyName=f"k-{key_type}-{key_format}", KeyType=key_type, KeyFormat=key_format
    )
    assert made["KeyPairId"].startswith("key-")
    marker = "PuTTY-User-Key-File" if key_format == "ppk" else "-----BEGIN"
    assert made["KeyMaterial"].startswith(marker)
    listed = ec2.describe_key_pairs(KeyNames=[made["KeyName"]], IncludePublicKey=True)
    (pair,) = listed["KeyPairs"]
    assert pair["KeyFingerprint"] == made["KeyFingerprint"]
    assert pair["KeyType"] == key_type
    assert pair["PublicKey"].startswith("ssh-")
    assert "KeyMaterial" not in pair


def test_private_key_matches_public_key(ec2: Any, tmp_path: Path) -> None:
    made = ec2.create_key_pair(KeyName="match", KeyType="ed25519")
    pem = tmp_path / "key.pem"
    pem.write_text(made["KeyMaterial"] + "\n")  # as `--output text` writes it
    pem.chmod(0o600)
    derived = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(pem)], capture_output=True, text=True, check=True
    ).stdout.split()[:2]
    (pair,) = ec2.describe_key_pairs(KeyNames=["match"], IncludePublicKey=True)["KeyPairs"]
    assert pair["PublicKey"].split()[:2] == derived


def test_import_and_fingerprint(ec2: Any, tmp_path: Path) -> None:
    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    public = (tmp_path / "id.pub").read_bytes()
    got = ec2.import_key_pair(KeyName="imported", PublicKeyMaterial=public)
    printed = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(key) + ".pub"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[1]
    # EC2 prints ED25519 fingerprints as padded base64 of the SHA-256 digest.
    assert got["KeyFingerprint"] == printed.removeprefix("SHA256:") + "="
    assert (
        code_of(ec2.import_key_pair, KeyName="bad", PublicKeyMaterial=b"ssh-rsa notbase64!")
        == "InvalidKey.Format"
    )


def test_duplicate_name_and_not_found(ec2: Any) -> None:
    ec2.create_key_pair(KeyName="dup")
    assert code_of(ec2.create_key_pair, KeyName="dup") == "InvalidKeyPair.Duplicate"
    assert code_of(ec2.describe_key_pairs, KeyNames=["nope"]) == "InvalidKeyPair.NotFound"
    assert (
        code_of(ec2.describe_key_pairs, KeyPairIds=["key-0123456789abcdef0"])
        == "InvalidKeyPair.NotFound"
    )
    assert code_of(ec2.describe_key_pairs, KeyPairIds=["bogus"]) == "InvalidKeyPair.Malformed"


def test_filters_and_tags(ec2: Any) -> None:
    a = ec2.create_key_pair(
        KeyName="alpha",
        KeyType="ed25519",
        TagSpecifications=[{"ResourceType": "key-pair", "Tags": [{"Key": "team", "Value": "red"}]}],
    )
    ec2.create_key_pair(KeyName="beta")
    assert a["Tags"] == [{"Key": "team", "Value": "red"}]
    by_tag = ec2.describe_key_pairs(Filters=[{"Name": "tag:team", "Values": ["r*"]}])
    assert [k["KeyName"] for k in by_tag["KeyPairs"]] == ["alpha"]
    by_type = ec2.describe_key_pairs(Filters=[{"Name": "key-type", "Values": ["rsa"]}])
    assert [k["KeyName"] for k in by_type["KeyPairs"]] == ["beta"]
    both = ec2.describe_key_pairs(
        Filters=[
            {"Name": "key-name", "Values": ["alpha", "beta"]},
            {"Name": "tag-key", "Values": ["team"]},
        ]
    )
    assert [k["KeyName"] for k in both["KeyPairs"]] == ["alpha"]
    assert (
        code_of(ec2.describe_key_pairs, Filters=[{"Name": "colour", "Values": ["x"]}])
        == "InvalidParameterValue"
    )
    assert (
        code_of(
            ec2.create_key_pair,
            KeyName="gamma",
            TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "a", "Value": "b"}]}],
        )
        == "InvalidParameterValue"
    )


def test_delete_by_name_and_id(ec2: Any) -> None:
    one = ec2.create_key_pair(KeyName="one")
    ec2.create_key_pair(KeyName="two")
    ec2.delete_key_pair(KeyName="one")
    ec2.delete_key_pair(KeyName="never-existed")  # EC2 answers success here
    names = [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]]
    assert names == ["two"]
    assert code_of(ec2.delete_key_pair, KeyPairId=one["KeyPairId"]) == "InvalidKeyPair.NotFound"
    two = ec2.describe_key_pairs(KeyNames=["two"])["KeyPairs"][0]["KeyPairId"]
    ec2.delete_key_pair(KeyPairId=two)
    assert ec2.describe_key_pairs()["KeyPairs"] == []


def test_key_pairs_are_per_account_and_region(server: Server, ec2: Any) -> None:
    ec2.create_key_pair(KeyName="mine")
    other = server.client(server.new_account())
    assert other.describe_key_pairs()["KeyPairs"] == []
    other.create_key_pair(KeyName="mine")  # same name, other account: fine
    assert (
        server.client(server.new_account(), region="eu-west-1").describe_key_pairs()["KeyPairs"]
        == []
    )
