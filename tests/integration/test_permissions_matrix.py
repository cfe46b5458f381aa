"""The cross-account matrix over HTTP: every image and snapshot action × every kind of caller.

Callers (one account each, set up once for the module):

* ``owner``    — owns every image and snapshot;
* ``granted``  — named in a launch permission (images) / createVolumePermission (snapshots);
* ``org``      — a member at the root of an organization the image is shared with
  (``OrganizationArn``);
* ``ou``       — a member of a nested OU whose *parent* OU the image is shared with
  (``OrganizationalUnitArn``), placed by the admin CLI ``goldsmith orgs``;
* ``stranger`` — no relation to anything;
* ``public``   — the stranger again, acting on a public image / snapshot.

Each row of the tables says how EC2 answers: ``ok``, ``listed``/``unlisted`` for searches,
or the error code (InvalidAMIID.NotFound and InvalidSnapshot.NotFound for what the caller
cannot see, AuthFailure for what it sees but may not change, the EBS direct API's
AccessDeniedException for blocks it may not read or write). Organizations and OUs mean
nothing to snapshots (createVolumePermission names accounts or ``all``), so ``org``/``ou``
rows of the snapshot table answer like a stranger's.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from harness import Creds, Server

pytestmark = pytest.mark.integration

ROLES = ("owner", "granted", "org", "ou", "stranger", "public")
BLOCK = 512 * 1024
NF_AMI = "InvalidAMIID.NotFound"
NF_SNAP = "InvalidSnapshot.NotFound"
AF = "AuthFailure"
AD = "AccessDeniedException"
_names = itertools.count()


def _block(seed: str) -> tuple[bytes, str]:
    data = hashlib.sha256(seed.encode()).digest() * (BLOCK // 32)
    return data, base64.b64encode(hashlib.sha256(data).digest()).decode()


@dataclass
class World:
    """The accounts, their clients and the resources every row acts on."""

    server: Server
    creds: dict[str, Creds]
    ec2: dict[str, Any] = field(default_factory=dict)
    ebs: dict[str, Any] = field(default_factory=dict)
    image: dict[str, str] = field(default_factory=dict)  # role → the image it acts on
    image_snap: dict[str, str] = field(default_factory=dict)  # role → that image's snapshot
    snap: dict[str, str] = field(default_factory=dict)  # role → the snapshot it acts on
    org_arn: str = ""
    ou_arn: str = ""

    # -- building ---------------------------------------------------------------------------

    def snapshot(self, share: str | None = None) -> str:
        """A one-block completed snapshot of the owner, shared as ``share`` says."""
        ebs = self.ebs["owner"]
        sid = str(ebs.start_snapshot(VolumeSize=1)["SnapshotId"])
        data, checksum = _block(sid)
        ebs.put_snapshot_block(
            SnapshotId=sid,
            BlockIndex=0,
            BlockData=data,
            DataLength=BLOCK,
            Checksum=checksum,
            ChecksumAlgorithm="SHA256",
        )
        ebs.complete_snapshot(SnapshotId=sid, ChangedBlocksCount=1)
        self.ec2["owner"].get_waiter("snapshot_completed").wait(SnapshotIds=[sid])
        grants = {
            "granted": [{"UserId": self.creds["granted"].account_id}],
            "public": [{"Group": "all"}],
        }.get(share or "", [])
        if grants:
            self.ec2["owner"].modify_snapshot_attribute(
                SnapshotId=sid, CreateVolumePermission={"Add": grants}
            )
        return sid

    def launch_permissions(self, role: str) -> list[dict[str, str]]:
        if role == "public":
            return [{"Group": "all"}]
        if role == "org":
            return [{"OrganizationArn": self.org_arn}]
        return [
            {"UserId": self.creds["granted"].account_id},
            {"OrganizationalUnitArn": self.ou_arn},
        ]

    def register(self, role: str, snapshot: str | None = None) -> str:
        """A new image of the owner, shared the way ``role``'s image is."""
        ec2 = self.ec2["owner"]
        snapshot = snapshot or self.image_snap[role]
        image_id = str(
            ec2.register_image(
                Name=f"matrix-{next(_names)}",
                RootDeviceName="/dev/xvda",
                BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snapshot}}],
            )["ImageId"]
        )
        ec2.modify_image_attribute(
            ImageId=image_id, LaunchPermission={"Add": self.launch_permissions(role)}
        )
        return image_id

    def block_token(self, snapshot_id: str) -> str:
        (block,) = self.ebs["owner"].list_snapshot_blocks(SnapshotId=snapshot_id)["Blocks"]
        return str(block["BlockToken"])


@pytest.fixture(scope="module")
def world(server: Server) -> World:
    owner, granted, org, ou, stranger, manager = (server.new_account() for _ in range(6))
    creds = {"owner": owner, "granted": granted, "org": org, "ou": ou, "stranger": stranger}
    creds["public"] = stranger
    w = World(server, creds)
    for role, c in creds.items():
        w.ec2[role] = server.client(c)
        w.ebs[role] = server.client(c, service="ebs")

    def orgs(*args: str) -> Any:
        return json.loads(server.cli("orgs", *args, "--json").stdout)

    organization = orgs("create", manager.account_id)
    parent = orgs("create-ou", organization["org_id"], "engineering")
    child = orgs("create-ou", organization["org_id"], "web", "--parent", parent["ou_id"])
    server.cli("orgs", "place", org.account_id, organization["org_id"])
    server.cli("orgs", "place", ou.account_id, organization["org_id"], "--ou", child["ou_id"])
    w.org_arn, w.ou_arn = organization["arn"], parent["arn"]

    # Images: one shared with `granted` and the parent OU, one with the organization, one
    # public. Each maps its own snapshot, shared with nobody.
    for kind in ("shared", "org", "public"):
        role = {"shared": "granted"}.get(kind, kind)
        snap = w.snapshot()
        image_id = w.register(role, snap)
        for r in ROLES:
            if {"org": "org", "public": "public"}.get(r, "shared") == kind:
                w.image[r], w.image_snap[r] = image_id, snap
    # Snapshots: one shared with `granted`, one public.
    shared, public = w.snapshot("granted"), w.snapshot("public")
    for r in ROLES:
        w.snap[r] = public if r == "public" else shared
    return w


def outcome(call: Callable[[], Any]) -> str:
    try:
        result = call()
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return result if isinstance(result, str) else "ok"


def listed(found: bool) -> str:
    return "listed" if found else "unlisted"


# -- image actions ------------------------------------------------------------------------------
# Each takes the world and the role and acts with the role's clients on the role's image
# (a fresh one where success would change it).

Action = Callable[[World, str], Any]


def _ids(page: dict[str, Any]) -> set[str]:
    return {i["ImageId"] for i in page["Images"]}


def _fresh_owner_or_shared(w: World, role: str) -> str:
    return w.register(role) if role == "owner" else w.image[role]


def _enable_after_disable(w: World, role: str) -> Any:
    image_id = _fresh_owner_or_shared(w, role)
    if role == "owner":
        w.ec2["owner"].disable_image(ImageId=image_id)
    return w.ec2[role].enable_image(ImageId=image_id)


def _disable_protection(w: World, role: str) -> Any:
    image_id = _fresh_owner_or_shared(w, role)
    if role == "owner":
        w.ec2["owner"].enable_image_deregistration_protection(ImageId=image_id)
    return w.ec2[role].disable_image_deregistration_protection(ImageId=image_id)


def _cancel(w: World, role: str) -> Any:
    image_id = w.register(role) if role in ("owner", "granted") else w.image[role]
    return w.ec2[role].cancel_image_launch_permission(ImageId=image_id)


def _copy_image_snapshot(w: World, role: str) -> Any:
    return w.ec2[role].copy_snapshot(SourceSnapshotId=w.image_snap[role], SourceRegion="us-east-1")


def _get_image_snapshot_block(w: World, role: str) -> Any:
    snap = w.image_snap[role]
    return w.ebs[role].get_snapshot_block(
        SnapshotId=snap, BlockIndex=0, BlockToken=w.block_token(snap)
    )


IMAGE_ACTIONS: dict[str, Action] = {
    "DescribeImages(ImageIds)": lambda w, r: w.ec2[r].describe_images(ImageIds=[w.image[r]]),
    "DescribeImages(Owners)": lambda w, r: listed(
        w.image[r] in _ids(w.ec2[r].describe_images(Owners=[w.creds["owner"].account_id]))
    ),
    "DescribeImages(ExecutableUsers=self)": lambda w, r: listed(
        w.image[r] in _ids(w.ec2[r].describe_images(ExecutableUsers=["self"]))
    ),
    "DescribeImages(ExecutableUsers=all)": lambda w, r: listed(
        w.image[r] in _ids(w.ec2[r].describe_images(ExecutableUsers=["all"]))
    ),
    "DescribeImageAttribute(description)": lambda w, r: w.ec2[r].describe_image_attribute(
        ImageId=w.image[r], Attribute="description"
    ),
    "DescribeImageAttribute(launchPermission)": lambda w, r: w.ec2[r].describe_image_attribute(
        ImageId=w.image[r], Attribute="launchPermission"
    ),
    "ModifyImageAttribute(description)": lambda w, r: w.ec2[r].modify_image_attribute(
        ImageId=w.image[r], Description={"Value": f"changed by {r}"}
    ),
    "ModifyImageAttribute(launchPermission)": lambda w, r: (
        w.ec2[r].modify_image_attribute(
            ImageId=w.image[r],
            LaunchPermission={"Add": [{"UserId": w.creds["stranger"].account_id}]},
        )
        if r != "owner"
        else w.ec2[r].modify_image_attribute(
            ImageId=w.register(r), LaunchPermission={"Add": [{"UserId": "123456789012"}]}
        )
    ),
    "ResetImageAttribute": lambda w, r: w.ec2[r].reset_image_attribute(
        ImageId=_fresh_owner_or_shared(w, r), Attribute="launchPermission"
    ),
    "CancelImageLaunchPermission": _cancel,
    "DeregisterImage": lambda w, r: w.ec2[r].deregister_image(ImageId=_fresh_owner_or_shared(w, r)),
    "DisableImage": lambda w, r: w.ec2[r].disable_image(ImageId=_fresh_owner_or_shared(w, r)),
    "EnableImage": _enable_after_disable,
    "EnableImageDeprecation": lambda w, r: w.ec2[r].enable_image_deprecation(
        ImageId=_fresh_owner_or_shared(w, r), DeprecateAt=datetime.now(UTC) + timedelta(days=30)
    ),
    "DisableImageDeprecation": lambda w, r: w.ec2[r].disable_image_deprecation(ImageId=w.image[r]),
    "EnableImageDeregistrationProtection": lambda w, r: w.ec2[
        r
    ].enable_image_deregistration_protection(ImageId=_fresh_owner_or_shared(w, r)),
    "DisableImageDeregistrationProtection": _disable_protection,
    "CreateTags(image)": lambda w, r: w.ec2[r].create_tags(
        Resources=[w.image[r]], Tags=[{"Key": "seen-by", "Value": r}]
    ),
    # The image's snapshot: readable by whoever may launch the image, visible to the owner only.
    "CopySnapshot(image's snapshot)": _copy_image_snapshot,
    "DescribeSnapshots(image's snapshot)": lambda w, r: w.ec2[r].describe_snapshots(
        SnapshotIds=[w.image_snap[r]]
    ),
    "DescribeSnapshots(RestorableBy=self) lists image's snapshot": lambda w, r: listed(
        w.image_snap[r]
        in {
            s["SnapshotId"]
            for s in w.ec2[r].describe_snapshots(RestorableByUserIds=["self"])["Snapshots"]
        }
    ),
    "ModifySnapshotAttribute(image's snapshot)": lambda w, r: w.ec2[r].modify_snapshot_attribute(
        SnapshotId=w.image_snap[r],
        CreateVolumePermission={"Remove": [{"UserId": "123456789012"}]},
    ),
    "DeleteSnapshot(image's snapshot)": lambda w, r: w.ec2[r].delete_snapshot(
        SnapshotId=w.image_snap[r]
    ),
    "ebs:ListSnapshotBlocks(image's snapshot)": lambda w, r: w.ebs[r].list_snapshot_blocks(
        SnapshotId=w.image_snap[r]
    ),
    "ebs:GetSnapshotBlock(image's snapshot)": _get_image_snapshot_block,
}

#: action → expected outcome for (owner, granted, org, ou, stranger, public).
IMAGE_EXPECTED: dict[str, tuple[str, ...]] = {
    "DescribeImages(ImageIds)": ("ok", "ok", "ok", "ok", NF_AMI, "ok"),
    "DescribeImages(Owners)": ("listed",) * 4 + ("unlisted", "listed"),
    # "self": images shared with the caller directly or through its organization/OU; the
    # owner's own and public images are not "shared with" it.
    "DescribeImages(ExecutableUsers=self)": (
        *("unlisted", "listed", "listed", "listed"),
        *("unlisted", "unlisted"),
    ),
    "DescribeImages(ExecutableUsers=all)": ("unlisted",) * 5 + ("listed",),
    "DescribeImageAttribute(description)": ("ok", "ok", "ok", "ok", NF_AMI, "ok"),
    "DescribeImageAttribute(launchPermission)": ("ok", AF, AF, AF, NF_AMI, AF),
    "ModifyImageAttribute(description)": ("ok", AF, AF, AF, NF_AMI, AF),
    "ModifyImageAttribute(launchPermission)": ("ok", AF, AF, AF, NF_AMI, AF),
    "ResetImageAttribute": ("ok", AF, AF, AF, NF_AMI, AF),
    # Only a direct grant can be given up; grants through an organization/OU cannot.
    "CancelImageLaunchPermission": ("InvalidParameterValue", "ok")
    + ("InvalidParameterValue",) * 2
    + (NF_AMI, "InvalidParameterValue"),
    "DeregisterImage": ("ok", AF, AF, AF, NF_AMI, AF),
    "DisableImage": ("ok", AF, AF, AF, NF_AMI, AF),
    "EnableImage": ("ok", AF, AF, AF, NF_AMI, AF),
    "EnableImageDeprecation": ("ok", AF, AF, AF, NF_AMI, AF),
    "DisableImageDeprecation": ("ok", AF, AF, AF, NF_AMI, AF),
    "EnableImageDeregistrationProtection": ("ok", AF, AF, AF, NF_AMI, AF),
    "DisableImageDeregistrationProtection": ("ok", AF, AF, AF, NF_AMI, AF),
    "CreateTags(image)": ("ok", NF_AMI, NF_AMI, NF_AMI, NF_AMI, NF_AMI),
    "CopySnapshot(image's snapshot)": ("ok", "ok", "ok", "ok", NF_SNAP, "ok"),
    "DescribeSnapshots(image's snapshot)": ("ok",) + (NF_SNAP,) * 5,
    "DescribeSnapshots(RestorableBy=self) lists image's snapshot": ("listed",) + ("unlisted",) * 5,
    "ModifySnapshotAttribute(image's snapshot)": ("ok",) + (NF_SNAP,) * 5,
    "DeleteSnapshot(image's snapshot)": ("InvalidSnapshot.InUse",) + (NF_SNAP,) * 5,
    "ebs:ListSnapshotBlocks(image's snapshot)": ("ok", "ok", "ok", "ok", AD, "ok"),
    "ebs:GetSnapshotBlock(image's snapshot)": ("ok", "ok", "ok", "ok", AD, "ok"),
}


# -- snapshot actions ---------------------------------------------------------------------------


def _fresh_snapshot(w: World, role: str) -> str:
    return w.snapshot("granted") if role == "owner" else w.snap[role]


def _snap_ids(page: dict[str, Any]) -> set[str]:
    return {s["SnapshotId"] for s in page["Snapshots"]}


def _put_block(w: World, role: str) -> Any:
    pending = w.ebs["owner"].start_snapshot(VolumeSize=1)["SnapshotId"]
    data, checksum = _block(f"{pending}-{role}")
    return w.ebs[role].put_snapshot_block(
        SnapshotId=pending,
        BlockIndex=0,
        BlockData=data,
        DataLength=BLOCK,
        Checksum=checksum,
        ChecksumAlgorithm="SHA256",
    )


SNAPSHOT_ACTIONS: dict[str, Action] = {
    "DescribeSnapshots(SnapshotIds)": lambda w, r: w.ec2[r].describe_snapshots(
        SnapshotIds=[w.snap[r]]
    ),
    "DescribeSnapshots(OwnerIds)": lambda w, r: listed(
        w.snap[r] in _snap_ids(w.ec2[r].describe_snapshots(OwnerIds=[w.creds["owner"].account_id]))
    ),
    "DescribeSnapshots(RestorableByUserIds=self)": lambda w, r: listed(
        w.snap[r] in _snap_ids(w.ec2[r].describe_snapshots(RestorableByUserIds=["self"]))
    ),
    "DescribeSnapshotAttribute": lambda w, r: w.ec2[r].describe_snapshot_attribute(
        SnapshotId=w.snap[r], Attribute="createVolumePermission"
    ),
    "ModifySnapshotAttribute": lambda w, r: w.ec2[r].modify_snapshot_attribute(
        SnapshotId=w.snap[r], CreateVolumePermission={"Remove": [{"UserId": "123456789012"}]}
    ),
    "ResetSnapshotAttribute": lambda w, r: w.ec2[r].reset_snapshot_attribute(
        SnapshotId=_fresh_snapshot(w, r), Attribute="createVolumePermission"
    ),
    "DeleteSnapshot": lambda w, r: w.ec2[r].delete_snapshot(SnapshotId=_fresh_snapshot(w, r)),
    "CopySnapshot": lambda w, r: w.ec2[r].copy_snapshot(
        SourceSnapshotId=w.snap[r], SourceRegion="us-east-1"
    ),
    "CreateTags(snapshot)": lambda w, r: w.ec2[r].create_tags(
        Resources=[w.snap[r]], Tags=[{"Key": "seen-by", "Value": r}]
    ),
    "ebs:ListSnapshotBlocks": lambda w, r: w.ebs[r].list_snapshot_blocks(SnapshotId=w.snap[r]),
    "ebs:GetSnapshotBlock": lambda w, r: w.ebs[r].get_snapshot_block(
        SnapshotId=w.snap[r], BlockIndex=0, BlockToken=w.block_token(w.snap[r])
    ),
    "ebs:StartSnapshot(ParentSnapshotId)": lambda w, r: w.ebs[r].start_snapshot(
        VolumeSize=1, ParentSnapshotId=w.snap[r]
    ),
    "ebs:PutSnapshotBlock(owner's pending snapshot)": _put_block,
}

SNAPSHOT_EXPECTED: dict[str, tuple[str, ...]] = {
    "DescribeSnapshots(SnapshotIds)": ("ok", "ok", NF_SNAP, NF_SNAP, NF_SNAP, "ok"),
    "DescribeSnapshots(OwnerIds)": ("listed", "listed") + ("unlisted",) * 3 + ("listed",),
    "DescribeSnapshots(RestorableByUserIds=self)": ("listed", "listed")
    + ("unlisted",) * 3
    + ("listed",),
    "DescribeSnapshotAttribute": ("ok", AF, NF_SNAP, NF_SNAP, NF_SNAP, AF),
    "ModifySnapshotAttribute": ("ok", AF, NF_SNAP, NF_SNAP, NF_SNAP, AF),
    "ResetSnapshotAttribute": ("ok", AF, NF_SNAP, NF_SNAP, NF_SNAP, AF),
    "DeleteSnapshot": ("ok", AF, NF_SNAP, NF_SNAP, NF_SNAP, AF),
    "CopySnapshot": ("ok", "ok", NF_SNAP, NF_SNAP, NF_SNAP, "ok"),
    "CreateTags(snapshot)": ("ok",) + (NF_SNAP,) * 5,
    "ebs:ListSnapshotBlocks": ("ok", "ok", AD, AD, AD, "ok"),
    "ebs:GetSnapshotBlock": ("ok", "ok", AD, AD, AD, "ok"),
    "ebs:StartSnapshot(ParentSnapshotId)": ("ok", "ok", AD, AD, AD, "ok"),
    "ebs:PutSnapshotBlock(owner's pending snapshot)": ("ok",) + (AD,) * 5,
}


def _rows(expected: dict[str, tuple[str, ...]]) -> Iterator[Any]:
    for action, outcomes in expected.items():
        assert len(outcomes) == len(ROLES), action
        for role, want in zip(ROLES, outcomes, strict=True):
            yield pytest.param(action, role, want, id=f"{action}-{role}")


def test_tables_cover_every_action() -> None:
    assert set(IMAGE_ACTIONS) == set(IMAGE_EXPECTED)
    assert set(SNAPSHOT_ACTIONS) == set(SNAPSHOT_EXPECTED)


@pytest.mark.parametrize(("action", "role", "expected"), list(_rows(IMAGE_EXPECTED)))
def test_image_matrix(world: World, action: str, role: str, expected: str) -> None:
    assert outcome(lambda: IMAGE_ACTIONS[action](world, role)) == expected


@pytest.mark.parametrize(("action", "role", "expected"), list(_rows(SNAPSHOT_EXPECTED)))
def test_snapshot_matrix(world: World, action: str, role: str, expected: str) -> None:
    assert outcome(lambda: SNAPSHOT_ACTIONS[action](world, role)) == expected


def test_grants_do_not_leak_between_organizations_and_ous(world: World) -> None:
    """The org-root member does not match the OU grant; the OU member matches its parents."""
    shared, org_image = world.image["granted"], world.image["org"]
    assert outcome(lambda: world.ec2["org"].describe_images(ImageIds=[shared])) == NF_AMI
    assert outcome(lambda: world.ec2["ou"].describe_images(ImageIds=[org_image])) == "ok"
    assert outcome(lambda: world.ec2["granted"].describe_images(ImageIds=[org_image])) == NF_AMI


def test_disabled_and_deprecated_images_per_role(world: World) -> None:
    """Deprecated: others list it only with IncludeDeprecated; disabled: only the owner."""
    image_id = world.register("granted")
    world.ec2["owner"].enable_image_deprecation(
        ImageId=image_id, DeprecateAt="2000-01-01T00:00:00Z"
    )

    def seen(role: str, **params: Any) -> bool:
        return image_id in _ids(
            world.ec2[role].describe_images(Owners=[world.creds["owner"].account_id], **params)
        )

    assert seen("owner") and seen("ou", IncludeDeprecated=True)
    assert not seen("granted") and not seen("ou")
    world.ec2["owner"].disable_image(ImageId=image_id)
    assert not seen("granted", IncludeDeprecated=True, IncludeDisabled=True)
    assert seen("owner", IncludeDisabled=True)
    assert outcome(lambda: world.ec2["granted"].describe_images(ImageIds=[image_id])) == NF_AMI
