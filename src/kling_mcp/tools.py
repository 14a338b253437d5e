"""The MCP tools: validate, submit once, wait with progress, answer with the video.

Each tool is an input model (schema and rules, in models.py) plus a handler here. The
published schema is the input model's own, with the defaults this server was started
with; arguments are validated by that model so every rejection reads the same way and
costs nothing.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, ValidationError

from kling_mcp import descriptions
from kling_mcp.capabilities import MODELS
from kling_mcp.client import KlingClient, TaskStatus
from kling_mcp.errors import KlingError
from kling_mcp.logs import logger, relay_to_client
from kling_mcp.models import (
    ExtendVideoInput,
    GenerationRequest,
    GetTaskInput,
    GetTasksBatchInput,
    ImageToVideoInput,
    LipSyncInput,
    ModelCatalog,
    ModelInfo,
    MotionInput,
    TalkingPhotoInput,
    TaskBatch,
    TextToVideoInput,
    VideoOptions,
    VideoTask,
)
from kling_mcp.polling import TaskPoller
from kling_mcp.results import batch_text, video_task, video_text
from kling_mcp.settings import Settings

SUBMIT_FLOOR = 10.0
"""Seconds a submission may take even when the caller asked not to wait (timeout 0)."""
QUERY_BUDGET = 15.0

WAIT_FIELDS = tuple(GenerationRequest.model_fields)
InputT = TypeVar("InputT", bound=BaseModel)


RECENT_TASKS = 100
# Hosts known to cancel every tool call after a fixed time, and the longest wait that fits inside it.
CALL_CUTOFFS = {"claude-ai": 55.0}


@dataclass(frozen=True)
class AppState:
    """What the lifespan sets up once and every call shares."""

    settings: Settings
    client: KlingClient
    poller: TaskPoller
    started: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_TASKS))
    """Ids of the tasks this server submitted, newest last."""


Handler = Callable[[Any, AppState, Context], Awaitable[CallToolResult]]


@dataclass(frozen=True)
class ToolSpec:
    name: str
    title: str
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    handler: Handler
    description: str
    paid: bool

    @property
    def annotations(self) -> ToolAnnotations:
        return ToolAnnotations(
            title=self.title,
            read_only_hint=not self.paid,
            destructive_hint=False,
            idempotent_hint=not self.paid,
            open_world_hint=self.name != "kling_list_models",
        )


def app_state(ctx: Context) -> AppState:
    return cast(AppState, ctx.request_context.lifespan_context)


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


async def list_models(request: BaseModel, app: AppState, ctx: Context) -> CallToolResult:
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
            False,
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
            _NoArguments,
            ModelCatalog,
            list_models,
            d.LIST_MODELS,
            False,
        ),
    ]


def _paid(name: str, title: str, input_model: type[GenerationRequest], description: str) -> ToolSpec:
    return ToolSpec(name, title, input_model, VideoTask, generate, description, paid=True)


class _NoArguments(BaseModel):
    pass


def build_tools(settings: Settings) -> list[Tool]:
    return [_build_tool(spec, settings) for spec in tool_specs()]


def _build_tool(spec: ToolSpec, settings: Settings) -> Tool:
    """An SDK tool that publishes `spec.input_model`'s schema and lets that model alone validate.

    The SDK would derive a validating model from a function's signature; here the arguments
    reach the input model untouched instead, so every rejection reads the same way, names its
    field, and lists all problems at once.
    """
    defaults = server_defaults(spec.input_model, settings)

    async def call_tool(ctx: Context, **arguments: Any) -> CallToolResult:
        given = {name: value for name, value in arguments.items() if value is not None}
        request = parse_arguments(spec.name, spec.input_model, {**defaults, **given})
        with relay_to_client(ctx.session):
            return await spec.handler(request, app_state(ctx), ctx)

    return Tool(
        fn=call_tool,
        name=spec.name,
        title=spec.title,
        description=spec.description,
        parameters=input_schema(spec.input_model, defaults),
        fn_metadata=_pass_through(spec.output_model),
        is_async=True,
        context_kwarg="ctx",
        annotations=spec.annotations,
    )


class _RawArguments(ArgModelBase):
    """The arguments of a call, exactly as sent."""

    model_config = ConfigDict(extra="allow")

    def model_dump_one_level(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


@functools.cache
def _pass_through(output_model: type[BaseModel]) -> FuncMetadata:
    """Raw arguments in; results checked against `output_model` (its schema built once)."""
    return FuncMetadata(arg_model=_RawArguments, output_model=output_model)


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


def input_schema(model: type[BaseModel], defaults: dict[str, Any]) -> dict[str, Any]:
    """`model`'s JSON schema with this server's defaults, each property standing alone."""
    schema = _inline_refs(model.model_json_schema())
    # The content of a request first, then how to wait for it (pydantic puts base fields first).
    properties = sorted(schema.get("properties", {}).items(), key=lambda item: item[0] in WAIT_FIELDS)
    schema["properties"] = {
        name: {**field, "default": defaults[name]} if name in defaults else field
        for name, field in properties
    }
    return schema


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace `$ref`s into `$defs` with the definitions, so each property stands alone."""
    definitions = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                siblings = {key: value for key, value in node.items() if key != "$ref"}
                return resolve({**definitions[ref.removeprefix("#/$defs/")], **siblings})
            return {key: resolve(value) for key, value in node.items() if key != "$defs"}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def parse_arguments(tool: str, model: type[InputT], arguments: dict[str, Any]) -> InputT:
    """Validate a call's arguments, or raise a ToolError that lists every fix to make."""
    try:
        return model.model_validate(arguments)
    except ValidationError as exc:
        problems = "\n".join(f"- {problem}" for problem in describe_errors(exc))
        raise ToolError(
            f"Invalid arguments for {tool} (nothing was sent, nothing was charged):\n{problems}"
        ) from None


def describe_errors(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "required"
        elif error["type"] == "extra_forbidden":
            message = "unknown parameter; check the spelling against the tool's schema"
        if field:
            problems.append(f"{field}: {message}")
        else:
            problems.extend(message.splitlines())
    return problems
