"""A minimal synchronous ASGI client with a chosen peer address (no httpx needed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio


@dataclass
class Reply:
    status_code: int
    content: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.content.decode()


class _Headers(dict[str, str]):
    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())


class AsgiClient:
    def __init__(self, app: Any, peer: str) -> None:
        self.app = app
        self.peer = peer

    def request(self, method: str, path: str, headers: dict[str, str] | None = None) -> Reply:
        return anyio.run(self._request, method, path, headers or {})

    def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return self.request("GET", path, headers)

    def put(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return self.request("PUT", path, headers)

    async def _request(self, method: str, path: str, headers: dict[str, str]) -> Reply:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": (self.peer, 40000),
            "server": ("127.0.0.1", 80),
        }
        sent = False
        status = 0
        out_headers = _Headers()
        body = b""

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await anyio.sleep_forever()
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, body
            if message["type"] == "http.response.start":
                status = message["status"]
                for key, value in message.get("headers", []):
                    out_headers[key.decode().lower()] = value.decode()
            elif message["type"] == "http.response.body":
                body += message.get("body", b"")

        await self.app(scope, receive, send)
        return Reply(status, body, out_headers)
