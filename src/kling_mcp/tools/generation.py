"""Running a paid generation: submit it once, then wait for the task with progress.

Every paid tool shares the one handler here, `generate`; `kling_get_task` shares the waiting.
"""

from __future__ import annotations

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent

from kling_mcp.client import TaskStatus
from kling_mcp.errors import KlingError
from kling_mcp.logs import logger
from kling_mcp.state import AppState
from kling_mcp.tools.common import GenerationRequest, VideoTask, video_task, video_text
from kling_mcp.tools.spec import ToolSpec

SUBMIT_FLOOR = 10.0
"""Seconds a submission may take even when the caller asked not to wait (timeout 0)."""
# Hosts known to cancel every tool call after a fixed time, and the longest wait that fits inside it.
CALL_CUTOFFS = {"claude-ai": 55.0}


def paid_tool(name: str, title: str, model: type[GenerationRequest], description: str) -> ToolSpec:
    """The spec of a tool that starts one paid task and answers with its video."""
    return ToolSpec(name, title, model, VideoTask, generate, description, paid=True, shows_video=True)


async def generate(request: GenerationRequest, app: AppState, ctx: Context) -> CallToolResult:
    """Submit one paid generation, then wait for it within the caller's budget."""
    budget = wait_budget(request.timeout, app, ctx)
    started = anyio.current_time()
    try:
        submitted = await app.client.submit(
            request.endpoint, request.to_wire(), deadline=started + max(budget, SUBMIT_FLOOR)
        )
    except KlingError as error:
        outcome = "may or may not have started" if error.maybe_submitted else "was not started"
        raise ToolError(f"The generation {outcome}. {error}") from None
    app.started.append(submitted.task_id)
    logger.info(
        "Submitted task %s to %s (trace_id %s)", submitted.task_id, request.endpoint, submitted.trace_id
    )
    status = await wait_for(app, ctx, submitted.task_id, started, started + budget)
    return answer(
        video_task(submitted.task_id, status, waited(started), app.settings.demo, submitted.trace_id)
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
    app: AppState, ctx: Context, task_id: str, started: float, deadline: float
) -> TaskStatus | None:
    """The task's last status once it is done or `deadline` passes, reporting progress meanwhile."""
    report = ProgressReport(ctx, task_id, started)
    await report(None, None)
    try:
        return await app.poller.wait(task_id, deadline=deadline, on_tick=report)
    except KlingError as error:
        error.task_id = error.task_id or task_id
        raise ToolError(f"Could not check on the task; it may still be running. {error}") from None


class ProgressReport:
    """Strictly increasing progress (seconds waited) with the task's state in words."""

    def __init__(self, ctx: Context, task_id: str, started: float) -> None:
        self._ctx = ctx
        self._task_id = task_id
        self._started = started
        self._last = -1.0

    async def __call__(self, status: TaskStatus | None, error: KlingError | None) -> None:
        if error is not None:
            state = f"status check failed ({error.kind.value}), retrying"
        elif status is None:
            state = "submitted, waiting for it to start"
        else:
            state = status.upstream_state or "queued"
        await self.say(f"Task {self._task_id}: {state}")

    async def say(self, message: str) -> None:
        elapsed = anyio.current_time() - self._started
        progress = max(round(elapsed, 1), round(self._last + 0.1, 1))
        self._last = progress
        await self._ctx.report_progress(progress, message=f"{message}, {elapsed:.0f} s elapsed")


def waited(started: float) -> float:
    return round(anyio.current_time() - started, 2)


def answer(task: VideoTask) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=video_text(task))],
        structured_content=task.model_dump(mode="json"),
        is_error=task.state == "failed",
    )
