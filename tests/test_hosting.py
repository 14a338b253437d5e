"""Hosted mode end to end: `kling-mcp --transport http` replicas, users with their own tokens, real HTTP.

Each replica is a real process (tests/hosted.py) on a free loopback port; each user an MCP
session over the SDK's streamable HTTP client carrying `Authorization: Bearer <token>`. The API
is the emulator served in the test's event loop: with `token=None` it takes any token, so each
request must bring its own (no ACEDATACLOUD_API_TOKEN is set). The journal is SQLite for a single
replica and Postgres (a throwaway cluster, tests/postgres.py) where replicas share one.

Most tests share one SQLite replica (a module fixture, KLING_MAX_CONCURRENT_TASKS=1) and tell
their users apart by fresh tokens; those that kill, stop or limit a replica start their own.
"""

from __future__ import annotations

import itertools
import json
import math
import signal
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, closing, contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import psycopg
import pytest
import yaml
from mcp import Client
from mcp.types import CallToolResult
from psycopg import sql

from kling_mcp.emulator import Emulator, serve_emulator
from kling_mcp.server.hosting import (
    BURST_MINUTES,
    NEW_TOKEN_QUEUE_SECONDS,
    NEW_TOKENS_PER_ADDRESS_PER_MINUTE,
    REMEMBERED_TOKENS,
    SHUTDOWN_GRACE_SECONDS,
    RateLimiter,
)
from kling_mcp.tasks.keeper import LEASE_SECONDS
from kling_mcp.tasks.sqlite import JOURNAL_FILE
from tests.hosted import Replica, base_url, call, hosted_env, new_token, replica, session, structured, text_of
from tests.postgres import postgres_cluster, postgres_url  # noqa: F401

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
TASK_SECONDS = 0.3
FAST_POLL = "0.1"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "test-hosting", "version": "1"},
    },
}
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
_numbers = itertools.count(1)


def prompt(words: str) -> str:
    """A prompt no other call of the session sends (the duplicate check would answer with that one)."""
    return f"{words} #{next(_numbers)}"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Module scope, so that the shared emulator and replica live in the tests' event loop."""
    return "asyncio"


@pytest.fixture(scope="module")
async def emulator() -> AsyncIterator[Emulator]:
    api = Emulator(token=None, task_seconds=TASK_SECONDS)
    async with serve_emulator(api):
        yield api


@pytest.fixture(scope="module")
async def shared(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Replica]:
    """One replica on SQLite that lets each token run one task at a time."""
    workdir = tmp_path_factory.mktemp("shared")
    env = hosted_env(
        base_url(emulator), workdir, KLING_POLL_INTERVAL=FAST_POLL, KLING_MAX_CONCURRENT_TASKS="1"
    )
    async with replica(env, workdir) as running:
        yield running


@contextmanager
def tasks_take(emulator: Emulator, seconds: float) -> Iterator[None]:
    """Tasks submitted within this block run `seconds`."""
    before, emulator.task_seconds = emulator.task_seconds, seconds
    try:
        yield
    finally:
        emulator.task_seconds = before


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], limit: float, what: str, *, every: float = 0.05
) -> None:
    """Check `condition()` every `every` seconds until true; fail with `what` after `limit` seconds."""
    with anyio.move_on_after(limit):
        while True:
            outcome = condition()
            if outcome if isinstance(outcome, bool) else await outcome:
                return
            await anyio.sleep(every)
    pytest.fail(f"{what} did not happen within {limit} s")


def everything_said(results: list[CallToolResult]) -> str:
    return "\n".join(f"{text_of(result)}\n{json.dumps(result.structured_content)}" for result in results)


# --- Isolation: one user never sees another's tasks, and no token is kept -------------------


async def users_stay_apart(running: Replica, emulator: Emulator) -> tuple[list[str], list[CallToolResult]]:
    """Alice makes a video; Bob looks for it every way he can. The tokens, and every result."""
    alice, bob = new_token("alice"), new_token("bob")
    asked = prompt("a red fox in fresh snow")
    async with session(running, alice) as client:
        made = await call(client, "kling_generate_video", {"prompt": asked, "timeout": 15})
        task_id = structured(made)["task_id"]
        hers = [
            made,
            await call(client, "kling_list_tasks"),
            await call(client, "kling_get_tasks_batch"),
            await call(client, "kling_get_task", {"task_id": task_id, "timeout": 0}),
        ]
    async with session(running, bob) as client:
        his = [
            await call(client, "kling_list_tasks"),
            await call(client, "kling_get_tasks_batch"),
            await call(client, "kling_get_task", {"task_id": task_id, "timeout": 0}),
        ]
    assert structured(made)["state"] == "succeeded", text_of(made)
    assert emulator.tasks[task_id].request["prompt"] == asked
    assert [task["task_id"] for task in structured(hers[1])["tasks"]] == [task_id]
    assert [task["task_id"] for task in structured(hers[2])["tasks"]] == [task_id]
    assert structured(hers[3])["prompt"] == asked

    listed, batch, looked_up = his
    assert structured(listed)["tasks"] == []
    assert batch.is_error
    assert "holds no task" in text_of(batch)
    # The API answers anyone who knows a task id here (the emulator takes every token); the
    # journal's facts of it stay Alice's.
    facts = structured(looked_up)
    assert (facts["task_id"], facts["state"]) == (task_id, "succeeded")
    assert [facts.get(name) for name in ("prompt", "model", "mode")] == [None, None, None]
    assert asked not in everything_said(his)
    return [alice, bob], hers + his


def assert_no_token_in(text: str, tokens: list[str], where: str) -> None:
    for token in tokens:
        assert token not in text, f"a user's token is in {where}"


async def test_on_sqlite_users_see_only_their_own_tasks_and_no_token_is_kept(
    shared: Replica, emulator: Emulator
) -> None:
    tokens, results = await users_stay_apart(shared, emulator)
    journal_dir = shared.stderr_path.parent / "data"
    stored = b"".join(path.read_bytes() for path in journal_dir.glob(f"{JOURNAL_FILE}*"))
    assert stored, "the journal was not written"
    assert_no_token_in(stored.decode("latin-1"), tokens, "the journal file")
    assert_no_token_in(shared.stderr(), tokens, "the replica's stderr")
    assert_no_token_in(everything_said(results), tokens, "a result")


async def test_on_postgres_users_see_only_their_own_tasks_and_no_token_is_kept(
    postgres_url: str,  # noqa: F811
    emulator: Emulator,
    tmp_path: Path,
) -> None:
    env = hosted_env(
        base_url(emulator), tmp_path, KLING_POLL_INTERVAL=FAST_POLL, KLING_DATABASE_URL=postgres_url
    )
    async with replica(env, tmp_path) as running:
        tokens, results = await users_stay_apart(running, emulator)
        stderr = running.stderr()
    stored = await every_row(postgres_url)
    assert "a red fox in fresh snow" in stored, "the journal tables were not written"
    assert_no_token_in(stored, tokens, "the journal tables")
    assert_no_token_in(stderr, tokens, "the replica's stderr")
    assert_no_token_in(everything_said(results), tokens, "a result")


async def every_row(url: str) -> str:
    """Every row of every table of the database, as text."""
    async with await psycopg.AsyncConnection.connect(url) as connection:
        tables = await connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
        names = [row[0] for row in await tables.fetchall()]
        rows = []
        for name in names:
            cursor = await connection.execute(
                sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(name))
            )
            rows += [row[0] for row in await cursor.fetchall()]
    return "\n".join(rows)


# --- The gate in front of /mcp ---------------------------------------------------------------


async def post_initialize(running: Replica, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=running.base_url, timeout=10) as http:
        return await http.post("/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **headers})


async def test_health_needs_no_token_and_mcp_refuses_a_missing_token_a_bad_origin_and_a_wrong_host(
    shared: Replica,
) -> None:
    async with httpx.AsyncClient(base_url=shared.base_url, timeout=10) as http:
        health = await http.get("/healthz")
    assert (health.status_code, health.json()) == (200, {"ready": True})

    missing = await post_initialize(shared)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith('Bearer realm="kling-mcp", error="missing_token"')
    assert "Authorization: Bearer" in missing.json()["error"]["message"]

    token = new_token("carol")
    bad_origin = await post_initialize(shared, authorization=f"Bearer {token}", origin="http://evil.example")
    assert bad_origin.status_code == 403
    wrong_host = await post_initialize(shared, authorization=f"Bearer {token}", host="evil.example")
    assert wrong_host.status_code == 421
    welcome = await post_initialize(shared, authorization=f"Bearer {token}")
    assert welcome.status_code == 200, welcome.text


@pytest.fixture(scope="module")
async def strict(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Replica]:
    """A replica on an API that accepts only the token "good", with KLING_RATE_LIMIT=5."""
    workdir = tmp_path_factory.mktemp("strict")
    api = Emulator(token="good", task_seconds=TASK_SECONDS)
    async with (
        serve_emulator(api) as base_url,
        replica(hosted_env(base_url, workdir, KLING_RATE_LIMIT="5"), workdir) as running,
    ):
        yield running


async def test_a_token_the_api_rejects_is_refused_with_401(strict: Replica) -> None:
    rejected = await post_initialize(strict, authorization="Bearer sk-not-a-real-token")
    assert rejected.status_code == 401
    assert 'error="invalid_token"' in rejected.headers["www-authenticate"]
    assert "sk-not-a-real-token" not in rejected.text + strict.stderr()


@pytest.fixture
async def guessed(tmp_path: Path) -> AsyncIterator[Replica]:
    """A replica of its own on an API that accepts only the token "good": an address's new tokens
    are counted per replica, so no other test may spend them."""
    api = Emulator(token="good", task_seconds=TASK_SECONDS)
    async with serve_emulator(api) as base_url, replica(hosted_env(base_url, tmp_path), tmp_path) as running:
        yield running


async def test_an_address_trying_many_new_tokens_is_slowed_before_they_cost_lookups(guessed: Replica) -> None:
    answers = [
        await post_initialize(guessed, authorization=f"Bearer guess-{n}")
        for n in range(NEW_TOKENS_PER_ADDRESS_PER_MINUTE)
    ]
    assert [answer.status_code for answer in answers] == [401] * NEW_TOKENS_PER_ADDRESS_PER_MINUTE

    # Then the turns are taken: new tokens wait theirs (one every 6 s), and past the queue one is
    # told to come back, at once, while the others still wait.
    queued = int(NEW_TOKEN_QUEUE_SECONDS * NEW_TOKENS_PER_ADDRESS_PER_MINUTE / 60)
    first: list[httpx.Response] = []
    async with anyio.create_task_group() as group:

        async def guess(n: int) -> None:
            first.append(await post_initialize(guessed, authorization=f"Bearer late-guess-{n}"))
            group.cancel_scope.cancel()

        for n in range(queued + 1):
            group.start_soon(guess, n)
    (told,) = first
    assert told.status_code == 429
    assert "new tokens from this address" in told.json()["error"]["message"]
    assert 1 <= int(told.headers["retry-after"]) <= 60 / NEW_TOKENS_PER_ADDRESS_PER_MINUTE
    # A token already checked is not a new one: it still gets its own answer, at once.
    assert (await post_initialize(guessed, authorization="Bearer guess-0")).status_code == 401


async def test_a_token_may_burst_five_minutes_of_its_rate_and_then_gets_429_with_retry_after(
    strict: Replica,
) -> None:
    burst = 5 * BURST_MINUTES
    answers = [await post_initialize(strict, authorization="Bearer good") for _ in range(burst + 1)]
    assert [answer.status_code for answer in answers] == [200] * burst + [429]
    limited = answers[-1]
    assert limited.json()["jsonrpc"] == "2.0"
    assert f"5 a minute on average, in bursts of up to {burst}" in limited.json()["error"]["message"]
    assert int(limited.headers["retry-after"]) >= 1


# --- What hosted mode does not do --------------------------------------------------------------


async def test_local_files_and_downloads_are_refused_with_what_to_do_instead(
    shared: Replica, emulator: Emulator, tmp_path: Path
) -> None:
    image = tmp_path / "photo.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")
    before = len(emulator.submissions)
    async with session(shared, new_token("dave")) as client:
        local = await call(
            client,
            "kling_generate_video_from_image",
            {"prompt": prompt("a photo"), "start_image_url": str(image)},
        )
        download = await call(client, "kling_download_video", {"task_id": "some-task"})
    assert local.is_error
    assert "start_image_url" in text_of(local)
    assert "hosted kling-mcp, which reads no files from its own disk" in text_of(local)
    assert "http(s) URL" in text_of(local)
    assert download.is_error
    assert "saves no videos to its own disk" in text_of(download)
    assert "video_url" in text_of(download)
    assert len(emulator.submissions) == before, "something was submitted"


# --- Each token its own limits and duplicates ---------------------------------------------------


async def test_a_token_runs_at_most_max_concurrent_tasks_while_another_token_still_can(
    shared: Replica, emulator: Emulator
) -> None:
    first_user, second_user = new_token("erin"), new_token("frank")
    with tasks_take(emulator, 30):
        async with session(shared, first_user) as client:
            first = await call(
                client, "kling_generate_video", {"prompt": prompt("a lighthouse"), "timeout": 0}
            )
            refused = await call(
                client, "kling_generate_video", {"prompt": prompt("a harbour"), "timeout": 0}
            )
        async with session(shared, second_user) as client:
            other = await call(
                client, "kling_generate_video", {"prompt": prompt("a lighthouse"), "timeout": 0}
            )
    assert structured(first)["state"] == "running", text_of(first)
    assert refused.is_error
    assert "KLING_MAX_CONCURRENT_TASKS=1" in text_of(refused)
    assert "nothing was charged" in text_of(refused)
    assert structured(other)["state"] == "running", text_of(other)
    assert structured(other)["task_id"] != structured(first)["task_id"]


async def test_each_token_has_its_own_daily_budget(emulator: Emulator, tmp_path: Path) -> None:
    env = hosted_env(base_url(emulator), tmp_path, KLING_DAILY_TASK_LIMIT="1")
    first_user, second_user = new_token("kim"), new_token("lee")
    submitted_before = len(emulator.submissions)
    async with replica(env, tmp_path) as running:
        async with session(running, first_user) as client:
            spent = await call(client, "kling_generate_video", {"prompt": prompt("a kite"), "timeout": 0})
            refused = await call(
                client, "kling_generate_video", {"prompt": prompt("a second kite"), "timeout": 0}
            )
        async with session(running, second_user) as client:
            own = await call(client, "kling_generate_video", {"prompt": prompt("a kite"), "timeout": 0})
    assert not spent.is_error, text_of(spent)
    assert refused.is_error
    assert "KLING_DAILY_TASK_LIMIT=1" in text_of(refused)
    assert "nothing was charged" in text_of(refused)
    assert not own.is_error, text_of(own)
    assert structured(own)["task_id"] != structured(spent)["task_id"]
    assert len(emulator.submissions) == submitted_before + 2


async def test_one_request_from_two_tokens_starts_two_tasks_and_neither_sees_the_others(
    shared: Replica, emulator: Emulator
) -> None:
    first_user, second_user = new_token("mia"), new_token("noah")
    same = {"prompt": prompt("a lantern in the fog"), "timeout": 0}
    submitted_before = len(emulator.submissions)
    with tasks_take(emulator, 30):
        async with session(shared, first_user) as client:
            hers = await call(client, "kling_generate_video", same)
            hers_again = await call(client, "kling_generate_video", same)
            her_list = await call(client, "kling_list_tasks")
        async with session(shared, second_user) as client:
            his = await call(client, "kling_generate_video", same)
            his_list = await call(client, "kling_list_tasks")
    her_task, his_task = structured(hers)["task_id"], structured(his)["task_id"]
    # Her own identical request is answered with her running task, so the guard is on...
    assert structured(hers_again)["task_id"] == her_task
    assert "An identical request started" in text_of(hers_again)
    # ...and his, the same body, is a task of his own.
    assert not his.is_error, text_of(his)
    assert his_task != her_task
    assert "An identical request" not in text_of(his)
    assert [task["task_id"] for task in structured(her_list)["tasks"]] == [her_task]
    assert [task["task_id"] for task in structured(his_list)["tasks"]] == [his_task]
    assert len(emulator.submissions) == submitted_before + 2


# --- Replicas on one Postgres -------------------------------------------------------------------


@asynccontextmanager
async def postgres_replicas(
    url: str, emulators: list[Emulator], workdir: Path, **env: str
) -> AsyncIterator[list[Replica]]:
    """One replica per emulator (its API), all with their journal on the database at `url`."""
    async with AsyncExitStack() as stack:
        started = []
        for number, api in enumerate(emulators):
            home = workdir / f"replica-{number}"
            home.mkdir()
            replica_env = hosted_env(base_url(api), home, KLING_DATABASE_URL=url, **env)
            started.append(await stack.enter_async_context(replica(replica_env, home)))
        yield started


TRANSITIONS = (
    "CREATE TABLE transitions (task_id TEXT, state TEXT)",
    """CREATE FUNCTION note_transition() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.state IS DISTINCT FROM OLD.state THEN
            INSERT INTO transitions VALUES (NEW.task_id, NEW.state);
        END IF;
        RETURN NEW;
    END $$""",
    "CREATE TRIGGER note_transition AFTER UPDATE ON tasks FOR EACH ROW EXECUTE FUNCTION note_transition()",
)


async def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        cursor = await connection.execute(sql)
        return await cursor.fetchall() if cursor.description else []


async def test_a_killed_replicas_task_is_taken_over_by_the_users_next_request_and_ends_once(
    postgres_url: str,  # noqa: F811
    emulator: Emulator,
    tmp_path: Path,
) -> None:
    user, asked = new_token("grace"), prompt("a paper boat on a river")
    submitted_before = len(emulator.submissions)
    replica_pair = postgres_replicas(
        postgres_url, [emulator, emulator], tmp_path, KLING_POLL_INTERVAL=FAST_POLL
    )
    async with replica_pair as (doomed, survivor):
        for statement in TRANSITIONS:
            await query(postgres_url, statement)

        async def generate() -> None:
            # The replica dies under the call: its session fails, however the SDK reports that.
            with suppress(Exception):
                async with session(doomed, user) as client:
                    await client.call_tool("kling_generate_video", {"prompt": asked, "timeout": 30})

        async def leased() -> bool:
            return bool(await query(postgres_url, "SELECT task_id FROM tasks WHERE holder IS NOT NULL"))

        with tasks_take(emulator, 2):
            async with anyio.create_task_group() as group:
                group.start_soon(generate)
                await wait_until(leased, 15, "the waiting call's lease")
                doomed.kill()
                with anyio.fail_after(10):
                    await doomed.process.wait()
                group.cancel_scope.cancel()
        (task_id,) = [row[0] for row in await query(postgres_url, "SELECT task_id FROM tasks")]

        async with session(survivor, user) as client:
            first_look = await call(client, "kling_list_tasks")

            async def taken_over() -> bool:
                listed = structured(await call(client, "kling_list_tasks"))["tasks"]
                return [task["state"] for task in listed] == ["succeeded"]

            await wait_until(taken_over, LEASE_SECONDS + 10, "the take-over", every=0.5)
            final = await call(client, "kling_get_task", {"task_id": task_id, "timeout": 0})
        survivor_log = survivor.stderr()
    # While the dead replica's lease lasted, the survivor left its task alone.
    assert [task["state"] for task in structured(first_look)["tasks"]] == ["running"]
    assert "Took over 1 task(s)" in survivor_log
    assert (structured(final)["state"], structured(final)["prompt"]) == ("succeeded", asked)
    transitions = await query(postgres_url, "SELECT task_id, state FROM transitions")
    assert transitions == [(task_id, "running"), (task_id, "succeeded")]
    assert len(emulator.submissions) == submitted_before + 1


async def test_fifty_generations_on_two_replicas_cost_each_about_one_status_request_a_second(
    postgres_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    # Each replica has its own API, so that each one's requests can be counted; they share the tasks.
    apis = [Emulator(token=None, task_seconds=3), Emulator(token=None, task_seconds=3)]
    apis[1].tasks = apis[0].tasks
    user = new_token("heidi")
    results: list[CallToolResult] = []
    async with (
        serve_emulator(apis[0]),
        serve_emulator(apis[1]),
        postgres_replicas(postgres_url, apis, tmp_path) as pair,
        session(pair[0], user) as first,
        session(pair[1], user) as second,
    ):

        async def generate(client: Client, number: int) -> None:
            arguments = {"prompt": prompt(f"a flock of birds, take {number}"), "timeout": 25}
            results.append(await call(client, "kling_generate_video", arguments))

        before = [api.counts["/kling/tasks"] for api in apis]
        started = anyio.current_time()
        async with anyio.create_task_group() as group:
            for number in range(50):
                group.start_soon(generate, (first, second)[number % 2], number)
        elapsed = anyio.current_time() - started
    assert [structured(result)["state"] for result in results] == ["succeeded"] * 50
    assert [len(api.submissions) for api in apis] == [25, 25]
    for api, earlier in zip(apis, before, strict=True):
        requests = api.counts["/kling/tasks"] - earlier
        # One request per tick of 1 s for all 25 waiting calls (and a first quick look).
        assert requests <= math.ceil(elapsed) + 3, (requests, elapsed)


# --- Stopping ----------------------------------------------------------------------------------


async def test_sigterm_answers_every_waiting_call_with_its_task_id_and_exits_within_the_grace_period(
    emulator: Emulator, tmp_path: Path
) -> None:
    env = hosted_env(base_url(emulator), tmp_path, KLING_POLL_INTERVAL=FAST_POLL)
    journal = tmp_path / "data" / JOURNAL_FILE
    results: list[CallToolResult] = []
    with tasks_take(emulator, 120):
        async with replica(env, tmp_path) as running, session(running, new_token("judy")) as client:
            # As a host does first. A client checks each result against its tool's output schema, and
            # lists the tools to learn it if it has not: a request to a replica that is stopping.
            await client.list_tools()

            async def generate(number: int) -> None:
                arguments = {"prompt": prompt(f"a slow river, take {number}"), "timeout": 60}
                results.append(await call(client, "kling_generate_video", arguments))

            def all_waiting() -> bool:
                return len(held_leases(journal)) == 3

            async with anyio.create_task_group() as group:
                for number in range(3):
                    group.start_soon(generate, number)
                await wait_until(all_waiting, 15, "three waiting calls")
                with anyio.fail_after(SHUTDOWN_GRACE_SECONDS):
                    exit_code = await running.stop()
    # Shut down, uvicorn raises the signal again: the exit says what stopped it (143 in a container).
    assert exit_code == -signal.SIGTERM, running.stderr()
    assert "Stopping: answering every waiting call with its task id" in running.stderr()
    assert len(results) == 3
    for result in results:
        task = structured(result)
        assert not result.is_error, text_of(result)
        assert task["state"] == "running"
        assert task["task_id"] in emulator.tasks
        assert task["task_id"] in text_of(result)
        assert task["waited_seconds"] < 60
    assert len({structured(result)["task_id"] for result in results}) == 3
    assert held_leases(journal) == [], "the stopped replica kept its leases"


def held_leases(journal: Path) -> list[str]:
    with closing(sqlite3.connect(journal)) as db:
        return [row[0] for row in db.execute("SELECT task_id FROM tasks WHERE holder IS NOT NULL")]


# --- compose.yaml, read without a Docker engine ------------------------------------------------


def test_compose_runs_two_replicas_of_the_image_on_one_postgres_with_health_checks() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services: dict[str, Any] = compose["services"]
    databases = [
        name for name, service in services.items() if str(service.get("image", "")).startswith("postgres")
    ]
    assert len(databases) == 1, services
    (database,) = databases
    assert "pg_isready" in " ".join(services[database]["healthcheck"]["test"])
    replicas_ = {name: service for name, service in services.items() if "build" in service}
    assert len(replicas_) >= 2, services
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["kling-mcp"]' in dockerfile
    assert '".[postgres]"' in dockerfile, "the image lacks the Postgres driver"
    published = set()
    for name, service in replicas_.items():
        assert service["build"] in (".", {"context": "."}), name
        command = [str(part) for part in service["command"]]
        assert command[command.index("--transport") + 1] == "http", name
        assert command[command.index("--host") + 1] == "0.0.0.0", name
        port = command[command.index("--port") + 1]
        database_url = urlsplit(service["environment"]["KLING_DATABASE_URL"])
        assert (database_url.scheme, database_url.hostname) == ("postgresql", database), name
        assert service["depends_on"][database]["condition"] == "service_healthy", name
        assert f"127.0.0.1:{port}/healthz" in " ".join(service["healthcheck"]["test"]), name
        assert "ACEDATACLOUD_API_TOKEN" not in service.get("environment", {}), name
        (mapping,) = service["ports"]
        host_port, container_port = str(mapping).split(":")
        assert container_port == port, name
        published.add(host_port)
    assert len(published) == len(replicas_), "two replicas publish the same port"


# --- The gate's memory --------------------------------------------------------------------------


def test_a_flood_of_new_tokens_leaves_the_rate_limiter_bounded_and_still_limiting() -> None:
    limiter = RateLimiter(per_minute=2)
    tokens = [f"token-{number}" for number in range(REMEMBERED_TOKENS * 2)]
    for token in tokens:
        limiter.take(token)
    assert len(limiter) <= REMEMBERED_TOKENS
    assert limiter.take(tokens[-1]) == 0
    assert limiter.take(tokens[-1]) > 0, "the newest token made a third request within a minute"
