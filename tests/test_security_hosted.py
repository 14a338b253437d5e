"""Attacks on the hosted server, as issue 22 ran them, against real replicas over real HTTP.

Each replica is `kling-mcp --transport http` in its own process (tests/hosted.py) in front of the
API emulator, which takes any token (`token=None`) or only "good". A well-behaved client cannot
send most of what is sent here (two Authorization headers, non-ASCII bytes, half a request), so
those go over raw sockets. Whatever is sent, the server answers with a 4xx (a JSON-RPC error body
where the gate answers), never a 500, and its stderr shows no traceback.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, closing, suppress
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from kling_mcp.emulator import Emulator, Fault, serve_emulator
from kling_mcp.settings import Settings, SettingsError
from kling_mcp.tasks.sqlite import JOURNAL_FILE
from tests.hosted import (
    Replica,
    base_url,
    body_of,
    call,
    hosted_env,
    new_token,
    raw_exchange,
    read_until_closed,
    replica,
    session,
    status_of,
    structured,
    text_of,
)

pytestmark = pytest.mark.anyio

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "test-security", "version": "1"},
    },
}
PAID_CALL = {
    "jsonrpc": "2.0",
    "id": 2,
    "method": "tools/call",
    "params": {"name": "kling_generate_video", "arguments": {"prompt": "a paid video", "timeout": 0}},
}
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
NEW_TOKENS_A_MINUTE = 10
"""New tokens one address may have checked a minute before it must wait its turn (SECURITY.md)."""
QUEUED_NEW_TOKENS = 5
"""How many more may wait their turn (30 s of turns) before the next is told to come back."""


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Module scope, so that the shared emulator and replica live in the tests' event loop."""
    return "asyncio"


@pytest.fixture(scope="module")
async def emulator() -> AsyncIterator[Emulator]:
    api = Emulator(token=None, task_seconds=0.3)
    async with serve_emulator(api):
        yield api


@pytest.fixture(scope="module")
async def shared(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Replica]:
    """One replica in front of the emulator, which takes any token: every well-formed token is valid."""
    workdir = tmp_path_factory.mktemp("shared")
    async with replica(
        hosted_env(base_url(emulator), workdir, KLING_POLL_INTERVAL="0.1"), workdir
    ) as running:
        yield running


async def post(
    running: Replica,
    headers: list[tuple[str, str | bytes]],
    body: dict[str, Any] = INITIALIZE,
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=running.base_url, timeout=20) as http:
        return await http.post("/mcp", json=body, headers=[*MCP_HEADERS.items(), *headers])


def bearer(token: str) -> list[tuple[str, str | bytes]]:
    return [("authorization", f"Bearer {token}")]


def rpc_error(answer: httpx.Response | bytes) -> str:
    """The message of a JSON-RPC error answer, checking its shape."""
    body = json.loads(answer.content if isinstance(answer, httpx.Response) else body_of(answer))
    assert (body["jsonrpc"], body["id"]) == ("2.0", None), body
    assert isinstance(body["error"]["code"], int), body
    message: str = body["error"]["message"]
    return message


def assert_no_traceback(running: Replica) -> None:
    stderr = running.stderr()
    assert "Traceback" not in stderr, stderr[-3000:]
    assert "Exception in" not in stderr, stderr[-3000:]
    control = re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", stderr)
    assert control is None, f"a control character a client sent reached the log: {stderr[-3000:]!r}"


# --- One identity per request ------------------------------------------------------------------


async def test_two_authorization_headers_are_refused_whatever_their_order(
    shared: Replica, emulator: Emulator
) -> None:
    alice, bob = new_token("alice"), new_token("bob")
    submitted = len(emulator.submissions)
    for first, second in ((alice, bob), (bob, alice)):
        headers = [*bearer(first), *bearer(second)]
        for body in (INITIALIZE, PAID_CALL):
            answer = await post(shared, headers, body)
            assert answer.status_code == 400, answer.text
            assert "one Authorization header" in rpc_error(answer)
    assert len(emulator.submissions) == submitted, "a paid call went out on one of two identities"
    assert_no_traceback(shared)


MALFORMED: dict[str, bytes] = {
    "non-ASCII token (UTF-8)": "Bearer ключ-доступа".encode(),
    "non-ASCII token (Latin-1)": b"Bearer caf\xe9-token",
    "no token": b"Bearer",
    "another scheme": b"Basic dXNlcjpwYXNzd29yZA==",
    "two words": b"Bearer good token",
    "a token of 5,000 characters": b"Bearer " + b"x" * 5000,
    "a quote in the token": b'Bearer tok"en',
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_a_malformed_or_non_ascii_authorization_is_a_400_with_a_json_rpc_error(
    shared: Replica, case: str
) -> None:
    answer = await post(shared, [("authorization", MALFORMED[case])])
    assert answer.status_code == 400, answer.text
    assert "Authorization: Bearer <token>" in rpc_error(answer)
    assert 'error="invalid_request"' in answer.headers["www-authenticate"]
    assert_no_traceback(shared)


# --- The gate fails closed -----------------------------------------------------------------------

UNSURE_ANSWERS = {
    "400": Fault.status(400, error_code="bad_request"),
    "503": Fault.status(503),
    "a gateway's 404 page": Fault.html(404),
    "no answer": Fault.drop(),
    "not JSON": Fault.not_json(200),
}


@pytest.mark.parametrize("case", list(UNSURE_ANSWERS))
async def test_a_token_the_api_did_not_confirm_is_answered_503_not_admitted_and_not_remembered(
    shared: Replica, emulator: Emulator, case: str
) -> None:
    token = new_token("mallory")
    submitted, lookups = len(emulator.submissions), emulator.counts["/kling/tasks"]
    emulator.inject("/kling/tasks", UNSURE_ANSWERS[case])
    unsure = await post(shared, bearer(token), PAID_CALL)
    assert unsure.status_code == 503, unsure.text
    assert "could not check this token" in rpc_error(unsure)
    assert int(unsure.headers["retry-after"]) >= 1
    assert len(emulator.submissions) == submitted, "the paid call went out on an unchecked token"
    # Not remembered: the next request asks the API again, which now answers.
    assert (await post(shared, bearer(token))).status_code == 200
    assert emulator.counts["/kling/tasks"] == lookups + 2
    assert_no_traceback(shared)


# --- The new-token throttle slows guesses, and never locks out the honest ------------------------


@pytest.fixture
async def strict(tmp_path: Path) -> AsyncIterator[tuple[Emulator, Path]]:
    """An API that accepts only the token "good"; each test starts its own replicas in front of it."""
    api = Emulator(token="good", task_seconds=0.3)
    async with serve_emulator(api):
        yield api, tmp_path


async def test_a_valid_token_after_ten_junk_ones_from_the_same_address_is_served(
    strict: tuple[Emulator, Path],
) -> None:
    api, workdir = strict
    async with replica(hosted_env(base_url(api), workdir), workdir) as running:
        junk = [await post(running, bearer(f"guess-{n}")) for n in range(NEW_TOKENS_A_MINUTE)]
        welcome = await post(running, bearer("good"))
    assert [answer.status_code for answer in junk] == [401] * NEW_TOKENS_A_MINUTE
    assert welcome.status_code == 200, welcome.text


async def first_answers(
    running: Replica, headers: list[list[tuple[str, str | bytes]]], count: int
) -> Counter[int]:
    """Send a request with each of `headers` at once; the statuses of the first `count` answers."""
    statuses: Counter[int] = Counter()
    enough = anyio.Event()

    async def send(one: list[tuple[str, str | bytes]]) -> None:
        statuses[(await post(running, one)).status_code] += 1
        if statuses.total() >= count:
            enough.set()

    async with anyio.create_task_group() as group:
        for one in headers:
            group.start_soon(send, one)
        with anyio.fail_after(20):
            await enough.wait()
        group.cancel_scope.cancel()
    return statuses


def guesses_from_forged_addresses(count: int) -> list[list[tuple[str, str | bytes]]]:
    return [[*bearer(f"guess-{n}"), ("x-forwarded-for", f"203.0.113.{n + 1}")] for n in range(count)]


async def test_a_forged_x_forwarded_for_does_not_give_a_client_a_fresh_throttle(
    strict: tuple[Emulator, Path],
) -> None:
    api, workdir = strict
    guesses = guesses_from_forged_addresses(NEW_TOKENS_A_MINUTE + QUEUED_NEW_TOKENS + 1)
    async with replica(hosted_env(base_url(api), workdir), workdir) as running:
        # Ten are checked at once, five wait their turn, and the last is told to come back.
        statuses = await first_answers(running, guesses, NEW_TOKENS_A_MINUTE + 1)
        assert_no_traceback(running)
    assert statuses == Counter({401: NEW_TOKENS_A_MINUTE, 429: 1})
    assert api.counts["/kling/tasks"] <= NEW_TOKENS_A_MINUTE + QUEUED_NEW_TOKENS


async def test_x_forwarded_for_is_believed_from_an_address_the_operator_lists(
    strict: tuple[Emulator, Path],
) -> None:
    api, workdir = strict
    guesses = guesses_from_forged_addresses(NEW_TOKENS_A_MINUTE + QUEUED_NEW_TOKENS + 1)
    env = hosted_env(base_url(api), workdir, KLING_TRUSTED_PROXIES="127.0.0.1")
    async with replica(env, workdir) as running:
        statuses = await first_answers(running, guesses, len(guesses))
    assert statuses == Counter({401: len(guesses)}), "each forwarded address has a throttle of its own"


def test_forwarded_addresses_are_believed_only_from_listed_addresses_and_networks() -> None:
    assert Settings().trusted_proxies == ()
    listed = Settings.from_env({"KLING_TRUSTED_PROXIES": " 10.0.0.5, 172.16.0.0/12,::1"}).trusted_proxies
    assert listed == ("10.0.0.5/32", "172.16.0.0/12", "::1/128")
    for anyone in ("*", "10.0.0.5,*", "0.0.0.0/0", "::/0", "proxy.example"):
        with pytest.raises(SettingsError, match="KLING_TRUSTED_PROXIES"):
            Settings.from_env({"KLING_TRUSTED_PROXIES": anyone})


# --- Slow and greedy clients ---------------------------------------------------------------------


def raw_request(
    port: int, *, token: str | None = None, body: bytes = b"", length: int | None = None
) -> bytes:
    lines = [
        b"POST /mcp HTTP/1.1",
        f"host: 127.0.0.1:{port}".encode(),
        b"accept: application/json, text/event-stream",
        b"content-type: application/json",
        f"content-length: {len(body) if length is None else length}".encode(),
        *([f"authorization: Bearer {token}".encode()] if token else []),
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def test_half_sent_requests_are_answered_408_and_closed(emulator: Emulator, tmp_path: Path) -> None:
    env = hosted_env(base_url(emulator), tmp_path, KLING_HEADER_TIMEOUT="1", KLING_BODY_TIMEOUT="1")
    async with replica(env, tmp_path) as running:
        whole = raw_request(running.port, token=new_token("slow"), body=json.dumps(INITIALIZE).encode())
        half_headers = whole[: whole.index(b"authorization") + 6]
        half_body = whole[:-20]
        async with anyio.create_task_group() as group:
            answers: dict[str, bytes] = {}

            async def exchange(name: str, request: bytes) -> None:
                answers[name] = await raw_exchange(running, request, limit=10)

            group.start_soon(exchange, "silent", b"")
            group.start_soon(exchange, "half the headers", half_headers)
            group.start_soon(exchange, "half the body", half_body)
        assert_no_traceback(running)
    assert answers["silent"] == b"", "a connection that never spoke was answered"
    assert status_of(answers["half the headers"]) == 408
    assert status_of(answers["half the body"]) == 408
    assert "in time" in rpc_error(answers["half the body"])


async def test_a_client_answered_before_its_body_ended_cannot_keep_the_connection_by_trickling(
    shared: Replica,
) -> None:
    # No token: refused at once, with 990 bytes of the declared body still to come.
    request = raw_request(shared.port, body=b"{" * 10, length=1000)
    with anyio.fail_after(10):
        async with await anyio.connect_tcp("127.0.0.1", shared.port) as stream:
            await stream.send(request)
            answer = await stream.receive()

            async def trickle() -> None:
                with suppress(anyio.BrokenResourceError):
                    while True:
                        await stream.send(b" ")
                        await anyio.sleep(0.2)

            async with anyio.create_task_group() as group:
                group.start_soon(trickle)
                answer += await read_until_closed(stream)
                group.cancel_scope.cancel()
    assert status_of(answer) == 401


async def test_an_address_holding_too_many_connections_gets_503_until_it_lets_one_go(
    emulator: Emulator, tmp_path: Path
) -> None:
    env = hosted_env(
        base_url(emulator), tmp_path, KLING_MAX_CONNECTIONS_PER_ADDRESS="3", KLING_HEADER_TIMEOUT="60"
    )
    health = b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
    async with replica(env, tmp_path) as running, AsyncExitStack() as held:
        idle = [
            await held.enter_async_context(await anyio.connect_tcp("127.0.0.1", running.port))
            for _ in range(3)
        ]
        refused = await raw_exchange(running, health)
        await idle[0].aclose()

        async def served() -> bytes:
            while True:  # until the server has seen the connection go
                answer = await raw_exchange(running, health)
                if status_of(answer) != 503:
                    return answer
                await anyio.sleep(0.05)

        with anyio.fail_after(10):
            later = await served()
        assert_no_traceback(running)
    assert status_of(refused) == 503
    assert b"Too many connections from your address" in refused
    assert status_of(later) == 200


# --- Browser origins --------------------------------------------------------------------------------


async def test_a_local_web_page_is_refused_unless_the_operator_allows_its_exact_origin(
    shared: Replica, emulator: Emulator, tmp_path: Path
) -> None:
    token = new_token("browser")
    for origin in ("http://localhost:5173", "http://127.0.0.1:8080", "http://[::1]:3000"):
        assert (await post(shared, [*bearer(token), ("origin", origin)])).status_code == 403, origin
    own = f"http://127.0.0.1:{shared.port}"  # the server's own origin: no other site rebinds to it
    assert (await post(shared, [*bearer(token), ("origin", own)])).status_code == 200
    allowed = ("--allow-origin", "http://localhost:3000")
    async with replica(hosted_env(base_url(emulator), tmp_path), tmp_path, *allowed) as running:
        exact = await post(running, [*bearer(token), ("origin", "http://localhost:3000")])
        other_port = await post(running, [*bearer(token), ("origin", "http://localhost:3001")])
    assert exact.status_code == 200, exact.text
    assert other_port.status_code == 403


async def test_an_origin_with_a_wildcard_port_stops_the_server_at_start(
    emulator: Emulator, tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError, match="exited at start") as stopped:
        async with replica(
            hosted_env(base_url(emulator), tmp_path), tmp_path, "--allow-origin", "http://localhost:*"
        ):
            pass
    assert "--allow-origin 'http://localhost:*'" in str(stopped.value)
    assert "Traceback" not in str(stopped.value)


# --- Tenants ------------------------------------------------------------------------------------


def journal_rows(running: Replica, task_id: str) -> list[tuple[Any, ...]]:
    journal = running.stderr_path.parent / "data" / JOURNAL_FILE
    with closing(sqlite3.connect(journal)) as db:
        return db.execute("SELECT * FROM tasks WHERE task_id = ?", (task_id,)).fetchall()


async def test_another_tenants_task_id_neither_changes_their_journal_row_nor_shows_their_prompt(
    shared: Replica,
) -> None:
    prompt = f"a secret garden #{secrets.token_hex(4)}"
    async with session(shared, new_token("alice")) as alice:
        made = await call(alice, "kling_generate_video", {"prompt": prompt, "timeout": 15})
    task_id = structured(made)["task_id"]
    before = journal_rows(shared, task_id)
    async with session(shared, new_token("bob")) as bob:
        looked_up = await call(bob, "kling_get_task", {"task_id": task_id, "timeout": 0})
        listed = await call(bob, "kling_list_tasks")
        batch = await call(bob, "kling_get_tasks_batch", {"task_ids": [task_id]})
    assert structured(made)["state"] == "succeeded", text_of(made)
    assert len(before) == 1
    assert journal_rows(shared, task_id) == before, "another tenant's lookup changed the journal row"
    assert structured(listed)["tasks"] == []
    assert structured(looked_up).get("prompt") is None
    for result in (looked_up, listed, batch):
        assert prompt not in text_of(result) + json.dumps(result.structured_content)


# --- A fuzz of request headers: count, encoding, size ------------------------------------------------


def fuzzed(port: int, token: str) -> dict[str, bytes]:
    """Requests a careless or hostile client could send, by name."""
    body = json.dumps(INITIALIZE).encode()

    def request(
        *headers: bytes, target: bytes = b"/mcp", method: bytes = b"POST", content: bytes = body
    ) -> bytes:
        head = [
            method + b" " + target + b" HTTP/1.1",
            f"host: 127.0.0.1:{port}".encode(),
            b"accept: application/json, text/event-stream",
            b"content-type: application/json",
            f"content-length: {len(content)}".encode(),
            b"connection: close",
            *headers,
        ]
        return b"\r\n".join(head) + b"\r\n\r\n" + content

    auth = f"authorization: Bearer {token}".encode()
    cases = {
        "a valid request": request(auth),
        "no authorization": request(),
        **{f"{n} authorization headers": request(*[auth] * n) for n in (2, 3, 100)},
        "200 other headers": request(auth, *[f"x-junk-{n}: {n}".encode() for n in range(200)]),
        "2,000 other headers": request(auth, *[f"x-junk-{n}: {n}".encode() for n in range(2000)]),
        "two hosts": request(auth, b"host: evil.example"),
        "two origins": request(auth, b"origin: http://localhost:3000", b"origin: https://evil.example"),
        "two content types": request(auth, b"content-type: text/plain"),
        "two content lengths": request(auth, b"content-length: 3"),
        "two protocol versions": request(
            auth, b"mcp-protocol-version: 2025-11-25", b"mcp-protocol-version: x"
        ),
        "a bad protocol version": request(auth, b"mcp-protocol-version: \xe9\xe9"),
        "a session id": request(auth, b"mcp-session-id: \xd0\xba\xd0\xbb"),
        "a path with Latin-1": request(auth, target=b"/mcp\xe9"),
        "a path with a NUL": request(auth, target=b"/mcp%00"),
        "a path of 10,000 characters": request(auth, target=b"/" + b"a" * 10_000),
        "a header name with Latin-1": request(auth, b"x-\xe9t\xe9: 1"),
        "a control character in a value": request(auth, b"x-junk: a\x01b"),
        "an authorization of 8 KB": request(b"authorization: Bearer " + b"y" * 8192),
        "an authorization of 64 KB": request(b"authorization: Bearer " + b"y" * 65536),
        "a header of 1 MB": request(auth, b"x-junk: " + b"z" * 1_048_576),
        "a method with Latin-1": request(auth, method=b"PO\xe9ST"),
        "not JSON": request(auth, content=b"{not json"),
        "JSON nested 100,000 deep": request(auth, content=b"[" * 100_000 + b"]" * 100_000),
        "a JSON-RPC batch of 10,000": request(auth, content=json.dumps([INITIALIZE] * 10_000).encode()),
    }
    for label, value in (("UTF-8", "ключ".encode()), ("Latin-1", b"\xe9\xff"), ("obs-text", b"\x80\x81")):
        cases[f"authorization in {label}"] = request(b"authorization: Bearer " + value)
        for name in ("host", "origin", "content-type", "accept", "x-forwarded-for", "user-agent"):
            cases[f"{name} in {label}"] = request(auth, name.encode() + b": " + value)
    return cases


async def test_no_header_a_client_sends_gets_a_500_or_a_traceback(shared: Replica) -> None:
    statuses: dict[str, int] = {}
    for name, request in fuzzed(shared.port, new_token("fuzz")).items():
        statuses[name] = status_of(await raw_exchange(shared, request))
    unanswered = [name for name, status in statuses.items() if status == 0]
    errors = {name: status for name, status in statuses.items() if status >= 500}
    assert not errors, errors
    assert not unanswered, f"hung up without an answer: {unanswered}"
    assert statuses["a valid request"] == 200
    assert statuses["no authorization"] == 401
    assert statuses["2 authorization headers"] == 400
    assert_no_traceback(shared)
