"""kling-mcp hosted for a team: MCP's streamable HTTP at `/mcp`, one AceDataCloud token per request.

The SDK's own transport serves MCP, stateless, so any replica can answer any request, with its
Host and Origin checks against DNS rebinding. In front of it, a gate: `/healthz` answers
readiness (the journal reachable) without auth; every `/mcp` request must carry a token the API
accepts (`Authorization: Bearer ...`, checked once with a free request and remembered for a few
minutes, by a hash of the token, in memory only), unless the operator shares a server-wide
ACEDATACLOUD_API_TOKEN; and each token gets KLING_RATE_LIMIT requests a minute. SIGTERM answers
every waiting call at once with its task id and leaves the running tasks to the other replicas.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TypeVar

import anyio
import uvicorn
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from kling_mcp.api.client import KlingClient
from kling_mcp.api.errors import ErrorKind, KlingError
from kling_mcp.logs import logger
from kling_mcp.server.app import KlingServer, create_server
from kling_mcp.settings import Settings
from kling_mcp.tasks.callers import bearer_token

MCP_PATH = "/mcp"
HEALTH_PATH = "/healthz"
TOKEN_CHECK_ID = "kling-mcp-token-check"
"""A task id no one has: looking it up is free, and tells an accepted token from a rejected one."""
ACCEPTED_FOR_SECONDS = 300.0
REJECTED_FOR_SECONDS = 30.0
SHUTDOWN_GRACE_SECONDS = 10
REMEMBERED_TOKENS = 10_000
NEW_TOKENS_PER_ADDRESS_PER_MINUTE = 10
"""Tokens one client address may have checked a minute: guessing tokens costs the API lookups."""
"""How many tokens' verdicts and rates stay in memory: past it, the stale and then the oldest go."""
LOOPBACK = ("127.0.0.1", "localhost", "::1")
T = TypeVar("T")


def serve_http(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    allowed_hosts: Sequence[str] = (),
    allowed_origins: Sequence[str] = (),
) -> None:
    """Serve `settings` to many users over streamable HTTP until SIGTERM or Ctrl-C."""
    server = create_server(settings)
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*allowed_hosts, *_loopback_hosts(port)],
        allowed_origins=[*allowed_origins, *_loopback_origins()],
    )
    mcp_app = server.streamable_http_app(stateless_http=True, transport_security=security, host=host)
    gate = HostedGate(mcp_app, server, RateLimiter(settings.rate_limit_per_minute))
    if host not in LOOPBACK and not allowed_hosts:
        logger.warning(
            "Serving on %s: requests must name a loopback Host unless --allow-host names this server's", host
        )
    if settings.api_token:
        logger.warning("ACEDATACLOUD_API_TOKEN is set: requests without a token of their own spend it.")
    logger.info("kling-mcp for a team at http://%s:%d%s", host, port, MCP_PATH)
    _GracefulServer(server, _config(gate, host, port)).run()


def _loopback_hosts(port: int) -> list[str]:
    return [f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"]


def _loopback_origins() -> list[str]:
    return ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]


def _config(app: ASGIApp, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
    )


class _GracefulServer(uvicorn.Server):
    """uvicorn, which on SIGTERM also answers every waiting call now, with its task id."""

    def __init__(self, server: KlingServer, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._server = server
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is not None and self._server.states:
            logger.warning("Stopping: answering every waiting call with its task id")
            self._loop.call_soon_threadsafe(self._server.state().tasks.stop_waiting)
        super().handle_exit(sig, frame)


class HostedGate:
    """In front of the MCP app: health without auth, and a checked token and a rate for `/mcp`."""

    def __init__(self, app: ASGIApp, server: KlingServer, limiter: RateLimiter) -> None:
        self._app = app
        self._server = server
        self._limiter = limiter
        self._tokens = TokenCheck()
        self._new_tokens = RateLimiter(NEW_TOKENS_PER_ADDRESS_PER_MINUTE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        path = scope["path"]
        if path == HEALTH_PATH:
            await self._health(send)
        elif path.rstrip("/") == MCP_PATH and (refusal := await self._refusal(scope)) is not None:
            await refusal.send(send)
        else:
            await self._app(scope, receive, send)

    async def _health(self, send: Send) -> None:
        try:
            await self._server.state().tasks.ping()
        except Exception as error:  # any failure means not ready; its words help the operator
            await _Answer(503, {"ready": False, "error": f"journal: {type(error).__name__}"}).send(send)
            return
        await _Answer(200, {"ready": True}).send(send)

    async def _refusal(self, scope: Scope) -> _Answer | None:
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        state = self._server.state()
        token = bearer_token(headers) or state.settings.api_token
        if token is None:
            return _unauthorized(
                "missing_token", "Send your AceDataCloud API token: Authorization: Bearer <token>."
            )
        key = hashlib.sha256(token.encode()).hexdigest()
        address = str((scope.get("client") or ("unknown",))[0])
        if not self._tokens.knows(key) and self._new_tokens.take(address) > 0:
            return _Answer(
                429,
                {"error": "Too many new tokens from this address: try again in a minute."},
                {"retry-after": "60"},
            )
        if not await self._tokens.accepted(key, state.client.with_token(token)):
            return _unauthorized(
                "invalid_token", "AceDataCloud rejected this token: check it, or create one."
            )
        wait = self._limiter.take(key)
        if wait > 0:
            return _Answer(
                429,
                {"error": f"Too many requests for this token: at most {self._limiter.per_minute} a minute."},
                {"retry-after": str(math.ceil(wait))},
            )
        return None


def _unauthorized(code: str, message: str) -> _Answer:
    challenge = f'Bearer realm="kling-mcp", error="{code}", error_description="{message}"'
    platform = "Create a token at https://platform.acedata.cloud."
    return _Answer(401, {"error": code, "message": f"{message} {platform}"}, {"www-authenticate": challenge})


@dataclass(frozen=True)
class _Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    async def send(self, send: Send) -> None:
        content = json.dumps(self.body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
        headers += [(name.encode(), value.encode()) for name, value in self.headers.items()]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": content})


class TokenCheck:
    """Whether the API accepts a token, asked once with a free lookup and remembered for a while.

    Keyed by a hash of the token, in memory only. An answer that says nothing about the token (the
    API unreachable, say) lets the request through: its tool call will report what went wrong.
    """

    def __init__(self) -> None:
        self._verdicts: dict[str, tuple[bool, float]] = {}

    def __len__(self) -> int:
        """How many tokens' verdicts it remembers."""
        return len(self._verdicts)

    def knows(self, key: str) -> bool:
        """Whether a verdict on this token is still remembered (asking costs no lookup)."""
        return key in self._verdicts and time.monotonic() < self._verdicts[key][1]

    async def accepted(self, key: str, client: KlingClient) -> bool:
        verdict, until = self._verdicts.get(key, (True, 0.0))
        if time.monotonic() < until:
            return verdict
        try:
            await client.retrieve(TOKEN_CHECK_ID, deadline=anyio.current_time() + 10)
            verdict = True
        except KlingError as error:
            if error.kind not in (ErrorKind.NOT_FOUND, ErrorKind.AUTH):
                return True
            verdict = error.kind is ErrorKind.NOT_FOUND
        self._verdicts.pop(key, None)  # re-inserted last: the newest
        now = time.monotonic()
        self._verdicts[key] = (verdict, now + (ACCEPTED_FOR_SECONDS if verdict else REJECTED_FOR_SECONDS))
        _forget_some(self._verdicts, lambda entry: entry[1] <= now)
        return verdict


class RateLimiter:
    """At most `per_minute` requests a minute per key: a token bucket, refilled continuously."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._buckets: dict[str, tuple[float, float]] = {}

    def __len__(self) -> int:
        """How many tokens' buckets it remembers."""
        return len(self._buckets)

    def take(self, key: str) -> float:
        """Take one request for `key`: 0 if allowed, else the seconds until one is."""
        now = time.monotonic()
        tokens = self._refilled(self._buckets.pop(key, (float(self.per_minute), now)), now)
        taken = tokens >= 1
        self._buckets[key] = (tokens - 1 if taken else tokens, now)
        _forget_some(self._buckets, lambda bucket: self._refilled(bucket, now) >= self.per_minute)
        return 0.0 if taken else (1 - tokens) * 60 / self.per_minute

    def _refilled(self, bucket: tuple[float, float], now: float) -> float:
        tokens, since = bucket
        return min(float(self.per_minute), tokens + (now - since) * self.per_minute / 60)


def _forget_some(entries: dict[str, T], stale: Callable[[T], bool]) -> None:
    """Past REMEMBERED_TOKENS entries, drop the stale ones, then the oldest, down to 90 % of it.

    So that requests with ever new tokens cannot grow a replica's memory without bound.
    """
    if len(entries) <= REMEMBERED_TOKENS:
        return
    for key in [key for key, entry in entries.items() if stale(entry)]:
        del entries[key]
    for key in list(itertools.islice(entries, max(len(entries) - REMEMBERED_TOKENS * 9 // 10, 0))):
        del entries[key]
