"""Test helpers: a fake instance metadata service, a plain QEMU launcher, SSH and QMP.

The compute layer (goldsmith.compute) owns the real hypervisor driver; these tests boot the
built images with their own short QEMU command line so the builder can be tested on its own.

Acceleration: TCG unless ``GOLDSMITH_TEST_ACCEL`` says otherwise (``kvm``): this machine has
a /dev/kvm that opens but hangs guests, so probing it is left to the compute layer.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

GUEST_NET = "169.254.169.0/24"
QEMU = "qemu-system-x86_64"


def build_cache() -> Path:
    """Where builds are cached across test sessions (``GOLDSMITH_BUILD_CACHE`` overrides)."""
    default = Path.home() / ".cache" / "goldsmith-test"
    return Path(os.environ.get("GOLDSMITH_BUILD_CACHE", default))


def accel() -> str:
    return os.environ.get("GOLDSMITH_TEST_ACCEL", "tcg")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Metadata:
    """What the fake metadata service answers; ``requests`` records (method, path, token)."""

    public_key: str
    user_data: bytes | None = None
    instance_id: str = "i-0123456789abcdef0"
    require_token: bool = False
    offer_token: bool = True
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)

    def document(self, path: str) -> bytes | None:
        docs: dict[str, bytes | None] = {
            "/latest/meta-data/instance-id": self.instance_id.encode(),
            "/latest/meta-data/local-hostname": b"ip-169-254-169-15.ec2.internal",
            "/latest/meta-data/public-keys/": b"0=test-key",
            "/latest/meta-data/public-keys/0/openssh-key": self.public_key.encode() + b"\n",
            "/latest/user-data": self.user_data,
        }
        return docs.get(path)


TOKEN = "test-token-AQAEAJ"


class _Handler(BaseHTTPRequestHandler):
    server: _ImdsHttpServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        meta = self.server.metadata
        meta.requests.append(("PUT", self.path, None))
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        if not meta.offer_token:
            self._reply(405)
        elif self.path != "/latest/api/token" or not ttl:
            self._reply(400)
        else:
            self._reply(200, TOKEN.encode())

    def do_GET(self) -> None:
        meta = self.server.metadata
        token = self.headers.get("X-aws-ec2-metadata-token")
        meta.requests.append(("GET", self.path, token))
        if (token is not None and token != TOKEN) or (meta.require_token and token is None):
            self._reply(401)
            return
        body = meta.document(self.path)
        self._reply(404) if body is None else self._reply(200, body)


class _ImdsHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, metadata: Metadata) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.metadata = metadata


@contextmanager
def imds(metadata: Metadata) -> Iterator[int]:
    """Serve ``metadata`` on a loopback port (yielded) for the duration of the block."""
    server = _ImdsHttpServer(metadata)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Vm:
    proc: subprocess.Popen[bytes]
    serial: Path
    qmp_path: Path
    ssh_port: int
    started: float

    def console(self) -> str:
        try:
            return self.serial.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for(self, pattern: str, timeout: float) -> float:
        """Seconds from start until ``pattern`` (regex) is on the console; fail after timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.console()):
                return time.monotonic() - self.started
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} not on the console in {timeout}s:\n{self.console()}")

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            message = f"QEMU still running after {timeout}s:\n{self.console()}"
            raise AssertionError(message) from None

    def qmp(self, command: str) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(self.qmp_path))
            stream = sock.makefile("rwb")
            json.loads(stream.readline())
            for cmd in ("qmp_capabilities", command):
                stream.write(json.dumps({"execute": cmd}).encode() + b"\n")
                stream.flush()
                while True:
                    reply: dict[str, Any] = json.loads(stream.readline())
                    if "event" not in reply:
                        break
            return reply

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


RELAY = """\
import socket, sys, threading
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
def upstream():
    while data := sys.stdin.buffer.read1(65536):
        sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)
threading.Thread(target=upstream, daemon=True).start()
while data := sock.recv(65536):
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
"""


@contextmanager
def boot(
    work: Path,
    disk: Path,
    imds_port: int,
    kernel: tuple[Path, Path, str] | None = None,
    firmware: tuple[Path, Path] | None = None,
    memory: int = 256,
) -> Iterator[Vm]:
    """Boot a copy of ``disk`` (the built image stays pristine); kill QEMU when done.

    ``kernel`` = (kernel, ramdisk, cmdline) for a direct (paravirtual) boot; ``firmware`` =
    (OVMF code, OVMF vars template) for UEFI.
    """
    work.mkdir(parents=True, exist_ok=True)
    copy = work / "disk.img"
    subprocess.run(["cp", "--sparse=always", "--reflink=auto", disk, copy], check=True)
    serial = work / "serial.log"
    qmp_path = work / "qmp.sock"
    ssh_port = free_port()
    # guestfwd to a "tcp:" chardev is ONE connection made when QEMU starts, shared by every
    # guest connection (HTTP/1.0 closes it after the first reply); "cmd:" spawns a relay per
    # guest connection.
    relay = work / "relay.py"
    relay.write_text(RELAY)
    netdev = (
        f"user,id=n0,net={GUEST_NET},hostfwd=tcp:127.0.0.1:{ssh_port}-:22,"
        f"guestfwd=tcp:169.254.169.254:80-cmd:{sys.executable} {relay} {imds_port}"
    )
    cmd = [
        QEMU,
        "-machine",
        "pc",
        "-accel",
        accel(),
        "-m",
        str(memory),
        "-smp",
        "1",
        "-nographic",
        "-nodefaults",
        "-no-reboot",
        "-serial",
        f"file:{serial}",
        "-qmp",
        f"unix:{qmp_path},server=on,wait=off",
        "-drive",
        f"file={copy},if=virtio,format=raw",
        "-netdev",
        netdev,
        "-device",
        "virtio-net-pci,netdev=n0",
        "-device",
        "virtio-rng-pci",
    ]
    if kernel is not None:
        cmd += ["-kernel", str(kernel[0]), "-initrd", str(kernel[1]), "-append", kernel[2]]
    if firmware is not None:
        vars_copy = work / "OVMF_VARS.fd"
        shutil.copyfile(firmware[1], vars_copy)
        cmd += [
            "-drive",
            f"if=pflash,format=raw,unit=0,readonly=on,file={firmware[0]}",
            "-drive",
            f"if=pflash,format=raw,unit=1,file={vars_copy}",
        ]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    vm = Vm(proc, serial, qmp_path, ssh_port, time.monotonic())
    try:
        yield vm
    finally:
        vm.kill()


def make_key(work: Path) -> tuple[Path, str]:
    """A fresh ed25519 key pair: (private key path, public key line)."""
    key = work / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test@goldsmith", "-f", key],
        check=True,
    )
    return key, key.with_suffix(".pub").read_text().strip()


def ssh(key: Path, port: int, user: str, command: str, timeout: float = 30) -> str:
    """Run ``command`` over SSH (retrying the connection until ``timeout``); return stdout."""
    args = [
        "ssh",
        "-i",
        str(key),
        "-p",
        str(port),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "LogLevel=ERROR",
        f"{user}@127.0.0.1",
        command,
    ]
    deadline = time.monotonic() + timeout
    while True:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode == 0:
            return done.stdout
        if time.monotonic() > deadline or "Permission denied" in done.stderr:
            raise AssertionError(f"ssh {user} {command!r} failed: {done.stderr}")
        time.sleep(1)
