"""MCP Tasks (the extension `io.modelcontextprotocol/tasks`, protocol 2026-07-28) on the task journal.

A client that opts in on a request (its `_meta` client capabilities list the extension) gets, for
a paid generation, a task handle at once instead of a wait: the task is the journal entry that the
reservation wrote, so it exists before the answer leaves, outlives a restart, and any replica on
the same Postgres answers for it. `tasks/get` reads the entry (brought up to date with the API when
no one here follows it) and, once the video is saved, carries the same CallToolResult the tool
gives; `tasks/cancel` stops what can still be stopped and says what cannot, and a task cancelled
while it ran stays cancelled (a terminal status never changes); `tasks/update` has nothing to
answer, since no generation asks for input once started. A task is its owner's alone: an unknown,
expired or foreign id gets the same "not found". Over HTTP, a tasks request's `Mcp-Name` header must
be its taskId (SEP-2663's routing header, which the SDK checks only for tools, prompts and resources).
Hosts without Tasks see no change.

The 2025-11-25 form (tasks in the core protocol, `tasks/result`, `tasks/list`) is not served: its
hosts keep the waiting tool calls, `kling_get_task` and `kling_list_tasks`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_NAME_HEADER, decode_header_value
from mcp.types import CallToolRequestParams, RequestParams
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    HEADER_MISMATCH,
    INVALID_PARAMS,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
)
from pydantic import Field

from kling_mcp.server.handoff import Handoff, handoff
from kling_mcp.server.state import AppState
from kling_mcp.tasks.callers import Caller
from kling_mcp.tasks.journal import TaskRecord

EXTENSION = "io.modelcontextprotocol/tasks"
POLL_INTERVAL_MS = 2000
TASK_TTL_SECONDS = 7 * 86_400.0
"""How long a task can be fetched as an MCP task; the journal keeps it for kling_list_tasks after."""


class TaskParams(RequestParams):
    task_id: str = Field(alias="taskId", min_length=1, max_length=200)


class UpdateTaskParams(TaskParams):
    input_responses: dict[str, Any] = Field(default_factory=dict, alias="inputResponses")


class TasksExtension(Extension):
    identifier = EXTENSION

    def methods(self) -> Sequence[MethodBinding]:
        return (
            MethodBinding("tasks/get", TaskParams, _get),
            MethodBinding("tasks/update", UpdateTaskParams, _update),
            MethodBinding("tasks/cancel", TaskParams, _cancel),
        )

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if not _opted_in(params.meta):
            return await call_next(ctx)
        current = Handoff()
        token = handoff.set(current)
        try:
            result = await call_next(ctx)
        finally:
            handoff.reset(token)
        if current.record is None:  # answered at once: refused, free, or asking for input first
            return result
        return {"resultType": "task", **_task(current.record, _app(ctx))}


async def _get(ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
    app = _app(ctx)
    record = await app.tasks.entry(_caller(ctx, params, app), params.task_id)
    return _detailed(_known(record, params.task_id), app)


async def _update(ctx: ServerRequestContext[Any, Any], params: UpdateTaskParams) -> HandlerResult:
    app = _app(ctx)
    _known(await app.tasks.entry(_caller(ctx, params, app), params.task_id), params.task_id)
    return {}  # a generation asks for nothing once started: every response is for no outstanding request


async def _cancel(ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
    app = _app(ctx)
    caller = _caller(ctx, params, app)
    _known(await app.tasks.cancel(caller.owner, params.task_id), params.task_id)
    return {}


def _detailed(record: TaskRecord, app: AppState) -> dict[str, Any]:
    """The task as tasks/get shows it: with its result once completed."""
    task = _task(record, app)
    if task["status"] == "completed":
        from kling_mcp.server.tools.generation import recorded_answer

        answer = recorded_answer(record, demo=app.settings.demo)
        task["result"] = answer.model_dump(mode="json", by_alias=True, exclude_none=True)
    return task


def _task(record: TaskRecord, app: AppState) -> dict[str, Any]:
    status, message = _status(record, saves_videos=app.policy.saves_videos)
    return {
        "taskId": record.entry_id,
        "status": status,
        "statusMessage": message,
        "createdAt": _iso(record.created_at),
        "lastUpdatedAt": _iso(max(record.updated_at, record.cancelled_at or 0.0)),
        "ttlMs": int(TASK_TTL_SECONDS * 1000),
        "pollIntervalMs": POLL_INTERVAL_MS,
    }


def _status(record: TaskRecord, *, saves_videos: bool) -> tuple[str, str]:
    """The MCP status of the journal entry, and what it means in words."""
    kling = f"Kling task {record.task_id}"
    if record.cancelled_at is not None:
        return _cancelled(record, kling)
    if record.state == "submitting":
        return "working", "Sending the request to Kling."
    if record.state == "running":
        return "working", f"{kling}: {record.upstream_state or 'queued'}."
    if record.state == "succeeded" and saves_videos and not (record.file_path or record.download_error):
        return "working", f"{kling} is done; saving the video."
    return "completed", f"{kling}: {record.state}." if record.task_id else "The generation did not start."


def _cancelled(record: TaskRecord, kling: str) -> tuple[str, str]:
    """The MCP status of an entry cancelled while it ran (the service notes no other cancel): cancelled
    for good once it is known whether the request was sent, whatever the API's task does after."""
    if record.task_id is not None:
        if record.state == "succeeded":
            return "cancelled", (
                f"Cancelled here, but {kling} ran on at AceDataCloud and succeeded (so it is charged): "
                f"kling_get_task {record.task_id} shows its video."
            )
        if record.state == "failed":
            return "cancelled", (
                f"Cancelled here; {kling} ran on at AceDataCloud and failed: kling_get_task "
                f"{record.task_id} says why."
            )
        return "cancelled", (
            f"Cancelled here, but {kling} runs on at AceDataCloud and is charged when it finishes; its "
            f"video is still saved (kling_get_task {record.task_id} shows it)."
        )
    if record.state == "submitting":  # sent or not, its answer tells: until then, still working
        return "working", "Cancelling: the request may already be on its way to Kling."
    if record.state == "not_started":
        return "cancelled", "Cancelled before the request was sent: nothing was charged."
    return "cancelled", (
        "Cancelled while the request was being sent, and its answer was lost: it may have started and be "
        "charged (kling_list_tasks shows it as maybe_started)."
    )


def _known(record: TaskRecord | None, task_id: str) -> TaskRecord:
    """`record`, unless the caller has no such task (or it expired): then invalid params."""
    if record is None or record.created_at < time.time() - TASK_TTL_SECONDS:
        raise MCPError(INVALID_PARAMS, f"No task {task_id[:100]!r} of yours (or it is more than 7 days old).")
    return record


def _opted_in(meta: Mapping[str, Any] | None) -> bool:
    capabilities = (meta or {}).get(CLIENT_CAPABILITIES_META_KEY)
    extensions = capabilities.get("extensions") if isinstance(capabilities, Mapping) else None
    return isinstance(extensions, Mapping) and EXTENSION in extensions


def _caller(ctx: ServerRequestContext[Any, Any], params: TaskParams, app: AppState) -> Caller:
    if not _opted_in(params.meta):
        raise MCPError(
            MISSING_REQUIRED_CLIENT_CAPABILITY,
            f"Missing required client capability: the {EXTENSION} extension.",
            {"requiredCapabilities": {"extensions": {EXTENSION: {}}}},
        )
    headers = getattr(ctx.request, "headers", None)
    if headers is not None and decode_header_value(headers.get(MCP_NAME_HEADER)) != params.task_id:
        raise MCPError(HEADER_MISMATCH, "The Mcp-Name header must be the taskId of the request (SEP-2663).")
    return app.caller_for(headers)


def _app(ctx: ServerRequestContext[Any, Any]) -> AppState:
    state: AppState = ctx.lifespan_context
    return state


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
