"""Running a paid generation: local files uploaded, the budget and duplicates checked, the task
journalled and submitted once, then waited for with progress, and its video saved to disk.

Every paid tool shares the one handler here, `generate`; `kling_get_task` shares the waiting.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ContentBlock, InputRequiredResult, ResourceLink, TextContent

from kling_mcp.api.client import Submitted, TaskStatus
from kling_mcp.api.errors import KlingError
from kling_mcp.logs import logger
from kling_mcp.server.state import AppState
from kling_mcp.server.tools.common import GenerationRequest, VideoTask, video_task, video_text
from kling_mcp.server.tools.local_media import swap_hosted, upload_local_media
from kling_mcp.server.tools.spec import ToolSpec, result_content
from kling_mcp.settings import Settings
from kling_mcp.tasks.callers import Caller
from kling_mcp.tasks.journal import TaskRecord, body_hash
from kling_mcp.tasks.keeper import LEASE_SECONDS

SUBMIT_FLOOR = 10.0
"""Seconds a submission may take even when the caller asked not to wait (timeout 0)."""
# Hosts known to cancel every tool call after a fixed time, and the longest wait that fits inside it.
CALL_CUTOFFS = {"claude-ai": 55.0}
DUPLICATE_WINDOW_SECONDS = 600.0
"""An identical request within this long of a task that still runs is answered with that task."""
DAY_SECONDS = 86_400.0
MEGABYTE = 1_000_000


def paid_tool(name: str, title: str, model: type[GenerationRequest], description: str) -> ToolSpec:
    """The spec of a tool that starts one paid task and answers with its video."""
    handler = functools.partial(generate, tool=name)
    return ToolSpec(name, title, model, VideoTask, handler, description, paid=True, shows_video=True)


async def generate(
    request: GenerationRequest, app: AppState, ctx: Context, caller: Caller, *, tool: str
) -> CallToolResult | InputRequiredResult:
    """Submit one paid generation, then wait for it within the caller's budget."""
    started = anyio.current_time()
    deadline = started + wait_budget(request.timeout, app, ctx)
    report = ProgressReport(ctx, started)
    budget = _Budget(app, caller)
    hosted = await upload_local_media(request, app, ctx, report.say, before_upload=budget.check)
    if isinstance(hosted, InputRequiredResult):
        return hosted
    body = swap_hosted(request.to_wire(), hosted)
    journal = app.keeper.journal
    if not request.allow_duplicate:
        twin = await journal.find_running_duplicate(
            tool, body_hash(body), within_seconds=DUPLICATE_WINDOW_SECONDS, owner=caller.owner
        )
        if twin is not None and twin.task_id:
            return await _answer_with_twin(app, ctx, caller, twin, started, deadline, report)
    await budget.check()
    record = await journal.begin(tool, request.endpoint, body, owner=caller.owner)
    submit_by = max(deadline, started + SUBMIT_FLOOR)
    submitted = await _submit(app, caller, request, body, record, deadline=submit_by)
    report.task_id = submitted.task_id
    await report.say(f"submitted ({request.price_terms()})")
    record = dataclasses.replace(
        record, task_id=submitted.task_id, trace_id=submitted.trace_id, state="running"
    )
    return await follow_through(app, ctx, caller, record.task_id or "", record, started, deadline, report)


async def _submit(
    app: AppState,
    caller: Caller,
    request: GenerationRequest,
    body: dict[str, object],
    record: TaskRecord,
    deadline: float,
) -> Submitted:
    journal = app.keeper.journal
    try:
        submitted = await caller.client.submit(request.endpoint, body, deadline=deadline)
    except KlingError as error:
        await journal.submission_failed(
            record.entry_id, maybe_started=error.maybe_submitted, message=str(error), owner=caller.owner
        )
        outcome = "may or may not have started" if error.maybe_submitted else "was not started"
        raise ToolError(f"The generation {outcome}. {error}") from None
    await journal.submitted(
        record.entry_id,
        submitted.task_id,
        submitted.trace_id,
        owner=caller.owner,
        holder=app.keeper.holder,
        lease_seconds=LEASE_SECONDS,
    )
    logger.info(
        "Submitted task %s to %s (trace_id %s)", submitted.task_id, request.endpoint, submitted.trace_id
    )
    return submitted


async def follow_through(
    app: AppState,
    ctx: Context,
    caller: Caller,
    task_id: str,
    record: TaskRecord | None,
    started: float,
    deadline: float,
    report: ProgressReport,
    *,
    status: TaskStatus | None = None,
    note: str = "",
) -> CallToolResult:
    """Wait for the task (unless `status` says it is done) and its file, then answer.

    While it waits, this server holds the task's lease, so no other replica polls it. A journalled
    task still running when the wait ends is followed on (when the server has a token of its own),
    so it is recorded and saved when done with no call waiting; otherwise the lease is let go, for
    the user's next request (on any replica) to take it up. A cancelled call stops here, and its
    polling with it.
    """
    if status is None or (not status.done and deadline > anyio.current_time()):
        async with app.keeper.leased(task_id):
            status = await wait_for(app, ctx, caller, task_id, deadline, report) or status
    if status is not None:
        await app.keeper.observe({task_id: status})
    if record is not None and (status is None or not status.done) and not app.settings.hosted:
        app.poller.follow(task_id)
    trace_id = record.trace_id if record is not None else None
    known = facts(record) if record is not None else {}
    task = video_task(task_id, status, waited(started), app.settings.demo, trace_id, **known)
    if task.state == "succeeded" and record is not None:
        task = await _with_file(app, record, task, deadline, report)
    if note:
        task = task.model_copy(update={"next_step": f"{note} {task.next_step}"})
    return answer(task)


def facts(record: TaskRecord) -> dict[str, Any]:
    """What the journal knows of a task that the API's status does not say."""
    return {
        "file_path": record.file_path,
        "prompt": record.prompt,
        "model": record.model,
        "mode": record.mode,
        "duration": record.duration or _requested_seconds(record.body),
    }


def _requested_seconds(body: dict[str, Any]) -> float | None:
    """The video length a request asked for: what it is priced by until the API reports the real one."""
    value = body.get("duration")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


async def _with_file(
    app: AppState, record: TaskRecord, task: VideoTask, deadline: float, report: ProgressReport
) -> VideoTask:
    """`task` with the saved file's path once saved within the wait, or where it will appear."""
    current = await app.keeper.journal.get(record.task_id or "", owner=record.owner) or record
    if current.file_path or not app.settings.auto_download:
        return task.model_copy(update={"file_path": current.file_path})
    saving = app.keeper.save_soon(current)

    async def progress(done: int, total: int | None) -> None:
        size = f" of {total / MEGABYTE:.1f}" if total else ""
        await report.say(f"saving the video, {done / MEGABYTE:.1f}{size} MB")

    saving.listeners.append(progress)
    with anyio.move_on_after(max(deadline - anyio.current_time(), 0)):
        await saving.done.wait()
    if saving.path is not None:
        return task.model_copy(update={"file_path": str(saving.path)})
    if saving.error is not None:
        return task.model_copy(update={"next_step": f"Not saved: {saving.error} {task.next_step}"})
    where = app.keeper.expected_path(current)
    return task.model_copy(update={"next_step": f"The video is being saved to {where}. {task.next_step}"})


async def _answer_with_twin(
    app: AppState,
    ctx: Context,
    caller: Caller,
    twin: TaskRecord,
    started: float,
    deadline: float,
    report: ProgressReport,
) -> CallToolResult:
    age = time.time() - twin.created_at
    note = (
        f"An identical request started {age:.0f} s ago is still running, so this answers with its task "
        "instead of paying again (pass allow_duplicate: true for a new paid task)."
    )
    logger.info("Answering with the running task %s instead of a duplicate submission", twin.task_id)
    report.task_id = twin.task_id
    task_id = twin.task_id or ""
    return await follow_through(app, ctx, caller, task_id, twin, started, deadline, report, note=note)


class _Budget:
    """Refuses, before anything is sent or uploaded, a generation over the daily or the concurrent
    limit (a hosted server's are per token); checked once per call, however often asked."""

    def __init__(self, app: AppState, caller: Caller) -> None:
        self._app = app
        self._owner = caller.owner
        self._checked = False

    async def check(self) -> None:
        if not self._checked:
            await _check_budget(self._app, self._owner)
            self._checked = True


async def _check_budget(app: AppState, owner: str) -> None:
    settings, journal = app.settings, app.keeper.journal
    paid = await journal.paid_since(time.time() - DAY_SECONDS, owner=owner)
    if len(paid) >= settings.daily_task_limit:
        raise ToolError(_over_daily_limit(settings, paid))
    running = await journal.running_count(owner=owner)
    if running >= settings.max_concurrent_tasks:
        raise ToolError(
            f"{running} paid tasks are running at once, the limit (KLING_MAX_CONCURRENT_TASKS="
            f"{settings.max_concurrent_tasks}); nothing was sent, nothing was charged. Wait for one to "
            "finish (kling_list_tasks shows them), or raise KLING_MAX_CONCURRENT_TASKS in the server's env."
        )


def _over_daily_limit(settings: Settings, paid: list[float]) -> str:
    limit = settings.daily_task_limit
    if limit == 0:
        return (
            "Generation is switched off (KLING_DAILY_TASK_LIMIT=0); nothing was sent, nothing was charged. "
            "Set KLING_DAILY_TASK_LIMIT in the server's env to allow paid tasks."
        )
    frees = paid[len(paid) - limit] + DAY_SECONDS
    hours, minutes = divmod(round(max(frees - time.time(), 0) / 60), 60)
    at = time.strftime("%H:%M", time.localtime(frees))
    return (
        f"The daily budget is used up: {len(paid)} paid tasks in the last 24 hours, the limit "
        f"(KLING_DAILY_TASK_LIMIT={limit}); nothing was sent, nothing was charged. The next one frees up "
        f"in {hours} h {minutes} min (at {at}); "
        "to allow more, raise KLING_DAILY_TASK_LIMIT in the server's env."
    )


def wait_budget(requested: float | None, app: AppState, ctx: Context) -> float:
    """Seconds to wait: as asked (or the default), but never past a host's known call cutoff."""
    budget = app.settings.default_wait_seconds if requested is None else requested
    params = ctx.session.client_params
    host = params.client_info.name if params is not None else ""
    cutoff = CALL_CUTOFFS.get(host, budget)
    if budget > cutoff:
        logger.info("%s cancels tool calls after about 60 s: waiting %g s, not %g s", host, cutoff, budget)
    return min(budget, cutoff)


async def wait_for(
    app: AppState, ctx: Context, caller: Caller, task_id: str, deadline: float, report: ProgressReport
) -> TaskStatus | None:
    """The task's last status once it is done or `deadline` passes, reporting progress meanwhile."""

    async def on_tick(status: TaskStatus | None, error: KlingError | None) -> None:
        if error is not None:
            state = f"status check failed ({error.kind.value}), retrying"
        elif status is None:
            state = "submitted, waiting for it to start"
        else:
            state = status.upstream_state or "queued"
        await report.say(state)

    await on_tick(None, None)
    try:
        return await app.poller.wait(task_id, deadline=deadline, on_tick=on_tick, client=caller.client)
    except KlingError as error:
        error.task_id = error.task_id or task_id
        raise ToolError(f"Could not check on the task; it may still be running. {error}") from None


class ProgressReport:
    """Strictly increasing progress (seconds waited), each with a message in words that names the
    task once there is one."""

    def __init__(self, ctx: Context, started: float, task_id: str | None = None) -> None:
        self._ctx = ctx
        self._started = started
        self._last = -1.0
        self.task_id = task_id

    async def say(self, message: str) -> None:
        elapsed = anyio.current_time() - self._started
        progress = max(round(elapsed, 1), round(self._last + 0.1, 1))
        self._last = progress
        about = f"Task {self.task_id}: " if self.task_id else ""
        await self._ctx.report_progress(progress, message=f"{about}{message}, {elapsed:.0f} s elapsed")


def waited(started: float) -> float:
    return round(anyio.current_time() - started, 2)


def answer(task: VideoTask) -> CallToolResult:
    content: list[ContentBlock] = [TextContent(type="text", text=video_text(task))]
    if task.file_path:
        path = Path(task.file_path)
        content.append(
            ResourceLink(type="resource_link", name=path.name, uri=path.as_uri(), mime_type="video/mp4")
        )
    return CallToolResult(
        content=content,
        structured_content=result_content(task),
        is_error=task.state == "failed",
    )
