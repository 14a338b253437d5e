"""The MCP tools: validate, submit once, wait with progress, answer with the video.

Each tool is an input model (schema and rules, in models.py), a handler here, and a spec
that registration.py turns into an SDK tool.
"""

from __future__ import annotations

from typing import Any

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel

from kling_mcp import descriptions
from kling_mcp.capabilities import MODELS
from kling_mcp.client import QUERY_BUDGET, TaskStatus
from kling_mcp.errors import KlingError
from kling_mcp.logs import logger
from kling_mcp.models import (
    ExtendVideoInput,
    GenerationRequest,
    GetTaskInput,
    GetTasksBatchInput,
    ImageToVideoInput,
    LipSyncInput,
    ListModelsInput,
    ModelCatalog,
    ModelInfo,
    MotionInput,
    TalkingPhotoInput,
    TaskBatch,
    TextToVideoInput,
    VideoOptions,
    VideoTask,
)
from kling_mcp.registration import ToolSpec, build_tool
from kling_mcp.results import batch_text, video_task, video_text
from kling_mcp.settings import Settings
from kling_mcp.state import AppState

SUBMIT_FLOOR = 10.0
"""Seconds a submission may take even when the caller asked not to wait (timeout 0)."""
# Hosts known to cancel every tool call after a fixed time, and the longest wait that fits inside it.
CALL_CUTOFFS = {"claude-ai": 55.0}


# --- Handlers -------------------------------------------------------------------------------


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
    status = await _wait(app, ctx, submitted.task_id, started, started + budget)
    return _answer(
        video_task(submitted.task_id, status, _waited(started), app.settings.demo, submitted.trace_id)
    )


async def get_task(request: GetTaskInput, app: AppState, ctx: Context) -> CallToolResult:
    budget = wait_budget(request.timeout, app, ctx)
    started = anyio.current_time()
    try:
        status = await app.client.retrieve(request.task_id, deadline=started + QUERY_BUDGET)
    except KlingError as error:
        raise ToolError(str(error)) from None
    if not status.done and budget > 0:
        status = await _wait(app, ctx, request.task_id, started, started + budget) or status
    return _answer(video_task(request.task_id, status, _waited(started), app.settings.demo))


async def get_tasks_batch(request: GetTasksBatchInput, app: AppState, ctx: Context) -> CallToolResult:
    task_ids = list(dict.fromkeys(request.task_ids or app.started))
    if not task_ids:
        raise ToolError("No task_ids given, and this server has not started any task since it launched.")
    try:
        found = await app.client.retrieve_batch(task_ids, deadline=anyio.current_time() + QUERY_BUDGET)
    except KlingError as error:
        raise ToolError(str(error)) from None
    batch = TaskBatch(
        tasks=[
            video_task(task_id, found[task_id], 0, app.settings.demo)
            for task_id in task_ids
            if task_id in found
        ],
        missing=[task_id for task_id in task_ids if task_id not in found],
    )
    return CallToolResult(
        content=[TextContent(type="text", text=batch_text(batch))],
        structured_content=batch.model_dump(mode="json"),
    )


async def list_models(request: ListModelsInput, app: AppState, ctx: Context) -> CallToolResult:
    catalog = ModelCatalog(
        default_model=app.settings.default_model,
        models=[ModelInfo.from_spec(spec) for spec in MODELS.values()],
    )
    return CallToolResult(
        content=[TextContent(type="text", text=descriptions.catalog_text(catalog))],
        structured_content=catalog.model_dump(mode="json"),
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


async def _wait(
    app: AppState, ctx: Context, task_id: str, started: float, deadline: float
) -> TaskStatus | None:
    report = _ProgressReport(ctx, task_id, started)
    await report(None, None)
    try:
        return await app.poller.wait(task_id, deadline=deadline, on_tick=report)
    except KlingError as error:
        error.task_id = error.task_id or task_id
        raise ToolError(f"Could not check on the task; it may still be running. {error}") from None


class _ProgressReport:
    """Strictly increasing progress (seconds waited) with the task's state in words."""

    def __init__(self, ctx: Context, task_id: str, started: float) -> None:
        self._ctx = ctx
        self._task_id = task_id
        self._started = started
        self._last = -1.0

    async def __call__(self, status: TaskStatus | None, error: KlingError | None) -> None:
        elapsed = anyio.current_time() - self._started
        progress = max(round(elapsed, 1), round(self._last + 0.1, 1))
        self._last = progress
        if error is not None:
            state = f"status check failed ({error.kind.value}), retrying"
        elif status is None:
            state = "submitted, waiting for it to start"
        else:
            state = status.upstream_state or "queued"
        await self._ctx.report_progress(
            progress, message=f"Task {self._task_id}: {state}, {elapsed:.0f} s elapsed"
        )


def _waited(started: float) -> float:
    return round(anyio.current_time() - started, 2)


def _answer(task: VideoTask) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=video_text(task))],
        structured_content=task.model_dump(mode="json"),
        is_error=task.state == "failed",
    )


# --- Registration ---------------------------------------------------------------------------


def tool_specs() -> list[ToolSpec]:
    d = descriptions
    return [
        _paid("kling_generate_video", "Generate video from text", TextToVideoInput, d.GENERATE_VIDEO),
        _paid(
            "kling_generate_video_from_image",
            "Generate video from image",
            ImageToVideoInput,
            d.GENERATE_VIDEO_FROM_IMAGE,
        ),
        _paid("kling_extend_video", "Extend a video", ExtendVideoInput, d.EXTEND_VIDEO),
        _paid("kling_generate_motion", "Transfer motion to a character", MotionInput, d.GENERATE_MOTION),
        _paid("kling_lip_sync", "Lip-sync a video", LipSyncInput, d.LIP_SYNC),
        _paid("kling_talking_photo", "Make a photo talk", TalkingPhotoInput, d.TALKING_PHOTO),
        ToolSpec(
            "kling_get_task",
            "Get a task, waiting for it",
            GetTaskInput,
            VideoTask,
            get_task,
            d.GET_TASK,
            paid=False,
        ),
        ToolSpec(
            "kling_get_tasks_batch",
            "Get many tasks",
            GetTasksBatchInput,
            TaskBatch,
            get_tasks_batch,
            d.GET_TASKS_BATCH,
            paid=False,
        ),
        ToolSpec(
            "kling_list_models",
            "List Kling models",
            ListModelsInput,
            ModelCatalog,
            list_models,
            d.LIST_MODELS,
            paid=False,
        ),
    ]


def _paid(name: str, title: str, input_model: type[GenerationRequest], description: str) -> ToolSpec:
    return ToolSpec(name, title, input_model, VideoTask, generate, description, paid=True)


def build_tools(settings: Settings) -> list[Tool]:
    return [build_tool(spec, server_defaults(spec.input_model, settings)) for spec in tool_specs()]


def server_defaults(model: type[BaseModel], settings: Settings) -> dict[str, Any]:
    """Defaults that come from this server's settings rather than from the models."""
    defaults: dict[str, Any] = {}
    if "timeout" in model.model_fields:
        defaults["timeout"] = settings.default_wait_seconds
    if issubclass(model, VideoOptions):
        defaults |= {
            "model": settings.default_model,
            "mode": settings.default_mode,
            "aspect_ratio": settings.default_aspect_ratio,
        }
    return defaults
