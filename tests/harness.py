"""Test harness: a real Goldsmith server in a subprocess, and clients for it.

The server is started once per test session on a free loopback port with a temporary data
directory, driven over HTTP by boto3 and the ``aws`` CLI exactly as a user would, and
stopped by PID at the end (SIGTERM, then SIGKILL if it does not exit).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

REPO = Path(__file__).resolve().parent.parent
BOTO_CONFIG = Config(
    retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=120
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Creds:
    account_id: str
    access_key_id: str
    secret_access_key: str


@dataclass
class Server:
    """A running ``goldsmith serve`` subprocess."""

    proc: subprocess.Popen[bytes]
    data_dir: Path
    port: int
    admin: Creds
    log_path: Path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(
        self, creds: Creds | None = None, region: str = "us-east-1", service: str = "ec2"
    ) -> Any:
        creds = creds or self.admin
        return boto3.session.Session().client(
            service,  # type: ignore[call-overload]
            region_name=region,
            endpoint_url=self.endpoint,
            aws_access_key_id=creds.access_key_id,
            aws_secret_access_key=creds.secret_access_key,
            config=BOTO_CONFIG,
        )

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``goldsmith ARGS --data-dir <server's>`` and return the completed process."""
        cmd = [sys.executable, "-m", "goldsmith", *args, "--data-dir", str(self.data_dir)]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)

    def new_account(self, alias: str | None = None) -> Creds:
        extra = ["--alias", alias] if alias else []
        out = self.cli("accounts", "create", "--json", *extra).stdout
        data = json.loads(out)
        return Creds(data["account_id"], data["access_key_id"], data["secret_access_key"])

    def aws(
        self, *args: str, creds: Creds | None = None, region: str = "us-east-1", check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run the real ``aws`` CLI against the server."""
        creds = creds or self.admin
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": creds.access_key_id,
            "AWS_SECRET_ACCESS_KEY": creds.secret_access_key,
            "AWS_DEFAULT_REGION": region,
            "AWS_CONFIG_FILE": "/nonexistent",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_PAGER": "",
        }
        aws = str(Path(sys.executable).with_name("aws"))
        cmd = [aws, "--endpoint-url", self.endpoint, "--output", "json", *args]
        return subprocess.run(
            cmd, capture_output=True, text=True, env=env, check=check, timeout=120
        )


def _read_creds(path: Path) -> Creds:
    values = dict(line.split(" = ", 1) for line in path.read_text().splitlines() if " = " in line)
    account = next(
        line.split(": ", 1)[1]
        for line in path.read_text().splitlines()
        if line.startswith("# account id: ")
    )
    return Creds(account, values["aws_access_key_id"], values["aws_secret_access_key"])


def start_server(data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> Server:
    """Start ``goldsmith serve`` and wait until it answers (or fail with its log).

    The first-start platform build is off (``GOLDSMITH_PLATFORM_BUILD_ON_START=0``) unless
    ``env`` turns it on.
    """
    port = free_port()
    log_path = data_dir.parent / f"{data_dir.name}-server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "goldsmith",
                "serve",
                "--data-dir",
                str(data_dir),
                "--port",
                str(port),
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            # No first-start platform build unless a test asks for it (it takes a while).
            env={**os.environ, "GOLDSMITH_PLATFORM_BUILD_ON_START": "0", **(env or {})},
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_goldsmith/health", timeout=1):
                break
        except OSError:
            time.sleep(0.1)
    else:
        stop_server(proc)
        raise RuntimeError(f"server did not start:\n{log_path.read_text()}")
    return Server(proc, data_dir, port, _read_creds(data_dir / "admin-credentials"), log_path)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
