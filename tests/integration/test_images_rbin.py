"""The recycle bin over HTTP: boto3's ``rbin`` client, the ``aws rbin`` CLI, and the EC2 side.

Rules are created through the ``rbin`` REST-JSON API; DeleteSnapshot and DeregisterImage then
put covered resources in the bin, ListSnapshotsInRecycleBin / ListImagesInRecycleBin show
them and the Restore operations bring them back.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from harness import Creds, Server

pytestmark = pytest.mark.integration
MiB = 1024 * 1024


def error_of(call: Any, **kwargs: Any) -> tuple[str, int]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    response = info.value.response
    return str(response["Error"]["Code"]), int(response["ResponseMetadata"]["HTTPStatusCode"])


def snapshot(server: Server, creds: Creds, tmp_path: Path, name: str) -> str:
    path = tmp_path / name
    with path.open("wb") as handle:
        handle.truncate(2 * MiB)
        handle.write(os.urandom(64 * 1024))
    done = server.cli("platform", "snapshot", str(path), "--account", creds.account_id)
    return done.stdout.strip()


def retention(days: int) -> dict[str, Any]:
    return {"RetentionPeriodValue": days, "RetentionPeriodUnit": "DAYS"}


def test_rules_over_http_with_boto3(server: Server) -> None:
    me, other = server.new_account(), server.new_account()
    rbin, other_rbin = server.client(me, service="rbin"), server.client(other, service="rbin")
    created = rbin.create_rule(
        ResourceType="EC2_IMAGE",
        RetentionPeriod=retention(7),
        Description="keep images a week",
        ResourceTags=[{"ResourceTagKey": "env", "ResourceTagValue": "prod"}],
        Tags=[{"Key": "team", "Value": "infra"}],
    )
    rule_id, arn = created["Identifier"], created["RuleArn"]
    assert arn == f"arn:aws:rbin:us-east-1:{me.account_id}:rule/{rule_id}"
    assert created["Status"] == "available" and created["LockState"] == "unlocked"

    got = rbin.get_rule(Identifier=rule_id)
    assert got["ResourceTags"] == [{"ResourceTagKey": "env", "ResourceTagValue": "prod"}]
    assert got["RetentionPeriod"] == retention(7)
    updated = rbin.update_rule(Identifier=rule_id, RetentionPeriod=retention(30))
    assert updated["RetentionPeriod"]["RetentionPeriodValue"] == 30
    listed = rbin.list_rules(ResourceType="EC2_IMAGE")["Rules"]
    assert [r["Identifier"] for r in listed] == [rule_id]
    assert rbin.list_rules(ResourceType="EBS_SNAPSHOT")["Rules"] == []

    # Tags address the rule by ARN (its "/" travels percent-encoded in the path).
    rbin.tag_resource(ResourceArn=arn, Tags=[{"Key": "cost", "Value": "42"}])
    rbin.untag_resource(ResourceArn=arn, TagKeys=["team"])
    assert rbin.list_tags_for_resource(ResourceArn=arn)["Tags"] == [{"Key": "cost", "Value": "42"}]

    # Another account's rule does not exist for the caller.
    assert error_of(other_rbin.get_rule, Identifier=rule_id) == ("ResourceNotFoundException", 404)
    assert error_of(other_rbin.list_tags_for_resource, ResourceArn=arn) == (
        "ResourceNotFoundException",
        404,
    )
    assert error_of(rbin.create_rule, ResourceType="EC2_IMAGE", RetentionPeriod=retention(400)) == (
        "ValidationException",
        400,
    )
    assert error_of(
        rbin.lock_rule,
        Identifier=rule_id,
        LockConfiguration={"UnlockDelay": {"UnlockDelayValue": 7, "UnlockDelayUnit": "DAYS"}},
    ) == ("ValidationException", 400)
    rbin.delete_rule(Identifier=rule_id)
    assert error_of(rbin.get_rule, Identifier=rule_id) == ("ResourceNotFoundException", 404)


def test_rbin_refuses_other_credential_scopes(server: Server) -> None:
    """A request signed for another service (scope ``ec2``) is refused on rbin's paths."""
    me = server.new_account()
    body = json.dumps({"ResourceType": "EC2_IMAGE"}).encode()
    request = AWSRequest("POST", server.endpoint + "/list-rules", data=body)
    credentials = Credentials(me.access_key_id, me.secret_access_key)
    SigV4Auth(credentials, "ec2", "us-east-1").add_auth(request)
    prepared = request.prepare()
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(
            urllib.request.Request(
                prepared.url, data=body, headers=dict(prepared.headers), method="POST"
            ),
            timeout=10,
        )
    status, kind = info.value.code, info.value.headers["x-amzn-ErrorType"]
    info.value.close()
    assert (status, kind) == (403, "SignatureDoesNotMatch")


def test_snapshots_go_to_the_bin_and_come_back(server: Server, tmp_path: Path) -> None:
    me, friend = server.new_account(), server.new_account()
    ec2, friend_ec2 = server.client(me), server.client(friend)
    rbin = server.client(me, service="rbin")
    rbin.create_rule(
        ResourceType="EBS_SNAPSHOT",
        RetentionPeriod=retention(1),
        ExcludeResourceTags=[{"ResourceTagKey": "scratch", "ResourceTagValue": "yes"}],
    )
    kept = snapshot(server, me, tmp_path, "kept.raw")
    scratch = snapshot(server, me, tmp_path, "scratch.raw")
    ec2.create_tags(Resources=[scratch], Tags=[{"Key": "scratch", "Value": "yes"}])
    ec2.modify_snapshot_attribute(
        SnapshotId=kept, CreateVolumePermission={"Add": [{"UserId": friend.account_id}]}
    )
    ec2.delete_snapshot(SnapshotId=kept)
    ec2.delete_snapshot(SnapshotId=scratch)

    (entry,) = ec2.list_snapshots_in_recycle_bin()["Snapshots"]
    assert entry["SnapshotId"] == kept
    assert (entry["RecycleBinExitTime"] - entry["RecycleBinEnterTime"]).days == 1
    assert error_of(ec2.describe_snapshots, SnapshotIds=[kept])[0] == "InvalidSnapshot.NotFound"
    assert error_of(friend_ec2.describe_snapshots, SnapshotIds=[kept])[0] == (
        "InvalidSnapshot.NotFound"
    )
    assert error_of(friend_ec2.restore_snapshot_from_recycle_bin, SnapshotId=kept)[0] == (
        "InvalidSnapshot.NotFound"
    )
    restored = ec2.restore_snapshot_from_recycle_bin(SnapshotId=kept)
    assert restored["SnapshotId"] == kept and restored["State"] == "completed"
    assert friend_ec2.describe_snapshots(SnapshotIds=[kept])["Snapshots"][0]["OwnerId"] == (
        me.account_id
    )
    assert error_of(ec2.describe_snapshots, SnapshotIds=[scratch])[0] == (
        "InvalidSnapshot.NotFound"
    )
    assert ec2.list_snapshots_in_recycle_bin()["Snapshots"] == []


def test_images_and_snapshots_with_the_aws_cli(server: Server, tmp_path: Path) -> None:
    me = server.new_account()

    def aws(*args: str) -> Any:
        done = server.aws(*args, creds=me)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if done.stdout.strip() else {}

    image_rule = aws(
        "rbin", "create-rule", "--resource-type", "EC2_IMAGE",
        "--retention-period", "RetentionPeriodValue=5,RetentionPeriodUnit=DAYS",
        "--description", "images",
    )["Identifier"]  # fmt: skip
    aws(
        "rbin", "create-rule", "--resource-type", "EBS_SNAPSHOT",
        "--retention-period", "RetentionPeriodValue=2,RetentionPeriodUnit=DAYS",
    )  # fmt: skip
    assert aws("rbin", "get-rule", "--identifier", image_rule)["Description"] == "images"
    rules = aws("rbin", "list-rules", "--resource-type", "EC2_IMAGE")["Rules"]
    assert [r["Identifier"] for r in rules] == [image_rule]

    snap = snapshot(server, me, tmp_path, "cli.raw")
    mapping = json.dumps([{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}])
    image_id = aws(
        "ec2", "register-image", "--name", "rbin-cli-1", "--root-device-name", "/dev/xvda",
        "--block-device-mappings", mapping,
    )["ImageId"]  # fmt: skip
    aws("ec2", "deregister-image", "--image-id", image_id)
    binned = aws("ec2", "list-images-in-recycle-bin")["Images"]
    assert [b["ImageId"] for b in binned] == [image_id]
    aws("ec2", "restore-image-from-recycle-bin", "--image-id", image_id)
    aws("ec2", "deregister-image", "--image-id", image_id)
    # A binned image still uses its snapshot.
    refused = server.aws("ec2", "delete-snapshot", "--snapshot-id", snap, creds=me)
    assert refused.returncode != 0 and "InvalidSnapshot.InUse" in refused.stderr

    other = snapshot(server, me, tmp_path, "cli-2.raw")
    aws("ec2", "delete-snapshot", "--snapshot-id", other)
    listed = aws("ec2", "list-snapshots-in-recycle-bin", "--snapshot-ids", other)["Snapshots"]
    assert [s["SnapshotId"] for s in listed] == [other]
    aws("ec2", "restore-snapshot-from-recycle-bin", "--snapshot-id", other)
    assert aws("ec2", "describe-snapshots", "--snapshot-ids", other)["Snapshots"]
    aws("rbin", "delete-rule", "--identifier", image_rule)
