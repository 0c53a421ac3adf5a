"""What keeps a local viewer local: only the host names it was bound for are answered (a web page
elsewhere cannot reach it through DNS rebinding), a POST from another origin is refused, and every
response forbids the page to load anything from anywhere but the viewer itself."""
from __future__ import annotations

import ipaddress
import json
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")

#: the browser may load scripts, styles and data only from the viewer; images also from data:/blob:
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; font-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) means this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts_for(bind_host: str) -> tuple[str, ...] | None:
    """The Host header names answered when bound to ``bind_host``: the loopback names (and the
    address itself) for a loopback address, ``None`` (any) otherwise."""
    if is_loopback(bind_host):
        return tuple(dict.fromkeys((*LOOPBACK_NAMES, bind_host.strip("[]"))))
    return None


def _host_name(netloc: str) -> str:
    """``netloc`` without its port: ``[::1]:80`` → ``::1``, ``localhost:80`` → ``localhost``."""
    parsed = urlsplit(f"//{netloc}")
    return (parsed.hostname or "").lower()


class LocalOnly:
    """ASGI middleware: 400 for a Host header not in ``allowed_hosts`` (``None`` allows any), 403
    for a state-changing request whose ``Origin`` is not the viewer's own, and the security
    headers on every response."""

    def __init__(self, app: Callable[..., Awaitable[None]], allowed_hosts: tuple[str, ...] | None) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        host = headers.get("host", "")
        if self.allowed_hosts is not None and _host_name(host) not in self.allowed_hosts:
            await _refuse(send, 400, f"host {host!r} is not served here; open the viewer at http://127.0.0.1 or http://localhost")
            return
        origin = headers.get("origin")
        if scope["method"] not in ("GET", "HEAD", "OPTIONS") and origin is not None and urlsplit(origin).netloc.lower() != host.lower():
            await _refuse(send, 403, f"requests from {origin!r} are refused; use the viewer's own page")
            return

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, with_headers)


async def _refuse(send: Callable, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": body})
