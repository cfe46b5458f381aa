"""The instance metadata service (IMDS): what a guest reads at http://169.254.169.254/.

Goldsmith runs it as a second HTTP server beside the EC2 API (``goldsmith serve``), on a
loopback port that every VM's metadata relay targets. The relay connects from the
instance's own loopback address, so the peer address names the instance
(:meth:`MetadataService.for_peer`); a peer that is no instance gets 404s.

IMDSv2: ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds`` (1–21600)
answers a token; requests carrying ``X-aws-ec2-metadata-token`` must carry a valid one (401
otherwise); an instance with ``HttpTokens=required`` gets 401 without one. A PUT carrying
``X-Forwarded-For`` is refused (403), as EC2 does to stop SSRF through proxies; an
instance launched with ``HttpEndpoint=disabled`` gets 403 everywhere.

Paths (enough for cloud-init's EC2 datasource): ``/latest/meta-data/`` with ami-id,
ami-launch-index, block-device-mapping/…, hostname, instance-id, instance-type,
local-hostname, local-ipv4, mac, placement/availability-zone, placement/region,
public-hostname, public-ipv4, public-keys/0/openssh-key, reservation-id, security-groups,
network/interfaces/macs/<mac>/…; ``/latest/user-data``; ``/latest/dynamic/instance-identity/
document``. Versions other than ``latest`` (``2009-04-04`` …) answer the same tree.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import Any

import anyio.to_thread
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from goldsmith.service.instances.metadata import MAX_TTL, Metadata, MetadataService

TOKEN_HEADER = "x-aws-ec2-metadata-token"
TTL_HEADER = "x-aws-ec2-metadata-token-ttl-seconds"
Tree = Mapping[str, Any]


def _tree(m: Metadata) -> dict[str, Any]:
    mac = m.mac
    iface = {
        "device-number": "0",
        "interface-id": "eni-" + m.instance_id[2:],
        "local-hostname": m.local_hostname,
        "local-ipv4s": m.local_ipv4,
        "mac": mac,
        "owner-id": m.account_id,
        "public-hostname": "",
        "public-ipv4s": m.public_ipv4,
        "security-group-ids": "",
        "security-groups": "",
    }
    meta: dict[str, Any] = {
        "ami-id": m.image_id,
        "ami-launch-index": str(m.launch_index),
        "ami-manifest-path": "(unknown)",
        "block-device-mapping": dict(m.block_devices),
        "hostname": m.hostname,
        "instance-action": "none",
        "instance-id": m.instance_id,
        "instance-life-cycle": "on-demand",
        "instance-type": m.instance_type,
        "local-hostname": m.local_hostname,
        "local-ipv4": m.local_ipv4,
        "mac": mac,
        "network": {"interfaces": {"macs": {mac: iface}}},
        "placement": {
            "availability-zone": m.availability_zone,
            "availability-zone-id": m.availability_zone,
            "region": m.region,
        },
        "profile": "default-hvm",
        "public-hostname": m.public_ipv4,
        "public-ipv4": m.public_ipv4,
        "reservation-id": m.reservation_id,
        "security-groups": "default",
        "services": {"domain": "amazonaws.com", "partition": "aws"},
    }
    if m.kernel_id:
        meta["kernel-id"] = m.kernel_id
    if m.ramdisk_id:
        meta["ramdisk-id"] = m.ramdisk_id
    if m.public_key:
        meta["public-keys"] = {f"0={m.key_name}": {"openssh-key": m.public_key.strip() + "\n"}}
    return meta


def identity_document(m: Metadata) -> str:
    return json.dumps(
        {
            "accountId": m.account_id,
            "architecture": m.architecture,
            "availabilityZone": m.availability_zone,
            "billingProducts": None,
            "devpayProductCodes": None,
            "marketplaceProductCodes": None,
            "imageId": m.image_id,
            "instanceId": m.instance_id,
            "instanceType": m.instance_type,
            "kernelId": m.kernel_id,
            "pendingTime": m.pending_time,
            "privateIp": m.local_ipv4,
            "ramdiskId": m.ramdisk_id,
            "region": m.region,
            "version": "2017-09-30",
        },
        indent=2,
    )


def _listing(node: Tree) -> str:
    names = []
    for key, value in node.items():
        if key.startswith("0=") and isinstance(value, Mapping):
            names.append(key)  # public-keys/ lists "0=name"; the child is "0/"
        else:
            names.append(key + "/" if isinstance(value, Mapping) else key)
    return "\n".join(names)


def _walk(tree: Tree, parts: list[str]) -> Any:
    node: Any = tree
    for part in parts:
        if not isinstance(node, Mapping):
            return None
        if part in node:
            node = node[part]
            continue
        # public-keys/0/… addresses the "0=<name>" entry by its index.
        match = next((v for k, v in node.items() if k.split("=", 1)[0] == part and "=" in k), None)
        if match is None:
            return None
        node = match
    return node


def _text(body: str, status: int = 200) -> Response:
    return PlainTextResponse(body, status_code=status)


def _not_found() -> Response:
    return _text(
        '<?xml version="1.0" encoding="iso-8859-1"?>\n<html><head><title>404 - Not Found'
        "</title></head><body><h1>404 - Not Found</h1></body></html>\n",
        404,
    )


def create_imds_app(metadata: MetadataService) -> Starlette:
    """The IMDS ASGI app over ``metadata``."""

    async def lookup(request: Request) -> Metadata | None:
        peer = request.client.host if request.client else ""
        return await anyio.to_thread.run_sync(metadata.for_peer, peer)

    async def token(request: Request) -> Response:
        found = await lookup(request)
        if found is None:
            return _not_found()
        if found.http_endpoint == "disabled":
            return _text("Forbidden", 403)
        if "x-forwarded-for" in request.headers:
            return _text("Forbidden", 403)
        raw = request.headers.get(TTL_HEADER)
        try:
            ttl = int(raw) if raw is not None else 0
        except ValueError:
            ttl = 0
        if not 1 <= ttl <= MAX_TTL:
            return _text("Bad Request", 400)
        value = metadata.issue_token(found.instance_id, ttl)
        return PlainTextResponse(value, headers={TTL_HEADER: str(ttl)})

    async def get(request: Request) -> Response:
        found = await lookup(request)
        if found is None:
            return _not_found()
        if found.http_endpoint == "disabled":
            return _text("Forbidden", 403)
        given = request.headers.get(TOKEN_HEADER)
        if given is not None and not metadata.check_token(found.instance_id, given):
            return _text("Unauthorized", 401)
        if given is None and found.http_tokens == "required":
            return _text("Unauthorized", 401)
        return _document(found, request.path_params.get("rest", ""))

    routes = [
        Route("/latest/api/token", token, methods=["PUT"]),
        Route("/{version}/{rest:path}", get, methods=["GET", "HEAD"]),
        Route("/", _versions, methods=["GET"]),
    ]
    return Starlette(routes=routes)


async def _versions(_request: Request) -> Response:
    return _text("1.0\n2007-01-19\n2009-04-04\n2021-07-15\nlatest")


def _document(m: Metadata, rest: str) -> Response:
    path = rest.strip("/")
    if path == "":
        return _text("dynamic\nmeta-data\nuser-data" if m.user_data else "dynamic\nmeta-data")
    if path == "user-data":
        if m.user_data is None:
            return _not_found()
        return Response(m.user_data, media_type="application/octet-stream")
    if path in ("dynamic", "dynamic/instance-identity"):
        return _text("instance-identity/" if path == "dynamic" else "document")
    if path == "dynamic/instance-identity/document":
        return Response(identity_document(m), media_type="text/plain")
    if path == "meta-data" or path.startswith("meta-data/"):
        parts = [p for p in path.split("/")[1:] if p]
        node = _walk(_tree(m), parts)
        if node is None:
            return _not_found()
        return _text(_listing(node) if isinstance(node, Mapping) else str(node))
    return _not_found()


def start_metadata_server(
    metadata: MetadataService, host: str, port: int, log_level: str = "warning"
) -> uvicorn.Server:
    """Serve the IMDS app on ``host:port`` in a daemon thread; returns once it listens.

    Stop it with ``server.should_exit = True``.
    """
    server = uvicorn.Server(
        uvicorn.Config(
            create_imds_app(metadata),
            host=host,
            port=port,
            log_level=log_level,
            access_log=False,
            lifespan="off",
        )
    )
    thread = threading.Thread(target=server.run, name="gs-imds", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the metadata server could not listen on {host}:{port}")
        time.sleep(0.02)
    return server
