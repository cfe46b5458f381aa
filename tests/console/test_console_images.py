"""The images and key pairs pages through their JSON twins (and a few HTML answers).

Each test uses fresh accounts, so the tables hold exactly the images the test registered.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError
from console_helpers import ConsoleClient, Images, flash_text, new_account

from harness import Creds, Server

pytestmark = pytest.mark.integration

MakeConsole = Callable[[Creds], ConsoleClient]


def _names(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [image["Name"] for image in response.json()["Images"]]


@pytest.fixture
def owner(server: Server) -> Creds:
    return new_account(server)


@pytest.fixture
def images(server: Server, owner: Creds) -> Images:
    return Images(server, owner)


def test_table_searches_filters_sorts_and_pages(
    owner: Creds, images: Images, console_factory: MakeConsole
) -> None:
    ids = {}
    for name in ("web-3", "web-1", "db-2", "web-2", "batch-1"):
        arch = "arm64" if name.endswith("2") else "x86_64"
        ids[name] = images.register(name, Architecture=arch)
    images.ec2.create_tags(Resources=[ids["web-2"]], Tags=[{"Key": "team", "Value": "web"}])
    me = console_factory(owner)
    assert _names(me.get_json("/console/images")) == ["batch-1", "db-2", "web-1", "web-2", "web-3"]
    assert _names(me.get_json("/console/images", q="web")) == ["web-1", "web-2", "web-3"]
    assert _names(me.get_json("/console/images", q="web-?", dir="desc")) == [
        "web-3",
        "web-2",
        "web-1",
    ]
    assert _names(me.get_json("/console/images", architecture="arm64")) == ["db-2", "web-2"]
    assert _names(me.get_json("/console/images", tag="team=web")) == ["web-2"]
    assert _names(me.get_json("/console/images", tag="team")) == ["web-2"]
    by_id = sorted(ids.values())
    assert [i["ImageId"] for i in me.get_json("/console/images", sort="id").json()["Images"]] == (
        by_id
    )
    # Creation order (ties broken by id, so each page is well defined), 25 per page.
    created = me.get_json("/console/images", sort="created", per=25).json()
    assert created["Total"] == 5
    assert created["Pages"] == 1
    first = me.get_json("/console/images", per=25, page=1).json()
    assert first["Page"] == 1
    beyond = me.get_json("/console/images", per=25, page=2).json()
    assert beyond["Images"] == []
    assert beyond["Total"] == 5


def test_paging_walks_every_image_once(
    owner: Creds, images: Images, console_factory: MakeConsole
) -> None:
    names = [f"page-{i:02d}" for i in range(30)]
    for name in names:
        images.register(name)
    me = console_factory(owner)
    one = me.get_json("/console/images", per=25, page=1).json()
    two = me.get_json("/console/images", per=25, page=2).json()
    assert (one["Total"], one["Pages"]) == (30, 2)
    assert [i["Name"] for i in one["Images"] + two["Images"]] == names
    html = me.http.get("/console/images", params={"per": "25", "page": "2"}).text
    assert "Page 2 of 2" in html
    assert 'rel="prev"' in html


def test_unknown_table_parameters_are_errors(owner: Creds, console_factory: MakeConsole) -> None:
    me = console_factory(owner)
    for params in ({"scope": "everyone"}, {"sort": "size"}, {"deprecated": "maybe"}):
        response = me.get_json("/console/images", **params)
        assert response.status_code == 400
        assert response.json()["Error"]["Code"] == "InvalidParameterValue"
    page = me.http.get("/console/images", params={"sort": "size"})
    assert page.status_code == 400
    assert "InvalidParameterValue: Unknown sort key" in flash_text(page)


def test_sharing_with_an_account_shows_under_shared_with_me(
    server: Server, owner: Creds, images: Images, console_factory: MakeConsole
) -> None:
    friend = new_account(server)
    image_id = images.register("shared-one")
    me, them = console_factory(owner), console_factory(friend)
    assert _names(them.get_json("/console/images", scope="shared")) == []
    done = me.post(
        f"/console/images/{image_id}/permissions", {"op": "add", "accounts": friend.account_id}
    )
    assert done.status_code == 200, done.text
    perms = me.get_json(f"/console/images/{image_id}", tab="permissions").json()["Permissions"]
    assert perms["Accounts"] == [friend.account_id]
    assert _names(them.get_json("/console/images", scope="shared")) == ["shared-one"]
    assert _names(them.get_json("/console/images", scope="owned")) == []
    # The friend sees the image but not its permissions, and cannot change them.
    seen = them.get_json(f"/console/images/{image_id}", tab="permissions").json()
    assert seen["IsOwner"] is False
    assert "Permissions" not in seen
    refused = them.post(f"/console/images/{image_id}/permissions", {"op": "public"})
    assert refused.json()["Error"]["Code"] == "AuthFailure"
    me.post(
        f"/console/images/{image_id}/permissions", {"op": "remove", "accounts": friend.account_id}
    )
    assert _names(them.get_json("/console/images", scope="shared")) == []


def test_public_private_and_block_public_access(
    server: Server, owner: Creds, images: Images, console_factory: MakeConsole
) -> None:
    image_id = images.register("going-public")
    me, stranger = console_factory(owner), console_factory(new_account(server))
    assert me.post(f"/console/images/{image_id}/permissions", {"op": "public"}).status_code == 200
    assert "going-public" in _names(stranger.get_json("/console/images", scope="public"))
    assert "going-public" not in _names(stranger.get_json("/console/images", scope="shared"))
    me.post(f"/console/images/{image_id}/permissions", {"op": "private"})
    assert "going-public" not in _names(stranger.get_json("/console/images", scope="public"))
    images.ec2.enable_image_block_public_access(ImageBlockPublicAccessState="block-new-sharing")
    perms = me.get_json(f"/console/images/{image_id}", tab="permissions").json()["Permissions"]
    assert perms["BlockPublicAccess"] is True
    refused = me.post(f"/console/images/{image_id}/permissions", {"op": "public"})
    assert refused.json()["Error"]["Code"] == "OperationNotPermitted"
    html = me.http.get(f"/console/images/{image_id}", params={"tab": "permissions"}).text
    assert "Block public access for AMIs is <strong>on</strong>" in html
    assert re.search(r'value="public" disabled', html)


def test_bad_account_ids_are_refused_before_any_call(
    owner: Creds, images: Images, console_factory: MakeConsole
) -> None:
    image_id = images.register()
    me = console_factory(owner)
    response = me.post(f"/console/images/{image_id}/permissions", {"op": "add", "accounts": "12x"})
    assert response.status_code == 400
    assert "is not a 12-digit account id" in response.json()["Error"]["Message"]


def test_tags_are_edited_on_the_tags_tab(
    owner: Creds, images: Images, console_factory: MakeConsole
) -> None:
    image_id = images.register()
    me = console_factory(owner)
    me.post(f"/console/images/{image_id}/tags", {"key": "env", "value": "prod"})
    me.post(f"/console/images/{image_id}/tags", {"key": "team", "value": "a"})
    me.post(f"/console/images/{image_id}/tags", {"key": "team", "value": "b"})
    tags = me.get_json(f"/console/images/{image_id}", tab="tags").json()["Image"]["Tags"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("env", "prod"), ("team", "b")]
    me.post(f"/console/images/{image_id}/tags", {"key": "env", "op": "delete"})
    tags = me.get_json(f"/console/images/{image_id}").json()["Image"]["Tags"]
    assert [(t["Key"], t["Value"]) for t in tags] == [("team", "b")]


def test_deprecate_disable_enable(
    owner: Creds, images: Images, console_factory: MakeConsole
) -> None:
    image_id = images.register("lifecycle")
    me = console_factory(owner)
    done = me.post(f"/console/images/{image_id}/deprecate", {"at": "2020-01-01T00:00"})
    assert done.status_code == 200, done.text
    image = me.get_json(f"/console/images/{image_id}").json()["Image"]
    assert image["DeprecationTime"].startswith("2020-01-01T00:00")
    assert _names(me.get_json("/console/images", deprecated="only")) == ["lifecycle"]
    me.post(f"/console/images/{image_id}/deprecate", {"op": "cancel"})
    assert _names(me.get_json("/console/images", deprecated="only")) == []
    bad = me.post(f"/console/images/{image_id}/deprecate", {"at": "next tuesday"})
    assert bad.json()["Error"]["Code"] == "InvalidParameterValue"
    me.post(f"/console/images/{image_id}/disable", {})
    assert _names(me.get_json("/console/images")) == []
    assert _names(me.get_json("/console/images", disabled="only")) == ["lifecycle"]
    me.post(f"/console/images/{image_id}/enable", {})
    assert _names(me.get_json("/console/images")) == ["lifecycle"]


def test_deregister_with_its_snapshots(
    server: Server, owner: Creds, images: Images, console_factory: MakeConsole
) -> None:
    image_id = images.register("to-go")
    me = console_factory(owner)
    page = me.post_html(f"/console/images/{image_id}/deregister", {"delete_snapshots": "1"})
    assert page.status_code == 303
    assert page.headers["location"] == "/console/images"
    assert f"{image_id} deregistered." in flash_text(me.http.get("/console/images"))
    assert _names(me.get_json("/console/images")) == []
    with pytest.raises(ClientError) as caught:
        images.ec2.describe_snapshots(SnapshotIds=[images.snapshot])
    assert caught.value.response["Error"]["Code"] == "InvalidSnapshot.NotFound"


def test_error_flash_returns_to_the_form(
    owner: Creds, images: Images, console_factory: MakeConsole
) -> None:
    image_id = images.register()
    me = console_factory(owner)
    back = f"/console/images/{image_id}?tab=tags"
    page = me.post_html(f"/console/images/{image_id}/tags", {"key": "", "next": back})
    assert page.status_code == 303
    assert page.headers["location"] == back
    assert "MissingParameter" in flash_text(me.http.get(back))


def test_recycle_bin_restore(server: Server, owner: Creds, console_factory: MakeConsole) -> None:
    images = Images(server, owner)
    server.client(owner, service="rbin").create_rule(
        ResourceType="EC2_IMAGE",
        RetentionPeriod={"RetentionPeriodValue": 1, "RetentionPeriodUnit": "DAYS"},
    )
    image_id = images.register("binned")
    me = console_factory(owner)
    me.post(f"/console/images/{image_id}/deregister", {})
    binned = me.get_json("/console/images/recycle-bin").json()["Images"]
    assert [i["ImageId"] for i in binned] == [image_id]
    restored = me.post("/console/images/recycle-bin/restore", {"image_id": image_id})
    assert restored.status_code == 200, restored.text
    assert _names(me.get_json("/console/images")) == ["binned"]
    assert me.get_json("/console/images/recycle-bin").json()["Images"] == []


def test_lineage_and_storage_tabs(
    owner: Creds, images: Images, console_factory: MakeConsole
) -> None:
    image_id = images.register("with-storage")
    me = console_factory(owner)
    image = me.get_json(f"/console/images/{image_id}", tab="storage").json()["Image"]
    (mapping,) = image["BlockDeviceMappings"]
    assert mapping["Ebs"]["SnapshotId"] == images.snapshot
    html = me.http.get(f"/console/images/{image_id}", params={"tab": "storage"}).text
    assert f'href="/console/snapshots/{images.snapshot}"' in html
    assert me.http.get(f"/console/snapshots/{images.snapshot}").status_code == 200
    lineage = me.get_json(f"/console/images/{image_id}", tab="lineage").json()
    assert [e["ImageId"] for e in lineage["Ancestry"]] == [image_id]
    assert lineage["Copies"] == []


def test_copy_button_follows_the_server(
    server: Server, owner: Creds, images: Images, console_factory: MakeConsole
) -> None:
    image_id = images.register("copy-source")
    me = console_factory(owner)
    html = me.http.get(f"/console/images/{image_id}").text
    disabled = 'disabled title="CopyImage is not available on this server yet"' in html
    try:
        images.ec2.copy_image(SourceImageId=image_id, SourceRegion="us-east-1", Name="probe")
        supported = True
    except ClientError as exc:
        supported = exc.response["Error"]["Code"] != "UnsupportedOperation"
    assert disabled is not supported
    if supported:
        done = me.post(f"/console/images/{image_id}/copy", {"region": "us-west-2"})
        assert done.status_code == 200, done.text
        assert done.json()["Region"] == "us-west-2"


def test_key_pairs_create_import_delete(owner: Creds, console_factory: MakeConsole) -> None:
    me = console_factory(owner)
    page = me.post_html("/console/keypairs/create", {"name": "laptop", "key_type": "ed25519"})
    assert page.status_code == 200
    assert "BEGIN OPENSSH PRIVATE KEY" in page.text
    assert 'download="laptop.pem"' in page.text
    assert page.headers["cache-control"] == "no-store"
    # Shown once: the list never carries private material.
    listed = me.get_json("/console/keypairs").json()["KeyPairs"]
    assert [k["KeyName"] for k in listed] == ["laptop"]
    assert "PRIVATE" not in me.get_json("/console/keypairs").text
    public = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test"
    imported = me.post("/console/keypairs/import", {"name": "imported", "public_key": public})
    assert imported.status_code == 200, imported.text
    assert imported.json()["KeyName"] == "imported"
    bad = me.post("/console/keypairs/import", {"name": "bad", "public_key": "not a key"})
    assert bad.status_code == 400
    duplicate = me.post("/console/keypairs/create", {"name": "laptop"})
    assert duplicate.json()["Error"]["Code"] == "InvalidKeyPair.Duplicate"
    me.post("/console/keypairs/delete", {"name": "laptop"})
    listed = me.get_json("/console/keypairs").json()["KeyPairs"]
    assert [k["KeyName"] for k in listed] == ["imported"]
