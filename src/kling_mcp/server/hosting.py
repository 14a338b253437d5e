"""kling-mcp hosted for a team: MCP's streamable HTTP at `/mcp`, one AceDataCloud token per request.

The SDK's own transport serves MCP, stateless, so any replica can answer any request, with its
Host and Origin checks against DNS rebinding (a browser Origin only when the operator lists it,
exactly). In front of it, a gate: `/healthz` answers readiness (the journal reachable) without
auth. Every `/mcp` request names one user: at most one `Authorization: Bearer <token>` header,
well formed (400 otherwise), or none when the operator shares a server-wide
ACEDATACLOUD_API_TOKEN. The token must be one the API confirms: checked with a free request
and remembered for a few minutes, by a hash of the token, in memory only; 401 when the API
rejects it, 503 (not remembered) when it answers neither yes nor no. An address's new tokens
are checked ten a minute and more wait their turn, so guessing costs time while a valid token
sent after junk ones is still served. Each token gets KLING_RATE_LIMIT requests a minute, and a
request's body must arrive within KLING_BODY_TIMEOUT. Every refusal is a JSON-RPC error.
Below the gate, connections.py times out slow headers and caps connections per address; a
forwarded address (X-Forwarded-For) is believed only from KLING_TRUSTED_PROXIES. SIGTERM answers
every waiting call at once with its task id and leaves the running tasks to the other replicas.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio
import uvicorn
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE, TransportSecuritySettings
from mcp.types import INVALID_REQUEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kling_mcp.api.client import KlingClient
from kling_mcp.api.errors import ErrorKind, KlingError
from kling_mcp.logs import logger, write_one_line
from kling_mcp.server.app import KlingServer, create_server
from kling_mcp.server.connections import ConnectionCounts, guarded_protocol
from kling_mcp.settings import Settings
from kling_mcp.tasks.callers import BadAuthorization, bearer_token

MCP_PATH = "/mcp"
HEALTH_PATH = "/healthz"
TOKEN_CHECK_ID = "kling-mcp-token-check"
"""A task id no one has: a batch lookup of it is free, and answers an empty list to a valid token."""
TOKEN_CHECK_SECONDS = 10.0
ACCEPTED_FOR_SECONDS = 300.0
REJECTED_FOR_SECONDS = 30.0
UNCONFIRMED_RETRY_SECONDS = 5
SHUTDOWN_GRACE_SECONDS = 10
REMEMBERED_TOKENS = 10_000
"""How many tokens' verdicts and rates stay in memory: past it, the stale and then the oldest go."""
NEW_TOKENS_PER_ADDRESS_PER_MINUTE = 10
"""Unknown tokens one client address may have checked a minute: guessing tokens costs the API lookups."""
NEW_TOKEN_QUEUE_SECONDS = 30.0
"""How long an unknown token may wait its turn to be checked (five turns); one that would wait longer
gets 429. A token found valid gives its turn back, so only failed guesses slow an address down."""
BURST_MINUTES = 5
"""A token may spend up to five minutes of its rate at once (600 requests at the default 120 a minute):
a client that connects, lists what the server has and polls its tasks sends dozens in a second."""
MAX_BODY_BYTES = DEFAULT_MAX_REQUEST_BODY_SIZE
SERVER_ERROR = -32000
"""JSON-RPC's code for a server that cannot answer now (the API did not say whether a token is valid)."""
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
    origins = [_exact_origin(origin) for origin in allowed_origins]
    server = create_server(settings)
    write_one_line()  # the SDK's handler, set up with the server, logs what clients send (an Origin)
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*allowed_hosts, *_loopback_hosts(port)],
        # This server's own origin is no rebinding: a rebound page's Origin names the attacker's site.
        allowed_origins=[*origins, *(f"http://{name}" for name in _loopback_hosts(port))],
    )
    mcp_app = server.streamable_http_app(stateless_http=True, transport_security=security, host=host)
    gate = HostedGate(mcp_app, server, settings)
    if host not in LOOPBACK and not allowed_hosts:
        logger.warning(
            "Serving on %s: requests must name a loopback Host unless --allow-host names this server's", host
        )
    if settings.api_token:
        logger.warning("ACEDATACLOUD_API_TOKEN is set: requests without a token of their own spend it.")
    if settings.trusted_proxies:
        logger.info("Believing X-Forwarded-For from %s only", ", ".join(settings.trusted_proxies))
    logger.info("kling-mcp for a team at http://%s:%d%s", host, port, MCP_PATH)
    _GracefulServer(server, _config(gate, host, port, settings)).run()


def _exact_origin(origin: str) -> str:
    """`origin` when it names one browser origin exactly (scheme://host[:port]); else stop, saying why."""
    parts = urlsplit(origin)
    exact = "*" not in origin and parts.scheme in ("http", "https") and bool(parts.hostname)
    if not exact or "@" in parts.netloc or parts.path or parts.query or parts.fragment:
        raise SystemExit(
            f"kling-mcp: --allow-origin {origin!r} is not an exact origin: give it as a browser sends it, "
            "scheme://host[:port] (e.g. https://app.example.com or http://localhost:3000), "
            "without a wildcard or a path."
        )
    return origin


def _loopback_hosts(port: int) -> list[str]:
    return [f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"]


def _config(app: ASGIApp, host: str, port: int, settings: Settings) -> uvicorn.Config:
    counts = ConnectionCounts(settings.max_connections_per_address, settings.trusted_proxies)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_protocol(counts, settings.header_timeout),
        ws="none",
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies),
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
    """In front of the MCP app: health without auth; for `/mcp`, a checked token, a rate and a whole body."""

    def __init__(self, app: ASGIApp, server: KlingServer, settings: Settings) -> None:
        self._app = app
        self._server = server
        self._settings = settings
        per_minute = settings.rate_limit_per_minute
        self._limiter = RateLimiter(per_minute, burst=per_minute * BURST_MINUTES)
        self._tokens = TokenCheck()
        self._new_tokens = RateLimiter(NEW_TOKENS_PER_ADDRESS_PER_MINUTE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") not in (HEALTH_PATH, MCP_PATH):
            await self._app(scope, receive, send)
        elif scope["path"] == HEALTH_PATH:
            await self._health(send)
        elif (refusal := await self._refusal(scope)) is not None:
            await refusal.send(send)
        else:
            await self._with_whole_body(scope, receive, send)

    async def _health(self, send: Send) -> None:
        try:
            await self._server.state().tasks.ping()
        except Exception as error:  # any failure means not ready; its words help the operator
            await _Answer(503, {"ready": False, "error": f"journal: {type(error).__name__}"}).send(send)
            return
        await _Answer(200, {"ready": True}).send(send)

    async def _refusal(self, scope: Scope) -> _Answer | None:
        try:
            token = _one_bearer_token(scope["headers"]) or self._server.state().settings.api_token
        except BadAuthorization as bad:
            return _refused(
                400,
                f"{bad} Send your AceDataCloud API token as one header: Authorization: Bearer <token>.",
                {"www-authenticate": _challenge("invalid_request", "Send one Authorization: Bearer header.")},
            )
        if token is None:
            return _unauthorized(
                "missing_token", "Send your AceDataCloud API token: Authorization: Bearer <token>."
            )
        key = hashlib.sha256(token.encode()).hexdigest()
        verdict = self._tokens.remembered(key)
        if verdict is None:
            address = str((scope.get("client") or ("unknown",))[0])
            checked = await self._check_new(key, token, address)
            if isinstance(checked, _Answer):
                return checked
            verdict = checked
        if not verdict:
            return _unauthorized(
                "invalid_token", "AceDataCloud rejected this token: check it, or create one."
            )
        wait = self._limiter.take(key)
        if wait > 0:
            return _refused(
                429,
                f"Too many requests for this token: {self._limiter.per_minute} a minute on average, "
                f"in bursts of up to {self._limiter.burst}. Try again in {math.ceil(wait)} s.",
                {"retry-after": str(math.ceil(wait))},
            )
        return None

    async def _check_new(self, key: str, token: str, address: str) -> bool | _Answer:
        """Ask the API about a token not checked lately, once `address` has its turn."""
        wait = self._new_tokens.take(address, queue_seconds=NEW_TOKEN_QUEUE_SECONDS)
        if wait > NEW_TOKEN_QUEUE_SECONDS:
            return _refused(
                429,
                "Too many new tokens from this address at once: wait for their answers, then try again.",
                {"retry-after": str(math.ceil(wait - NEW_TOKEN_QUEUE_SECONDS))},
            )
        await anyio.sleep(wait)
        try:
            accepted = await self._tokens.check(key, self._server.state().client.with_token(token))
        except TokenUnconfirmed as unsure:
            self._new_tokens.give_back(address)
            return _refused(503, str(unsure), {"retry-after": str(UNCONFIRMED_RETRY_SECONDS)}, SERVER_ERROR)
        if accepted:
            self._new_tokens.give_back(address)
        return accepted

    async def _with_whole_body(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The MCP app, once the request's body has arrived in time and within size."""
        timeout = self._settings.body_timeout
        received: list[Message] | _Answer | None = _refused(
            408, f"The request's body did not arrive in time (KLING_BODY_TIMEOUT={timeout:g} s)."
        )
        with anyio.move_on_after(timeout):
            received = await _whole_body(receive)
        if received is None:
            return  # the client went away: no one to answer
        if isinstance(received, _Answer):
            await received.send(send)
            return
        await self._app(scope, _replaying(received, receive), send)


def _one_bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The token of the request's one Authorization header; None without one.

    Raises BadAuthorization for two or more (which would name two users) or a malformed one.
    """
    values = [value for name, value in headers if name.lower() == b"authorization"]
    if len(values) > 1:
        raise BadAuthorization(
            f"The request has {len(values)} Authorization headers: send one Authorization header."
        )
    return bearer_token({"authorization": values[0].decode("latin-1")} if values else None)


async def _whole_body(receive: Receive) -> list[Message] | _Answer | None:
    """The request's body messages; an answer when it is too big; None when the client disconnected."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        messages.append(message)
        size += len(message.get("body", b""))
        if size > MAX_BODY_BYTES:
            return _refused(413, f"The request's body is over {MAX_BODY_BYTES // 1024 // 1024} MB.")
        if not message.get("more_body", False):
            return messages


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """A `receive` that gives `messages` first, then what the client sends (its disconnect)."""
    pending = deque(messages)

    async def replay() -> Message:
        return pending.popleft() if pending else await receive()

    return replay


def _challenge(error: str, description: str) -> str:
    return f'Bearer realm="kling-mcp", error="{error}", error_description="{description}"'


def _unauthorized(code: str, message: str) -> _Answer:
    platform = "Create a token at https://platform.acedata.cloud."
    return _refused(401, f"{message} {platform}", {"www-authenticate": _challenge(code, message)})


def _refused(
    status: int, message: str, headers: dict[str, str] | None = None, code: int = INVALID_REQUEST
) -> _Answer:
    """A refusal as a JSON-RPC error, which an MCP client shows as it shows any other."""
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}
    return _Answer(status, body, headers or {})


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


class TokenUnconfirmed(Exception):
    """The API answered a token check with neither yes nor no: an error, a page, or nothing."""


class TokenCheck:
    """Whether the API accepts a token, asked once with a free lookup and remembered for a while.

    Keyed by a hash of the token, in memory only. Only a clear answer is remembered and decides:
    the lookup's own answer (yes), or the API's refusal of the token (no). Anything else raises
    TokenUnconfirmed, so the gate fails closed and asks again on the next request.
    """

    def __init__(self) -> None:
        self._verdicts: dict[str, tuple[bool, float]] = {}

    def remembered(self, key: str) -> bool | None:
        """The verdict on this token while it is remembered (asking costs no lookup), else None."""
        verdict, until = self._verdicts.get(key, (False, 0.0))
        return verdict if time.monotonic() < until else None

    async def check(self, key: str, client: KlingClient) -> bool:
        """The verdict on the token of `client`, asking the API unless it is remembered."""
        remembered = self.remembered(key)
        if remembered is not None:  # checked meanwhile, by a request that had its turn first
            return remembered
        try:
            deadline = anyio.current_time() + TOKEN_CHECK_SECONDS
            await client.retrieve_batch([TOKEN_CHECK_ID], deadline=deadline, retry=False)
            verdict = True
        except KlingError as error:
            verdict = _verdict_of(error)
        self._verdicts.pop(key, None)  # re-inserted last: the newest
        now = time.monotonic()
        self._verdicts[key] = (verdict, now + (ACCEPTED_FOR_SECONDS if verdict else REJECTED_FOR_SECONDS))
        _forget_some(self._verdicts, lambda entry: entry[1] <= now)
        return verdict


def _verdict_of(error: KlingError) -> bool:
    """What a failed lookup says of its token: no when the API refuses the token, yes when the API
    knows it (its balance is used up), else nothing (TokenUnconfirmed)."""
    if error.kind in (ErrorKind.AUTH, ErrorKind.ACCESS):
        return False
    if error.kind is ErrorKind.BALANCE:
        return True
    what = error.kind.value + (f", HTTP {error.status}" if error.status else "")
    raise TokenUnconfirmed(
        f"AceDataCloud could not check this token just now ({what}), so nothing was sent. "
        f"Try again in {UNCONFIRMED_RETRY_SECONDS} s."
    )


class RateLimiter:
    """At most `per_minute` requests a minute per key on average, in bursts of up to `burst` (by
    default `per_minute`): a token bucket of `burst` turns, refilled continuously at `per_minute`.

    A request may also queue for a turn not free yet: the bucket then goes below empty, and the
    turns after it come later.
    """

    def __init__(self, per_minute: int, burst: int | None = None) -> None:
        self.per_minute = per_minute
        self.burst = burst or per_minute
        self._buckets: dict[str, tuple[float, float]] = {}

    def __len__(self) -> int:
        """How many tokens' buckets it remembers."""
        return len(self._buckets)

    def take(self, key: str, *, queue_seconds: float = 0.0) -> float:
        """Take a turn for `key` and answer the seconds until it comes (0: now).

        A turn further away than `queue_seconds` is not taken: the answer is then larger than it.
        """
        now = time.monotonic()
        tokens = self._refilled(self._buckets.pop(key, (float(self.burst), now)), now)
        wait = max(0.0, (1 - tokens) * 60 / self.per_minute)
        self._buckets[key] = (tokens - 1 if wait <= queue_seconds else tokens, now)
        _forget_some(self._buckets, lambda bucket: self._refilled(bucket, now) >= self.burst)
        return wait

    def give_back(self, key: str) -> None:
        """Return a turn taken for `key` (the request did not cost what the rate guards)."""
        if key in self._buckets:
            tokens, since = self._buckets[key]
            self._buckets[key] = (min(float(self.burst), tokens + 1), since)

    def _refilled(self, bucket: tuple[float, float], now: float) -> float:
        tokens, since = bucket
        return min(float(self.burst), tokens + (now - since) * self.per_minute / 60)


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
