"""Who may see, use and change an image: the cross-account matrix, organizations, BPA."""

from __future__ import annotations

from typing import Any

import pytest
from image_helpers import World

from goldsmith.service.context import RequestContext
from goldsmith.service.errors import ClientError

ROLES = ("owner", "granted", "org_member", "ou_member", "stranger")


def _setup(world: World, share: str) -> tuple[dict[str, RequestContext], str]:
    """An image shared one way (``user``/``org``/``ou``/``public``/``none``) and five callers."""
    ctx = {role: world.account() for role in ROLES}
    orgs = world.images.organizations
    org = orgs.create_organization(ctx["owner"].account_id)
    parent = orgs.create_ou(org.org_id, "eng")
    child = orgs.create_ou(org.org_id, "web", parent.ou_id)
    orgs.place(ctx["org_member"].account_id, org.org_id)
    orgs.place(ctx["ou_member"].account_id, org.org_id, child.ou_id)
    image_id = world.register(ctx["owner"])
    grant: dict[str, Any] = {
        "user": {"UserId": ctx["granted"].account_id},
        "org": {"OrganizationArn": org.arn},
        "ou": {"OrganizationalUnitArn": parent.arn},  # nested: the child OU inherits it
        "public": {"Group": "all"},
    }.get(share, {})
    if grant:
        world.call(
            ctx["owner"],
            "ModifyImageAttribute",
            ImageId=image_id,
            LaunchPermission={"Add": [grant]},
        )
    return ctx, image_id


# share → roles that can see the image (owner always can).
VISIBLE = {
    "none": {"owner"},
    "user": {"owner", "granted"},
    "org": {"owner", "org_member", "ou_member"},
    "ou": {"owner", "ou_member"},
    "public": set(ROLES),
}


@pytest.mark.parametrize("share", sorted(VISIBLE))
def test_visibility_matrix(world: World, share: str) -> None:
    ctx, image_id = _setup(world, share)
    for role in ROLES:
        visible = role in VISIBLE[share]
        assert (image_id in world.ids(ctx[role])) is visible, role
        if visible:
            assert world.ids(ctx[role], ImageIds=[image_id]) == [image_id]
            world.call(
                ctx[role], "DescribeImageAttribute", ImageId=image_id, Attribute="description"
            )
            snap = world.images.deps.catalog
            with snap.begin() as conn:
                root = world.call(ctx[role], "DescribeImages", ImageIds=[image_id])["Images"][0]
                snapshot_id = root["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
                assert (
                    world.images.may_launch_snapshot(conn, ctx[role], snapshot_id)
                    or role == "owner"
                )
        else:
            assert (
                world.code(ctx[role], "DescribeImages", ImageIds=[image_id])
                == "InvalidAMIID.NotFound"
            )
            assert (
                world.code(
                    ctx[role], "DescribeImageAttribute", ImageId=image_id, Attribute="description"
                )
                == "InvalidAMIID.NotFound"
            )


OWNER_ACTIONS: list[tuple[str, dict[str, Any]]] = [
    ("ModifyImageAttribute", {"Description": {"Value": "x"}}),
    ("ResetImageAttribute", {"Attribute": "launchPermission"}),
    ("DescribeImageAttribute", {"Attribute": "launchPermission"}),
    ("EnableImageDeprecation", {"DeprecateAt": "2099-01-01T00:00:00Z"}),
    ("DisableImageDeprecation", {}),
    ("EnableImageDeregistrationProtection", {}),
    ("DisableImageDeregistrationProtection", {}),
    ("DisableImage", {}),
    ("DeregisterImage", {}),
]


@pytest.mark.parametrize(("action", "extra"), OWNER_ACTIONS)
@pytest.mark.parametrize("share", ["user", "public", "none"])
def test_only_the_owner_changes_an_image(
    world: World, action: str, extra: dict[str, Any], share: str
) -> None:
    from datetime import UTC, datetime, timedelta

    if "DeprecateAt" in extra:
        extra = {"DeprecateAt": datetime.now(UTC) + timedelta(days=30)}
    ctx, image_id = _setup(world, share)
    for role in ("granted", "stranger"):
        expected = "AuthFailure" if role in VISIBLE[share] else "InvalidAMIID.NotFound"
        assert world.code(ctx[role], action, ImageId=image_id, **extra) == expected, role
    world.call(ctx["owner"], action, ImageId=image_id, **extra)


def test_cancel_launch_permission_and_reset(world: World) -> None:
    ctx, image_id = _setup(world, "user")
    granted = ctx["granted"]
    assert world.call(granted, "CancelImageLaunchPermission", ImageId=image_id)["Return"] is True
    assert image_id not in world.ids(granted)
    assert (
        world.code(ctx["stranger"], "CancelImageLaunchPermission", ImageId=image_id)
        == "InvalidAMIID.NotFound"
    )
    owner = ctx["owner"]
    world.call(
        owner,
        "ModifyImageAttribute",
        ImageId=image_id,
        Attribute="launchPermission",
        OperationType="add",
        UserIds=[granted.account_id],
        UserGroups=["all"],
    )
    perms = world.call(
        owner, "DescribeImageAttribute", ImageId=image_id, Attribute="launchPermission"
    )
    assert {"Group": "all"} in perms["LaunchPermissions"]
    assert {"UserId": granted.account_id} in perms["LaunchPermissions"]
    world.call(owner, "ResetImageAttribute", ImageId=image_id, Attribute="launchPermission")
    perms = world.call(
        owner, "DescribeImageAttribute", ImageId=image_id, Attribute="launchPermission"
    )
    assert perms["LaunchPermissions"] == []
    assert image_id not in world.ids(ctx["stranger"])


def test_every_attribute_describes(world: World) -> None:
    me = world.account()
    image_id = world.register(me, Description="hello", BootMode="uefi")
    from goldsmith.service.images.attributes import ATTRIBUTES

    members = {}
    for attribute in ATTRIBUTES:
        if attribute == "blockDeviceMapping":
            continue  # deprecated: AuthFailure for everyone (below)
        out = world.call(me, "DescribeImageAttribute", ImageId=image_id, Attribute=attribute)
        assert out["ImageId"] == image_id
        members[attribute] = out
    assert members["description"]["Description"] == {"Value": "hello"}
    assert members["bootMode"]["BootMode"] == {"Value": "uefi"}
    assert members["deregistrationProtection"]["DeregistrationProtection"] == {"Value": "disabled"}
    assert (
        world.code(me, "DescribeImageAttribute", ImageId=image_id, Attribute="blockDeviceMapping")
        == "AuthFailure"
    )
    assert (
        world.code(me, "DescribeImageAttribute", ImageId=image_id, Attribute="colour")
        == "InvalidParameterValue"
    )
    assert (
        world.code(me, "ModifyImageAttribute", ImageId=image_id, Attribute="kernel", Value="x")
        == "InvalidParameterValue"
    )
    assert (
        world.code(me, "ModifyImageAttribute", ImageId=image_id, Description={"Value": "d" * 256})
        == "InvalidParameterValue"
    )
    world.call(me, "ModifyImageAttribute", ImageId=image_id, ImdsSupport={"Value": "v2.0"})
    out = world.call(me, "DescribeImageAttribute", ImageId=image_id, Attribute="imdsSupport")
    assert out["ImdsSupport"] == {"Value": "v2.0"}


@pytest.mark.parametrize(
    "grant",
    [
        {"UserId": "12345"},
        {"Group": "everyone"},
        {"OrganizationArn": "arn:aws:organizations::1:organization/o-x"},
        {"OrganizationalUnitArn": "ou-1234"},
        {"UserId": "123456789012", "Group": "all"},
    ],
)
def test_bad_grants(world: World, grant: dict[str, str]) -> None:
    me = world.account()
    image_id = world.register(me)
    with pytest.raises(ClientError) as info:
        world.call(me, "ModifyImageAttribute", ImageId=image_id, LaunchPermission={"Add": [grant]})
    assert info.value.code in ("InvalidParameterValue", "InvalidUserID.Malformed")


def test_block_public_access_refuses_new_public_sharing(world: World) -> None:
    me, other = world.account(), world.account()
    image_id = world.register(me)
    assert (
        world.call(me, "GetImageBlockPublicAccessState")["ImageBlockPublicAccessState"]
        == "unblocked"
    )
    world.call(me, "EnableImageBlockPublicAccess", ImageBlockPublicAccessState="block-new-sharing")
    public = {"Add": [{"Group": "all"}]}
    assert (
        world.code(me, "ModifyImageAttribute", ImageId=image_id, LaunchPermission=public)
        == "OperationNotPermitted"
    )
    # Sharing with an account is still allowed, and another account is not affected.
    world.call(
        me,
        "ModifyImageAttribute",
        ImageId=image_id,
        LaunchPermission={"Add": [{"UserId": other.account_id}]},
    )
    theirs = world.register(other)
    world.call(other, "ModifyImageAttribute", ImageId=theirs, LaunchPermission=public)
    world.call(me, "DisableImageBlockPublicAccess")
    world.call(me, "ModifyImageAttribute", ImageId=image_id, LaunchPermission=public)
    assert (
        world.code(me, "EnableImageBlockPublicAccess", ImageBlockPublicAccessState="on")
        == "InvalidParameterValue"
    )


def test_disabled_images_are_private_and_not_shareable(world: World) -> None:
    ctx, image_id = _setup(world, "public")
    owner = ctx["owner"]
    world.call(owner, "DisableImage", ImageId=image_id)
    assert image_id not in world.ids(ctx["stranger"], IncludeDisabled=True)
    assert image_id not in world.ids(owner)
    (image,) = world.call(owner, "DescribeImages", ImageIds=[image_id], IncludeDisabled=True)[
        "Images"
    ]
    assert image["State"] == "disabled" and image["Public"] is False
    share = {"Add": [{"UserId": ctx["granted"].account_id}]}
    assert (
        world.code(owner, "ModifyImageAttribute", ImageId=image_id, LaunchPermission=share)
        == "InvalidParameterValue"
    )
    world.call(owner, "EnableImage", ImageId=image_id)
    # Not re-shared automatically (EC2).
    assert image_id not in world.ids(ctx["stranger"])
    assert world.code(owner, "EnableImage", ImageId=image_id) == "IncorrectState"
