"""Who may read the page, who may write corrections, and the headers every response carries.

With a token (`--token`, or any of the named tokens of `--tokens-file`), every request must
carry one: as `Authorization: Bearer T`, or as the cookie that `?token=T` sets once (HttpOnly,
SameSite=Strict; the address is then cleaned of the token by a redirect). Tokens are compared in
constant time. Without a token (loopback only), the Host header must name this machine, so a web
page elsewhere cannot reach the server through DNS rebinding.

A write (any method but GET and HEAD) without a valid token is refused with 403. Who made it is
the name its token has in the tokens file (`scope["dialoguellm.who"]`), never anything the request
says; `write_refusal` adds the cross-site checks a write must pass.
"""

from __future__ import annotations

import hmac
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from pipeline.core.errors import ConfigError

COOKIE = "dialoguellm_watch"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]{16,}")
NAME_PATTERN = re.compile(r"[A-Za-z0-9._@+-]{1,64}")
# A header a cross-site HTML form cannot send, and that a cross-origin script can send only after a
# CORS preflight this server never answers.
WRITE_HEADER = "x-dialoguellm-write"
WHO = "dialoguellm.who"
BY_COOKIE = "dialoguellm.by_cookie"
SAFE_METHODS = ("GET", "HEAD")


def load_tokens(path: str | Path) -> dict[str, str]:
    """A tokens file (`NAME TOKEN` a line; blank lines and `#` comments skipped) as token -> name.
    A mistake is a `ConfigError` naming the field and the line (never the token)."""
    path = Path(path).expanduser()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"tokens_file: {path} is not readable ({type(e).__name__})") from None
    tokens: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ConfigError(f"tokens_file: {path} line {number}: expected 'NAME TOKEN'")
        name, token = parts
        if not NAME_PATTERN.fullmatch(name):
            raise ConfigError(f"tokens_file: {path} line {number}: a name is 1 to 64 letters, digits or . _ @ + -")
        if not TOKEN_PATTERN.fullmatch(token):
            raise ConfigError(f"tokens_file: {path} line {number}: a token is at least 16 letters, digits or "
                              "- _ . ~ (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        if token in tokens:
            raise ConfigError(f"tokens_file: {path} line {number}: this token is already given to {tokens[token]!r}")
        tokens[token] = name
    if not tokens:
        raise ConfigError(f"tokens_file: {path} names no token")
    return tokens


def write_refusal(scope: dict, headers: dict[str, str]) -> str | None:
    """Why a write request must be refused (None: it may go on): it needs a named token, our custom
    header, a JSON body, and, when it comes from a browser, to come from this page's own origin."""
    if scope.get(WHO) is None:
        return "a correction needs a named token (--tokens-file): send 'Authorization: Bearer TOKEN'"
    if headers.get(WRITE_HEADER) != "1":
        return f"a write needs the header '{WRITE_HEADER}: 1'"
    if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        return "a write's body must be application/json"
    site = headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        return f"cross-site write refused (Sec-Fetch-Site: {site})"
    origin = headers.get("origin")
    if origin is not None:
        parts = urlsplit(origin)
        if parts.netloc.lower() != headers.get("host", "").lower() or parts.scheme not in ("http", "https"):
            return "cross-site write refused (Origin is not this page's)"
    elif scope.get(BY_COOKIE) and site is None:
        return "a write with the cookie must come from the page (no Origin or Sec-Fetch-Site header)"
    return None

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

    def __init__(self, app: Any, token: str | None, named: dict[str, str] | None = None) -> None:
        self.app = app
        # token -> the name of its holder (None: the page's own --token, which opens but cannot write)
        self.tokens: list[tuple[bytes, str | None]] = [(t.encode(), n) for t, n in (named or {}).items()]
        if token is not None:
            self.tokens.append((token.encode(), None))

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_secured(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *HEADERS]}
            await send(message)

        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        scope = {**scope, WHO: None, BY_COOKIE: False}
        refused = 401 if scope.get("method", "GET") in SAFE_METHODS else 403
        if not self.tokens:
            if host_name(headers.get("host", "")) not in LOCAL_HOSTS:
                return await _reply(send_secured, 421, "this server answers to 127.0.0.1 or localhost only")
            return await self.app(scope, receive, send_secured)
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        from_query = next((v for k, v in query if k == "token"), None)
        if from_query is not None:
            if not self._valid(from_query):
                return await _reply(send_secured, refused, "wrong token")
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            cookie = f"{COOKIE}={from_query}; HttpOnly; SameSite=Strict; Path=/"
            return await _reply(send_secured, 303, "", [(b"location", (scope["path"] + ("?" + rest if rest else "")).encode()),
                                                       (b"set-cookie", cookie.encode())])
        bearer = headers.get("authorization", "")
        by_cookie = bearer[:7].lower() != "bearer "
        given = _cookie(headers.get("cookie", "")) if by_cookie else bearer[7:]
        if given is None or not self._valid(given):
            return await _reply(send_secured, refused, "token required: send 'Authorization: Bearer TOKEN' "
                                                       "or open /?token=TOKEN once")
        scope[WHO], scope[BY_COOKIE] = self._holder(given), by_cookie
        return await self.app(scope, receive, send_secured)

    def _valid(self, given: str) -> bool:
        return self._match(given) is not None

    def _holder(self, given: str) -> str | None:
        match = self._match(given)
        return match[1] if match else None

    def _match(self, given: str) -> tuple[bytes, str | None] | None:
        """The token entry `given` is, comparing with every one in constant time."""
        found = None
        for token, name in self.tokens:
            if hmac.compare_digest(given.encode(), token):
                found = (token, name)
        return found


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
