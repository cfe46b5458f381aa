"""What the instance metadata service (IMDS) knows, and its IMDSv2 session tokens.

The metadata server (``goldsmith.api.imds``) receives each guest connection from the
instance's own loopback address (the compute relay connects from it), so
:meth:`MetadataService.for_peer` maps the peer address to the instance — as EC2 identifies
the instance by the network interface a request arrives on. Only instances that hold an
address (not terminated) answer.

Tokens (IMDSv2): ``PUT /latest/api/token`` gives a token bound to the instance and an
expiry (1 s – 6 h), signed with a per-process secret, so nothing is stored; a token from one
instance is worthless for another, and every token dies with the server process (clients
then take a new one, as after an EC2 host change).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from goldsmith.catalog import instances as rows
from goldsmith.catalog import volumes as volume_rows
from goldsmith.catalog.db import Catalog
from goldsmith.compute.errors import NetworkError
from goldsmith.compute.network import address_index
from goldsmith.compute.qemu import default_mac
from goldsmith.service.instances.common import host_name, private_dns, private_ip, public_ip
from goldsmith.service.instances.manager import root_first

MAX_TTL = 21600


@dataclass(frozen=True)
class Metadata:
    """Everything the metadata paths render for one instance."""

    instance_id: str
    account_id: str
    region: str
    availability_zone: str
    image_id: str
    instance_type: str
    reservation_id: str
    kernel_id: str | None
    ramdisk_id: str | None
    architecture: str
    launch_index: int
    local_ipv4: str
    public_ipv4: str
    local_hostname: str
    hostname: str
    mac: str
    key_name: str | None
    public_key: str | None
    user_data: bytes | None
    http_tokens: str
    http_endpoint: str
    pending_time: str
    block_devices: tuple[tuple[str, str], ...]
    """(metadata name, device): ``ami`` → xvda, ``root`` → /dev/xvda, ``ebsN`` → sdf…"""


class MetadataService:
    """Instance lookup by peer address and stateless IMDSv2 tokens."""

    def __init__(self, catalog: Catalog, secret: bytes | None = None) -> None:
        self._catalog = catalog
        self._secret = secret or secrets.token_bytes(32)

    def for_peer(self, peer: str) -> Metadata | None:
        """The instance whose address is ``peer``, or None."""
        try:
            index = address_index(peer)
        except (NetworkError, ValueError):
            return None
        with self._catalog.begin() as conn:
            row = rows.by_address_index(conn, index)
            if row is None:
                return None
            vols = volume_rows.volumes_of(conn, [row.instance_id])[row.instance_id]
        return self._metadata(row, index, root_first(vols, row.root_device_name))

    @staticmethod
    def _metadata(row: rows.InstanceRow, index: int, vols: list[volume_rows.VolumeRow]) -> Metadata:
        devices: list[tuple[str, str]] = [("ami", row.root_device_name.removeprefix("/dev/"))]
        devices.append(("root", row.root_device_name))
        extra = [v for v in vols if v.device != row.root_device_name]
        for n, vol in enumerate(extra, start=1):
            devices.append((f"ebs{n}", str(vol.device).removeprefix("/dev/")))
        dns = private_dns(index, row.region)
        return Metadata(
            instance_id=row.instance_id,
            account_id=row.account_id,
            region=row.region,
            availability_zone=row.availability_zone,
            image_id=row.image_id,
            instance_type=row.instance_type,
            reservation_id=row.reservation_id,
            kernel_id=row.kernel_id,
            ramdisk_id=row.ramdisk_id,
            architecture=row.architecture,
            launch_index=row.ami_launch_index,
            local_ipv4=str(private_ip(index)),
            public_ipv4=str(public_ip(index)),
            local_hostname=dns or host_name(index),
            hostname=dns or host_name(index),
            mac=default_mac(row.instance_id),
            key_name=row.key_name,
            public_key=row.public_key,
            user_data=row.user_data,
            http_tokens=row.http_tokens,
            http_endpoint=row.http_endpoint,
            pending_time=row.launch_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
            block_devices=tuple(devices),
        )

    # -- tokens --------------------------------------------------------------------------------

    def _mac(self, body: bytes) -> str:
        digest = hmac.new(self._secret, body, hashlib.sha256).digest()[:18]
        return base64.urlsafe_b64encode(digest).decode()

    def issue_token(self, instance_id: str, ttl: int) -> str:
        """A token for ``instance_id`` valid ``ttl`` seconds (1 … 21600)."""
        if not 1 <= ttl <= MAX_TTL:
            raise ValueError(f"ttl must be 1…{MAX_TTL}")
        body = f"{instance_id}:{int(time.time()) + ttl}".encode()
        return base64.urlsafe_b64encode(body).decode().rstrip("=") + "." + self._mac(body)

    def check_token(self, instance_id: str, token: str) -> bool:
        """True when ``token`` was issued for ``instance_id`` and has not expired."""
        payload, _, mac = token.partition(".")
        try:
            body = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
            owner, _, expiry = body.decode().rpartition(":")
            alive = int(expiry) > time.time()
        except (ValueError, UnicodeDecodeError):
            return False
        return alive and owner == instance_id and hmac.compare_digest(mac, self._mac(body))
