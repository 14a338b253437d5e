"""The task service on its own, as the tools call it: a paid order is reserved, uploaded and sent
once; one that fails before it is sent gives its reservation back, one whose fate is unknown keeps
it counted, one the API accepted keeps its task id whatever befalls the call; a cancel stops an
order not sent yet; and no owner reads or reuses another's tasks or uploads.
"""

from __future__ import annotations

import dataclasses
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from kling_mcp.api.client import HttpPool, KlingClient, TaskStatus
from kling_mcp.api.errors import KlingError
from kling_mcp.domain.local_files import LocalFile, check_local_file
from kling_mcp.emulator import Emulator, Fault
from kling_mcp.policy import Policy
from kling_mcp.settings import Settings
from kling_mcp.tasks.callers import Caller
from kling_mcp.tasks.journal import Limits, Reserved, TaskRecord
from kling_mcp.tasks.service import (
    Order,
    SavedFile,
    Started,
    TaskError,
    TaskService,
    last_status,
    running_service,
)
from kling_mcp.tasks.store import open_journal
from tests import media
from tests.emulated import CALL_LIMIT, TOKEN, emulated, eventually

pytestmark = pytest.mark.anyio

ENDPOINT = "/kling/videos"
TOOL = "kling_generate_video"
UPLOADS = "/api/v1/files/"
NOTHING_SENT = "nothing was sent, nothing was charged"


@dataclass
class Said:
    """What the service told one call while it ran."""

    messages: list[str] = field(default_factory=list)

    async def __call__(self, message: str) -> None:
        self.messages.append(message)


@dataclass
class Running:
    """A task service against the emulator, and its callers."""

    tasks: TaskService
    client: KlingClient
    """The user's client: it has the token the emulator takes (the server's own may not)."""
    emulator: Emulator
    pictures: Path
    settings: Settings
    http: HttpPool

    def caller(self, owner: str = "alice", token: str = TOKEN) -> Caller:
        if token == TOKEN:
            return Caller(self.client, owner)
        return Caller(KlingClient(dataclasses.replace(self.settings, api_token=token), self.http), owner)

    def picture(self, name: str = "cat.png", content: bytes | None = None) -> LocalFile:
        path = self.pictures / name
        path.write_bytes(content or media.png())
        return check_local_file("start_image_url", str(path), "image", [self.pictures])

    async def start(self, order: Order, owner: str = "alice", say: Said | None = None) -> Started:
        deadline = anyio.current_time() + 10
        with anyio.fail_after(CALL_LIMIT):  # a twin waited for forever fails the test, not hangs it
            return await self.tasks.start(self.caller(owner), order, submit_by=deadline, say=say or Said())

    async def entries(self, owner: str = "alice") -> list[TaskRecord]:
        records, _ = await self.tasks.list(owner=owner)
        return records

    async def entry(self, entry_id: str, owner: str = "alice") -> TaskRecord:
        record = await self.tasks.entry(self.caller(owner), entry_id)
        assert record is not None
        return record

    def finish(self, task_id: str) -> None:
        """The emulated task is done from now on."""
        self.emulator.tasks[task_id].finishes_at = 0.0


@asynccontextmanager
async def running(tmp_path: Path, task_seconds: float = 60.0, **overrides: Any) -> AsyncIterator[Running]:
    """A service on its own journal; `overrides` are the server's settings (its token among them)."""
    emulator = Emulator(task_seconds=task_seconds)
    pictures = tmp_path / "pictures"
    pictures.mkdir(parents=True)
    async with emulated(emulator, tmp_path, **overrides) as settings, AsyncExitStack() as stack:
        http = HttpPool()
        stack.push_async_callback(http.aclose)
        server_client = KlingClient(settings, http)
        user_client = KlingClient(dataclasses.replace(settings, api_token=TOKEN), http)
        policy = Policy.of(settings)
        tasks = await stack.enter_async_context(running_service(settings, policy, http, server_client))
        yield Running(tasks, user_client, emulator, pictures, settings, http)


def text_order(prompt: str = "a fox", **options: Any) -> Order:
    return Order(TOOL, ENDPOINT, {"action": "text2video", "prompt": prompt, "async": True}, {}, **options)


def image_order(file: LocalFile, prompt: str = "it blinks", **options: Any) -> Order:
    body = {"action": "image2video", "prompt": prompt, "start_image_url": str(file.path), "async": True}
    return Order("kling_generate_video_from_image", ENDPOINT, body, {str(file.path): file}, **options)


# --- Starting: sent once, with its files uploaded ----------------------------------------------


async def test_an_order_is_uploaded_sent_once_and_recorded_running(tmp_path: Path) -> None:
    said = Said()
    async with running(tmp_path) as service:
        cat = service.picture()
        started = await service.start(image_order(cat), say=said)
        (record,) = await service.entries()
        assert await service.tasks.record(started.task_id, owner="alice") == record
    (sent,) = service.emulator.submissions
    (hosted,) = service.emulator.uploads.files
    assert sent["start_image_url"].endswith(f"/files/{hosted}")
    assert not started.twin
    assert (started.task_id, started.record.state) == (record.task_id, "running")
    assert record.body["start_image_url"] == sent["start_image_url"], "the journal keeps what was sent"
    assert record.trace_id is not None
    assert record.trace_id == started.record.trace_id
    assert record.holder is not None, "leased to this server while its call waits"
    assert (record.lease_until or 0) > time.time()
    assert said.messages == ["uploading cat.png, 0.0 of 0.0 MB"]


async def test_a_local_file_in_a_list_is_sent_as_its_hosted_url(tmp_path: Path) -> None:
    async with running(tmp_path) as service:
        cat = service.picture()
        body = {
            "action": "text2video",
            "prompt": "a cat",
            "async": True,
            "references": [{"image": str(cat.path)}, [str(cat.path), "kept"], 3],
        }
        await service.start(Order(TOOL, ENDPOINT, body, {str(cat.path): cat}))
    (sent,) = service.emulator.submissions
    (hosted,) = service.emulator.uploads.files
    url = sent["references"][0]["image"]
    assert url.endswith(f"/files/{hosted}")
    assert sent["references"][1:] == [[url, "kept"], 3]


async def test_a_file_is_uploaded_once_per_owner_and_never_reused_across_owners(tmp_path: Path) -> None:
    async with running(tmp_path) as service:
        cat = service.picture()
        await service.start(image_order(cat))
        await service.start(image_order(cat, allow_duplicate=True))
        assert service.emulator.uploads.received_count == 1, "alice's file was uploaded again"
        await service.start(image_order(cat), owner="bob")
    assert service.emulator.uploads.received_count == 2, "bob was given alice's upload"
    alice, again, bob = (submission["start_image_url"] for submission in service.emulator.submissions)
    assert alice == again != bob


async def test_the_same_path_with_new_content_is_a_new_request(
    tmp_path: Path, kling_log: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path) as service:
        first = await service.start(image_order(service.picture(content=media.png())))
        changed = media.png() + b"\0"  # the same picture and path, other bytes
        second = await service.start(image_order(service.picture(content=changed)))
        moved = await service.start(image_order(service.picture("moved.png", content=changed)))
    assert not second.twin
    assert second.task_id != first.task_id
    assert moved.twin, "the same content elsewhere is the same request"
    assert moved.task_id == second.task_id
    assert len(service.emulator.submissions) == 2
    said = [record.getMessage() for record in kling_log.records]
    assert f"Answering with the running task {second.task_id} instead of a duplicate" in said
    (trace_id,) = [task.trace_id for task in service.emulator.tasks.values() if task.id == first.task_id]
    assert f"Submitted task {first.task_id} to {ENDPOINT} (trace_id {trace_id})" in said


# --- Orders that fail: the reservation is given back, unless the API may have the task ---------


async def test_an_order_the_api_refused_gives_its_reservation_back(tmp_path: Path) -> None:
    async with running(tmp_path, daily_task_limit=1) as service:
        service.emulator.inject(
            ENDPOINT, Fault.status(400, error_code="bad_request", message="prompt is too long")
        )
        with pytest.raises(TaskError, match=r"(?s)^The generation was not started\. .*prompt is too long"):
            await service.start(text_order("too long"))
        (refused,) = await service.entries()
        await service.start(text_order("shorter"))
    assert (refused.state, refused.task_id) == ("not_started", None)
    assert "prompt is too long" in (refused.error_message or "")


async def test_an_order_whose_answer_was_lost_stays_counted(tmp_path: Path) -> None:
    async with running(tmp_path, daily_task_limit=1, read_timeout=0.2) as service:
        service.emulator.inject(ENDPOINT, Fault.delay(1.0))
        with pytest.raises(TaskError, match=r"^The generation may or may not have started\. "):
            await service.start(text_order())
        (lost,) = await service.entries()
        with pytest.raises(TaskError, match="1 paid tasks in the last 24 hours"):
            await service.start(text_order("another"))
    assert lost.state == "maybe_started"
    assert lost.error_message


async def test_an_identical_order_after_a_lost_answer_says_how_long_ago_it_was_sent(tmp_path: Path) -> None:
    async with running(tmp_path, read_timeout=0.2) as service:
        service.emulator.inject(ENDPOINT, Fault.delay(1.0))
        with pytest.raises(TaskError):
            await service.start(text_order())
        with pytest.raises(TaskError, match="its answer was lost") as refused:
            await service.start(text_order())
    ago = re.search(r"An identical request was sent (\d+) s ago", str(refused.value))
    assert ago is not None, refused.value
    assert int(ago[1]) < 10, refused.value
    assert f"{NOTHING_SENT} now" in str(refused.value)
    assert str(refused.value).endswith(
        "your tasks at https://platform.acedata.cloud, or pass allow_duplicate: true to pay for a new task."
    )
    assert len(service.emulator.submissions) == 1


async def test_a_refused_upload_gives_the_reservation_back_and_sends_nothing(tmp_path: Path) -> None:
    async with running(tmp_path, daily_task_limit=1) as service:
        service.emulator.inject(UPLOADS, Fault.status(503))
        with pytest.raises(TaskError, match=r"^Uploading cat\.png failed\. "):
            await service.start(image_order(service.picture()))
        (refused,) = await service.entries()
        assert service.emulator.submissions == []
        await service.start(image_order(service.picture()))
    assert refused.state == "not_started"
    assert (refused.error_message or "").startswith("Uploading cat.png failed.")


async def test_a_call_cancelled_while_uploading_gives_the_reservation_back(tmp_path: Path) -> None:
    async with running(tmp_path, daily_task_limit=1) as service:
        service.emulator.inject(UPLOADS, Fault.delay(30))
        async with anyio.create_task_group() as group:
            group.start_soon(service.start, image_order(service.picture()))
            await eventually(lambda: service.emulator.counts[UPLOADS], "the upload under way")
            group.cancel_scope.cancel()
        (cancelled,) = await service.entries()
        await service.start(text_order("the day's one task"))
    assert cancelled.state == "not_started"
    assert len(service.emulator.submissions) == 1


async def test_a_call_cancelled_while_sending_keeps_its_reservation_counted(tmp_path: Path) -> None:
    async with running(tmp_path, daily_task_limit=1) as service:
        service.emulator.inject(ENDPOINT, Fault.delay(30))
        async with anyio.create_task_group() as group:
            group.start_soon(service.start, text_order())
            await eventually(lambda: service.emulator.submissions, "the submission under way")
            group.cancel_scope.cancel()
        (cancelled,) = await service.entries()
        with pytest.raises(TaskError, match="1 paid tasks in the last 24 hours"):
            await service.start(text_order("another"))
    assert cancelled.state == "maybe_started"


async def test_a_call_cancelled_as_the_api_accepts_its_order_keeps_the_task_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(tmp_path) as service:
        journal = service.tasks._journal
        record_task_id = journal.submitted
        async with anyio.create_task_group() as group:

            async def cancelled_while_the_write_waits_its_turn(*args: Any, **kwargs: Any) -> None:
                group.cancel_scope.cancel()
                await anyio.lowlevel.checkpoint()  # a journal busy with another write waits here
                await record_task_id(*args, **kwargs)

            monkeypatch.setattr(journal, "submitted", cancelled_while_the_write_waits_its_turn)
            group.start_soon(service.start, text_order())
        (entry,) = await service.entries()
        [task_id] = service.emulator.tasks
    assert (entry.state, entry.task_id) == ("running", task_id)


async def test_a_task_the_journal_cannot_record_is_answered_and_logged_with_its_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kling_log: pytest.LogCaptureFixture
) -> None:
    async def the_journal_fails(*args: Any, **kwargs: Any) -> None:
        raise sqlite3.OperationalError("database is locked")

    async with running(tmp_path) as service:
        monkeypatch.setattr(service.tasks._journal, "submitted", the_journal_fails)
        with pytest.raises(TaskError) as raised:
            await service.start(text_order())
        [task] = service.emulator.tasks.values()
    message = str(raised.value)
    assert message.startswith(
        f"Task {task.id} started and is charged (trace_id {task.trace_id}), but the task journal could not "
        "record it (database is locked)"
    )
    assert f"Check it with kling_get_task (task_id {task.id})" in message
    assert message in [record.getMessage() for record in kling_log.records if record.levelname == "ERROR"]


# --- Identical orders ---------------------------------------------------------------------------


async def test_a_twin_never_sent_leaves_the_order_to_the_call_that_waited_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(tmp_path) as service:
        cat = service.picture()
        service.emulator.inject(UPLOADS, Fault.delay(30))  # the first call's upload hangs
        waiting = anyio.Event()
        settled = service.tasks._settled

        async def waits_for_its_twin(twin: Any) -> TaskRecord:
            waiting.set()
            return await settled(twin)

        monkeypatch.setattr(service.tasks, "_settled", waits_for_its_twin)
        answered: list[Started] = []
        stop_first = anyio.CancelScope()

        async def first() -> None:
            with stop_first:
                await service.start(image_order(cat))

        async def second() -> None:
            answered.append(await service.start(image_order(cat)))

        async with anyio.create_task_group() as group:
            group.start_soon(first)
            await eventually(lambda: service.emulator.counts[UPLOADS], "the first upload under way")
            group.start_soon(second)
            await waiting.wait()
            stop_first.cancel()
    (started,) = answered
    assert not started.twin
    assert [submission["prompt"] for submission in service.emulator.submissions] == ["it blinks"]


# --- Orders no call waits for, and cancels ------------------------------------------------------


async def test_an_order_started_without_its_caller_is_sent_and_followed_with_the_callers_token(
    tmp_path: Path,
) -> None:
    # Only the user's token reaches the API (the server's own is refused), and uploads have theirs.
    async with running(tmp_path, api_token="sk-not-the-users", platform_token=TOKEN) as service:
        cat = service.picture()
        service.emulator.inject(ENDPOINT, Fault.delay(0.5))  # the API is slow to answer
        reserved = await service.tasks.start_detached(service.caller(), image_order(cat))
        assert reserved.state == "submitting"
        running_entry = await eventually(
            lambda: _with_task_id(service, reserved.entry_id), "the order sent on its own"
        )
        service.finish(running_entry.task_id)
        done = await eventually(
            lambda: _in_state(service, reserved.entry_id, "succeeded"), "the task followed to its end"
        )
    (sent,) = service.emulator.submissions
    assert sent["start_image_url"].startswith("http"), "the local file was uploaded first"
    assert done.task_id == running_entry.task_id


async def journalled(service: Running, entry_id: str, owner: str = "alice") -> TaskRecord:
    """The entry as the journal has it (no lookup brings it up to date)."""
    (record,) = [record for record in await service.entries(owner) if record.entry_id == entry_id]
    return record


async def _with_task_id(service: Running, entry_id: str) -> TaskRecord | None:
    record = await journalled(service, entry_id)
    return record if record.task_id else None


async def _in_state(service: Running, entry_id: str, state: str) -> TaskRecord | None:
    record = await journalled(service, entry_id)
    return record if record.state == state else None


async def test_an_order_started_without_its_caller_answers_with_its_running_twin(tmp_path: Path) -> None:
    async with running(tmp_path) as service:
        first = await service.start(text_order())
        twin = await service.tasks.start_detached(service.caller(), text_order())
        other = await service.tasks.start_detached(service.caller("bob"), text_order())
    assert (twin.entry_id, twin.task_id) == (first.record.entry_id, first.task_id)
    assert other.entry_id != first.record.entry_id, "bob was answered with alice's task"


async def test_an_order_started_without_its_caller_over_a_limit_is_refused_at_once(tmp_path: Path) -> None:
    async with running(tmp_path, daily_task_limit=0) as service:
        with pytest.raises(TaskError, match="KLING_DAILY_TASK_LIMIT=0"):
            await service.tasks.start_detached(service.caller(), image_order(service.picture()))
    assert (service.emulator.uploads.received_count, service.emulator.submissions) == (0, [])


async def test_a_cancel_before_the_order_is_sent_stops_it_and_gives_its_reservation_back(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, daily_task_limit=1) as service:
        reserved = await service.tasks.start_detached(service.caller(), image_order(service.picture()))
        cancelled = await service.tasks.cancel("alice", reserved.entry_id)  # before its job even runs
        assert cancelled is not None
        assert (cancelled.state, cancelled.error_message) == ("not_started", "Cancelled before it was sent.")
        assert cancelled.cancelled_at is not None
        await service.start(text_order("the day's one task"))
    assert [submission["prompt"] for submission in service.emulator.submissions] == ["the day's one task"]


async def test_a_cancel_while_uploading_stops_the_order(tmp_path: Path) -> None:
    async with running(tmp_path, daily_task_limit=1) as service:
        service.emulator.inject(UPLOADS, Fault.delay(30))
        reserved = await service.tasks.start_detached(service.caller(), image_order(service.picture()))
        await eventually(lambda: service.emulator.counts[UPLOADS], "the upload under way")
        cancelled = await service.tasks.cancel("alice", reserved.entry_id)
        assert cancelled is not None
        assert cancelled.state == "not_started"
        await service.start(text_order("the day's one task"))
    assert len(service.emulator.submissions) == 1


async def test_a_refused_upload_of_an_order_without_its_caller_sends_nothing(tmp_path: Path) -> None:
    async with running(tmp_path, daily_task_limit=1) as service:
        service.emulator.inject(UPLOADS, Fault.status(503))
        reserved = await service.tasks.start_detached(service.caller(), image_order(service.picture()))
        refused = await eventually(
            lambda: _in_state(service, reserved.entry_id, "not_started"), "the reservation given back"
        )
        await service.start(text_order("the day's one task"))
        cancelled = await service.tasks.cancel("alice", reserved.entry_id)
    assert (refused.error_message or "").startswith("Uploading cat.png failed.")
    assert cancelled == refused, "a finished entry is left as it is"
    assert len(service.emulator.submissions) == 1


async def test_a_bug_starting_an_order_without_its_caller_is_logged_and_stops_no_other(
    tmp_path: Path, kling_log: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(tmp_path) as service:
        broken = service.caller(token=TOKEN + "-broken")

        async def submit(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("a bug")

        monkeypatch.setattr(broken.client, "submit", submit)
        reserved = await service.tasks.start_detached(broken, text_order())
        failed = await eventually(
            lambda: _in_state(service, reserved.entry_id, "maybe_started"), "the order given up"
        )
        await service.start(text_order("another"))
    assert failed.error_message == "a bug"
    (logged,) = [record for record in kling_log.records if record.exc_info]
    assert logged.getMessage() == f"Starting the task of journal entry {reserved.entry_id} failed"
    assert len(service.emulator.submissions) == 1


async def test_a_cancel_once_the_order_is_sent_lets_the_task_run_on(tmp_path: Path) -> None:
    async with running(tmp_path) as service:
        reserved = await service.tasks.start_detached(service.caller(), text_order())
        sent = await eventually(lambda: _with_task_id(service, reserved.entry_id), "the order sent")
        cancelled = await service.tasks.cancel("alice", reserved.entry_id)
        assert cancelled is not None
        assert (cancelled.state, cancelled.task_id) == ("running", sent.task_id)
        assert cancelled.cancelled_at is not None
        service.finish(sent.task_id)
        done = await eventually(
            lambda: _in_state(service, reserved.entry_id, "succeeded"), "the task followed to its end"
        )
    assert done.video_url is not None


async def test_no_one_cancels_or_reads_another_owners_entry(tmp_path: Path) -> None:
    async with running(tmp_path) as service:
        reserved = await service.tasks.start_detached(service.caller(), image_order(service.picture()))
        assert await service.tasks.cancel("bob", reserved.entry_id) is None
        assert await service.tasks.entry(service.caller("bob"), reserved.entry_id) is None
        assert await service.tasks.cancel("alice", "no-such-entry") is None
        sent = await eventually(lambda: _with_task_id(service, reserved.entry_id), "alice's order sent")
    assert sent.cancelled_at is None


# --- Following, looking up and saving a task ----------------------------------------------------


@dataclass
class Ticks:
    statuses: list[TaskStatus | None] = field(default_factory=list)

    async def __call__(self, status: TaskStatus | None, error: KlingError | None) -> None:
        self.statuses.append(status)


async def test_following_a_task_waits_for_its_end_and_records_it(tmp_path: Path) -> None:
    async with running(tmp_path, task_seconds=0.3) as service:
        started = await service.start(text_order())
        status = await service.tasks.follow(
            service.caller(), started.task_id, deadline=anyio.current_time() + 10, on_tick=Ticks()
        )
        record = await service.tasks.record(started.task_id, owner="alice")
    assert status is not None
    assert status.state == "succeeded"
    assert record is not None
    assert record.state == "succeeded"


async def test_following_a_task_known_to_be_done_records_it_without_waiting(tmp_path: Path) -> None:
    async with running(tmp_path) as service:
        started = await service.start(text_order())
        service.finish(started.task_id)
        done = await service.client.retrieve(started.task_id, deadline=anyio.current_time() + 10)
        queries = service.emulator.counts["/kling/tasks"]
        status = await service.tasks.follow(
            service.caller(),
            started.task_id,
            deadline=anyio.current_time() + 10,
            on_tick=Ticks(),
            status=done,
        )
        record = await service.tasks.record(started.task_id, owner="alice")
    assert status == done
    assert service.emulator.counts["/kling/tasks"] == queries, "it asked the API again"
    assert record is not None
    assert record.state == "succeeded"


async def test_a_task_still_running_when_the_wait_ends_is_followed_on(tmp_path: Path) -> None:
    async with running(tmp_path) as service:
        started = await service.start(text_order())
        status = await service.tasks.follow(
            service.caller(), started.task_id, deadline=anyio.current_time() + 0.2, on_tick=Ticks()
        )
        assert status is not None
        assert status.state == "running"
        waited = await journalled(service, started.record.entry_id)
        assert waited.holder is None, "its lease is let go for any replica to take it up"
        service.finish(started.task_id)
        done = await eventually(
            lambda: _in_state(service, started.record.entry_id, "succeeded"), "the task followed to its end"
        )
    assert done.video_url is not None


async def test_a_task_done_or_not_started_here_is_not_followed_afterwards(tmp_path: Path) -> None:
    async with running(tmp_path) as service:
        done = await service.start(text_order("done"))
        service.finish(done.task_id)
        deadline = anyio.current_time() + 10
        status = await service.client.retrieve(done.task_id, deadline=deadline)
        elsewhere = await service.client.submit(
            ENDPOINT, {"action": "text2video", "prompt": "not here", "async": True}, deadline=deadline
        )
        running_elsewhere = await service.client.retrieve(elsewhere.task_id, deadline=deadline)
        for task_id, known, journalled in (
            (done.task_id, status, True),
            (elsewhere.task_id, running_elsewhere, False),
        ):
            await service.tasks.follow(
                service.caller(), task_id, deadline=0, on_tick=Ticks(), status=known, journalled=journalled
            )
        before = len(service.emulator.queried_ids)
        waited = await service.start(text_order("waited for"))
        service.finish(waited.task_id)
        await service.tasks.follow(service.caller(), waited.task_id, deadline=deadline, on_tick=Ticks())
    polled = {task_id for ids in service.emulator.queried_ids[before:] for task_id in ids}
    assert waited.task_id in polled
    assert not polled & {done.task_id, elsewhere.task_id}


async def test_a_task_whose_check_is_refused_says_which_task_may_still_run(tmp_path: Path) -> None:
    async with running(tmp_path) as service:
        started = await service.start(text_order())
        with pytest.raises(
            TaskError, match="Could not check on the task; it may still be running"
        ) as refused:
            await service.tasks.follow(
                service.caller(token="sk-revoked"),
                started.task_id,
                deadline=anyio.current_time() + 10,
                on_tick=Ticks(),
            )
    assert f"task_id: {started.task_id}" in str(refused.value)


async def test_an_entry_no_one_here_follows_is_brought_up_to_date(tmp_path: Path) -> None:
    async with running(tmp_path) as service:
        started = await service.start(text_order())  # its call stopped waiting: no one follows it
        service.finish(started.task_id)
        entry = await service.entry(started.record.entry_id)
        queries = service.emulator.counts["/kling/tasks"]
        again = await service.entry(started.record.entry_id)
    assert entry.state == "succeeded"
    assert again == entry
    assert service.emulator.counts["/kling/tasks"] == queries, "a finished entry is not looked up again"


async def test_an_entry_that_cannot_be_brought_up_to_date_is_answered_as_journalled(
    tmp_path: Path, kling_log: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path) as service:
        started = await service.start(text_order())
        entry = await service.tasks.entry(service.caller(token="sk-revoked"), started.record.entry_id)
    assert entry is not None
    assert (entry.state, entry.task_id) == ("running", started.task_id)
    said = [record.getMessage() for record in kling_log.records]
    assert any(
        message.startswith(f"Could not bring task {started.task_id} up to date: ")
        and "invalid_token" in message
        for message in said
    ), said


async def test_an_entry_followed_here_is_answered_from_the_journal(
    tmp_path: Path, kling_log: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path) as service:
        reserved = await service.tasks.start_detached(service.caller(), text_order())  # followed from now on
        sent = await eventually(lambda: _with_task_id(service, reserved.entry_id), "the order sent")
        entry = await service.tasks.entry(service.caller(token="sk-revoked"), reserved.entry_id)
    assert entry is not None
    assert entry.task_id == sent.task_id
    said = [record.getMessage() for record in kling_log.records]
    assert not [message for message in said if message.startswith("Could not bring")], "it was looked up"


async def test_a_lookup_records_what_the_api_says_and_tells_the_listeners(tmp_path: Path) -> None:
    heard: list[dict[str, TaskStatus]] = []

    async def listener(statuses: dict[str, TaskStatus]) -> None:
        heard.append(statuses)

    async with running(tmp_path) as service:
        service.tasks.listen(listener)
        first, second = await service.start(text_order("one")), await service.start(text_order("two"))
        service.finish(first.task_id)
        service.emulator.inject("/kling/tasks", Fault.delay(0.5), times=2)  # the API is slow to answer
        one = await service.tasks.lookup(service.caller(), first.task_id)
        many = await service.tasks.lookup_many(service.caller(), [first.task_id, second.task_id, "unknown"])
        recorded = await service.tasks.record(first.task_id, owner="alice")
        with pytest.raises(TaskError, match="not_found"):
            await service.tasks.lookup(service.caller(), "unknown")
        with pytest.raises(TaskError, match="invalid_token"):
            await service.tasks.lookup_many(service.caller(token="sk-revoked"), [first.task_id])
    assert one.state == "succeeded"
    assert {task_id: status.state for task_id, status in many.items()} == {
        first.task_id: "succeeded",
        second.task_id: "running",
    }
    assert recorded is not None
    assert recorded.state == "succeeded"
    assert heard == [{first.task_id: one}, many]


async def test_saving_a_task_looks_it_up_first_and_answers_its_file(tmp_path: Path) -> None:
    async with running(tmp_path) as service:
        started = await service.start(text_order())
        with pytest.raises(TaskError, match=r"has not succeeded \(it is running\): nothing to save"):
            await service.tasks.save(service.caller(), started.task_id, _unheard_save)
        service.finish(started.task_id)  # the journal still says running
        progress: list[int] = []

        async def on_progress(done_bytes: int, total_bytes: int | None) -> None:
            progress.append(done_bytes)

        record, path = await service.tasks.save(service.caller(), started.task_id, on_progress)
        queries = service.emulator.counts["/kling/tasks"]
        again, same = await service.tasks.save(service.caller(), started.task_id, _unheard_save)
    assert record.state == "succeeded"
    assert record.video_url is not None
    assert path.read_bytes() == service.emulator.video
    assert progress[-1] == len(service.emulator.video), "the save's progress is heard"
    assert (again.state, same) == ("succeeded", path)
    assert service.emulator.counts["/kling/tasks"] == queries, (
        "a task the journal knows succeeded is not looked up"
    )


async def test_no_one_saves_a_task_not_started_here_or_anothers(tmp_path: Path) -> None:
    async with running(tmp_path) as service:
        started = await service.start(text_order())
        service.finish(started.task_id)
        for caller, task_id in ((service.caller("bob"), started.task_id), (service.caller(), "elsewhere")):
            with pytest.raises(TaskError) as refused:
                await service.tasks.save(caller, task_id, _unheard_save)
            assert str(refused.value) == (
                f"kling-mcp did not start task {task_id}, so it keeps no record of it: use "
                "kling_get_task for its video_url and download it from there."
            )
    assert service.emulator.counts["/media"] == 0


async def test_a_save_that_fails_says_why(tmp_path: Path) -> None:
    async with running(tmp_path) as service:
        started = await service.start(text_order())
        service.finish(started.task_id)
        service.emulator.inject("/media", Fault.status(404, error_code="not_found", message="gone"), times=10)
        with pytest.raises(TaskError, match=r"gone|404"):
            await service.tasks.save(service.caller(), started.task_id, _unheard_save)


async def succeeded_unsaved(service: Running) -> TaskRecord:
    """A task of the local owner that succeeded and was looked up, its video not yet saved."""
    started = await service.start(text_order(), owner="")
    service.finish(started.task_id)
    await service.tasks.lookup(service.caller(""), started.task_id)
    record = await service.tasks.record(started.task_id, owner="")
    assert record is not None
    return record


async def test_the_file_of_a_succeeded_task_is_saved_within_the_wait(tmp_path: Path) -> None:
    async with running(tmp_path, auto_download=False) as service:
        stale = await succeeded_unsaved(service)
        assert stale.file_path is None
        unsaved = await service.tasks.saved_file(
            stale, deadline=anyio.current_time() + 10, on_progress=_unheard_save, auto=False
        )
        saved = await service.tasks.saved_file(
            stale, deadline=anyio.current_time() + 10, on_progress=_unheard_save, auto=True
        )
        known = await service.tasks.saved_file(
            stale, deadline=anyio.current_time(), on_progress=_unheard_save, auto=False
        )
    assert unsaved == SavedFile()
    assert saved.path is not None
    assert saved.path.read_bytes() == service.emulator.video
    assert known == saved, "the journal knows the file"


async def test_a_save_not_done_within_the_wait_says_where_the_file_will_be(tmp_path: Path) -> None:
    async with running(tmp_path, auto_download=False) as service:
        record = await succeeded_unsaved(service)
        pending = await service.tasks.saved_file(
            record, deadline=anyio.current_time(), on_progress=_unheard_save, auto=True
        )
    assert pending.path is None
    assert pending.error is None
    assert pending.expected is not None
    assert pending.expected.parent == tmp_path / "videos"


async def test_a_save_that_fails_within_the_wait_says_why(tmp_path: Path) -> None:
    async with running(tmp_path, auto_download=False) as service:
        record = await succeeded_unsaved(service)
        service.emulator.inject("/media", Fault.status(404, error_code="not_found", message="gone"), times=10)
        failed = await service.tasks.saved_file(
            record, deadline=anyio.current_time() + 10, on_progress=_unheard_save, auto=True
        )
    assert failed.path is None
    assert failed.error is not None
    assert "404" in failed.error


async def _unheard_save(done_bytes: int, total_bytes: int | None) -> None:
    pass


# --- Lists and lookups stay within their owner --------------------------------------------------


async def test_the_task_of_a_video_is_found_for_its_owner_only(tmp_path: Path) -> None:
    async with running(tmp_path) as service:
        started = await service.start(text_order())
        service.finish(started.task_id)
        done = await service.tasks.lookup(service.caller(), started.task_id)
        video_id = str(done.response["video_id"])
        found = await service.tasks.with_video(video_id, owner="alice")
        assert await service.tasks.with_video(video_id, owner="bob") is None
        assert await service.tasks.record(started.task_id, owner="bob") is None
    assert found is not None
    assert found.task_id == started.task_id


async def test_a_list_is_the_owners_tasks_filtered_and_paged(tmp_path: Path) -> None:
    async with running(tmp_path) as service:
        before = time.time()
        first = await service.start(text_order("one"))
        second = await service.start(text_order("two"))
        image = await service.start(image_order(service.picture()))
        await service.start(text_order("bob's"), owner="bob")
        service.finish(first.task_id)
        await service.tasks.lookup(service.caller(), first.task_id)
        tasks = service.tasks
        page, cursor = await tasks.list(owner="alice", limit=2)
        rest, end = await tasks.list(owner="alice", limit=2, cursor=cursor)
        succeeded, _ = await tasks.list(owner="alice", states=["succeeded"])
        images, _ = await tasks.list(owner="alice", tool="kling_generate_video_from_image")
        later, _ = await tasks.list(owner="alice", since=time.time() + 60)
        since, _ = await tasks.list(owner="alice", since=before)
        with pytest.raises(TaskError, match=r"^cursor: "):
            await tasks.list(owner="alice", cursor="not-a-cursor")
    assert [record.task_id for record in page + rest] == [image.task_id, second.task_id, first.task_id]
    assert end is None
    assert [record.task_id for record in succeeded] == [first.task_id]
    assert [record.task_id for record in images] == [image.task_id]
    assert (later, len(since)) == ([], 3)


async def test_a_hosted_users_tasks_are_taken_over_with_their_token(tmp_path: Path) -> None:
    async with running(tmp_path) as service:
        await service.start(text_order())
        await service.tasks.take_over(service.caller())  # every task is still this server's to follow
        secret = await service.tasks.shared_secret("owner-key")
        assert await service.tasks.shared_secret("owner-key") == secret
        assert await service.tasks.shared_secret("another") != secret
    assert len(secret) == 32


async def test_over_the_daily_limit_the_refusal_says_when_the_next_task_frees_up(tmp_path: Path) -> None:
    async with running(tmp_path, daily_task_limit=1) as service:
        # Another server on the journal paid for one five hours ago.
        earlier = await open_journal(service.settings.data_dir, clock=lambda: time.time() - 5 * 3600)
        limits = Limits(daily=1, concurrent=1, duplicate_window=None)
        paid = await earlier.reserve(TOOL, ENDPOINT, {"prompt": "earlier"}, limits, owner="alice")
        await earlier.aclose()
        assert isinstance(paid, Reserved)
        with pytest.raises(TaskError) as refused:
            await service.start(text_order())
        await service.start(text_order(), owner="bob")  # bob's budget is his own
    frees_at = time.strftime("%H:%M", time.localtime(paid.record.created_at + 24 * 3600))
    assert str(refused.value) == (
        f"The daily budget is used up: 1 paid tasks in the last 24 hours, the limit "
        f"(KLING_DAILY_TASK_LIMIT=1); {NOTHING_SENT}. The next one frees up in 19 h 0 min (at {frees_at}); "
        "to allow more, raise KLING_DAILY_TASK_LIMIT in the server's env."
    )
    assert len(service.emulator.submissions) == 1


async def test_the_refusals_over_the_concurrent_limit_and_with_generation_off_say_what_to_do(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, max_concurrent_tasks=2) as service:
        await service.start(text_order("one"))
        await service.start(text_order("two"))
        with pytest.raises(TaskError) as busy:
            await service.start(text_order("three"))
    async with running(tmp_path / "off", daily_task_limit=0) as service:
        with pytest.raises(TaskError) as off:
            await service.start(text_order())
    assert str(busy.value) == (
        f"2 paid tasks are running at once, the limit (KLING_MAX_CONCURRENT_TASKS=2); {NOTHING_SENT}. "
        "Wait for one to finish (kling_list_tasks shows them), or raise KLING_MAX_CONCURRENT_TASKS in the "
        "server's env."
    )
    assert str(off.value) == (
        f"Generation is switched off (KLING_DAILY_TASK_LIMIT=0); {NOTHING_SENT}. "
        "Set KLING_DAILY_TASK_LIMIT in the server's env to allow paid tasks."
    )


# --- What the journal says, and the refusals -----------------------------------------------------


def journal_entry(state: str, task_id: str | None = "task-1", **fields: Any) -> TaskRecord:
    """A journal entry in `state`, with nothing learned of it unless `fields` say so."""
    known: dict[str, Any] = {name: None for name in TaskRecord.__dataclass_fields__}
    return TaskRecord(
        **{
            **known,
            **dict(
                entry_id="e1",
                owner="",
                tool=TOOL,
                endpoint=ENDPOINT,
                body={},
                body_hash="h",
                created_at=1.0,
                updated_at=1.0,
            ),
            "state": state,
            "task_id": task_id,
            **fields,
        }
    )


def test_the_last_status_of_an_entry_is_what_the_journal_recorded() -> None:
    assert last_status(journal_entry("submitting", task_id=None)) is None
    assert last_status(journal_entry("running", upstream_state="processing", trace_id="t1")) == TaskStatus(
        "task-1",
        "running",
        "processing",
        {"video_url": None, "video_id": None, "duration": None, "error": None},
        "t1",
    )
    succeeded = journal_entry(
        "succeeded", video_url="https://cdn/v.mp4", video_id="v1", duration=5.1, error_code="x"
    )
    assert last_status(succeeded) == TaskStatus(
        "task-1",
        "succeeded",
        None,
        {"video_url": "https://cdn/v.mp4", "video_id": "v1", "duration": 5.1, "error": None},
    )
    failed = journal_entry(
        "failed", error_code="moderation_blocked", error_message="blocked", upstream_state="failed"
    )
    status = last_status(failed)
    assert status is not None
    assert (status.state, status.failure) == (
        "failed",
        ("moderation_blocked", "blocked"),
    )
    assert status.response["error"] == {"code": "moderation_blocked", "message": "blocked"}
