"""Who may read the page, and the headers every response carries.

With a token, every request must carry it: as `Authorization: Bearer T`, or as the cookie that
`?token=T` sets once (HttpOnly, SameSite=Strict; the address is then cleaned of the token by a
redirect). Tokens are compared in constant time. Without a token (loopback only), the Host header
must name this machine, so a web page elsewhere cannot reach the server through DNS rebinding.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import parse_qsl, urlencode

COOKIE = "dialoguellm_watch"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")

HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                 b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
                                 b"frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


def host_name(host_header: str) -> str:
    """The host part of a Host header (`[::1]:8765` -> `[::1]`)."""
    if host_header.startswith("["):
        return host_header.split("]", 1)[0] + "]"
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class Guard:
    """ASGI middleware: the token (or a local Host), then the security headers on every response."""

    def __init__(self, app: Any, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token is not None else None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_secured(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *HEADERS]}
            await send(message)

        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if self.token is None:
            if host_name(headers.get("host", "")) not in LOCAL_HOSTS:
                return await _reply(send_secured, 421, "this server answers to 127.0.0.1 or localhost only")
            return await self.app(scope, receive, send_secured)
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        from_query = next((v for k, v in query if k == "token"), None)
        if from_query is not None:
            if not self._valid(from_query):
                return await _reply(send_secured, 401, "wrong token")
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            cookie = f"{COOKIE}={from_query}; HttpOnly; SameSite=Strict; Path=/"
            return await _reply(send_secured, 303, "", [(b"location", (scope["path"] + ("?" + rest if rest else "")).encode()),
                                                       (b"set-cookie", cookie.encode())])
        bearer = headers.get("authorization", "")
        given = bearer[7:] if bearer[:7].lower() == "bearer " else _cookie(headers.get("cookie", ""))
        if given is None or not self._valid(given):
            return await _reply(send_secured, 401, "token required: send 'Authorization: Bearer TOKEN' "
                                                   "or open /?token=TOKEN once")
        return await self.app(scope, receive, send_secured)

    def _valid(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.token)


def _cookie(header: str) -> str | None:
    """Our cookie's value (parsed by hand: http.cookies gives up at the first odd cookie of another site)."""
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None


async def _reply(send: Any, status: int, text: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})
