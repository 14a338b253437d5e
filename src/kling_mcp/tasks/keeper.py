"""What happens to a paid task after it is submitted, whether or not a call still waits for it.

Every status the poller sees is written to the journal; a task that succeeds has its video saved
into the output directory (unless KLING_AUTO_DOWNLOAD=0); and on start the tasks a stopped
server left running are followed again, and finished videos it never saved are saved. So a
video that was paid for reaches the disk even when the call that asked for it is long gone.

Replicas of a hosted server share the journal, and leases keep them from polling one task
twice: a call holds the lease of the task it waits for, short and renewed every few seconds
while it waits, and a user's next request on any replica takes over that user's unfinished
tasks whose lease has run out (their replica died), bringing them up to date with that
request's token. A replica that dies frees its tasks within LEASE_SECONDS, however long its
calls meant to wait.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup

if TYPE_CHECKING:
    from kling_mcp.api.downloads import Downloader

from kling_mcp.api.client import QUERY_BUDGET, HttpPool, KlingClient, TaskStatus
from kling_mcp.api.errors import KlingError
from kling_mcp.errors import KlingMcpError
from kling_mcp.logs import logger
from kling_mcp.tasks.callers import Caller
from kling_mcp.tasks.journal import StatusUpdate, TaskJournal, TaskRecord
from kling_mcp.tasks.poller import OnStatuses, TaskPoller

OnSaveProgress = Callable[[int, int | None], Awaitable[None]]
LEASE_SECONDS = 10.0
"""How long a lease lasts unless renewed: a replica that dies frees its tasks this soon."""
RENEW_EVERY_SECONDS = LEASE_SECONDS / 3
"""How often the leases of the tasks calls wait for are renewed (all in one write)."""
TAKE_OVER_LEASE_SECONDS = QUERY_BUDGET + LEASE_SECONDS


class SaveError(KlingMcpError):
    """The video could not be saved; the message says why and what to do. The link is kept."""


@dataclass(eq=False)
class Saving:
    """One save of a task's video, which any number of callers may wait for."""

    done: anyio.Event = field(default_factory=anyio.Event)
    path: Path | None = None
    error: str | None = None
    listeners: list[OnSaveProgress] = field(default_factory=list)

    async def progress(self, done_bytes: int, total_bytes: int | None) -> None:
        for listener in list(self.listeners):
            await listener(done_bytes, total_bytes)


class TaskKeeper:
    def __init__(
        self,
        journal: TaskJournal,
        client: KlingClient,
        poller: TaskPoller,
        background: TaskGroup,
        *,
        http: HttpPool,
        output_dir: Path,
        auto_download: bool,
    ) -> None:
        self.journal = journal
        self._client = client
        self._poller = poller
        self._http = http
        self._output_dir = output_dir
        self._loaded_downloader: Downloader | None = None
        self._background = background
        self._auto_download = auto_download
        self._saving: dict[str, Saving] = {}
        self._decoding = anyio.CapacityLimiter(1)
        """Contact sheets are made one at a time: each decodes a whole video (memory, both cores)."""
        self._waited_for: Counter[str] = Counter()
        """The tasks calls wait for here (how many calls each), whose leases are renewed."""
        self._renewing = False
        self.holder = uuid.uuid4().hex
        """This server's name on the leases it holds."""
        self.listeners: list[OnStatuses] = []
        """Told every status seen, after it is recorded (resource subscriptions listen here)."""
        poller.on_statuses = self.observe

    async def resume(self) -> None:
        """Take up what a stopped server left: follow its running tasks, save its finished videos."""
        unfinished = await self.journal.unfinished()
        for record in unfinished:
            if record.task_id:
                self._poller.follow(record.task_id)
        undownloaded = await self.journal.undownloaded() if self._auto_download else []
        for record in undownloaded:
            self.save_soon(record)
        if unfinished or undownloaded:
            logger.info(
                "Resumed %d running task(s) and %d unsaved video(s) from the journal",
                len(unfinished),
                len(undownloaded),
            )

    @asynccontextmanager
    async def leased(self, task_id: str) -> AsyncIterator[bool]:
        """Hold `task_id`'s lease while a call waits for it: yields whether it is held now.

        The lease is renewed every RENEW_EVERY_SECONDS while the block runs (and taken then if
        another holder's has run out), so how long the call waits does not matter.
        """
        held = await self.journal.hold([task_id], holder=self.holder, lease_seconds=LEASE_SECONDS)
        self._waited_for[task_id] += 1
        self._renew_soon()
        try:
            yield bool(held)
        finally:
            self._waited_for[task_id] -= 1
            if not self._waited_for[task_id]:
                del self._waited_for[task_id]
                with anyio.CancelScope(shield=True):
                    await self.journal.release([task_id], holder=self.holder)

    def _renew_soon(self) -> None:
        if not self._renewing:
            self._renewing = True
            self._background.start_soon(self._renew_leases)

    async def _renew_leases(self) -> None:
        """Renew, in one write, the leases of every task a call waits for here; for the server's life."""
        while True:
            await anyio.sleep(RENEW_EVERY_SECONDS)
            if not self._waited_for:
                continue
            try:
                await self.journal.hold(
                    list(self._waited_for), holder=self.holder, lease_seconds=LEASE_SECONDS
                )
            except Exception:  # a journal hiccup must not stop the renewals: the next one may pass
                logger.exception("Renewing the leases of %d waited-for task(s) failed", len(self._waited_for))

    async def take_over(self, caller: Caller) -> None:
        """Bring up to date, with `caller`'s token, the caller's tasks that no replica watches.

        A task is orphaned when its lease is free or ran out and the journal heard nothing of it
        for LEASE_SECONDS: so a task another replica has just submitted, and is about to wait
        for, is left to it. A read finds the orphans; only when there are any is a claim written.
        """
        if not any(map(_orphaned, await self.journal.unfinished(owner=caller.owner))):
            return
        claimed = await self.journal.claim_unfinished(
            owner=caller.owner, holder=self.holder, lease_seconds=TAKE_OVER_LEASE_SECONDS
        )
        orphans = [record.task_id for record in claimed if record.task_id and _quiet(record)]
        try:
            if orphans:
                deadline = anyio.current_time() + QUERY_BUDGET
                await self.observe(await caller.client.retrieve_batch(orphans, deadline=deadline))
                logger.info("Took over %d task(s) no replica was watching", len(orphans))
        except KlingError as error:
            logger.warning("Could not bring %d unwatched task(s) up to date: %s", len(orphans), error)
        finally:
            with anyio.CancelScope(shield=True):
                await self.journal.release(
                    [record.task_id for record in claimed if record.task_id], holder=self.holder
                )

    async def observe(self, statuses: dict[str, TaskStatus]) -> None:
        """Record what a poll or a lookup saw, tell the listeners; save each video that just became ready."""
        await self.journal.record_statuses([StatusUpdate.from_status(status) for status in statuses.values()])
        for listener in self.listeners:
            await listener(statuses)
        if not self._auto_download:
            return
        for status in statuses.values():
            if status.state == "succeeded" and status.task_id not in self._saving:
                record = await self.journal.get(status.task_id)
                if record is not None and record.file_path is None:
                    self.save_soon(record)

    @property
    def _downloader(self) -> Downloader:
        """Made on first use: it brings httpx, which the server's start-up does without."""
        if self._loaded_downloader is None:
            from kling_mcp.api.downloads import Downloader

            self._loaded_downloader = Downloader(self._http.client(), self._output_dir)
        return self._loaded_downloader

    def expected_path(self, record: TaskRecord) -> Path:
        return self._downloader.expected_path(
            record.task_id or record.entry_id, record.prompt, record.created_at
        )

    def save_soon(self, record: TaskRecord) -> Saving:
        """Start saving `record`'s video in the background (once), and return the save to wait on."""
        task_id = record.task_id or ""
        saving = self._saving.get(task_id)
        if saving is None:
            saving = self._saving[task_id] = Saving()
            self._background.start_soon(self._save, record, saving)
        return saving

    async def save(self, record: TaskRecord, on_progress: OnSaveProgress | None = None) -> Path:
        """Save `record`'s video now (or join the save under way) and return its path."""
        saving = self.save_soon(record)
        if on_progress is not None:
            saving.listeners.append(on_progress)
        await saving.done.wait()
        if saving.path is None:
            raise SaveError(saving.error or "The video could not be saved.")
        return saving.path

    async def _save(self, record: TaskRecord, saving: Saving) -> None:
        from kling_mcp.api.downloads import DownloadError

        task_id = record.task_id or ""
        try:
            url = record.video_url or await self._fresh_link(task_id)
            if url is None:
                raise SaveError(f"Task {task_id} has no video link yet: it has not succeeded.")
            saving.path = await self._downloader.save(
                task_id,
                url,
                prompt=record.prompt,
                created_at=record.created_at,
                refresh_url=lambda: self._fresh_link(task_id),
                on_progress=saving.progress,
            )
            await self.journal.record_file(task_id, saving.path)
            logger.info("Saved the video of task %s to %s", task_id, saving.path)
            await anyio.to_thread.run_sync(_make_contact_sheet, saving.path, limiter=self._decoding)
        except (DownloadError, SaveError, KlingError) as error:
            saving.error = str(error)
            logger.warning("Could not save the video of task %s: %s", task_id, error)
            await self.journal.record_download_error(task_id, saving.error)
        finally:
            del self._saving[task_id]
            saving.done.set()

    async def _fresh_link(self, task_id: str) -> str | None:
        """The task's video link as the API gives it now (signed links expire)."""
        status = await self._client.retrieve(task_id, deadline=anyio.current_time() + QUERY_BUDGET)
        await self.journal.record_statuses([StatusUpdate.from_status(status)])
        return status.value("video_url")


def _make_contact_sheet(video: Path) -> None:
    """Make the saved video's contact sheet now, off the event loop, for the answers that show it; a
    video without one is still saved (the answer then goes without, or tries again)."""
    from kling_mcp.clips import ClipError, contact_sheet  # loads FFmpeg: only once a video is saved

    try:
        contact_sheet(video)
    except (ClipError, OSError) as error:
        logger.warning("No contact sheet for %s: %s", video, error)


def _orphaned(record: TaskRecord) -> bool:
    """No replica watches the task: its lease is free or ran out, and it has been quiet a while."""
    lease_free = record.holder is None or (record.lease_until or 0.0) <= time.time()
    return lease_free and _quiet(record)


def _quiet(record: TaskRecord) -> bool:
    return record.updated_at <= time.time() - LEASE_SECONDS
