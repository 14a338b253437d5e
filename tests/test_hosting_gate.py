"""The hosted gate in the test process: `HostedGate` driven as an ASGI app, and its parts.

tests/test_hosting.py and tests/test_security_hosted.py send real HTTP to replicas in processes
of their own; here the same promises are checked in milliseconds, against a fake API (each
token's check answers as the test scripted), an inner app that records what got through, and a
clock the test keeps (`GateClock`: time moves when the test says, and queued turns do not wait).
"""

from __future__ import annotations

import hashlib
import json
import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, ClassVar, cast

import anyio
import anyio.lowlevel
import pytest
import uvicorn
from mcp.types import INVALID_REQUEST
from starlette.types import Message, Receive, Scope, Send

from kling_mcp.api.errors import ErrorKind, KlingError
from kling_mcp.server import hosting
from kling_mcp.server.hosting import (
    MAX_BODY_BYTES,
    REMEMBERED_TOKENS,
    SERVER_ERROR,
    SHUTDOWN_GRACE_SECONDS,
    TOKEN_CHECK_ID,
    HostedGate,
    RateLimiter,
    TokenCheck,
)
from kling_mcp.settings import Settings
from kling_mcp.tasks.callers import BadAuthorization

pytestmark = pytest.mark.anyio

ADDRESS = "198.51.100.7"
PLATFORM = "Create a token at https://platform.acedata.cloud."


class GateClock:
    """Stands in for `time` and `anyio` in the hosting module: `monotonic()` is `now`, which only the
    test moves; sleeps return at once and are recorded; the rest of anyio is anyio's."""

    def __init__(self) -> None:
        self.now = 0.0  # as time.monotonic() at boot
        self.slept: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(anyio, name)

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> GateClock:
    clock = GateClock()
    monkeypatch.setattr(hosting, "time", clock)
    monkeypatch.setattr(hosting, "anyio", clock)
    return clock


@dataclass
class Lookup:
    token: str
    task_ids: list[str]
    deadline: float
    retry: bool


@dataclass
class FakeApi:
    """The API's side of token checks: each lookup recorded, answered with the test's error or {}."""

    refusals: dict[str, KlingError] = field(default_factory=dict)
    otherwise: KlingError | None = None
    lookups: list[Lookup] = field(default_factory=list)

    def with_token(self, token: str) -> TokenClient:
        return TokenClient(self, token)

    def looked_up(self) -> list[str]:
        return [lookup.token for lookup in self.lookups]


@dataclass
class TokenClient:
    api: FakeApi
    token: str

    async def retrieve_batch(
        self, task_ids: list[str], *, deadline: float, retry: bool = True
    ) -> dict[str, Any]:
        self.api.lookups.append(Lookup(self.token, task_ids, deadline, retry))
        error = self.api.refusals.get(self.token, self.api.otherwise)
        if error is not None:
            raise error
        return {}


@dataclass
class FakeJournal:
    down: Exception | None = None
    stopped_waiting: int = 0

    async def ping(self) -> None:
        if self.down is not None:
            raise self.down

    def stop_waiting(self) -> None:
        self.stopped_waiting += 1


class FakeServer:
    """What the gate reads of a running KlingServer: `state()`'s settings, client and tasks."""

    def __init__(self, api: FakeApi, journal: FakeJournal, settings: Settings) -> None:
        self.states = [SimpleNamespace(settings=settings, client=api, tasks=journal)]

    def state(self) -> SimpleNamespace:
        return self.states[-1]


class Inner:
    """The app behind the gate: records each request's scope and every message it receives."""

    def __init__(self) -> None:
        self.requests: list[tuple[Scope, list[Message]]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        received: list[Message] = []
        self.requests.append((scope, received))
        if scope["type"] != "http":
            return
        while not received or received[-1].get("more_body", False):
            received.append(await receive())
        received.append(await receive())  # what comes after the body: the client's disconnect
        await hosting._Answer(200, {"passed": True}).send(send)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def error(self) -> str:
        """The message of a JSON-RPC error answer, checking its shape."""
        assert (self.body["jsonrpc"], self.body["id"]) == ("2.0", None), self.body
        message: str = self.body["error"]["message"]
        return message


DISCONNECT: Message = {"type": "http.disconnect"}
JSON_BODY: list[Message] = [{"type": "http.request", "body": b"{}"}]


@dataclass
class Setup:
    """A gate in front of `inner`, on a fake server whose API is `api` and journal `journal`."""

    clock: GateClock
    settings: Settings = field(default_factory=Settings)
    server_token: str | None = None
    api: FakeApi = field(default_factory=FakeApi)
    journal: FakeJournal = field(default_factory=FakeJournal)
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self) -> None:
        server = FakeServer(self.api, self.journal, Settings(api_token=self.server_token))
        self.gate = HostedGate(self.inner, cast(Any, server), self.settings)

    async def ask(
        self,
        token: str | None = None,
        *,
        headers: Sequence[tuple[bytes, bytes]] = (),
        path: str = "/mcp",
        body: Iterable[Message] = JSON_BODY,
        client: tuple[str, int] | None = (ADDRESS, 40000),
        hang: bool = False,
    ) -> Answer | None:
        """Send one request through the gate; its answer, None when nothing was answered."""
        sent = [*headers, *([(b"authorization", f"Bearer {token}".encode())] if token else [])]
        scope: Scope = {"type": "http", "method": "POST", "path": path, "headers": sent, "client": client}
        pending = list(body)
        answered: list[Message] = []

        async def receive() -> Message:
            if pending:
                return pending.pop(0)
            if hang:
                await anyio.sleep_forever()
            return DISCONNECT

        async def send(message: Message) -> None:
            answered.append(message)

        with anyio.fail_after(5):
            await self.gate(scope, receive, send)
        if not answered:
            return None
        start, content = answered
        assert (start["type"], content["type"]) == ("http.response.start", "http.response.body")
        headers_ = {name.decode(): value.decode() for name, value in start["headers"]}
        assert headers_["content-type"] == "application/json"
        assert headers_["content-length"] == str(len(content["body"]))
        return Answer(start["status"], headers_, json.loads(content["body"]))

    async def status(self, token: str | None = None, **options: Any) -> int:
        answer = await self.ask(token, **options)
        assert answer is not None
        return answer.status


def kling_error(kind: ErrorKind, status: int | None = None) -> KlingError:
    return KlingError(kind, "the API said so", status=status)


# --- What the gate guards, and health --------------------------------------------------------------


async def test_health_answers_ready_without_a_token_and_503_naming_the_journals_failure(
    clock: GateClock,
) -> None:
    setup = Setup(clock)
    ready = await setup.ask(path="/healthz")
    setup.journal.down = ConnectionRefusedError("secret details")
    down = await setup.ask(path="/healthz")
    assert ready is not None
    assert (ready.status, ready.body) == (200, {"ready": True})
    assert down is not None
    assert (down.status, down.body) == (503, {"ready": False, "error": "journal: ConnectionRefusedError"})
    assert setup.inner.requests == []


async def test_only_mcp_needs_a_token_other_paths_and_other_traffic_pass_through(clock: GateClock) -> None:
    setup = Setup(clock)
    assert await setup.status(path="/mcp") == 401
    assert await setup.status(path="/mcp/") == 401
    assert await setup.status(path="/mcpX") == 200
    assert await setup.status(path="/") == 200
    lifespan: Scope = {"type": "lifespan", "path": "/mcp"}
    await setup.gate(lifespan, cast(Any, None), cast(Any, None))
    assert [scope["path"] for scope, _ in setup.inner.requests] == ["/mcpX", "/", "/mcp"]
    assert setup.inner.requests[-1][0] is lifespan
    assert setup.api.lookups == []


# --- One identity per request ----------------------------------------------------------------------


def test_the_one_authorization_header_is_read_whatever_the_case_of_its_name() -> None:
    assert hosting._one_bearer_token([(b"accept", b"*/*")]) is None
    assert hosting._one_bearer_token([(b"Authorization", b"Bearer abc.DEF-1")]) == "abc.DEF-1"
    assert hosting._one_bearer_token([(b"AUTHORIZATION", b"Bearer x"), (b"host", b"h")]) == "x"
    with pytest.raises(BadAuthorization, match="The request has 2 Authorization headers"):
        hosting._one_bearer_token([(b"authorization", b"Bearer a"), (b"Authorization", b"Bearer a")])
    with pytest.raises(BadAuthorization, match="must be 'Bearer <token>'"):
        hosting._one_bearer_token([(b"authorization", b"Bearer caf\xe9")])
    with pytest.raises(BadAuthorization, match="must be 'Bearer <token>'"):
        hosting._one_bearer_token([(b"authorization", b"Bearer \xff\xfe")])


@pytest.mark.parametrize(
    "headers",
    [
        [(b"authorization", b"Bearer alice"), (b"authorization", b"Bearer bob")],
        [(b"authorization", b"Basic YWxpY2U6cHc=")],
        [(b"authorization", b"Bearer")],
        [(b"authorization", b"Bearer caf\xc3\xa9")],
    ],
    ids=["two", "basic", "no token", "non-ASCII"],
)
async def test_two_or_a_malformed_authorization_is_400_even_with_a_server_wide_token(
    clock: GateClock, headers: list[tuple[bytes, bytes]]
) -> None:
    setup = Setup(clock, server_token="shared")
    answer = await setup.ask(headers=headers)
    assert answer is not None
    assert answer.status == 400
    assert answer.error.endswith(
        " Send your AceDataCloud API token as one header: Authorization: Bearer <token>."
    )
    assert answer.body["error"]["code"] == INVALID_REQUEST
    assert answer.headers["www-authenticate"] == (
        'Bearer realm="kling-mcp", error="invalid_request", '
        'error_description="Send one Authorization: Bearer header."'
    )
    assert setup.api.lookups == []
    assert setup.inner.requests == []


async def test_no_token_is_401_unless_the_server_shares_one_which_is_then_checked_and_spent(
    clock: GateClock,
) -> None:
    alone = Setup(clock)
    missing = await alone.ask()
    shared = Setup(clock, server_token="shared")
    assert missing is not None
    assert missing.status == 401
    assert missing.error == f"Send your AceDataCloud API token: Authorization: Bearer <token>. {PLATFORM}"
    assert missing.headers["www-authenticate"] == (
        'Bearer realm="kling-mcp", error="missing_token", '
        'error_description="Send your AceDataCloud API token: Authorization: Bearer <token>."'
    )
    assert await shared.status() == 200
    assert await shared.status("own") == 200
    assert shared.api.looked_up() == ["shared", "own"]


# --- The token check fails closed ------------------------------------------------------------------


async def test_an_accepted_token_is_looked_up_once_for_free_and_remembered_for_five_minutes(
    clock: GateClock,
) -> None:
    setup = Setup(clock)
    assert await setup.status("alice") == 200
    before = anyio.current_time()
    (lookup,) = setup.api.lookups
    assert (lookup.token, lookup.task_ids, lookup.retry) == ("alice", [TOKEN_CHECK_ID], False)
    assert lookup.deadline == pytest.approx(before + 10, abs=1)
    clock.now += 299.9
    assert await setup.status("alice") == 200
    assert len(setup.api.lookups) == 1
    clock.now += 0.1
    assert await setup.status("alice") == 200
    assert setup.api.looked_up() == ["alice", "alice"]
    assert len(setup.inner.requests) == 3


async def test_the_gate_keeps_tokens_only_as_their_hashes(clock: GateClock) -> None:
    setup = Setup(clock)
    assert await setup.status("alice-secret") == 200
    kept = (
        repr(vars(setup.gate._tokens)) + repr(vars(setup.gate._limiter)) + repr(vars(setup.gate._new_tokens))
    )
    assert "alice-secret" not in kept
    assert hashlib.sha256(b"alice-secret").hexdigest() in kept


async def test_a_token_whose_balance_is_used_up_is_a_token_the_api_knows(clock: GateClock) -> None:
    setup = Setup(clock, api=FakeApi({"broke": kling_error(ErrorKind.BALANCE, 402)}))
    assert await setup.status("broke") == 200


@pytest.mark.parametrize("kind", [ErrorKind.AUTH, ErrorKind.ACCESS])
async def test_a_token_the_api_refuses_is_401_reaches_nothing_and_is_remembered_for_30_s(
    clock: GateClock, kind: ErrorKind
) -> None:
    setup = Setup(clock, api=FakeApi({"mallory": kling_error(kind, 401)}))
    refused = await setup.ask("mallory")
    assert refused is not None
    assert refused.status == 401
    assert refused.error == f"AceDataCloud rejected this token: check it, or create one. {PLATFORM}"
    assert refused.headers["www-authenticate"] == (
        'Bearer realm="kling-mcp", error="invalid_token", '
        'error_description="AceDataCloud rejected this token: check it, or create one."'
    )
    clock.now += 29.9
    assert await setup.status("mallory") == 401
    assert len(setup.api.lookups) == 1
    clock.now += 0.1
    assert await setup.status("mallory") == 401
    assert len(setup.api.lookups) == 2
    assert setup.inner.requests == []


UNSURE = {
    "server": (kling_error(ErrorKind.SERVER, 502), "server, HTTP 502"),
    "timeout": (kling_error(ErrorKind.TIMEOUT), "timeout"),
    "unreachable": (kling_error(ErrorKind.UNREACHABLE), "unreachable"),
    "bad response": (kling_error(ErrorKind.BAD_RESPONSE, 200), "bad_response, HTTP 200"),
    "rate limited": (kling_error(ErrorKind.RATE_LIMITED, 429), "rate_limited, HTTP 429"),
    "bad request": (kling_error(ErrorKind.INVALID_REQUEST, 400), "invalid_request, HTTP 400"),
    "not found": (kling_error(ErrorKind.NOT_FOUND, 404), "not_found, HTTP 404"),
}


@pytest.mark.parametrize("case", list(UNSURE))
async def test_a_token_the_api_did_not_confirm_is_503_reaches_nothing_and_is_asked_again(
    clock: GateClock, case: str
) -> None:
    error, what = UNSURE[case]
    setup = Setup(clock, api=FakeApi(otherwise=error))
    unsure = await setup.ask("maybe")
    assert unsure is not None
    assert unsure.status == 503
    assert unsure.error == (
        f"AceDataCloud could not check this token just now ({what}), so nothing was sent. Try again in 5 s."
    )
    assert unsure.body["error"]["code"] == SERVER_ERROR
    assert unsure.headers["retry-after"] == "5"
    setup.api.otherwise = None
    assert await setup.status("maybe") == 200
    assert setup.api.looked_up() == ["maybe", "maybe"]
    assert len(setup.inner.requests) == 1


# --- New tokens from one address: ten checked a minute, five more queued -------------------------


async def test_an_address_has_ten_new_tokens_checked_at_once_five_queued_and_the_next_told_to_wait(
    clock: GateClock,
) -> None:
    setup = Setup(clock, api=FakeApi(otherwise=kling_error(ErrorKind.AUTH, 401)))
    statuses = [await setup.status(f"guess-{n}", client=(ADDRESS, 40000 + n)) for n in range(15)]
    told = await setup.ask("guess-15")
    assert statuses == [401] * 15
    assert clock.slept == [0] * 10 + [6, 12, 18, 24, 30]
    assert told is not None
    assert told.status == 429
    assert (
        told.error == "Too many new tokens from this address at once: wait for their answers, then try again."
    )
    assert told.headers["retry-after"] == "6"
    assert len(setup.api.lookups) == 15
    # Tokens it has answered are remembered: asking again costs no turn and no lookup.
    assert [await setup.status(f"guess-{n}") for n in range(15)] == [401] * 15
    assert len(clock.slept) == 15
    assert len(setup.api.lookups) == 15


async def test_each_address_has_a_throttle_of_its_own(clock: GateClock) -> None:
    setup = Setup(clock, api=FakeApi(otherwise=kling_error(ErrorKind.AUTH, 401)))
    for n in range(10):
        await setup.ask(f"guess-{n}")
    await setup.ask("other", client=("203.0.113.9", 40000))
    await setup.ask("nowhere", client=None)
    await setup.ask("nowhere-2", client=None)
    await setup.ask("guess-10")
    assert clock.slept == [0] * 13 + [6]


async def test_a_token_found_valid_or_left_unconfirmed_gives_its_turn_back(clock: GateClock) -> None:
    setup = Setup(clock)
    assert [await setup.status(f"valid-{n}") for n in range(25)] == [200] * 25
    setup.api.otherwise = kling_error(ErrorKind.SERVER, 503)
    assert [await setup.status(f"unsure-{n}") for n in range(25)] == [503] * 25
    assert clock.slept == [0] * 50
    setup.api.otherwise = kling_error(ErrorKind.AUTH, 401)
    for n in range(11):
        await setup.ask(f"guess-{n}")
    assert clock.slept[50:] == [0] * 10 + [6], "giving turns back saved up more than ten"


# --- Each token's rate --------------------------------------------------------------------------


async def test_a_token_may_burst_five_minutes_of_its_rate_then_gets_429_with_retry_after(
    clock: GateClock,
) -> None:
    setup = Setup(clock, settings=Settings(rate_limit_per_minute=2))
    assert [await setup.status("alice") for _ in range(10)] == [200] * 10
    limited = await setup.ask("alice")
    assert limited is not None
    assert limited.status == 429
    assert limited.error == (
        "Too many requests for this token: 2 a minute on average, in bursts of up to 10. Try again in 30 s."
    )
    assert limited.headers["retry-after"] == "30"
    assert limited.body["error"]["code"] == INVALID_REQUEST
    assert await setup.status("bob") == 200
    clock.now += 29
    limited = await setup.ask("alice")
    assert limited is not None
    assert limited.headers["retry-after"] == "1"
    clock.now += 1
    assert await setup.status("alice") == 200
    assert len(setup.inner.requests) == 12


# --- The body: whole, in time, within size --------------------------------------------------------


async def test_the_app_gets_the_whole_body_as_it_came_then_what_the_client_sends_next(
    clock: GateClock,
) -> None:
    setup = Setup(clock)
    body: list[Message] = [
        {"type": "http.request", "body": b'{"a":', "more_body": True},
        {"type": "http.request", "body": b"", "more_body": True},
        {"type": "http.request", "body": b"1}"},
    ]
    assert await setup.status("alice", body=body) == 200
    assert await setup.status("alice", body=[{"type": "http.request"}]) == 200
    (_, first), (_, second) = setup.inner.requests
    assert first == [*body, DISCONNECT]
    assert second == [{"type": "http.request"}, DISCONNECT]


async def test_a_body_over_the_limit_is_413_and_reaches_nothing(clock: GateClock) -> None:
    setup = Setup(clock)
    full: Message = {"type": "http.request", "body": b"x" * MAX_BODY_BYTES, "more_body": True}
    assert await setup.status("alice", body=[full, {"type": "http.request"}]) == 200
    over = await setup.ask("alice", body=[full, {"type": "http.request", "body": b"x", "more_body": True}])
    assert over is not None
    assert over.status == 413
    assert over.error == "The request's body is over 4 MB."
    assert len(setup.inner.requests) == 1


async def test_a_client_gone_before_its_body_ended_is_not_answered_and_reaches_nothing(
    clock: GateClock,
) -> None:
    setup = Setup(clock)
    half: Message = {"type": "http.request", "body": b"{", "more_body": True}
    assert await setup.ask("alice", body=[half]) is None
    assert await setup.ask("alice", body=[]) is None
    assert setup.inner.requests == []


async def test_a_body_that_does_not_arrive_in_time_is_408(clock: GateClock) -> None:
    setup = Setup(clock, settings=Settings(body_timeout=0.01))
    half: Message = {"type": "http.request", "body": b"{", "more_body": True}
    late = await setup.ask("alice", body=[half], hang=True)
    assert late is not None
    assert late.status == 408
    assert late.error == "The request's body did not arrive in time (KLING_BODY_TIMEOUT=0.01 s)."
    assert setup.inner.requests == []


# --- The rate limiter and the token check, alone ---------------------------------------------------


def test_a_rate_limiter_bucket_holds_its_burst_and_refills_continuously(clock: GateClock) -> None:
    limiter = RateLimiter(60)
    assert (limiter.per_minute, limiter.burst) == (60, 60)
    assert [limiter.take("a") for _ in range(60)] == [0] * 60
    assert limiter.take("a") == pytest.approx(1.0)
    assert limiter.take("a") == pytest.approx(1.0), "a turn refused was taken"
    clock.now += 0.25
    assert limiter.take("a") == pytest.approx(0.75)
    clock.now += 0.75
    assert limiter.take("a") == 0
    assert limiter.take("b") == 0
    assert len(limiter) == 2
    clock.now += 3600
    assert [limiter.take("a") for _ in range(61)][-2:] == [0, pytest.approx(1.0)], "refilled past the burst"


def test_a_rate_limiter_burst_and_queue(clock: GateClock) -> None:
    limiter = RateLimiter(60, burst=3)
    assert [limiter.take("a") for _ in range(4)] == [0, 0, 0, pytest.approx(1.0)]
    assert limiter.take("a", queue_seconds=2) == pytest.approx(1.0)
    assert limiter.take("a", queue_seconds=2) == pytest.approx(2.0)
    assert limiter.take("a", queue_seconds=2) == pytest.approx(3.0), "a turn beyond the queue"
    assert limiter.take("a", queue_seconds=2) == pytest.approx(3.0)
    limiter.give_back("a")
    assert limiter.take("a", queue_seconds=2) == pytest.approx(2.0)
    limiter.give_back("unknown")
    assert len(limiter) == 1
    for _ in range(10):
        limiter.give_back("a")
    assert [limiter.take("a") for _ in range(4)] == [0, 0, 0, pytest.approx(1.0)], "given back past the burst"


def test_a_flood_of_keys_forgets_the_full_buckets_first_and_keeps_limiting_the_busy_one(
    clock: GateClock,
) -> None:
    limiter = RateLimiter(1)
    for _ in range(5):
        limiter.take("busy", queue_seconds=1e9)
    for n in range(REMEMBERED_TOKENS - 1):
        limiter.take(f"once-{n}")
    clock.now += 120
    limiter.take("new")
    assert len(limiter) == 2
    assert limiter.take("busy") > 0


async def test_the_token_check_asks_once_and_keeps_its_memory_bounded_forgetting_the_expired_first(
    clock: GateClock,
) -> None:
    api = FakeApi({f"bad-{n}": kling_error(ErrorKind.AUTH, 401) for n in range(REMEMBERED_TOKENS - 1)})
    check = TokenCheck()
    assert await check.check("good", cast(Any, api.with_token("good"))) is True
    assert await check.check("good", cast(Any, api.with_token("good"))) is True
    assert api.looked_up() == ["good"]
    for n in range(REMEMBERED_TOKENS - 1):
        assert await check.check(f"bad-{n}", cast(Any, api.with_token(f"bad-{n}"))) is False
    assert check.remembered("bad-0") is False
    clock.now += 30
    assert check.remembered("bad-0") is None
    assert await check.check("new", cast(Any, api.with_token("new"))) is True
    assert check.remembered("good") is True
    assert len(check._verdicts) == 2


async def test_a_token_checked_again_counts_as_the_newest_when_the_oldest_are_forgotten(
    clock: GateClock,
) -> None:
    api = FakeApi({"again": kling_error(ErrorKind.AUTH, 401)})
    check = TokenCheck()
    await check.check("again", cast(Any, api.with_token("again")))
    clock.now += 1
    for n in range(REMEMBERED_TOKENS - 1):
        await check.check(f"good-{n}", cast(Any, api.with_token(f"good-{n}")))
    clock.now += 40
    api.refusals.clear()
    assert await check.check("again", cast(Any, api.with_token("again"))) is True
    await check.check("new", cast(Any, api.with_token("new")))
    assert check.remembered("again") is True
    assert check.remembered("good-0") is None
    assert len(check._verdicts) == REMEMBERED_TOKENS * 9 // 10


def test_past_the_limit_the_stale_go_then_the_oldest_down_to_nine_tenths() -> None:
    def entries(count: int) -> dict[str, int]:
        return {f"k{n}": n for n in range(count)}

    at_limit = entries(REMEMBERED_TOKENS)
    hosting._forget_some(at_limit, lambda n: True)
    assert len(at_limit) == REMEMBERED_TOKENS
    over = entries(REMEMBERED_TOKENS + 1)
    hosting._forget_some(over, lambda n: n in (5000, 7000))
    assert list(over) == [f"k{n}" for n in range(999, REMEMBERED_TOKENS + 1) if n not in (5000, 7000)]
    many_stale = entries(REMEMBERED_TOKENS + 1)
    hosting._forget_some(many_stale, lambda n: n % 2 == 0)
    assert list(many_stale) == [f"k{n}" for n in range(1, REMEMBERED_TOKENS + 1, 2)]


# --- What serve_http sets up ---------------------------------------------------------------------


def test_an_allowed_origin_must_be_exact() -> None:
    for exact in ("https://app.example.com", "http://localhost:3000", "http://[::1]:8080"):
        assert hosting._exact_origin(exact) == exact
    for loose in (
        "*",
        "https://*.example.com",
        "http://localhost:*",
        "ftp://files.example.com",
        "app.example.com",
        "https://",
        "https://user@app.example.com",
        "https://app.example.com/",
        "https://app.example.com?x=1",
        "https://app.example.com#top",
    ):
        with pytest.raises(SystemExit) as stopped:
            hosting._exact_origin(loose)
        assert str(stopped.value) == (
            f"kling-mcp: --allow-origin {loose!r} is not an exact origin: give it as a browser sends it, "
            "scheme://host[:port] (e.g. https://app.example.com or http://localhost:3000), "
            "without a wildcard or a path."
        )


def test_uvicorn_believes_forwarded_addresses_only_from_trusted_proxies_and_guards_connections() -> None:
    app = Inner()
    plain = hosting._config(app, "0.0.0.0", 8123, Settings())
    proxied = Settings(trusted_proxies=("10.0.0.5/32",), max_connections_per_address=2, header_timeout=3.5)
    behind = hosting._config(app, "127.0.0.1", 9000, proxied)
    assert (plain.app, plain.host, plain.port) == (app, "0.0.0.0", 8123)
    assert (plain.proxy_headers, plain.forwarded_allow_ips) == (False, [])
    assert (behind.proxy_headers, behind.forwarded_allow_ips) == (True, ["10.0.0.5/32"])
    assert (plain.ws, plain.lifespan, plain.access_log, plain.log_config) == ("none", "on", False, None)
    assert plain.log_level == "warning"
    assert plain.timeout_graceful_shutdown == SHUTDOWN_GRACE_SECONDS
    guarded = cast(Any, behind.http)
    assert guarded._header_timeout == 3.5
    counts = guarded._counts
    assert [counts.admit("192.0.2.1") for _ in range(3)] == [True, True, False]
    assert all(counts.admit("10.0.0.5") for _ in range(3))


@dataclass
class Served:
    """What serve_http handed on: the server's app options and the uvicorn server it ran."""

    settings: Settings | None = None
    app_options: dict[str, Any] = field(default_factory=dict)
    app: Inner | None = None
    config: uvicorn.Config | None = None
    server: Any = None


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Served:
    served = Served()

    class Server:
        states: ClassVar[list[Any]] = []

        def streamable_http_app(self, **options: Any) -> Inner:
            served.app_options = options
            served.app = Inner()
            return served.app

    class Runner:
        def __init__(self, server: Any, config: uvicorn.Config) -> None:
            served.server, served.config = server, config

        def run(self) -> None:
            pass

    def create_server(settings: Settings) -> Server:
        served.settings = settings
        return Server()

    monkeypatch.setattr(hosting, "create_server", create_server)
    monkeypatch.setattr(hosting, "_GracefulServer", Runner)
    return served


def test_serve_http_allows_loopback_and_the_listed_hosts_and_only_exact_origins(
    served: Served, kling_log: pytest.LogCaptureFixture
) -> None:
    settings = Settings(rate_limit_per_minute=7)
    hosting.serve_http(
        settings,
        host="0.0.0.0",
        port=8123,
        allowed_hosts=["mcp.example.com"],
        allowed_origins=["https://app.example.com"],
    )
    security = served.app_options["transport_security"]
    loopback = ["127.0.0.1:8123", "localhost:8123", "[::1]:8123"]
    assert security.enable_dns_rebinding_protection is True
    assert security.allowed_hosts == ["mcp.example.com", *loopback]
    assert security.allowed_origins == ["https://app.example.com", *(f"http://{name}" for name in loopback)]
    assert (served.app_options["stateless_http"], served.app_options["host"]) == (True, "0.0.0.0")
    assert served.config is not None
    gate = served.config.app
    assert isinstance(gate, HostedGate)
    assert (gate._app, gate._server) == (served.app, served.server)
    assert (served.config.host, served.config.port) == ("0.0.0.0", 8123)
    assert served.settings is settings
    assert gate._limiter.per_minute == 7
    assert [record.getMessage() for record in kling_log.records] == [
        "kling-mcp for a team at http://0.0.0.0:8123/mcp"
    ]
    with pytest.raises(SystemExit):
        hosting.serve_http(Settings(), allowed_origins=["https://*.example.com"])


def test_serve_http_warns_of_what_the_operator_should_know(
    served: Served, kling_log: pytest.LogCaptureFixture
) -> None:
    settings = Settings(api_token="shared", trusted_proxies=("10.0.0.5/32", "10.1.0.0/16"))
    hosting.serve_http(settings, host="0.0.0.0")
    hosting.serve_http(Settings(), host="localhost", port=8001)
    hosting.serve_http(Settings())
    assert [(record.levelname, record.getMessage()) for record in kling_log.records] == [
        (
            "WARNING",
            "Serving on 0.0.0.0: requests must name a loopback Host unless --allow-host names this server's",
        ),
        ("WARNING", "ACEDATACLOUD_API_TOKEN is set: requests without a token of their own spend it."),
        ("INFO", "Believing X-Forwarded-For from 10.0.0.5/32, 10.1.0.0/16 only"),
        ("INFO", "kling-mcp for a team at http://0.0.0.0:8000/mcp"),
        ("INFO", "kling-mcp for a team at http://localhost:8001/mcp"),
        ("INFO", "kling-mcp for a team at http://127.0.0.1:8000/mcp"),
    ]


async def test_on_sigterm_every_waiting_call_is_answered_and_uvicorn_stops(
    monkeypatch: pytest.MonkeyPatch, kling_log: pytest.LogCaptureFixture
) -> None:
    journal = FakeJournal()
    server = FakeServer(FakeApi(), journal, Settings())
    served_on: list[Any] = []

    async def serve(self: uvicorn.Server, sockets: Any = None) -> None:
        served_on.append(sockets)
        self.handle_exit(signal.SIGTERM, None)
        await anyio.lowlevel.checkpoint()

    monkeypatch.setattr(uvicorn.Server, "serve", serve)
    config = hosting._config(Inner(), "127.0.0.1", 1, Settings())
    graceful = hosting._GracefulServer(cast(Any, server), config)
    assert graceful.config is config
    graceful.handle_exit(signal.SIGTERM, None)  # before serving: no loop to answer in
    assert journal.stopped_waiting == 0
    await graceful.serve(sockets=["a socket"])
    assert journal.stopped_waiting == 1
    assert served_on == [["a socket"]]
    assert [record.getMessage() for record in kling_log.records] == [
        "Stopping: answering every waiting call with its task id"
    ]
    server.states.clear()
    await graceful.serve()  # a server that is not running has no one waiting
    assert journal.stopped_waiting == 1
    assert (graceful.should_exit, graceful.force_exit) == (True, False)
    graceful.handle_exit(signal.SIGINT, None)
    assert graceful.force_exit, "a second Ctrl-C does not force the exit"
