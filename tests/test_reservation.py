"""The money guards when calls come at once, as agents make them: the daily and the concurrent limit
and the duplicate guard hold for parallel calls to one server, to two servers on one SQLite journal,
to two replicas on one PostgreSQL journal, and for OS processes racing on one journal; an identical
request is paid for once, and a call that waits for its twin answers with the twin's task.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import CallToolResult

from kling_mcp.emulator import Emulator, Fault
from kling_mcp.settings import Settings
from tests import media
from tests.emulated import call, connect, emulated, eventually, text_of
from tests.postgres import postgres_cluster, postgres_url  # noqa: F401

pytestmark = pytest.mark.anyio

GENERATE = "kling_generate_video"
LONG_TASK_SECONDS = 60.0
"""Emulated tasks outlast every test: a task admitted keeps counting as running."""


@pytest.fixture(params=["sqlite", "postgres"])
def new_journal(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], dict[str, Any]]:
    """Settings of a new, empty journal each call: a SQLite file, or a PostgreSQL database."""
    numbers = itertools.count()

    def settings() -> dict[str, Any]:
        data_dir = tmp_path / f"journal-{next(numbers)}"
        if request.param == "sqlite":
            return {"data_dir": data_dir, "database_url": None}
        cluster = request.getfixturevalue("postgres_cluster")
        return {"data_dir": data_dir, "database_url": cluster.create_database()}

    return settings


@asynccontextmanager
async def servers(settings: Settings, count: int) -> AsyncIterator[list[Client]]:
    """`count` servers on the same journal, each with its own connection to it, as processes have."""
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(connect(settings)) for _ in range(count)]


async def in_parallel(calls: Sequence[tuple[Client, str]]) -> list[CallToolResult]:
    """Each (client, prompt) as a generation that does not wait, all sent at once."""
    results: list[CallToolResult | None] = [None] * len(calls)

    async def run(index: int, client: Client, prompt: str) -> None:
        results[index] = await call(client, GENERATE, {"prompt": prompt, "timeout": 0})

    async with anyio.create_task_group() as group:
        for index, (client, prompt) in enumerate(calls):
            group.start_soon(run, index, client, prompt)
    return [result for result in results if result is not None]


def task_ids(results: Sequence[CallToolResult]) -> list[str]:
    return [str((result.structured_content or {})["task_id"]) for result in results if not result.is_error]


def refusals(results: Sequence[CallToolResult]) -> list[str]:
    return [text_of(result) for result in results if result.is_error]


# --- One server -------------------------------------------------------------------------------


async def test_parallel_calls_never_run_more_than_the_concurrent_limit(tmp_path: Path) -> None:
    emulator = Emulator(task_seconds=LONG_TASK_SECONDS)
    async with (
        emulated(emulator, tmp_path, max_concurrent_tasks=3) as settings,
        servers(settings, 1) as (client,),
    ):
        results = await in_parallel([(client, f"clip {n}") for n in range(12)])
    assert len(emulator.submissions) == 3
    assert len(set(task_ids(results))) == 3
    refused = refusals(results)
    assert len(refused) == 9
    assert all("3 paid tasks are running at once" in text for text in refused), refused[0]
    assert all("KLING_MAX_CONCURRENT_TASKS=3" in text for text in refused)


async def test_parallel_calls_never_pay_past_the_daily_limit(tmp_path: Path) -> None:
    emulator = Emulator(task_seconds=LONG_TASK_SECONDS)
    async with (
        emulated(emulator, tmp_path, daily_task_limit=4) as settings,
        servers(settings, 1) as (client,),
    ):
        results = await in_parallel([(client, f"clip {n}") for n in range(12)])
    assert len(emulator.submissions) == 4
    refused = refusals(results)
    assert len(refused) == 8
    assert all("4 paid tasks in the last 24 hours" in text for text in refused), refused[0]


async def test_identical_parallel_calls_pay_once_and_all_answer_its_task(tmp_path: Path) -> None:
    emulator = Emulator(task_seconds=LONG_TASK_SECONDS)
    async with emulated(emulator, tmp_path) as settings, servers(settings, 1) as (client,):
        results = await in_parallel([(client, "a cat surfing at sunset")] * 6)
    assert [submission["prompt"] for submission in emulator.submissions] == ["a cat surfing at sunset"]
    assert refusals(results) == []
    assert len(set(task_ids(results))) == 1
    twins = [text_of(result) for result in results if "instead of paying again" in text_of(result)]
    assert len(twins) == 5


async def test_a_twin_still_being_sent_is_waited_for_not_sent_again(tmp_path: Path) -> None:
    emulator = Emulator(task_seconds=LONG_TASK_SECONDS)
    emulator.inject("/kling/videos", Fault.delay(1.0))  # the first submission is slow to answer
    async with emulated(emulator, tmp_path) as settings, servers(settings, 1) as (client,):
        results = await in_parallel([(client, "a slow fox")] * 3)
    assert len(emulator.submissions) == 1
    assert len(set(task_ids(results))) == 1
    assert refusals(results) == []


# --- Servers sharing one journal ---------------------------------------------------------------


async def test_two_servers_on_one_journal_share_the_limits_and_the_duplicate_guard(
    tmp_path: Path, new_journal: Callable[[], dict[str, Any]]
) -> None:
    emulator = Emulator(task_seconds=LONG_TASK_SECONDS)
    async with (
        emulated(emulator, tmp_path, daily_task_limit=5, **new_journal()) as settings,
        servers(settings, 2) as (desktop, editor),
    ):
        prompts = [f"clip {n}" for n in range(6)]
        results = await in_parallel([(client, prompt) for prompt in prompts for client in (desktop, editor)])
    sent = {submission["prompt"] for submission in emulator.submissions}
    assert len(emulator.submissions) == len(sent) == 5
    for index, prompt in enumerate(prompts):
        pair = results[2 * index : 2 * index + 2]  # the same request, one call to each server
        if prompt in sent:
            assert refusals(pair) == [], prompt
            assert len(set(task_ids(pair))) == 1, prompt
        else:
            assert len(refusals(pair)) == 2, prompt
            assert all("5 paid tasks in the last 24 hours" in text for text in refusals(pair))


async def test_random_limits_and_bodies_never_overrun_and_pay_once_per_body(
    tmp_path: Path, new_journal: Callable[[], dict[str, Any]]
) -> None:
    chance = random.Random(18)
    emulator = Emulator(task_seconds=LONG_TASK_SECONDS)
    async with emulated(emulator, tmp_path) as base:
        for round_number in range(4):
            daily, concurrent = chance.randint(1, 8), chance.randint(1, 8)
            prompts = [f"round {round_number} clip {chance.randint(1, 6)}" for _ in range(16)]
            settings = dataclasses.replace(
                base, daily_task_limit=daily, max_concurrent_tasks=concurrent, **new_journal()
            )
            before = len(emulator.submissions)
            async with servers(settings, 2) as clients:
                results = await in_parallel([(clients[n % 2], prompt) for n, prompt in enumerate(prompts)])
            sent = [submission["prompt"] for submission in emulator.submissions[before:]]
            limits = (daily, concurrent, prompts, sent)
            assert len(sent) == min(len(set(prompts)), daily, concurrent), limits
            assert len(set(sent)) == len(sent), limits
            for prompt in sent:  # every call for a paid body answers with its one task
                answers = [result for asked, result in zip(prompts, results, strict=True) if asked == prompt]
                assert len(set(task_ids(answers))) == 1, (prompt, limits)
                assert refusals(answers) == [], (prompt, limits)


# --- Reservations whose submission did not go through -----------------------------------------


async def test_an_identical_request_whose_answer_was_lost_is_not_sent_again(tmp_path: Path) -> None:
    emulator = Emulator(task_seconds=LONG_TASK_SECONDS)
    emulator.inject("/kling/videos", Fault.delay(1.0))  # answered after the server stopped listening
    async with emulated(emulator, tmp_path, read_timeout=0.2) as settings, servers(settings, 1) as (client,):
        lost = await call(client, GENERATE, {"prompt": "a late fox", "timeout": 0})
        again = await call(client, GENERATE, {"prompt": "a late fox", "timeout": 0})
        assert len(emulator.submissions) == 1
        paid_again = await call(
            client, GENERATE, {"prompt": "a late fox", "timeout": 0, "allow_duplicate": True}
        )
    assert "may have reached AceDataCloud" in text_of(lost)
    assert again.is_error
    assert "its answer was lost: it may be running" in text_of(again)
    assert "allow_duplicate: true" in text_of(again)
    assert not paid_again.is_error, text_of(paid_again)
    assert len(emulator.submissions) == 2


async def test_a_refused_upload_releases_the_reservation_at_once(tmp_path: Path) -> None:
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    (pictures / "cat.png").write_bytes(media.png())
    emulator = Emulator(task_seconds=LONG_TASK_SECONDS)
    emulator.inject("/api/v1/files/", Fault.status(503), times=1)
    arguments = {"prompt": "it blinks", "start_image_url": str(pictures / "cat.png"), "timeout": 0}
    async with (
        emulated(emulator, tmp_path, daily_task_limit=1, input_dirs=(pictures,)) as settings,
        servers(settings, 1) as (client,),
    ):
        failed = await call(client, "kling_generate_video_from_image", arguments)
        retried = await call(client, "kling_generate_video_from_image", arguments)
    assert failed.is_error
    assert "Uploading cat.png failed" in text_of(failed)
    assert not retried.is_error, text_of(retried)  # the failed attempt did not use up the day's one task
    assert len(emulator.submissions) == 1


async def test_a_call_cancelled_while_sending_keeps_its_reservation_counted(tmp_path: Path) -> None:
    emulator = Emulator(task_seconds=LONG_TASK_SECONDS)
    emulator.inject("/kling/videos", Fault.delay(2.0))
    async with (
        emulated(emulator, tmp_path, daily_task_limit=1) as settings,
        servers(settings, 1) as (client,),
    ):
        with anyio.move_on_after(0.5):
            await client.call_tool(GENERATE, {"prompt": "cut short", "timeout": 0})
        await eventually(lambda: emulator.submissions, "the submission reaching the API")
        listed = await call(client, "kling_list_tasks", {})
        refused = await call(client, GENERATE, {"prompt": "another", "timeout": 0})
    (entry,) = (listed.structured_content or {})["tasks"]
    assert entry["state"] == "maybe_started"
    assert refused.is_error
    assert "1 paid tasks in the last 24 hours" in text_of(refused)


# --- OS processes racing on one journal -------------------------------------------------------

RACER = """
import sys
from pathlib import Path
import anyio
from kling_mcp.tasks.journal import Limits, Reserved
from kling_mcp.tasks.store import open_journal

async def main():
    journal = await open_journal(Path(sys.argv[1]), sys.argv[2] or None)
    limits = Limits(daily=int(sys.argv[4]), concurrent=100, duplicate_window=600)
    barrier = Path(sys.argv[3])
    (barrier / f"ready-{sys.argv[6]}").touch()
    while not (barrier / "go").exists():  # both processes start at the same moment
        await anyio.sleep(0.005)
    admitted = []

    async def reserve(number):
        body = {"prompt": f"clip {number}"}
        outcome = await journal.reserve("kling_generate_video", "/kling/videos", body, limits)
        if isinstance(outcome, Reserved):
            admitted.append(body["prompt"])

    async with anyio.create_task_group() as group:
        for number in range(int(sys.argv[5])):
            group.start_soon(reserve, number)
    for prompt in admitted:
        print(prompt)
    await journal.aclose()

anyio.run(main)
"""


async def test_processes_racing_on_one_journal_admit_each_body_once_within_the_limit(
    new_journal: Callable[[], dict[str, Any]],
) -> None:
    journal = new_journal()
    barrier = journal["data_dir"].parent / "barrier"
    barrier.mkdir()
    arguments = [str(journal["data_dir"]), journal["database_url"] or "", str(barrier), "6", "10"]
    outputs: list[str] = []

    async def race(name: str) -> None:
        with anyio.fail_after(60):
            done = await anyio.run_process([sys.executable, "-c", RACER, *arguments, name], check=False)
        assert done.returncode == 0, done.stderr.decode()
        outputs.append(done.stdout.decode())

    async with anyio.create_task_group() as group:
        for name in ("first", "second"):
            group.start_soon(race, name)
        await eventually(lambda: len(list(barrier.glob("ready-*"))) == 2, "both processes ready", limit=30)
        (barrier / "go").touch()
    admitted = [line for output in outputs for line in output.splitlines()]
    assert len(admitted) == 6, outputs  # the daily limit, across both processes
    assert len(set(admitted)) == 6, outputs  # no body admitted twice
