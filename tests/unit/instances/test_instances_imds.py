"""The metadata server: instance by peer address, IMDSv1/v2, the paths cloud-init reads."""

from __future__ import annotations

import json
import time

from asgi_client import AsgiClient
from instance_helpers import World, b64

from goldsmith.api.imds import create_imds_app


def _client(world: World, peer: str) -> AsgiClient:
    return AsgiClient(create_imds_app(world.services.compute.metadata), peer)


def _launch(world: World, **params: object) -> tuple[str, str, str]:
    ctx = world.account()
    key = world.call(ctx, "CreateKeyPair", KeyName="k1")
    image = world.image(ctx)
    iid = world.launch(ctx, image, KeyName="k1", **params)
    ip = world.instance(ctx, iid)["PublicIpAddress"]
    assert key["KeyName"] == "k1"
    return iid, ip, image


def test_imdsv1_paths(world: World) -> None:
    iid, ip, image = _launch(world, UserData=b64(b"#!/bin/sh\necho from-user-data\n"))
    http = _client(world, ip)
    get = lambda p: http.get(f"/latest/{p}")  # noqa: E731
    assert get("meta-data/instance-id").text == iid
    assert get("meta-data/ami-id").text == image
    assert get("meta-data/instance-type").text == "t2.micro"
    assert get("meta-data/local-ipv4").text.startswith("172.31.")
    assert get("meta-data/public-ipv4").text == ip
    assert get("meta-data/placement/availability-zone").text == "us-east-1a"
    assert get("meta-data/placement/region").text == "us-east-1"
    assert get("meta-data/local-hostname").text.endswith(".ec2.internal")
    assert get("meta-data/public-keys/").text == "0=k1"
    assert get("meta-data/public-keys/0/").text == "openssh-key"
    assert get("meta-data/public-keys/0/openssh-key").text.startswith("ssh-rsa ")
    assert get("meta-data/block-device-mapping/").text.split("\n") == ["ami", "root"]
    assert get("meta-data/block-device-mapping/root").text == "/dev/xvda"
    assert get("meta-data/block-device-mapping/ami").text == "xvda"
    listing = get("meta-data/").text.split("\n")
    assert {"ami-id", "instance-id", "placement/", "public-keys/", "mac"} <= set(listing)
    mac = get("meta-data/mac").text
    assert get(f"meta-data/network/interfaces/macs/{mac}/local-ipv4s").text.startswith("172.31.")
    assert get("user-data").content == b"#!/bin/sh\necho from-user-data\n"
    doc = json.loads(get("dynamic/instance-identity/document").text)
    assert doc["instanceId"] == iid and doc["region"] == "us-east-1"
    assert get("meta-data/nothing-here").status_code == 404
    assert http.get("/2009-04-04/meta-data/instance-id").text == iid


def test_unknown_peer_gets_nothing(world: World) -> None:
    _launch(world)
    assert _client(world, "127.0.0.1").get("/latest/meta-data/instance-id").status_code == 404
    assert _client(world, "127.100.9.9").get("/latest/meta-data/instance-id").status_code == 404


def test_imdsv2_tokens(world: World) -> None:
    iid, ip, _ = _launch(world, MetadataOptions={"HttpTokens": "required"})
    http = _client(world, ip)
    assert http.get("/latest/meta-data/instance-id").status_code == 401
    assert http.put("/latest/api/token").status_code == 400
    assert (
        http.put(
            "/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "0"}
        ).status_code
        == 400
    )
    refused = http.put(
        "/latest/api/token",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": "60", "X-Forwarded-For": "1.2.3.4"},
    )
    assert refused.status_code == 403
    reply = http.put("/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    assert reply.status_code == 200
    assert reply.headers["X-aws-ec2-metadata-token-ttl-seconds"] == "60"
    token = reply.text
    ok = http.get("/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token})
    assert ok.text == iid
    bad = http.get(
        "/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token + "x"}
    )
    assert bad.status_code == 401
    # A token of one instance is worthless for another.
    _other_iid, other_ip, _ = _launch(world)
    stolen = _client(world, other_ip).get(
        "/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token}
    )
    assert stolen.status_code == 401


def test_tokens_expire(world: World) -> None:
    metadata = world.services.compute.metadata
    token = metadata.issue_token("i-0123456789abcdef0", 1)
    assert metadata.check_token("i-0123456789abcdef0", token)
    assert not metadata.check_token("i-0123456789abcdef1", token)
    time.sleep(2.1)
    assert not metadata.check_token("i-0123456789abcdef0", token)


def test_terminated_instance_loses_its_address_and_metadata(world: World) -> None:
    iid, ip, _ = _launch(world)
    ctx_id = world.services.compute.metadata.for_peer(ip)
    assert ctx_id is not None and ctx_id.instance_id == iid
    owner = world.services.compute.instances
    with world.services.catalog.begin() as conn:
        from goldsmith.catalog import instances as rows

        account = rows.get_instance(conn, "us-east-1", iid)
    assert account is not None
    from goldsmith.service.context import RequestContext

    ctx = RequestContext(account.account_id, "us-east-1")
    world.call(ctx, "TerminateInstances", InstanceIds=[iid])
    world.settle()
    assert owner is not None
    assert _client(world, ip).get("/latest/meta-data/instance-id").status_code == 404
