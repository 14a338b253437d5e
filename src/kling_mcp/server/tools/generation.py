"""Running a paid generation: the tool's side. The request is validated and its local files
checked here; the task service reserves, uploads, submits and follows it; this renders progress and
the answer.

Every paid tool shares the one handler here, `generate`; `kling_get_task` shares the waiting.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, ContentBlock, InputRequiredResult, ResourceLink, TextContent

from kling_mcp.api.client import TaskStatus
from kling_mcp.api.errors import KlingError
from kling_mcp.logs import logger
from kling_mcp.server.handoff import handoff
from kling_mcp.server.state import AppState
from kling_mcp.server.tools.clips import sheet_content
from kling_mcp.server.tools.common import GenerationRequest, VideoTask, video_task, video_text
from kling_mcp.server.tools.local_media import checked_local_media
from kling_mcp.server.tools.spec import ToolSpec, result_content
from kling_mcp.tasks.callers import Caller
from kling_mcp.tasks.journal import TaskRecord
from kling_mcp.tasks.service import Order, last_status

SUBMIT_FLOOR = 10.0
"""Seconds a submission may take even when the caller asked not to wait (timeout 0)."""
# Hosts known to cancel every tool call after a fixed time, and the longest wait that fits inside it.
CALL_CUTOFFS = {"claude-ai": 55.0}
MEGABYTE = 1_000_000


def paid_tool(name: str, title: str, model: type[GenerationRequest], description: str) -> ToolSpec:
    """The spec of a tool that starts one paid task and answers with its video."""
    handler = functools.partial(generate, tool=name)
    return ToolSpec(name, title, model, VideoTask, handler, description, paid=True, shows_video=True)


async def generate(
    request: GenerationRequest, app: AppState, ctx: Context, caller: Caller, *, tool: str
) -> CallToolResult | InputRequiredResult:
    """Start one paid generation (or join its identical running twin), then wait for it."""
    started = anyio.current_time()
    deadline = started + wait_budget(request.timeout, app, ctx)
    report = ProgressReport(ctx, started)
    files = await checked_local_media(request, app, ctx)
    if isinstance(files, InputRequiredResult):
        return files
    order = Order(tool, request.endpoint, request.to_wire(), files, request.allow_duplicate)
    if (task_handle := handoff.get()) is not None:  # the client takes a task: the generation goes on alone
        task_handle.record = await app.tasks.start_detached(caller, order)
        return answer(video_task(task_handle.record.entry_id, None, 0, app.settings.demo))  # never sent
    submit_by = max(deadline, started + SUBMIT_FLOOR)
    task = await app.tasks.start(caller, order, submit_by=submit_by, say=report.say)
    report.task_id = task.task_id
    note = ""
    if task.twin:
        age = time.time() - task.record.created_at
        note = (
            f"An identical request started {age:.0f} s ago is still running, so this answers with its task "
            "instead of paying again (pass allow_duplicate: true for a new paid task)."
        )
    else:
        await report.say(f"submitted ({request.price_terms()})")
    return await follow_through(app, caller, task.task_id, task.record, started, deadline, report, note=note)


async def follow_through(
    app: AppState,
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
    """Wait for the task (unless `status` says it is done) and its file, then answer. A cancelled
    call stops here, and its polling with it."""
    status = await app.tasks.follow(
        caller,
        task_id,
        deadline=deadline,
        on_tick=report.on_tick,
        status=status,
        journalled=record is not None,
    )
    trace_id = record.trace_id if record is not None else None
    known = facts(record) if record is not None else {}
    task = video_task(task_id, status, waited(started), app.settings.demo, trace_id, **known)
    if task.state == "succeeded" and record is not None:
        task = await _with_file(app, record, task, deadline, report)
    if note:
        task = task.model_copy(update={"next_step": f"{note} {task.next_step}"})
    return answer(task)


def recorded_answer(record: TaskRecord, *, demo: bool) -> CallToolResult:
    """The tool's answer for a journal entry that is done: its video, or why there is none."""
    if record.task_id is None:
        outcome = "may or may not have started" if record.state == "maybe_started" else "was not started"
        return CallToolResult(
            content=[
                TextContent(type="text", text=f"The generation {outcome}. {record.error_message or ''}")
            ],
            is_error=True,
        )
    status = last_status(record)
    return answer(video_task(record.task_id, status, 0, demo, record.trace_id, **facts(record)))


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
    saved = await app.tasks.saved_file(
        record, deadline=deadline, on_progress=report.on_save, auto=app.settings.auto_download
    )
    if saved.error is not None:
        return task.model_copy(update={"next_step": f"Not saved: {saved.error} {task.next_step}"})
    if saved.expected is None:
        return task.model_copy(update={"file_path": str(saved.path) if saved.path else None})
    where = saved.expected
    return task.model_copy(update={"next_step": f"The video is being saved to {where}. {task.next_step}"})


def wait_budget(requested: float | None, app: AppState, ctx: Context) -> float:
    """Seconds to wait: as asked (or the default), but never past a host's known call cutoff."""
    budget = app.settings.default_wait_seconds if requested is None else requested
    params = ctx.session.client_params
    host = params.client_info.name if params is not None else ""
    cutoff = CALL_CUTOFFS.get(host, budget)
    if budget > cutoff:
        logger.info("%s cancels tool calls after about 60 s: waiting %g s, not %g s", host, cutoff, budget)
    return min(budget, cutoff)


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

    async def on_tick(self, status: TaskStatus | None, error: KlingError | None) -> None:
        """What each status check of the task says."""
        if error is not None:
            state = f"status check failed ({error.kind.value}), retrying"
        elif status is None:
            state = "submitted, waiting for it to start"
        else:
            state = status.upstream_state or "queued"
        await self.say(state)

    async def on_save(self, done: int, total: int | None) -> None:
        """How much of the video is saved."""
        size = f" of {total / MEGABYTE:.1f}" if total else ""
        await self.say(f"saving the video, {done / MEGABYTE:.1f}{size} MB")


def waited(started: float) -> float:
    return round(anyio.current_time() - started, 2)


def answer(task: VideoTask) -> CallToolResult:
    content: list[ContentBlock] = [TextContent(type="text", text=video_text(task))]
    if task.file_path:
        path = Path(task.file_path)
        content += sheet_content(task.file_path)
        content.append(
            ResourceLink(type="resource_link", name=path.name, uri=path.as_uri(), mime_type="video/mp4")
        )
    return CallToolResult(
        content=content,
        structured_content=result_content(task),
        is_error=task.state == "failed",
    )
