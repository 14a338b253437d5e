"""The task journal on both backends (a real SQLite file, a throwaway PostgreSQL cluster): submissions,
states, listing, owners, leases shared by several journals and OS processes, shared secrets; and, for
SQLite alone, damaged, outdated and unwritable journals."""

from __future__ import annotations

import base64
import ctypes
import hashlib
import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import psycopg
import pytest

from kling_mcp.api.client import TaskStatus
from kling_mcp.logs import logger
from kling_mcp.tasks import sqlite as sqlite_module
from kling_mcp.tasks.journal import (
    SCHEMA_VERSION,
    CursorError,
    JournalUnavailableError,
    Limits,
    OverLimit,
    Reserved,
    StatusUpdate,
    TaskJournal,
    TaskRecord,
    Twin,
    body_hash,
)
from kling_mcp.tasks.postgres import redact
from kling_mcp.tasks.sqlite import JOURNAL_FILE, SqliteJournal
from kling_mcp.tasks.store import open_journal
from tests.postgres import PostgresCluster, free_port, postgres_cluster, postgres_url  # noqa: F401

pytestmark = pytest.mark.anyio

TOOL = "kling_generate_video"
ENDPOINT = "/kling/videos"
SECRET = "sk-live-7d1e-do-not-store"
PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE = 1


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@dataclass
class Store:
    """Where journals open: a data dir (SQLite) or a PostgreSQL database; `open` as the server does."""

    data_dir: Path
    cluster: PostgresCluster | None = None
    database_url: str | None = None

    async def open(self, clock: Clock | None = None) -> TaskJournal:
        return await open_journal(self.data_dir, self.database_url, clock=clock or Clock())

    def other(self, data_dir: Path) -> Store:
        """A store on another database."""
        return Store(data_dir, self.cluster, self.cluster.create_database() if self.cluster else None)

    def stored_files(self) -> list[Path]:
        """Every file the database keeps its data in."""
        if self.cluster is None:
            return list(self.data_dir.iterdir())  # the journal and its write-ahead log
        assert self.database_url is not None
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            connection.execute("CHECKPOINT")
        return [path for path in self.cluster.data_dir.rglob("*") if path.is_file()]


@pytest.fixture
def postgres_store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """A fresh database on the session's cluster (tests.postgres)."""
    cluster = request.getfixturevalue("postgres_cluster")
    return Store(tmp_path / "data", cluster, request.getfixturevalue("postgres_url"))


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store(tmp_path / "data")
    return request.getfixturevalue("postgres_store")  # type: ignore[no-any-return]


@pytest.fixture
async def journal(store: Store, clock: Clock) -> AsyncIterator[TaskJournal]:
    opened = await store.open(clock)
    yield opened
    await opened.aclose()


@pytest.fixture
async def replicas(store: Store, clock: Clock) -> AsyncIterator[tuple[TaskJournal, TaskJournal]]:
    """Two journals on one database, as two server replicas have, on one clock."""
    first, second = await store.open(clock), await store.open(clock)
    yield first, second
    await first.aclose()
    await second.aclose()


@pytest.fixture
def journal_log(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Capture the kling_mcp logger once (the server turns its propagation off)."""
    monkeypatch.setattr(logger, "propagate", False)
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="kling_mcp"):
            yield
    finally:
        logger.removeHandler(caplog.handler)


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]


UNLIMITED = Limits(daily=1_000_000, concurrent=1_000_000, duplicate_window=None)


async def begin(
    journal: TaskJournal, tool: str, endpoint: str, body: dict[str, Any], *, owner: str = ""
) -> TaskRecord:
    """A submission about to be sent, reserved with no limit in the way."""
    reserved = await journal.reserve(tool, endpoint, body, UNLIMITED, owner=owner)
    assert isinstance(reserved, Reserved)
    return reserved.record


async def start(
    journal: TaskJournal,
    task_id: str,
    body: dict[str, Any] | None = None,
    *,
    tool: str = TOOL,
    owner: str = "",
) -> TaskRecord:
    """A submission the API accepted as `task_id`."""
    record = await begin(journal, tool, ENDPOINT, body or {"prompt": f"prompt of {task_id}"}, owner=owner)
    await journal.submitted(record.entry_id, task_id, f"trace-{task_id}", owner=owner)
    return record


def succeeded(task_id: str, url: str | None = None) -> StatusUpdate:
    return StatusUpdate(
        task_id,
        "succeeded",
        "succeed",
        video_url=url or f"https://cdn.test/{task_id}.mp4",
        video_id=f"video-{task_id}",
        duration=5.066,
        trace_id=f"trace-{task_id}",
    )


async def all_tasks(journal: TaskJournal, *, owner: str = "", limit: int = 100) -> list[TaskRecord]:
    """Every task of `owner`, read page by page."""
    records: list[TaskRecord] = []
    cursor = None
    while True:
        page, cursor = await journal.list_tasks(owner=owner, limit=limit, cursor=cursor)
        records += page
        if cursor is None:
            return records


# --- Submissions and states ---------------------------------------------------------------


async def test_a_submission_is_recorded_before_and_after_the_api_answers(
    journal: TaskJournal, clock: Clock
) -> None:
    body = {"prompt": "a cat surfing", "model": "kling-v2-master", "mode": "std", "duration": 5}
    record = await begin(journal, TOOL, ENDPOINT, body)
    assert (record.state, record.task_id, record.body) == ("submitting", None, body)
    assert (record.prompt, record.model, record.mode) == ("a cat surfing", "kling-v2-master", "std")
    assert record.body_hash == body_hash(body)

    clock.advance(1)
    await journal.submitted(record.entry_id, "task-1", "trace-submit")
    running = await journal.get("task-1")
    assert running is not None
    assert (running.entry_id, running.state, running.trace_id) == (record.entry_id, "running", "trace-submit")
    assert running.updated_at == record.created_at + 1

    await journal.record_statuses([StatusUpdate("task-1", "running", "processing")])
    clock.advance(30)
    await journal.record_statuses([succeeded("task-1")])
    done = await journal.get("task-1")
    assert done is not None
    assert done.state == "succeeded"
    assert done.upstream_state == "succeed"
    assert (done.video_url, done.video_id, done.duration) == (
        "https://cdn.test/task-1.mp4",
        "video-task-1",
        5.066,
    )
    assert done.body == body


async def test_the_answer_records_the_body_sent_and_the_lease_of_the_replica_waiting(
    journal: TaskJournal, clock: Clock
) -> None:
    reserved = await begin(journal, TOOL, ENDPOINT, {"prompt": "a cat", "image": "/home/me/cat.png"})
    sent = {"prompt": "a cat", "image": "https://files.test/cat.png", "token": SECRET}
    await journal.submitted(
        reserved.entry_id, "task-1", None, body=sent, holder="replica-a", lease_seconds=LEASE
    )
    record = await journal.get("task-1")
    assert record is not None
    assert record.body == {"prompt": "a cat", "image": "https://files.test/cat.png"}  # no secret either
    assert (record.holder, record.lease_until) == ("replica-a", clock.now + LEASE)

    unheld = await start(journal, "task-2")  # no replica waits for it, and the body stays as reserved
    record = await journal.get("task-2")
    assert record is not None
    assert (record.body, record.holder, record.lease_until) == (unheld.body, None, None)

    no_lease = await begin(journal, TOOL, ENDPOINT, {"prompt": "a dog"})
    await journal.submitted(no_lease.entry_id, "task-3", None, holder="replica-a")
    taken = await journal.claim_unfinished(owner="", holder="replica-b", lease_seconds=LEASE)
    assert {record.task_id for record in taken} == {"task-2", "task-3"}  # no lease_seconds: no lease


async def test_prompt_model_and_mode_are_kept_only_when_they_are_text(journal: TaskJournal) -> None:
    record = await begin(journal, TOOL, ENDPOINT, {"prompt": "a cat", "model": 2, "mode": ["std"]})
    assert (record.prompt, record.model, record.mode) == ("a cat", None, None)
    entry = await journal.entry(record.entry_id, owner="")
    assert entry is not None
    assert (entry.prompt, entry.model, entry.mode) == ("a cat", None, None)


def test_a_body_hash_is_the_same_in_every_version_and_replica() -> None:
    """Hashes written by one server are compared by another: the canonical JSON must not drift."""
    body = {"prompt": "un chat qui surfe, très vite", "duration": 5, "headers": {"Cookie": SECRET}}
    canonical = '{"duration":5,"headers":{},"prompt":"un chat qui surfe, très vite"}'
    assert body_hash(body) == hashlib.sha256(canonical.encode()).hexdigest()


async def test_the_journal_outlives_the_process_that_wrote_it(store: Store) -> None:
    first = await store.open()
    await start(first, "task-1")
    await first.aclose()

    second = await store.open()
    try:
        assert [record.task_id for record in await second.unfinished()] == ["task-1"]
        assert second.path == (None if store.database_url else store.data_dir / JOURNAL_FILE)
    finally:
        await second.aclose()


async def test_a_failed_task_keeps_the_apis_error(journal: TaskJournal) -> None:
    await start(journal, "task-1")
    await journal.record_statuses(
        [
            StatusUpdate(
                "task-1", "failed", "failed", error_code="risk", error_message="The prompt was refused."
            )
        ]
    )
    failed = await journal.get("task-1")
    assert failed is not None
    assert (failed.state, failed.error_code, failed.error_message) == (
        "failed",
        "risk",
        "The prompt was refused.",
    )
    assert failed.trace_id == "trace-task-1"


async def test_a_late_running_tick_does_not_undo_a_result(journal: TaskJournal) -> None:
    await start(journal, "task-1")
    await journal.record_statuses([succeeded("task-1")])
    await journal.record_statuses([StatusUpdate("task-1", "running", "processing")])
    record = await journal.get("task-1")
    assert record is not None
    assert (record.state, record.upstream_state) == ("succeeded", "succeed")
    assert record.video_url == "https://cdn.test/task-1.mp4"


async def test_the_same_state_again_does_not_rewrite_the_row(journal: TaskJournal, clock: Clock) -> None:
    await start(journal, "task-1")
    await journal.record_statuses([StatusUpdate("task-1", "running", "processing")])
    first = await journal.get("task-1")
    clock.advance(5)
    await journal.record_statuses([StatusUpdate("task-1", "running", "processing")])
    assert await journal.get("task-1") == first

    clock.advance(5)
    await journal.record_statuses([StatusUpdate("task-1", "running", "queued")])
    changed = await journal.get("task-1")
    assert changed is not None
    assert (changed.upstream_state, changed.updated_at) == ("queued", clock.now)


async def test_a_new_link_for_a_finished_video_is_recorded(journal: TaskJournal, clock: Clock) -> None:
    await start(journal, "task-1")
    await journal.record_statuses([succeeded("task-1", "https://cdn.test/old.mp4")])
    clock.advance(3600)
    await journal.record_statuses([succeeded("task-1", "https://cdn.test/new.mp4")])
    record = await journal.get("task-1")
    assert record is not None
    assert record.video_url == "https://cdn.test/new.mp4"


async def test_one_tick_records_many_tasks(journal: TaskJournal) -> None:
    for number in range(5):
        await start(journal, f"task-{number}")
    await journal.record_statuses([succeeded(f"task-{number}") for number in range(3)])
    states = {record.task_id: record.state for record in await all_tasks(journal)}
    assert states == {
        "task-0": "succeeded",
        "task-1": "succeeded",
        "task-2": "succeeded",
        "task-3": "running",
        "task-4": "running",
    }


async def test_a_status_update_reads_the_apis_result() -> None:
    success = TaskStatus.from_result(
        "task-1",
        {
            "success": True,
            "state": "succeed",
            "video_url": "https://cdn.test/1.mp4",
            "video_id": "video-1",
            "duration": "5.066",
            "trace_id": "trace-1",
        },
    )
    assert StatusUpdate.from_status(success) == StatusUpdate(
        "task-1", "succeeded", "succeed", "https://cdn.test/1.mp4", "video-1", 5.066, "trace-1"
    )
    failure = TaskStatus.from_result(
        "task-2", {"success": False, "state": "failed", "error": {"code": "risk", "message": "Refused."}}
    )
    update = StatusUpdate.from_status(failure)
    assert (update.state, update.error_code, update.error_message) == ("failed", "risk", "Refused.")


async def test_submissions_without_a_task_id(journal: TaskJournal, clock: Clock) -> None:
    never_sent = await begin(journal, TOOL, ENDPOINT, {"prompt": "a"})
    await journal.submission_failed(never_sent.entry_id, maybe_started=False, message="Could not connect.")
    unknown = await begin(journal, TOOL, ENDPOINT, {"prompt": "b"})
    await journal.submission_failed(unknown.entry_id, maybe_started=True, message="The API did not answer.")
    orphan = await begin(journal, TOOL, ENDPOINT, {"prompt": "c"})  # the process died while sending

    states = {record.entry_id: record.state for record in await all_tasks(journal)}
    assert states == {
        never_sent.entry_id: "not_started",
        unknown.entry_id: "maybe_started",
        orphan.entry_id: "submitting",
    }
    listed, _ = await journal.list_tasks(states=["not_started"])
    assert [record.error_message for record in listed] == ["Could not connect."]

    clock.advance(61)
    states = {record.entry_id: record.state for record in await all_tasks(journal)}
    assert states[orphan.entry_id] == "maybe_started"
    maybe, _ = await journal.list_tasks(states=["maybe_started"])
    assert {record.entry_id for record in maybe} == {unknown.entry_id, orphan.entry_id}
    assert await journal.list_tasks(states=["submitting"]) == ([], None)


# --- Listing ------------------------------------------------------------------------------


async def test_list_pages_newest_first_without_gaps_or_repeats(journal: TaskJournal, clock: Clock) -> None:
    for number in range(23):
        await start(journal, f"task-{number:02}")
        if number % 3:  # some tasks share a created_at: the cursor must still tell them apart
            clock.advance(1)

    pages: list[list[TaskRecord]] = []
    cursor = None
    while True:
        page, cursor = await journal.list_tasks(limit=5, cursor=cursor)
        pages.append(page)
        if cursor is None:
            break
        await start(journal, f"late-{len(pages)}")  # newer tasks do not shift the pages already read

    assert [len(page) for page in pages] == [5, 5, 5, 5, 3]
    records = [record for page in pages for record in page]
    assert sorted(record.task_id or "" for record in records) == [f"task-{number:02}" for number in range(23)]
    keys = [(record.created_at, record.entry_id) for record in records]
    assert keys == sorted(keys, reverse=True)


async def test_list_filters_by_state_tool_and_time(journal: TaskJournal, clock: Clock) -> None:
    await start(journal, "old-video", tool="kling_generate_video")
    clock.advance(100)
    since = clock.now
    await start(journal, "new-video", tool="kling_generate_video")
    clock.advance(1)
    await start(journal, "new-motion", tool="kling_generate_motion")
    await journal.record_statuses([succeeded("new-motion"), succeeded("old-video")])

    async def task_ids(**filters: Any) -> list[str | None]:
        records, _ = await journal.list_tasks(**filters)
        return [record.task_id for record in records]

    assert await task_ids(tool="kling_generate_video") == ["new-video", "old-video"]
    assert await task_ids(since=since) == ["new-motion", "new-video"]
    assert await task_ids(states=["succeeded"]) == ["new-motion", "old-video"]
    assert await task_ids(states=["running", "failed"]) == ["new-video"]
    assert await task_ids(states=["succeeded"], tool="kling_generate_video", since=since) == []
    assert await task_ids(states=["succeeded"], limit=1, cursor=(await journal.list_tasks(limit=1))[1]) == [
        "old-video"
    ]


def cursor_of(value: Any) -> str:
    """A cursor made by hand, shaped as the journal's are: URL-safe base64 of a JSON value."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


async def test_a_foreign_cursor_is_refused_clearly(journal: TaskJournal) -> None:
    await start(journal, "task-1")
    for cursor in ("not-a-cursor", cursor_of([1_800_000_000, 7]), cursor_of(["late", "x"]), cursor_of([1])):
        with pytest.raises(CursorError) as raised:
            await journal.list_tasks(cursor=cursor)
        assert str(raised.value) == (
            f"cursor {cursor!r} is not one this server gave out: pass the next_cursor of the previous "
            "page, or no cursor to start from the newest task."
        )
    with pytest.raises(ValueError, match="at least 1"):
        await journal.list_tasks(limit=0)


async def test_a_page_ending_at_the_oldest_task_has_no_next_cursor(
    journal: TaskJournal, clock: Clock
) -> None:
    for task_id in ("task-1", "task-2", "task-3"):
        await start(journal, task_id)
        clock.advance(1)
    everything, cursor = await journal.list_tasks(limit=3)
    assert ([record.task_id for record in everything], cursor) == (["task-3", "task-2", "task-1"], None)
    first, cursor = await journal.list_tasks(limit=2)
    assert cursor is not None
    assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor)  # passes through a URL or a tool call as it is
    rest, cursor = await journal.list_tasks(limit=2, cursor=cursor)
    assert ([record.task_id for record in first + rest], cursor) == (["task-3", "task-2", "task-1"], None)


async def test_a_page_and_a_claim_are_bounded_by_default(journal: TaskJournal, clock: Clock) -> None:
    for number in range(101):
        await start(journal, f"task-{number:03}")
        clock.advance(1)
    page, cursor = await journal.list_tasks()
    assert ([record.task_id for record in page], cursor is None) == (
        [f"task-{number:03}" for number in range(100, 80, -1)],
        False,
    )
    claimed = await journal.claim_unfinished(owner="", holder="replica-a", lease_seconds=LEASE)
    assert [record.task_id for record in claimed] == [f"task-{number:03}" for number in range(100)]
    rest = await journal.claim_unfinished(owner="", holder="replica-a", lease_seconds=LEASE)
    assert [record.task_id for record in rest] == ["task-100"]


# --- Duplicates, limits, resuming ---------------------------------------------------------


async def test_a_running_duplicate_is_answered_only_within_its_window(
    journal: TaskJournal, clock: Clock
) -> None:
    body = {"prompt": "a cat surfing", "duration": 5}
    first = await start(journal, "task-1", body)
    same = {"duration": 5, "prompt": "a cat surfing", "token": SECRET}  # secrets are not part of a body
    within = Limits(daily=100, concurrent=100, duplicate_window=60)

    clock.advance(30)
    twin = await journal.reserve(TOOL, ENDPOINT, same, within)
    assert isinstance(twin, Twin)
    assert (twin.record.entry_id, twin.record.task_id) == (first.entry_id, "task-1")
    for other in (
        journal.reserve("kling_generate_motion", ENDPOINT, same, within),
        journal.reserve(TOOL, ENDPOINT, {"prompt": "a dog"}, within),
        journal.reserve(TOOL, ENDPOINT, same, within, owner="someone"),
    ):
        assert isinstance(await other, Reserved)
    too_old = await journal.reserve(
        TOOL, ENDPOINT, same, Limits(daily=100, concurrent=100, duplicate_window=10)
    )
    assert isinstance(too_old, Reserved)
    await journal.submission_failed(too_old.record.entry_id, maybe_started=False, message="Never sent.")

    await journal.record_statuses([succeeded("task-1")])
    assert isinstance(await journal.reserve(TOOL, ENDPOINT, same, within), Reserved)


async def test_a_twin_still_being_sent_is_answered_with_its_entry(journal: TaskJournal) -> None:
    sending = await begin(journal, TOOL, ENDPOINT, {"prompt": "a fox"})
    twin = await journal.reserve(TOOL, ENDPOINT, {"prompt": "a fox"}, Limits(10, 10, duplicate_window=60))
    assert isinstance(twin, Twin)
    assert (twin.record.entry_id, twin.record.task_id, twin.record.state) == (
        sending.entry_id,
        None,
        "submitting",
    )
    assert await journal.entry(sending.entry_id, owner="") == twin.record
    assert await journal.entry(sending.entry_id, owner="someone") is None


async def test_a_cancel_is_noted_once_and_only_while_the_task_runs(
    journal: TaskJournal, clock: Clock
) -> None:
    running = await start(journal, "task-1")
    sending = await begin(journal, TOOL, ENDPOINT, {"prompt": "not answered yet"})
    finished = await start(journal, "task-2")
    await journal.record_statuses([succeeded("task-2")])

    clock.advance(5)
    cancelled = await journal.cancel(running.entry_id, owner="")
    assert cancelled is not None
    assert (cancelled.cancelled_at, cancelled.updated_at) == (clock.now, clock.now)
    noted_at = clock.now
    clock.advance(5)
    again = await journal.cancel(running.entry_id, owner="")
    assert again is not None
    assert again.cancelled_at == noted_at  # the first cancel counts
    sent_late = await journal.cancel(sending.entry_id, owner="")
    assert sent_late is not None
    assert sent_late.cancelled_at == clock.now

    done = await journal.cancel(finished.entry_id, owner="")
    assert done is not None
    assert (done.state, done.cancelled_at) == ("succeeded", None)  # a finished task stays as it ended
    assert await journal.cancel(running.entry_id, owner="someone else") is None
    assert await journal.cancel("no-such-entry", owner="") is None


async def test_a_video_is_found_by_its_id_among_the_owners_succeeded_tasks(
    journal: TaskJournal, clock: Clock
) -> None:
    await start(journal, "older", {"prompt": "first take"})
    await journal.record_statuses([succeeded("older")])
    clock.advance(1)
    await start(journal, "newer", {"prompt": "second take"})
    newer = StatusUpdate(
        "newer", "succeeded", "succeed", video_url="https://cdn.test/n.mp4", video_id="video-older"
    )
    await journal.record_statuses([newer])  # the same video id twice: the newest task is the one
    await start(journal, "running")
    await journal.record_statuses(
        [StatusUpdate("running", "running", "processing", video_id="video-running")]
    )

    found = await journal.with_video("video-older", owner="")
    assert found is not None
    assert found.task_id == "newer"
    assert await journal.with_video("video-running", owner="") is None  # not a finished video
    assert await journal.with_video("video-older", owner="someone else") is None
    assert await journal.with_video("no-such-video", owner="") is None


async def test_unfinished_undownloaded_paid_and_running(journal: TaskJournal, clock: Clock) -> None:
    start_time = clock.now
    await start(journal, "downloaded")
    clock.advance(1)
    await start(journal, "waiting-for-download")
    clock.advance(1)
    await start(journal, "broken-download")
    clock.advance(1)
    await start(journal, "still-running")
    clock.advance(1)
    never_sent = await begin(journal, TOOL, ENDPOINT, {"prompt": "never sent"})
    await journal.submission_failed(never_sent.entry_id, maybe_started=False, message="Could not connect.")
    clock.advance(1)
    await begin(journal, TOOL, ENDPOINT, {"prompt": "sending now"})
    await journal.record_statuses(
        [succeeded("downloaded"), succeeded("waiting-for-download"), succeeded("broken-download")]
    )
    await journal.record_file("downloaded", Path("/videos/downloaded.mp4"))
    await journal.record_download_error("broken-download", "Disk full: /videos")

    assert [record.task_id for record in await journal.unfinished()] == ["still-running"]
    undownloaded = await journal.undownloaded()
    assert [record.task_id for record in undownloaded] == ["waiting-for-download", "broken-download"]
    assert undownloaded[1].download_error == "Disk full: /videos"
    downloaded = await journal.get("downloaded")
    assert downloaded is not None
    assert downloaded.file_path == "/videos/downloaded.mp4"

    # Five may have cost money (not the one never sent); the oldest frees up a day after it was made.
    daily = await journal.reserve(TOOL, ENDPOINT, {"prompt": "one more"}, Limits(5, 100, None))
    assert daily == OverLimit("daily", 5, 5, start_time + 86_400)
    frees = await journal.reserve(TOOL, ENDPOINT, {"prompt": "one more"}, Limits(3, 100, None))
    assert frees == OverLimit("daily", 5, 3, start_time + 2 + 86_400)
    running = await journal.reserve(TOOL, ENDPOINT, {"prompt": "one more"}, Limits(100, 2, None))
    assert running == OverLimit("concurrent", 2, 2, None)  # still-running and sending now

    clock.advance(2 * 3600)  # tasks whose end never came stop counting against the limit
    assert isinstance(
        await journal.reserve(TOOL, ENDPOINT, {"prompt": "now"}, Limits(100, 1, None)), Reserved
    )
    assert [record.task_id for record in await journal.unfinished()] == ["still-running"]


async def test_a_daily_limit_of_zero_refuses_every_paid_task(journal: TaskJournal) -> None:
    nothing = Limits(daily=0, concurrent=10, duplicate_window=None)
    assert await journal.reserve(TOOL, ENDPOINT, {"prompt": "a"}, nothing) == OverLimit("daily", 0, 0, None)
    await start(journal, "task-1")
    assert await journal.reserve(TOOL, ENDPOINT, {"prompt": "b"}, nothing) == OverLimit("daily", 1, 0, None)


async def test_owners_never_see_each_others_tasks(journal: TaskJournal) -> None:
    alice = await start(journal, "task-alice", {"prompt": "same"}, owner="alice")
    await start(journal, "task-bob", {"prompt": "same"}, owner="bob")
    await journal.record_statuses([succeeded("task-bob")])

    # Writes naming the wrong owner change nothing.
    await journal.submitted(alice.entry_id, "hijacked", None, owner="bob")
    await journal.record_file("task-alice", Path("/elsewhere.mp4"), owner="bob")
    await journal.record_download_error("task-bob", "not yours", owner="alice")

    assert await journal.get("task-alice", owner="bob") is None
    record = await journal.get("task-alice", owner="alice")
    assert record is not None
    assert (record.task_id, record.file_path) == ("task-alice", None)
    assert [record.task_id for record in await all_tasks(journal, owner="alice")] == ["task-alice"]
    assert await all_tasks(journal) == []
    assert [record.task_id for record in await journal.unfinished(owner="alice")] == ["task-alice"]
    assert await journal.unfinished(owner="bob") == []
    assert {(record.owner, record.task_id) for record in await journal.unfinished()} == {
        ("alice", "task-alice")
    }
    assert await journal.undownloaded(owner="alice") == []
    bob_done = await journal.undownloaded(owner="bob")
    assert [(record.task_id, record.download_error) for record in bob_done] == [("task-bob", None)]
    one_each = Limits(daily=1, concurrent=1, duplicate_window=60)
    alice_limits = Limits(daily=10, concurrent=1, duplicate_window=60)
    assert await journal.reserve(TOOL, ENDPOINT, {"prompt": "x"}, alice_limits, owner="alice") == OverLimit(
        "concurrent", 1, 1, None
    )
    bob_over = await journal.reserve(TOOL, ENDPOINT, {"prompt": "same"}, one_each, owner="bob")
    assert isinstance(bob_over, OverLimit)  # bob's finished task is his one of the day, not alice's twin
    assert bob_over.limit_name == "daily"
    assert isinstance(await journal.reserve(TOOL, ENDPOINT, {"prompt": "same"}, one_each), Reserved)

    await journal.remember_upload(
        "f" * 64, "https://files.test/alice.png", size=1, mime="image/png", owner="alice"
    )
    assert await journal.hosted_url("f" * 64, owner="bob") is None


# --- Leases: replicas sharing the work ----------------------------------------------------

LEASE = 30.0


async def holders(journal: TaskJournal, *task_ids: str) -> dict[str, str | None]:
    records = [await journal.get(task_id) for task_id in task_ids]
    return {record.task_id or "": record.holder for record in records if record is not None}


async def test_two_replicas_claiming_at_once_get_disjoint_tasks(
    replicas: tuple[TaskJournal, TaskJournal], clock: Clock
) -> None:
    first, second = replicas
    task_ids = {f"task-{number:02}" for number in range(20)}
    for task_id in sorted(task_ids):
        await start(first, task_id)

    async def claim(journal: TaskJournal, holder: str, claimed: dict[str, list[TaskRecord]]) -> None:
        claimed[holder] = await journal.claim_unfinished(
            owner="", holder=holder, lease_seconds=LEASE, limit=15
        )

    for _ in range(25):
        claimed: dict[str, list[TaskRecord]] = {}
        async with anyio.create_task_group() as group:
            group.start_soon(claim, first, "replica-a", claimed)
            group.start_soon(claim, second, "replica-b", claimed)
        taken = {holder: {record.task_id for record in records} for holder, records in claimed.items()}
        assert not taken["replica-a"] & taken["replica-b"]
        assert taken["replica-a"] | taken["replica-b"] == task_ids  # 15 + 15 wanted: none left behind
        for holder, records in claimed.items():
            assert {(record.holder, record.lease_until) for record in records} <= {
                (holder, clock.now + LEASE)
            }
        clock.advance(LEASE)  # every lease runs out: the next round claims them all again


async def test_a_dead_replicas_tasks_are_claimed_once_its_leases_expire(
    replicas: tuple[TaskJournal, TaskJournal], clock: Clock
) -> None:
    first, second = replicas
    await start(first, "task-1")
    clock.advance(1)
    await start(first, "task-2")
    claimed = await first.claim_unfinished(owner="", holder="replica-a", lease_seconds=LEASE)
    assert [record.task_id for record in claimed] == ["task-1", "task-2"]

    assert await second.claim_unfinished(owner="", holder="replica-b", lease_seconds=LEASE) == []
    clock.advance(LEASE - 1)
    assert await second.claim_unfinished(owner="", holder="replica-b", lease_seconds=LEASE) == []
    clock.advance(1)  # replica-a renewed nothing: it is gone
    taken = await second.claim_unfinished(owner="", holder="replica-b", lease_seconds=LEASE)
    assert [(record.task_id, record.holder) for record in taken] == [
        ("task-1", "replica-b"),
        ("task-2", "replica-b"),
    ]
    assert await first.hold(["task-1"], holder="replica-a", lease_seconds=LEASE) == []


async def test_hold_skips_tasks_another_replica_holds(
    replicas: tuple[TaskJournal, TaskJournal], clock: Clock
) -> None:
    first, second = replicas
    for task_id in ("task-1", "task-2", "task-3", "task-done"):
        await start(first, task_id)
    await first.record_statuses([succeeded("task-done")])

    assert await first.hold(["task-1", "task-2"], holder="replica-a", lease_seconds=LEASE) == [
        "task-1",
        "task-2",
    ]
    held = ["task-3", "task-1", "task-2", "task-done", "unknown"]
    assert await second.hold(held, holder="replica-b", lease_seconds=LEASE) == ["task-3"]

    clock.advance(LEASE - 1)
    assert await first.hold(["task-1"], holder="replica-a", lease_seconds=LEASE) == ["task-1"]  # renewed
    clock.advance(2)  # task-2's lease ran out, task-1's did not
    assert await second.hold(["task-1", "task-2"], holder="replica-b", lease_seconds=LEASE) == ["task-2"]
    assert await holders(first, "task-1", "task-2", "task-3", "task-done") == {
        "task-1": "replica-a",
        "task-2": "replica-b",
        "task-3": "replica-b",
        "task-done": None,
    }
    record = await first.get("task-1")
    assert record is not None
    assert record.lease_until == clock.now - 2 + LEASE  # renewed 2 s ago


async def test_a_final_state_releases_the_lease(journal: TaskJournal) -> None:
    for task_id in ("task-1", "task-2", "task-3"):
        await start(journal, task_id)
    await journal.hold(["task-1", "task-2", "task-3"], holder="replica-a", lease_seconds=LEASE)
    await journal.record_statuses(
        [
            StatusUpdate("task-1", "running", "processing"),
            succeeded("task-2"),
            StatusUpdate("task-3", "failed", "failed", error_message="Refused."),
        ]
    )
    assert await holders(journal, "task-1", "task-2", "task-3") == {
        "task-1": "replica-a",
        "task-2": None,
        "task-3": None,
    }
    done = await journal.get("task-2")
    assert done is not None
    assert done.lease_until is None


async def test_release_frees_only_the_holders_own_leases(
    replicas: tuple[TaskJournal, TaskJournal],
) -> None:
    first, second = replicas
    await start(first, "task-1")
    await start(first, "task-2")
    await first.hold(["task-1", "task-2"], holder="replica-a", lease_seconds=LEASE)
    await second.release(["task-1", "task-2"], holder="replica-b")
    assert await second.claim_unfinished(owner="", holder="replica-b", lease_seconds=LEASE) == []

    await first.release(["task-1", "task-2"], holder="replica-a")  # stopping cleanly: another may take them
    taken = await second.claim_unfinished(owner="", holder="replica-b", lease_seconds=LEASE)
    assert sorted(record.task_id or "" for record in taken) == ["task-1", "task-2"]


async def test_claims_take_one_owners_tasks_or_everyones(journal: TaskJournal, clock: Clock) -> None:
    await start(journal, "task-alice", owner="alice")
    clock.advance(1)
    await start(journal, "task-bob", owner="bob")
    clock.advance(1)
    await start(journal, "task-local")
    await start(journal, "task-done", owner="alice")
    await journal.record_statuses([succeeded("task-done")])
    await begin(journal, TOOL, ENDPOINT, {"prompt": "no task id yet"}, owner="alice")

    alices = await journal.claim_unfinished(owner="alice", holder="replica-a", lease_seconds=LEASE)
    assert [record.task_id for record in alices] == ["task-alice"]
    rest = await journal.claim_unfinished(owner=None, holder="replica-b", lease_seconds=LEASE, limit=1)
    assert [record.task_id for record in rest] == ["task-bob"]  # the oldest first
    rest = await journal.claim_unfinished(owner=None, holder="replica-b", lease_seconds=LEASE)
    assert [(record.owner, record.task_id) for record in rest] == [("", "task-local")]


async def test_a_shared_secret_is_one_per_database(store: Store, tmp_path: Path) -> None:
    first, second = await store.open(), await store.open()
    elsewhere = await store.other(tmp_path / "elsewhere").open()
    try:
        key = await first.shared_secret("owner-key")
        assert len(key) == 32
        assert await second.shared_secret("owner-key") == key
        assert await first.shared_secret("owner-key") == key
        assert await second.shared_secret("another-key") not in (key, b"")
        assert await elsewhere.shared_secret("owner-key") != key
    finally:
        for journal in (first, second, elsewhere):
            await journal.aclose()

    reopened = await store.open()
    try:
        assert await reopened.shared_secret("owner-key") == key
    finally:
        await reopened.aclose()


async def test_ping_answers(journal: TaskJournal) -> None:
    await journal.ping()


# --- Secrets and uploads ------------------------------------------------------------------


async def test_secrets_are_never_stored(journal: TaskJournal, store: Store) -> None:
    body = {
        "prompt": "a cat",
        "token": SECRET,
        "api_key": SECRET,
        "headers": {"Authorization": f"Bearer {SECRET}", "X-Api-Key": SECRET, "accept": "video/mp4"},
        "image_list": [{"image_url": "https://cdn.test/a.png", "access_token": SECRET}],
        "password": SECRET,
    }
    record = await begin(journal, TOOL, ENDPOINT, body)
    await journal.submitted(record.entry_id, "task-1", None)
    expected = {
        "prompt": "a cat",
        "headers": {"accept": "video/mp4"},
        "image_list": [{"image_url": "https://cdn.test/a.png"}],
    }
    assert record.body == expected
    stored = await journal.get("task-1")
    assert stored is not None
    assert stored.body == expected
    assert record.body_hash == body_hash(expected)
    for file in store.stored_files():
        assert SECRET.encode() not in file.read_bytes(), file


async def test_an_uploaded_file_is_remembered_by_its_hash(store: Store, clock: Clock) -> None:
    digest = "a" * 64
    first = await store.open(clock)
    assert await first.hosted_url(digest) is None
    await first.remember_upload(digest, "https://files.test/1.png", size=1024, mime="image/png")
    await first.remember_upload(digest, "https://files.test/2.png", size=1024, mime="image/png")
    assert await first.hosted_url(digest) == "https://files.test/2.png"
    assert await first.hosted_url("b" * 64) is None
    await first.aclose()

    second = await store.open(clock)
    try:
        assert await second.hosted_url(digest) == "https://files.test/2.png"
    finally:
        await second.aclose()


# --- Damaged and unwritable journals ------------------------------------------------------


def moved_aside(data_dir: Path) -> dict[str, bytes]:
    """The name and content of each file moved aside in `data_dir`."""
    return {path.name: path.read_bytes() for path in data_dir.glob(f"{JOURNAL_FILE}.corrupt-*")}


async def open_traced(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, trace: Callable[[str], None]
) -> SqliteJournal:
    """The journal in `data_dir`, opened with `trace` called on each statement of its setup."""
    connect = sqlite_module._connect

    def connect_traced(target: str) -> sqlite3.Connection:
        db = connect(target)
        db.set_trace_callback(trace)
        return db

    with monkeypatch.context() as patch:
        patch.setattr(sqlite_module, "_connect", connect_traced)
        return await SqliteJournal.open(data_dir)


def list_dir(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


@pytest.mark.usefixtures("journal_log")
async def test_a_corrupt_journal_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    garbage = os.urandom(4096)
    (tmp_path / JOURNAL_FILE).write_bytes(garbage)
    (tmp_path / f"{JOURNAL_FILE}-wal").write_bytes(b"stale write-ahead log")

    journal = await SqliteJournal.open(tmp_path)
    try:
        await start(journal, "task-1")
        assert await journal.get("task-1") is not None
        assert journal.path == tmp_path / JOURNAL_FILE
    finally:
        await journal.aclose()

    moved = moved_aside(tmp_path)
    [aside] = [name for name in moved if not name.endswith(("-wal", "-shm"))]
    assert re.fullmatch(rf"{re.escape(JOURNAL_FILE)}\.corrupt-\d{{8}}-\d{{6}}", aside)  # when it was found
    assert moved[aside] == garbage
    assert moved[f"{aside}-wal"] == b"stale write-ahead log"  # its -wal moved along with it
    [warning] = warnings_in(caplog)
    assert warning == (
        f"The task journal {tmp_path / JOURNAL_FILE} is damaged or not a kling-mcp journal (file is not a "
        f"database): moved it to {tmp_path / aside} and started a fresh one. Tasks recorded only there are "
        "not resumed."
    )
    reopened = await SqliteJournal.open(tmp_path)  # the fresh journal is where the damaged one was
    try:
        assert await reopened.get("task-1") is not None
    finally:
        await reopened.aclose()


@pytest.mark.usefixtures("journal_log")
async def test_journals_damaged_within_one_second_are_all_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    moment, real_strftime = time.localtime(1_800_000_000), time.strftime
    monkeypatch.setattr(time, "strftime", lambda format, when=moment: real_strftime(format, when))
    for number in range(3):
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / f"{JOURNAL_FILE}{suffix}").write_bytes(f"damaged {number}{suffix}".encode())
        await (await SqliteJournal.open(tmp_path)).aclose()

    stamp = real_strftime("%Y%m%d-%H%M%S", moment)
    moved = moved_aside(tmp_path)
    assert sorted(moved) == sorted(
        f"{JOURNAL_FILE}.corrupt-{stamp}{tail}{suffix}"
        for tail in ("", "-2", "-3")
        for suffix in ("", "-wal", "-shm")
    )
    for number, tail in enumerate(("", "-2", "-3")):  # the -shm is SQLite's to rewrite, not data
        for suffix in ("", "-wal"):
            assert (
                moved[f"{JOURNAL_FILE}.corrupt-{stamp}{tail}{suffix}"] == f"damaged {number}{suffix}".encode()
            )


@pytest.mark.usefixtures("journal_log")
async def test_another_programs_database_is_moved_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with sqlite3.connect(tmp_path / JOURNAL_FILE) as other:
        other.execute("CREATE TABLE notes (text TEXT)")
    other.close()

    journal = await SqliteJournal.open(tmp_path)
    await start(journal, "task-1")
    await journal.aclose()

    [aside] = moved_aside(tmp_path)
    with sqlite3.connect(tmp_path / aside) as moved:
        assert moved.execute("SELECT name FROM sqlite_master").fetchall() == [("notes",)]
    moved.close()
    [warning] = warnings_in(caplog)
    assert f"(schema version 0, expected {SCHEMA_VERSION}): moved it to {tmp_path / aside} " in warning


@pytest.mark.usefixtures("journal_log")
async def test_a_journal_another_process_sets_up_while_it_is_checked_is_shared_not_moved_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite3.connect(tmp_path / JOURNAL_FILE).execute("PRAGMA journal_mode = WAL").connection.close()
    other_servers: list[subprocess.CompletedProcess[str]] = []

    def another_server_sets_it_up_meanwhile(statement: str) -> None:
        # Between this server reading the schema version (still 0) and counting the tables.
        if "sqlite_master" in statement and not other_servers:
            command = [sys.executable, "-c", OPEN_AND_WRITE, str(tmp_path)]
            other_servers.append(subprocess.run(command, capture_output=True, text=True, check=False))

    journal = await open_traced(tmp_path, monkeypatch, another_server_sets_it_up_meanwhile)

    [other] = other_servers
    assert other.stdout.split() == [str(tmp_path / JOURNAL_FILE), "running"], other.stderr
    assert (await journal.get("task-1")) is not None  # the other server's task, in the one journal
    await journal.aclose()
    assert moved_aside(tmp_path) == {}
    assert warnings_in(caplog) == []


@pytest.mark.usefixtures("journal_log")
async def test_a_new_journal_another_process_is_switching_to_wal_is_shared_not_kept_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The other process has read the new file and holds its write lock to switch it to WAL, so
    # this server's own switch is refused at once: SQLite does not wait where it could deadlock.
    other = sqlite3.connect(tmp_path / JOURNAL_FILE, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    switches: list[str] = []

    def the_other_switch_is_done_by_the_second_try(statement: str) -> None:
        if statement.startswith("PRAGMA journal_mode"):
            switches.append(statement)
            if len(switches) == 2:
                other.execute("COMMIT")

    journal = await open_traced(tmp_path, monkeypatch, the_other_switch_is_done_by_the_second_try)
    other.close()

    assert journal.path == tmp_path / JOURNAL_FILE
    await start(journal, "task-1")
    await journal.aclose()
    reopened = await SqliteJournal.open(tmp_path)
    assert await reopened.get("task-1") is not None
    await reopened.aclose()
    assert warnings_in(caplog) == []


@pytest.mark.usefixtures("journal_log")
async def test_a_journal_that_cannot_switch_to_wal_for_another_reason_is_not_waited_for(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    switches: list[str] = []

    class ReadOnlyMount(sqlite3.Connection):
        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            if sql.startswith("PRAGMA journal_mode"):
                switches.append(sql)
                raise sqlite3.OperationalError("attempt to write a readonly database")
            return super().execute(sql, *args)

    def connect_read_only(target: str) -> sqlite3.Connection:
        if target == ":memory:":  # where the journal goes instead
            return connect(target)
        return sqlite3.connect(target, isolation_level=None, check_same_thread=False, factory=ReadOnlyMount)

    connect = sqlite_module._connect
    monkeypatch.setattr(sqlite_module, "_connect", connect_read_only)
    journal = await SqliteJournal.open(tmp_path)
    monkeypatch.undo()
    await journal.aclose()

    assert (journal.path, switches) == (None, ["PRAGMA journal_mode = WAL"])  # tried once, not for 5 s
    [warning] = warnings_in(caplog)
    assert f"in {tmp_path} (attempt to write a readonly database). Tasks are kept in memory only" in warning


@pytest.mark.usefixtures("journal_log")
async def test_a_newer_journal_is_left_untouched(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    newer = tmp_path / JOURNAL_FILE
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version = 99")
    db.close()
    before = newer.read_bytes()

    journal = await SqliteJournal.open(tmp_path)
    await start(journal, "task-1")
    assert journal.path is None
    await journal.aclose()

    assert newer.read_bytes() == before
    assert list_dir(tmp_path) == [JOURNAL_FILE]
    [warning] = warnings_in(caplog)
    assert warning.startswith(
        f"Cannot keep the task journal in {tmp_path} (it was written by a newer kling-mcp (schema 99; this "
        f"one reads {SCHEMA_VERSION}): upgrade kling-mcp to share it). Tasks are kept in memory only"
    )


@pytest.mark.usefixtures("journal_log")
async def test_a_journal_lacking_a_column_of_its_version_is_moved_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await (await SqliteJournal.open(tmp_path)).aclose()
    with sqlite3.connect(tmp_path / JOURNAL_FILE) as db:
        db.execute("ALTER TABLE tasks DROP COLUMN cancelled_at")
        db.execute("ALTER TABLE tasks DROP COLUMN lease_until")
    db.close()

    journal = await SqliteJournal.open(tmp_path)
    try:
        cancelled = await journal.cancel((await start(journal, "task-1")).entry_id, owner="")
        assert cancelled is not None
        assert cancelled.cancelled_at is not None
    finally:
        await journal.aclose()
    assert len(moved_aside(tmp_path)) >= 1
    [warning] = warnings_in(caplog)
    assert "(table tasks lacks cancelled_at, lease_until): moved it to" in warning


@pytest.mark.usefixtures("journal_log")
async def test_a_journal_with_damaged_pages_is_moved_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = await SqliteJournal.open(tmp_path)
    await start(journal, "task-1")
    await journal.aclose()
    with sqlite3.connect(tmp_path / JOURNAL_FILE) as db:  # the file opens, but an index's pages are lost
        db.execute("PRAGMA writable_schema = ON")
        db.execute("DELETE FROM sqlite_master WHERE name = 'tasks_by_state'")
    db.close()

    journal = await SqliteJournal.open(tmp_path)
    try:
        assert await journal.get("task-1") is None  # a fresh journal
        assert journal.path == tmp_path / JOURNAL_FILE
    finally:
        await journal.aclose()
    assert len(moved_aside(tmp_path)) >= 1
    [warning] = warnings_in(caplog)
    assert "(quick_check: *** in database main ***" in warning


async def test_an_older_journal_is_migrated_in_place(tmp_path: Path, clock: Clock) -> None:
    journal = await SqliteJournal.open(tmp_path, clock=clock)
    await start(journal, "task-1")
    await journal.aclose()
    with sqlite3.connect(tmp_path / JOURNAL_FILE) as db:  # back to schema 1: no leases, secrets, cancels
        db.execute("ALTER TABLE tasks DROP COLUMN cancelled_at")
        db.execute("ALTER TABLE tasks DROP COLUMN holder")
        db.execute("ALTER TABLE tasks DROP COLUMN lease_until")
        db.execute("DROP TABLE secrets")
        db.execute("PRAGMA user_version = 1")
    db.close()

    journal = await SqliteJournal.open(tmp_path, clock=clock)
    try:
        assert journal.path == tmp_path / JOURNAL_FILE
        claimed = await journal.claim_unfinished(owner="", holder="replica-a", lease_seconds=LEASE)
        assert [(record.task_id, record.holder) for record in claimed] == [("task-1", "replica-a")]
        assert len(await journal.shared_secret("owner-key")) == 32
    finally:
        await journal.aclose()
    with sqlite3.connect(tmp_path / JOURNAL_FILE) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    db.close()
    assert moved_aside(tmp_path) == {}


async def test_an_older_postgres_journal_is_migrated_in_place(postgres_store: Store, clock: Clock) -> None:
    journal = await postgres_store.open(clock)
    await start(journal, "task-1")
    await journal.aclose()
    assert postgres_store.database_url is not None
    with psycopg.connect(postgres_store.database_url, autocommit=True) as db:  # back to schema 2
        db.execute("ALTER TABLE tasks DROP COLUMN cancelled_at")
        db.execute("UPDATE journal_schema SET version = 2")

    journal = await postgres_store.open(clock)
    try:
        assert (await journal.get("task-1")) is not None
        cancelled = await journal.cancel(await _entry_of(journal, "task-1"), owner="")
        assert cancelled is not None
        assert cancelled.cancelled_at == clock.now
    finally:
        await journal.aclose()
    with psycopg.connect(postgres_store.database_url, autocommit=True) as db:
        assert db.execute("SELECT version FROM journal_schema").fetchall() == [(SCHEMA_VERSION,)]


async def _entry_of(journal: TaskJournal, task_id: str) -> str:
    record = await journal.get(task_id)
    assert record is not None
    return record.entry_id


# --- PostgreSQL: unreachable, lost and foreign databases ----------------------------------

PASSWORD = "hunter2-not-in-logs"


@pytest.mark.usefixtures("journal_log")
async def test_an_unreachable_database_is_a_clear_error_without_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    url = f"postgresql://kling:{PASSWORD}@127.0.0.1:{port}/journal"
    with pytest.raises(JournalUnavailableError) as raised:
        await open_journal(tmp_path, url)
    message = str(raised.value)
    assert f"postgresql://kling:***@127.0.0.1:{port}/journal" in message
    assert "KLING_DATABASE_URL" in message
    assert PASSWORD not in message
    assert raised.value.__cause__ is None
    assert raised.value.__context__ is None or PASSWORD not in str(raised.value.__context__)
    assert all(PASSWORD not in record.getMessage() for record in caplog.records)


def test_a_url_is_shown_without_its_password() -> None:
    assert redact(f"postgresql://kling:{PASSWORD}@db.internal:5432/journal?sslmode=require") == (
        "postgresql://kling:***@db.internal:5432/journal?sslmode=require"
    )
    assert redact(f"postgresql://db.internal/journal?user=kling&password={PASSWORD}") == (
        "postgresql://db.internal/journal?user=kling&password=***"
    )
    assert redact(f"host=db.internal password='{PASSWORD}' dbname=journal") == (
        "host=db.internal password=*** dbname=journal"
    )
    assert redact("postgresql://kling@db.internal/journal") == "postgresql://kling@db.internal/journal"


async def test_ping_fails_when_the_database_is_gone(postgres_store: Store) -> None:
    assert postgres_store.cluster is not None
    assert postgres_store.database_url is not None
    journal = await postgres_store.open()
    try:
        await journal.ping()
        with psycopg.connect(postgres_store.cluster.url(), autocommit=True) as admin:
            database = urlsplit(postgres_store.database_url).path[1:]
            admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        with pytest.raises(JournalUnavailableError, match="does not answer"):
            await journal.ping()
    finally:
        await journal.aclose()


async def test_another_programs_tables_are_refused(postgres_store: Store) -> None:
    assert postgres_store.database_url is not None
    with psycopg.connect(postgres_store.database_url, autocommit=True) as other:
        other.execute("CREATE TABLE tasks (id SERIAL PRIMARY KEY, title TEXT)")
    with pytest.raises(JournalUnavailableError, match=r"table tasks .* lacks the columns .*entry_id"):
        await postgres_store.open()


async def test_a_newer_postgres_journal_is_refused(postgres_store: Store) -> None:
    assert postgres_store.database_url is not None
    await (await postgres_store.open()).aclose()
    with psycopg.connect(postgres_store.database_url, autocommit=True) as newer:
        newer.execute("UPDATE journal_schema SET version = 99")
    with pytest.raises(JournalUnavailableError, match="newer kling-mcp"):
        await postgres_store.open()


async def test_a_data_dir_is_made_with_its_parents(tmp_path: Path) -> None:
    data_dir = tmp_path / "home" / ".local" / "kling-mcp"
    journal = await SqliteJournal.open(data_dir)
    try:
        assert journal.path == data_dir / JOURNAL_FILE
    finally:
        await journal.aclose()


@pytest.mark.usefixtures("journal_log")
async def test_a_data_dir_that_cannot_be_made_keeps_the_journal_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("not a directory")
    data_dir = tmp_path / "file" / "data"
    journal = await SqliteJournal.open(data_dir)
    try:
        assert journal.path is None
        await start(journal, "task-1")
        assert await journal.get("task-1") is not None
    finally:
        await journal.aclose()
    with pytest.raises(JournalUnavailableError) as raised:
        await journal.ping()
    assert str(raised.value) == "The task journal (in memory) fails: Cannot operate on a closed database."

    assert list_dir(tmp_path) == ["file"]  # nothing written anywhere
    [warning] = warnings_in(caplog)
    assert re.fullmatch(
        f"Cannot keep the task journal in {re.escape(str(data_dir))} \\(.+\\)\\. Tasks are kept in memory "
        "only and are lost when this server stops: make that directory writable, or set KLING_DATA_DIR "
        "to one this server can write\\.",
        warning,
    )


async def test_ping_fails_clearly_once_sqlite_fails(tmp_path: Path) -> None:
    journal = await SqliteJournal.open(tmp_path)
    await journal.ping()
    await journal.aclose()
    with pytest.raises(JournalUnavailableError) as raised:
        await journal.ping()
    assert str(raised.value) == (
        f"The task journal {tmp_path / JOURNAL_FILE} fails: Cannot operate on a closed database."
    )
    assert isinstance(raised.value.__cause__, sqlite3.Error)


def test_an_unwritable_data_dir_falls_back_to_memory(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o555)
    result = subprocess.run(
        [sys.executable, "-c", OPEN_AND_WRITE, str(data_dir)],
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=respect_permissions_as_root if os.geteuid() == 0 else None,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None", "running"]  # the path, and a task written and read back
    [warning] = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert str(data_dir) in warning
    assert "KLING_DATA_DIR" in warning
    assert list(data_dir.iterdir()) == []


def respect_permissions_as_root() -> None:
    """In the child before exec: root without CAP_DAC_OVERRIDE cannot write a read-only directory."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE) failed")


OPEN_AND_WRITE = """
import logging, sys
from pathlib import Path
import anyio
from kling_mcp.tasks.journal import Limits
from kling_mcp.tasks.sqlite import SqliteJournal

logging.basicConfig(stream=sys.stderr, format="%(levelname)s %(message)s")

async def main():
    journal = await SqliteJournal.open(Path(sys.argv[1]))
    limits = Limits(daily=10, concurrent=10, duplicate_window=None)
    body = {"prompt": "in memory"}
    record = (await journal.reserve("kling_generate_video", "/kling/videos", body, limits)).record
    await journal.submitted(record.entry_id, "task-1", None)
    print(journal.path, (await journal.get("task-1")).state)
    await journal.aclose()

anyio.run(main)
"""


# --- Several processes --------------------------------------------------------------------

WRITER = """
import sys, time
from pathlib import Path
import anyio
from kling_mcp.tasks.journal import Limits, StatusUpdate
from kling_mcp.tasks.store import open_journal

async def main():
    journal = await open_journal(Path(sys.argv[1]), sys.argv[4] or None)
    label, count = sys.argv[2], int(sys.argv[3])
    unlimited = Limits(daily=10**6, concurrent=10**6, duplicate_window=None)
    for number in range(count):
        task_id = f"{label}-{number}"
        body = {"prompt": task_id}
        started = time.monotonic()
        try:
            reserved = await journal.reserve("kling_generate_video", "/kling/videos", body, unlimited)
            await journal.submitted(reserved.record.entry_id, task_id, None)
            update = StatusUpdate(task_id, "succeeded", "succeed", video_url="https://cdn.test/v")
            await journal.record_statuses([update])
        except BaseException as error:  # which write failed, after how long a wait, with which code
            code = getattr(error, "sqlite_errorname", "")
            print(f"{task_id} failed after {time.monotonic() - started:.3f} s {code}", file=sys.stderr)
            raise
        assert (await journal.get(task_id)).state == "succeeded"
        await journal.list_tasks(limit=10)
    await journal.aclose()

anyio.run(main)
"""


async def test_processes_share_one_journal(store: Store, tmp_path: Path) -> None:
    count = 100
    logs = [tmp_path / f"child{index}.log" for index in range(2)]
    children = []
    for index, log in enumerate(logs):
        with log.open("wb") as stderr:
            command = [
                sys.executable, "-c", WRITER, str(store.data_dir), f"child{index}", str(count),
                store.database_url or "",
            ]  # fmt: skip
            children.append(await anyio.open_process(command, stdout=subprocess.DEVNULL, stderr=stderr))
    journal = await store.open()  # opened while the children open and set it up too
    written = 0
    with anyio.fail_after(120):
        # The parent keeps writing until both children are done, so the writes overlap.
        while written < count or any(child.returncode is None for child in children):
            await start(journal, f"parent-{written}")
            await journal.record_statuses([succeeded(f"parent-{written}")])
            written += 1
        for child in children:
            await child.wait()
    errors = [log.read_text() for log in logs]
    assert [child.returncode for child in children] == [0, 0], errors
    assert errors == ["", ""]  # no "database is locked", nor anything else

    records = await all_tasks(journal)
    await journal.aclose()
    expected = {f"child{index}-{number}" for index in range(2) for number in range(count)}
    expected |= {f"parent-{number}" for number in range(written)}
    assert sorted(record.task_id or "" for record in records) == sorted(expected)
    assert {record.state for record in records} == {"succeeded"}
