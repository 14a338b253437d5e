"""The task service: the one owner of a paid task's life, from its reservation to its saved file.

`start` reserves the task (limits, a running twin and the journal row are one atomic step in the
journal, so parallel calls, processes and replicas cannot overrun a limit or pay twice for one
request), uploads its local files, and submits it exactly once. `follow` waits for it, holding
its lease, records what it learns and has the video saved; the lookups, lists and saves the tools
need go through here too. The service knows nothing of MCP: a tool validates its request, calls
the service and renders what it answers; a `TaskError` carries the words the user reads.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup

from kling_mcp.api.client import QUERY_BUDGET, HttpPool, KlingClient, TaskStatus
from kling_mcp.api.errors import KlingError
from kling_mcp.domain.local_files import MB, LocalFile
from kling_mcp.errors import NOTHING_SENT, KlingMcpError
from kling_mcp.logs import logger
from kling_mcp.policy import Policy
from kling_mcp.settings import Settings
from kling_mcp.tasks.callers import Caller
from kling_mcp.tasks.journal import (
    CursorError,
    Limits,
    OverLimit,
    Reserved,
    TaskJournal,
    TaskRecord,
    Twin,
)
from kling_mcp.tasks.keeper import LEASE_SECONDS, OnSaveProgress, SaveError, TaskKeeper
from kling_mcp.tasks.poller import OnStatuses, OnTick, TaskPoller
from kling_mcp.tasks.store import open_journal

Say = Callable[[str], Awaitable[None]]
DUPLICATE_WINDOW_SECONDS = 600.0
"""An identical request within this long of a task that still runs is answered with that task."""
TWIN_CHECK_SECONDS = 0.2
"""How often a call waits on the journal for an identical request's task id."""
DETACHED_SUBMIT_SECONDS = 60.0
"""How long the submission of an order started without a caller may take."""


class TaskError(KlingMcpError):
    """A task could not be started, checked or saved; the message says why and what to do next."""


@dataclass(frozen=True)
class Upstream:
    """Where local files are uploaded: the file hosting and its token."""

    http: HttpPool
    base_url: str
    token: str | None


@dataclass(frozen=True)
class Order:
    """One paid task as a tool asks for it: the wire body, and the checked local files it names."""

    tool: str
    endpoint: str
    body: dict[str, Any]
    files: Mapping[str, LocalFile]
    """Each local reference in `body` (as given), checked: uploaded after the reservation."""
    allow_duplicate: bool = False


@dataclass(frozen=True)
class Started:
    """The task an order runs as: its own, or an identical running one (`twin`)."""

    record: TaskRecord
    twin: bool = False

    @property
    def task_id(self) -> str:
        return self.record.task_id or ""


@dataclass(frozen=True)
class SavedFile:
    """Where a succeeded task's video is (`path`), or why it is not, or where it will appear."""

    path: Path | None = None
    error: str | None = None
    expected: Path | None = None


@dataclass(frozen=True)
class _Unsent:
    """An order started without a caller, while a cancel can still stop it: before it is sent."""

    stop: anyio.CancelScope = dataclasses.field(default_factory=anyio.CancelScope)
    settled: anyio.Event = dataclasses.field(default_factory=anyio.Event)
    """Set once the order is stopped, or past stopping."""


class TaskService:
    def __init__(
        self,
        journal: TaskJournal,
        keeper: TaskKeeper,
        poller: TaskPoller,
        upstream: Upstream,
        background: TaskGroup,
        *,
        daily_limit: int,
        concurrent_limit: int,
        follow_unwaited: bool,
    ) -> None:
        self._journal = journal
        self._keeper = keeper
        self._poller = poller
        self._upstream = upstream
        self._daily_limit = daily_limit
        self._concurrent_limit = concurrent_limit
        self._follow_unwaited = follow_unwaited
        """Whether a task whose call stopped waiting is followed on with the server's own token."""
        self._background = background
        self._detached: dict[str, _Unsent] = {}
        """The orders started without a caller that a cancel can still stop, by journal entry."""

    # --- Starting a paid task ---

    async def start(self, caller: Caller, order: Order, *, submit_by: float, say: Say) -> Started:
        """Reserve, upload and submit `order` once; or answer with an identical task still running.

        Raises TaskError, before anything is uploaded or sent, when a limit is reached.
        """
        while True:
            outcome = await self._admit(caller, order)
            if isinstance(outcome, Reserved):
                return await self._send(caller, order, outcome.record, submit_by, say)
            twin = await self._settled(outcome)
            if twin.task_id:
                logger.info("Answering with the running task %s instead of a duplicate", twin.task_id)
                return Started(twin, twin=True)
            if twin.state != "not_started":
                raise TaskError(_twin_may_have_started(twin))
            # The twin was never sent: reserve again, and this call may be the one that sends it.

    async def start_detached(self, caller: Caller, order: Order) -> TaskRecord:
        """Reserve `order` now and go on without the caller: upload, submit, follow and save.

        The entry answered is in the journal when this returns: the order's own, or that of an
        identical request still running. Raises TaskError, before anything is sent, when a limit
        is reached.
        """
        outcome = await self._admit(caller, order)
        if isinstance(outcome, Twin):
            return outcome.record
        # Stoppable from now, not from when the job first runs: a cancel that comes first is not lost.
        unsent = self._detached[outcome.record.entry_id] = _Unsent()
        self._background.start_soon(self._run_detached, caller, order, outcome.record, unsent)
        return outcome.record

    async def _run_detached(self, caller: Caller, order: Order, record: TaskRecord, unsent: _Unsent) -> None:
        try:
            if not await self._uploaded_unless_cancelled(caller, order, record, unsent):
                return
            # Past the uploads a cancel stops nothing: cut off while sending, a paid request would be
            # out with its task id lost. The request goes, and the task runs on (see `cancel`).
            submit_by = anyio.current_time() + DETACHED_SUBMIT_SECONDS
            started = await self._send(caller, order, record, submit_by, _unheard)
        except TaskError:
            return  # the journal (or, failing it, the log) has the failure
        except Exception:  # a bug must not take the server's other tasks down with this one
            logger.exception("Starting the task of journal entry %s failed", record.entry_id)
            return
        if self._follow_unwaited:
            self._poller.follow(started.task_id, caller.client)

    async def _uploaded_unless_cancelled(
        self, caller: Caller, order: Order, record: TaskRecord, unsent: _Unsent
    ) -> bool:
        """Upload the order's files (the journal keeps their URLs for `_send`) unless a cancel stops
        it first; whether to send the order. Stopped or refused, the entry is not_started."""
        try:
            with unsent.stop:
                await self._uploaded(order.files, caller.owner, _unheard)
            if unsent.stop.cancel_called:
                await self._failed(record, maybe_started=False, message="Cancelled before it was sent.")
            return not unsent.stop.cancel_called
        except BaseException as error:  # an upload refused, or the server stopping: nothing was sent
            await self._failed(record, maybe_started=False, message=str(error) or type(error).__name__)
            raise
        finally:
            del self._detached[record.entry_id]
            unsent.settled.set()

    async def cancel(self, owner: str, entry_id: str) -> TaskRecord | None:
        """Note the cancel of the owner's task `entry_id` if it is still running, and stop it if its
        request is not sent yet (answering once it is stopped, or past stopping); the entry, or None
        when the owner has none of that id. A task the API already has goes on there (and is charged):
        its video is still saved when it is done. A finished task is left as it is."""
        record = await self._journal.cancel(entry_id, owner=owner)  # a finished one is left as it is
        if record is None or record.cancelled_at is None:
            return record
        if (unsent := self._detached.get(entry_id)) is not None:
            unsent.stop.cancel()
            await unsent.settled.wait()
            record = await self._journal.entry(entry_id, owner=owner)
        return record

    async def _admit(self, caller: Caller, order: Order) -> Reserved | Twin:
        """The order's reservation, or the identical task still running; TaskError over a limit."""
        limits = Limits(
            daily=self._daily_limit,
            concurrent=self._concurrent_limit,
            duplicate_window=None if order.allow_duplicate else DUPLICATE_WINDOW_SECONDS,
        )
        # Local files are keyed by their content: the same request is the same whatever the upload URL.
        keyed = _swap(order.body, {given: f"sha256:{file.sha256}" for given, file in order.files.items()})
        outcome = await self._journal.reserve(order.tool, order.endpoint, keyed, limits, owner=caller.owner)
        if isinstance(outcome, OverLimit):
            raise TaskError(_over_limit(outcome))
        return outcome

    async def _settled(self, twin: Twin) -> TaskRecord:
        """The identical request once its submission is answered (it has a task id, or failed)."""
        record = twin.record
        while record.state == "submitting":
            await anyio.sleep(TWIN_CHECK_SECONDS)
            record = await self._journal.entry(record.entry_id, owner=record.owner) or record
        return record

    async def _send(
        self, caller: Caller, order: Order, record: TaskRecord, submit_by: float, say: Say
    ) -> Started:
        """Upload the order's files and submit it, once; the journal learns either outcome."""
        sending = False
        try:
            body = _swap(order.body, await self._uploaded(order.files, caller.owner, say))
            sending = True
            submitted = await caller.client.submit(order.endpoint, body, deadline=submit_by)
        except KlingError as error:
            await self._failed(record, maybe_started=error.maybe_submitted, message=str(error))
            outcome = "may or may not have started" if error.maybe_submitted else "was not started"
            raise TaskError(f"The generation {outcome}. {error}") from None
        except BaseException as error:
            # An upload refused, or the call cancelled: a paid request may be out only if it was sending.
            await self._failed(record, maybe_started=sending, message=str(error) or type(error).__name__)
            raise
        try:
            with anyio.CancelScope(shield=True):  # the API has the task: a cancel must not lose its id
                await self._journal.submitted(
                    record.entry_id,
                    submitted.task_id,
                    submitted.trace_id,
                    owner=caller.owner,
                    body=body if order.files else None,
                    holder=self._keeper.holder,
                    lease_seconds=LEASE_SECONDS,
                )
        except Exception as error:
            message = _started_unrecorded(submitted.task_id, submitted.trace_id, error)
            logger.error(message)  # the log keeps the task id where the journal could not
            raise TaskError(message) from error
        logger.info(
            "Submitted task %s to %s (trace_id %s)", submitted.task_id, order.endpoint, submitted.trace_id
        )
        return Started(
            dataclasses.replace(
                record, task_id=submitted.task_id, trace_id=submitted.trace_id, state="running"
            )
        )

    async def _failed(self, record: TaskRecord, *, maybe_started: bool, message: str) -> None:
        """Release the reservation (nothing was sent), or keep it counted (the API may have it)."""
        with anyio.CancelScope(shield=True):
            await self._journal.submission_failed(
                record.entry_id, maybe_started=maybe_started, message=message, owner=record.owner
            )

    async def _uploaded(self, files: Mapping[str, LocalFile], owner: str, say: Say) -> dict[str, str]:
        """Each local reference's hosted URL: uploaded now, or remembered from an earlier upload."""
        hosted: dict[str, str] = {}
        for given, file in files.items():
            url = await self._journal.hosted_url(file.sha256, owner=owner)
            if url is None:
                url = await self._upload(file, say)
                await self._journal.remember_upload(
                    file.sha256, url, size=file.size, mime=file.mime, owner=owner
                )
            hosted[given] = url
        return hosted

    async def _upload(self, file: LocalFile, say: Say) -> str:
        from kling_mcp.api.uploads import UploadError, upload  # brings httpx, which start-up does without

        async def progress(sent: int, total: int) -> None:
            await say(
                f"uploading {file.name}, {sent / MB:.1f} of {total / MB:.1f} MB"
            )  # as the size limits count

        upstream = self._upstream
        try:
            return await upload(upstream.http.client(), upstream.base_url, upstream.token, file, progress)
        except UploadError as error:
            raise TaskError(f"Uploading {file.name} failed. {error}") from None  # it says what was sent

    # --- Following a task ---

    async def follow(
        self,
        caller: Caller,
        task_id: str,
        *,
        deadline: float,
        on_tick: OnTick,
        status: TaskStatus | None = None,
        journalled: bool = True,
    ) -> TaskStatus | None:
        """The task's last status once it is done or `deadline` passes (`status`, if done already).

        While it waits, this server holds the task's lease, so no other replica polls it. A
        journalled task still running when the wait ends is followed on where the server has a
        token of its own, so it is recorded and saved with no call waiting; otherwise its lease
        is let go for the user's next request (on any replica) to take it up.
        """
        if status is None or (not status.done and deadline > anyio.current_time()):
            async with self._keeper.leased(task_id):
                status = await self._wait(caller, task_id, deadline, on_tick) or status
        if status is not None:
            await self._keeper.observe({task_id: status})
        if journalled and (status is None or not status.done) and self._follow_unwaited:
            self._poller.follow(task_id)
        return status

    async def _wait(
        self, caller: Caller, task_id: str, deadline: float, on_tick: OnTick
    ) -> TaskStatus | None:
        try:
            return await self._poller.wait(task_id, deadline=deadline, on_tick=on_tick, client=caller.client)
        except KlingError as error:
            error.task_id = error.task_id or task_id
            raise TaskError(f"Could not check on the task; it may still be running. {error}") from None

    async def saved_file(
        self, record: TaskRecord, *, deadline: float, on_progress: OnSaveProgress, auto: bool
    ) -> SavedFile:
        """The video file of a succeeded task: saved (waiting for the save until `deadline` when `auto`)."""
        current = await self.record(record.task_id or "", owner=record.owner) or record
        if current.file_path or not auto:
            return SavedFile(Path(current.file_path) if current.file_path else None)
        saving = self._keeper.save_soon(current)
        saving.listeners.append(on_progress)
        with anyio.move_on_after(max(deadline - anyio.current_time(), 0)):
            await saving.done.wait()
        if saving.path is not None or saving.error is not None:
            return SavedFile(saving.path, saving.error)
        return SavedFile(expected=self._keeper.expected_path(current))

    async def save(
        self, caller: Caller, task_id: str, on_progress: OnSaveProgress
    ) -> tuple[TaskRecord, Path]:
        """Save (again) the video of the caller's succeeded task `task_id`, looking it up if need be."""
        record = await self.record(task_id, owner=caller.owner)
        if record is None:
            raise TaskError(
                f"kling-mcp did not start task {task_id}, so it keeps no record of it: use "
                "kling_get_task for its video_url and download it from there."
            )
        if record.state != "succeeded":
            status = await self.lookup(caller, task_id)
            if status.state != "succeeded":
                raise TaskError(f"Task {task_id} has not succeeded (it is {status.state}): nothing to save.")
            record = await self.record(task_id, owner=caller.owner) or record
        try:
            return record, await self._keeper.save(record, on_progress)
        except SaveError as error:
            raise TaskError(str(error)) from None

    # --- Looking tasks up ---

    async def lookup(self, caller: Caller, task_id: str) -> TaskStatus:
        """The task's state as the API says now, recorded in the journal."""
        try:
            status = await caller.client.retrieve(task_id, deadline=anyio.current_time() + QUERY_BUDGET)
        except KlingError as error:
            raise TaskError(str(error)) from None
        await self._keeper.observe({task_id: status})
        return status

    async def lookup_many(self, caller: Caller, task_ids: list[str]) -> dict[str, TaskStatus]:
        """The states of the tasks the API knows among `task_ids`, in one request, recorded."""
        try:
            found = await caller.client.retrieve_batch(task_ids, deadline=anyio.current_time() + QUERY_BUDGET)
        except KlingError as error:
            raise TaskError(str(error)) from None
        await self._keeper.observe(found)
        return found

    async def entry(self, caller: Caller, entry_id: str) -> TaskRecord | None:
        """The caller's journal entry `entry_id`, brought up to date with the API when no one here
        is following it (another replica's task, or one a stopped server left)."""
        record = await self._journal.entry(entry_id, owner=caller.owner)
        if record is None or record.state != "running" or not record.task_id:
            return record
        if not self._poller.watching(record.task_id):
            try:
                await self.lookup(caller, record.task_id)
            except TaskError as error:
                logger.info("Could not bring task %s up to date: %s", record.task_id, error)
            record = await self._journal.entry(entry_id, owner=caller.owner) or record
        return record

    async def with_video(self, video_id: str, *, owner: str) -> TaskRecord | None:
        """The owner's task that made the video `video_id` (None: not one started here)."""
        return await self._journal.with_video(video_id, owner=owner)

    async def record(self, task_id: str, *, owner: str) -> TaskRecord | None:
        """What the journal knows of the owner's task `task_id` (None: not started here)."""
        return await self._journal.get(task_id, owner=owner)

    async def list(
        self,
        *,
        owner: str,
        states: Sequence[str] = (),
        tool: str | None = None,
        since: float | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> tuple[list[TaskRecord], str | None]:
        """The owner's tasks newest first, and the cursor of the next page."""
        try:
            return await self._journal.list_tasks(
                owner=owner, states=states, tool=tool, since=since, limit=limit, cursor=cursor
            )
        except CursorError as error:
            raise TaskError(f"cursor: {error}") from None

    # --- The server's life ---

    async def take_over(self, caller: Caller) -> None:
        """Bring up to date the caller's tasks that no replica watches (a hosted server, per request)."""
        await self._keeper.take_over(caller)

    async def resume(self) -> None:
        """Follow the tasks a stopped server left running, and save the videos it never saved."""
        await self._keeper.resume()

    def listen(self, listener: OnStatuses) -> None:
        """Have `listener` told every task status this server sees, once it is recorded."""
        self._keeper.listeners.append(listener)

    async def ping(self) -> None:
        await self._journal.ping()

    async def shared_secret(self, name: str) -> bytes:
        """The random secret called `name`, the same for every process on the journal."""
        return await self._journal.shared_secret(name)

    def stop_waiting(self) -> None:
        """End every wait now (the server is stopping): each call answers with its task id."""
        self._poller.stop_waiting()


@asynccontextmanager
async def running_service(
    settings: Settings, policy: Policy, http: HttpPool, client: KlingClient
) -> AsyncIterator[TaskService]:
    """The task service with its journal, poller and keeper running, for the server's life."""
    async with AsyncExitStack() as stack:
        poller = TaskPoller(client, min_interval=settings.poll_interval)
        journal = await open_journal(settings.data_dir, settings.database_url)
        stack.push_async_callback(journal.aclose)
        background = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(background.cancel_scope.cancel)
        keeper = TaskKeeper(
            journal,
            client,
            poller,
            background,
            http=http,
            output_dir=settings.output_dir,
            auto_download=policy.saves_videos,
        )
        service = TaskService(
            journal,
            keeper,
            poller,
            Upstream(http, settings.platform_base_url, settings.upload_token),
            background,
            daily_limit=settings.daily_task_limit,
            concurrent_limit=settings.max_concurrent_tasks,
            follow_unwaited=policy.follows_unwaited,
        )
        background.start_soon(poller.run)
        if settings.api_token and policy.follows_unwaited:  # take up what a stopped server left
            background.start_soon(service.resume)
        yield service


def last_status(record: TaskRecord) -> TaskStatus | None:
    """The task's status as the journal last recorded it (None before the API gave it an id)."""
    if record.task_id is None:
        return None
    response: dict[str, Any] = {
        "video_url": record.video_url,
        "video_id": record.video_id,
        "duration": record.duration,
        "error": {"code": record.error_code, "message": record.error_message}
        if record.state == "failed"
        else None,
    }
    state = record.state if record.state in ("succeeded", "failed") else "running"
    return TaskStatus(record.task_id, state, record.upstream_state, response, record.trace_id)


async def _unheard(message: str) -> None:
    """Progress of an order no caller waits for: the journal tells its state instead."""


def _over_limit(over: OverLimit) -> str:
    if over.limit_name == "concurrent":
        return (
            f"{over.count} paid tasks are running at once, the limit (KLING_MAX_CONCURRENT_TASKS="
            f"{over.limit}); {NOTHING_SENT}. Wait for one to finish (kling_list_tasks shows them), or raise "
            "KLING_MAX_CONCURRENT_TASKS in the server's env."
        )
    if over.limit == 0 or over.frees_at is None:
        return (
            f"Generation is switched off (KLING_DAILY_TASK_LIMIT=0); {NOTHING_SENT}. "
            "Set KLING_DAILY_TASK_LIMIT in the server's env to allow paid tasks."
        )
    hours, minutes = divmod(round(max(over.frees_at - time.time(), 0) / 60), 60)
    at = time.strftime("%H:%M", time.localtime(over.frees_at))
    return (
        f"The daily budget is used up: {over.count} paid tasks in the last 24 hours, the limit "
        f"(KLING_DAILY_TASK_LIMIT={over.limit}); {NOTHING_SENT}. The next one frees up "
        f"in {hours} h {minutes} min (at {at}); "
        "to allow more, raise KLING_DAILY_TASK_LIMIT in the server's env."
    )


def _started_unrecorded(task_id: str, trace_id: str | None, error: Exception) -> str:
    return (
        f"Task {task_id} started and is charged (trace_id {trace_id}), but the task journal could not "
        f"record it ({error}), so this server will not follow or save it. Check it with kling_get_task "
        f"(task_id {task_id}); keep the task id until then."
    )


def _twin_may_have_started(twin: TaskRecord) -> str:
    age = time.time() - twin.created_at
    return (
        f"An identical request was sent {age:.0f} s ago and its answer was lost: it may be running and "
        f"charged; {NOTHING_SENT} now. Check kling_list_tasks (state maybe_started) or your tasks at "
        "https://platform.acedata.cloud, or pass allow_duplicate: true to pay for a new task."
    )


def _swap(body: Any, replacements: Mapping[str, str]) -> Any:
    """`body` with every string found in `replacements` replaced, at any depth."""
    if isinstance(body, dict):
        return {key: _swap(value, replacements) for key, value in body.items()}
    if isinstance(body, list):
        return [_swap(item, replacements) for item in body]
    if isinstance(body, str):
        return replacements.get(body, body)
    return body
