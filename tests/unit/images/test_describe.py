"""DescribeImages: each scoping parameter on its own and together, filters, pages, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from image_helpers import World

from goldsmith.service.images.describe import SPEC


def test_default_scope_is_own_public_and_shared(world: World) -> None:
    me, other, third = world.account(), world.account(), world.account()
    mine = world.register(me)
    public = world.register(other)
    shared = world.register(other)
    private = world.register(third)
    world.call(
        other, "ModifyImageAttribute", ImageId=public, LaunchPermission={"Add": [{"Group": "all"}]}
    )
    world.call(
        other,
        "ModifyImageAttribute",
        ImageId=shared,
        LaunchPermission={"Add": [{"UserId": me.account_id}]},
    )
    seen = set(world.ids(me))
    assert {mine, public, shared} <= seen and private not in seen
    assert world.code(me, "DescribeImages", ImageIds=[private]) == "InvalidAMIID.NotFound"


def test_owners_self_ids_and_platform_alias(world: World) -> None:
    me, other = world.account(), world.account()
    mine = world.register(me)
    theirs = world.register(other)
    world.call(
        other, "ModifyImageAttribute", ImageId=theirs, LaunchPermission={"Add": [{"Group": "all"}]}
    )
    platform = world.register(world.ctx_of(world.platform))
    world.call(
        world.ctx_of(world.platform),
        "ModifyImageAttribute",
        ImageId=platform,
        LaunchPermission={"Add": [{"Group": "all"}]},
    )
    assert world.ids(me, Owners=["self"]) == [mine]
    assert world.ids(me, Owners=[other.account_id]) == [theirs]
    assert world.ids(me, Owners=["amazon"]) == [platform]
    assert sorted(world.ids(me, Owners=["self", "amazon"])) == sorted([mine, platform])
    assert world.ids(me, Owners=["aws-marketplace"]) == []
    (image,) = world.call(me, "DescribeImages", Owners=["amazon"])["Images"]
    assert image["ImageOwnerAlias"] == "amazon"
    assert world.ids(me, Filters=[{"Name": "owner-alias", "Values": ["amazon"]}]) == [platform]


def test_executable_users(world: World) -> None:
    me, other = world.account(), world.account()
    world.register(me)
    public = world.register(other)
    shared = world.register(other)
    world.call(
        other, "ModifyImageAttribute", ImageId=public, LaunchPermission={"Add": [{"Group": "all"}]}
    )
    world.call(
        other,
        "ModifyImageAttribute",
        ImageId=shared,
        LaunchPermission={"Add": [{"UserId": me.account_id}]},
    )
    assert world.ids(me, ExecutableUsers=["self"]) == [shared]
    assert world.ids(me, ExecutableUsers=[me.account_id]) == [shared]
    assert public in world.ids(me, ExecutableUsers=["all"])
    assert shared not in world.ids(me, ExecutableUsers=["all"])
    # The owner asks who its images are shared with.
    assert world.ids(other, ExecutableUsers=[me.account_id]) == [shared]
    # Every parameter applies: Owners and ExecutableUsers together intersect.
    assert world.ids(me, ExecutableUsers=["self"], Owners=["self"]) == []


def test_filters_apply_with_image_ids(world: World) -> None:
    me = world.account()
    a = world.register(me, "alpha-1", Architecture="arm64")
    b = world.register(me, "beta-1")
    got = world.ids(me, ImageIds=[a, b], Filters=[{"Name": "architecture", "Values": ["arm64"]}])
    assert got == [a]


@pytest.mark.parametrize(
    ("name", "values", "expect"),
    [
        ("name", ["web-*"], {"web-1", "web-2"}),
        ("name", ["WEB-*"], set()),  # case-sensitive, as EC2
        ("name", ["web-?"], {"web-1", "web-2"}),
        ("name", ["db_1"], {"db_1"}),
        ("name", ["db\\_1"], {"db_1"}),
        ("name", ["db%1"], set()),
        ("architecture", ["arm64"], {"web-2"}),
        ("tag:env", ["prod"], {"web-1"}),
        ("tag:env", ["p*"], {"web-1"}),
        ("tag-key", ["env"], {"web-1", "db_1"}),
        ("tag-value", ["dev"], {"db_1"}),
        ("is-public", ["true"], {"web-2"}),
        ("is-public", ["false"], {"web-1", "db_1"}),
        ("state", ["available"], {"web-1", "web-2", "db_1"}),
        ("image-type", ["machine"], {"web-1", "web-2", "db_1"}),
        ("root-device-name", ["/dev/xvda"], {"web-1", "web-2", "db_1"}),
        ("block-device-mapping.volume-size", ["8"], {"web-1", "web-2", "db_1"}),
        ("block-device-mapping.device-name", ["/dev/xvda"], {"web-1", "web-2", "db_1"}),
        ("virtualization-type", ["hvm"], {"web-2"}),
        ("hypervisor", ["xen"], {"web-1", "web-2", "db_1"}),
        ("free-tier-eligible", ["false"], {"web-1", "web-2", "db_1"}),
        ("scan-result.finding-scan-date", ["*"], set()),
        ("image-watermark.watermark-key", ["*"], set()),
        ("instance-type-specification.supported-instance-type", ["t3.*"], set()),
        ("public-ssm-parameter-name", ["*"], set()),
        ("image-allowed", ["true"], set()),
        ("platform", ["windows"], set()),
    ],
)
def test_filter_table(world: World, name: str, values: list[str], expect: set[str]) -> None:
    me = world.account()
    world.register(
        me,
        "web-1",
        TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "env", "Value": "prod"}]}],
    )
    web2 = world.register(me, "web-2", Architecture="arm64", VirtualizationType="hvm")
    world.register(
        me,
        "db_1",
        TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "env", "Value": "dev"}]}],
    )
    world.call(
        me, "ModifyImageAttribute", ImageId=web2, LaunchPermission={"Add": [{"Group": "all"}]}
    )
    images = world.call(
        me, "DescribeImages", Owners=["self"], Filters=[{"Name": name, "Values": values}]
    )
    assert {i["Name"] for i in images["Images"]} == expect


def test_every_reference_filter_is_accepted() -> None:
    reference = {
        "architecture", "block-device-mapping.delete-on-termination",
        "block-device-mapping.device-name", "block-device-mapping.snapshot-id",
        "block-device-mapping.volume-size", "block-device-mapping.volume-type",
        "block-device-mapping.encrypted", "boot-mode", "creation-date", "description",
        "ena-support", "free-tier-eligible", "hypervisor", "image-allowed", "image-id",
        "image-watermark.source-image-creation-time", "image-watermark.source-image-id",
        "image-watermark.source-image-region", "image-watermark.watermark-creation-time",
        "image-watermark.watermark-key", "image-type",
        "instance-type-specification.supported-instance-type",
        "instance-type-specification.unsupported-instance-type", "is-public", "kernel-id",
        "manifest-location", "name", "owner-alias", "owner-id", "platform", "product-code",
        "product-code.type", "public-ssm-parameter-name", "ramdisk-id", "root-device-name",
        "root-device-type", "scan-result.critical-fix-available-since",
        "scan-result.finding-scan-date", "scan-result.high-fix-available-since",
        "scan-result.highest-finding-severity-label",
        "scan-result.informational-fix-available-since", "scan-result.low-fix-available-since",
        "scan-result.medium-fix-available-since", "source-image-id", "source-image-region",
        "source-instance-id", "state", "state-reason-code", "state-reason-message",
        "sriov-net-support", "tag-key", "tag-value", "virtualization-type",
    }  # fmt: skip
    assert reference <= SPEC.names


def test_unknown_filter_and_bad_ids(world: World) -> None:
    me = world.account()
    bad = [{"Name": "no-such-filter", "Values": ["x"]}]
    assert world.code(me, "DescribeImages", Filters=bad) == "InvalidParameterValue"
    assert world.code(me, "DescribeImages", ImageIds=["ami-xyz"]) == "InvalidAMIID.Malformed"
    assert world.code(me, "DescribeImages", ImageIds=["snap-0123456789abcdef0"]) == (
        "InvalidAMIID.Malformed"
    )
    assert world.code(me, "DescribeImages", ImageIds=["ami-0123456789abcdef0"]) == (
        "InvalidAMIID.NotFound"
    )
    many = [{"Name": "name", "Values": [f"n{i}" for i in range(1000)]}]
    assert world.code(me, "DescribeImages", Filters=many) == "InvalidParameterValue"


def test_pages(world: World) -> None:
    me = world.account()
    made = sorted(world.register(me) for _ in range(12))
    seen: list[str] = []
    token = None
    while True:
        params = {"Owners": ["self"], "MaxResults": 5, **({"NextToken": token} if token else {})}
        page = world.call(me, "DescribeImages", **params)
        seen += [i["ImageId"] for i in page["Images"]]
        token = page.get("NextToken")
        if not token:
            break
    assert seen == made
    assert world.code(me, "DescribeImages", MaxResults=1001) == "InvalidParameterValue"
    page = world.call(me, "DescribeImages", Owners=["self"], MaxResults=5)
    changed = {"Owners": ["self", "amazon"], "MaxResults": 5, "NextToken": page["NextToken"]}
    assert world.code(me, "DescribeImages", **changed) == "InvalidPaginationToken"


def test_deprecated_hidden_from_others_unless_asked(world: World) -> None:
    owner, other = world.account(), world.account()
    image_id = world.register(owner)
    world.call(
        owner,
        "ModifyImageAttribute",
        ImageId=image_id,
        LaunchPermission={"Add": [{"Group": "all"}]},
    )
    past = datetime.now(UTC) - timedelta(minutes=5)
    # Stored directly: the API refuses nothing in the past, but time passes.
    from goldsmith.catalog import images as rows

    with world.catalog.begin() as conn:
        rows.update_image(conn, image_id, deprecation_time=past)
    assert image_id not in world.ids(other)
    assert image_id in world.ids(other, IncludeDeprecated=True)
    assert image_id in world.ids(owner)
    (image,) = world.call(owner, "DescribeImages", ImageIds=[image_id])["Images"]
    assert image["DeprecationTime"].endswith("Z")
