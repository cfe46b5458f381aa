"""Console test helpers: a signed-in HTTP client per account, and images to look at.

The console runs in the session's real server (``server`` fixture of tests/conftest.py);
:class:`ConsoleClient` is an httpx client that signs in through the sign-in form exactly as
a browser does (sign-in token cookie, then the session cookie) and reads the CSRF token
from the JSON twin of the sign-in answer.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import re
from pathlib import Path
from typing import Any

import httpx

from goldsmith.config import Settings
from goldsmith.service.accounts import AccountService
from goldsmith.service.app import open_catalog
from harness import Creds, Server

BLOCK = 512 * 1024
_names = itertools.count()


_accounts: dict[Path, AccountService] = {}


def new_account(server: Server, alias: str | None = None) -> Creds:
    """A fresh account, made in this process on the server's catalog (what ``goldsmith
    accounts create`` does, without starting an interpreter per account)."""
    service = _accounts.get(server.data_dir)
    if service is None:
        catalog = open_catalog(Settings(data_dir=server.data_dir))
        service = _accounts[server.data_dir] = AccountService(catalog)
    made = service.create_account(alias=alias)
    return Creds(made.account_id, made.access_key_id, made.secret_access_key)


class ConsoleClient:
    """An httpx client on the server's /console, signed in (or not) as one account."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.endpoint, timeout=30)
        self.csrf = ""

    def close(self) -> None:
        self.http.close()

    def signin_token(self) -> str:
        response = self.http.get("/console/signin", params={"format": "json"})
        return str(response.json()["SigninToken"])

    def sign_in(self, name: str, secret: str) -> httpx.Response:
        form = {"signin_token": self.signin_token(), "name": name, "secret": secret}
        response = self.http.post(
            "/console/signin", data=form, headers={"Accept": "application/json"}
        )
        if response.status_code == 200:
            self.csrf = str(response.json()["CsrfToken"])
        return response

    def sign_in_as(self, creds: Creds) -> ConsoleClient:
        response = self.sign_in(creds.access_key_id, creds.secret_access_key)
        assert response.status_code == 200, response.text
        return self

    def get_json(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(path, params={**params, "format": "json"})

    def post(self, path: str, data: dict[str, Any], *, csrf: bool = True) -> httpx.Response:
        """POST a form, answered in JSON (with the session's CSRF token unless told not)."""
        form = {**data, **({"csrf_token": self.csrf} if csrf else {})}
        return self.http.post(path, data=form, headers={"Accept": "application/json"})

    def post_html(self, path: str, data: dict[str, Any]) -> httpx.Response:
        """POST a form as a browser does (303 to the next page, flash in a cookie)."""
        return self.http.post(path, data={**data, "csrf_token": self.csrf})


def make_snapshot(server: Server, creds: Creds) -> str:
    """A completed one-block snapshot of ``creds``' account (EBS direct API)."""
    ebs = server.client(creds, service="ebs")
    sid = str(ebs.start_snapshot(VolumeSize=1)["SnapshotId"])
    data = hashlib.sha256(sid.encode()).digest() * (BLOCK // 32)
    checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
    ebs.put_snapshot_block(
        SnapshotId=sid,
        BlockIndex=0,
        BlockData=data,
        DataLength=BLOCK,
        Checksum=checksum,
        ChecksumAlgorithm="SHA256",
    )
    ebs.complete_snapshot(SnapshotId=sid, ChangedBlocksCount=1)
    server.client(creds).get_waiter("snapshot_completed").wait(
        SnapshotIds=[sid], WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    return sid


class Images:
    """Registers images for one account (all mapping one snapshot of it)."""

    def __init__(self, server: Server, creds: Creds) -> None:
        self.ec2 = server.client(creds)
        self.snapshot = make_snapshot(server, creds)

    def register(self, name: str | None = None, **extra: Any) -> str:
        name = name or f"console-{next(_names)}"
        response = self.ec2.register_image(
            Name=name,
            RootDeviceName="/dev/xvda",
            BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": self.snapshot}}],
            **extra,
        )
        return str(response["ImageId"])


def flash_text(response: httpx.Response) -> str:
    """The flash messages of an HTML page, as text."""
    return " ".join(re.findall(r'<p class="flash[^"]*"[^>]*>([^<]*)</p>', response.text))
