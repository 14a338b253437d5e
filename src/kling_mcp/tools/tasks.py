"""The free tools: look up tasks, list the models, and the `kling://tasks/{task_id}` resource."""

from __future__ import annotations

import typing
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import CallToolResult, TextContent
from pydantic import Field

from kling_mcp.capabilities import MODELS, Mode, ModelSpec, describe_durations
from kling_mcp.client import QUERY_BUDGET
from kling_mcp.errors import KlingError
from kling_mcp.fields import Identifier, JsonText, check_identifier
from kling_mcp.state import AppState, app_state
from kling_mcp.tools.common import DEMO_NOTE, KlingModel, Seconds, StrictModel, VideoTask, video_task
from kling_mcp.tools.generation import answer, wait_budget, wait_for, waited
from kling_mcp.tools.spec import ToolSpec

# --- kling_get_task -------------------------------------------------------------------------


class GetTaskInput(StrictModel):
    task_id: Identifier = Field(description="The task_id a generation answered with.")
    timeout: Seconds | None = Field(
        None,
        description="Seconds to wait for it to finish; 0 answers the state at once. At most 55 in "
        "Claude Desktop.",
    )


async def get_task(request: GetTaskInput, app: AppState, ctx: Context) -> CallToolResult:
    budget = wait_budget(request.timeout, app, ctx)
    started = anyio.current_time()
    try:
        status = await app.client.retrieve(request.task_id, deadline=started + QUERY_BUDGET)
    except KlingError as error:
        raise ToolError(str(error)) from None
    if not status.done and budget > 0:
        status = await wait_for(app, ctx, request.task_id, started, started + budget) or status
    return answer(video_task(request.task_id, status, waited(started), app.settings.demo))


GET_TASK = """Check a Kling task by task_id and, by default, wait for it to finish: answers the \
moment the video is ready, or with state 'running' when timeout runs out.

Use it to resume after a generation answered 'running', or to fetch a task started earlier (video_url, \
video_id, duration, or the failure reason). Free and read-only; progress flows while it waits. For \
several tasks at once use kling_get_tasks_batch. An unknown task_id is an error."""


# --- kling_get_tasks_batch ------------------------------------------------------------------

BATCH_LIMIT = 100


class TaskBatch(KlingModel):
    tasks: list[VideoTask]
    missing: list[str] = Field(description="Ids the API does not know.")


class GetTasksBatchInput(StrictModel):
    task_ids: JsonText[list[Identifier]] | None = Field(
        None,
        min_length=1,
        max_length=BATCH_LIMIT,
        description="Leave out for every task this server started.",
    )


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


def batch_text(batch: TaskBatch) -> str:
    lines = [f"{len(batch.tasks)} task(s) found."]
    for task in batch.tasks:
        detail = task.video_url if task.state == "succeeded" else (task.error.message if task.error else "")
        lines.append(f"- {task.task_id}: {task.state}{f' - {detail}' if detail else ''}")
    if batch.missing:
        lines.append(f"Unknown to the API: {', '.join(batch.missing)}")
    if any(task.demo for task in batch.tasks):
        lines.append(DEMO_NOTE)
    return "\n".join(lines)


GET_TASKS_BATCH = f"""Look up to {BATCH_LIMIT} Kling tasks in one request, without waiting: each \
task's state, video_url, video_id and any error; ids the API does not know are listed as missing.

Use it to check several videos at once, or without task_ids to recover every task this server started \
(a video whose call was cut off). Free and read-only. To wait for one task use kling_get_task."""


# --- kling_list_models ----------------------------------------------------------------------


class ListModelsInput(StrictModel):
    """kling_list_models takes no arguments."""


class ModelInfo(KlingModel):
    name: str
    durations: list[int] = Field(description="Accepted values of duration, in seconds.")
    duration_text: str
    modes: list[Mode]
    native_audio_modes: list[Mode] = Field(description="Modes in which generate_audio works.")
    omni_references: bool = Field(description="Takes image_list / video_list.")
    guidance: bool = Field(description="Takes negative_prompt, cfg_scale and camera_control.")
    tools: list[str] = Field(description="The tools that take this model.")
    notes: str


class ModelCatalog(KlingModel):
    default_model: str
    models: list[ModelInfo]
    tools: dict[str, str] = Field(description="Every tool of this server and what it does.")
    extend_note: str = (
        "Sources disagree on which models can extend; kling-mcp lets the API decide and relays its answer."
    )


def model_choices(spec: ToolSpec) -> tuple[str, ...]:
    """The models a tool's `model` field accepts (none: the tool has no choice of model)."""
    field = spec.input_model.model_fields.get("model")
    if field is None:
        return ()
    return tuple(value for value in _literal_values(field.annotation) if value in MODELS)


def _literal_values(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    return [value for argument in typing.get_args(annotation) for value in _literal_values(argument)]


def model_catalog(default_model: str, specs: tuple[ToolSpec, ...]) -> ModelCatalog:
    def info(spec: ModelSpec) -> ModelInfo:
        return ModelInfo(
            name=spec.name,
            durations=list(spec.durations),
            duration_text=describe_durations(spec),
            modes=list(spec.modes),
            native_audio_modes=list(spec.audio_modes),
            omni_references=spec.omni_references,
            guidance=spec.guidance,
            tools=[tool.name for tool in specs if spec.name in model_choices(tool)],
            notes=spec.notes,
        )

    return ModelCatalog(
        default_model=default_model,
        models=[info(spec) for spec in MODELS.values()],
        tools={tool.name: tool.title for tool in specs},
    )


async def list_models(request: ListModelsInput, app: AppState, ctx: Context) -> CallToolResult:
    from kling_mcp.tools import TOOL_SPECS  # the package imports this module first

    catalog = model_catalog(app.settings.default_model, TOOL_SPECS)
    return CallToolResult(
        content=[TextContent(type="text", text=catalog_text(catalog))],
        structured_content=catalog.model_dump(mode="json"),
    )


def catalog_text(catalog: ModelCatalog) -> str:
    lines = [f"Default model: {catalog.default_model}"]
    for model in catalog.models:
        extras = [f"modes {'/'.join(model.modes)}"]
        if model.native_audio_modes:
            extras.append(f"audio in {'/'.join(model.native_audio_modes)}")
        if model.omni_references:
            extras.append("Omni references")
        if not model.guidance:
            extras.append("no negative_prompt/cfg_scale/camera_control")
        tools = f" Tools: {', '.join(model.tools)}." if model.tools else ""
        lines.append(f"- {model.name}: {model.duration_text}; {', '.join(extras)}. {model.notes}{tools}")
    lines.append("Tools:")
    lines += [f"- {name}: {title}" for name, title in catalog.tools.items()]
    lines.append(catalog.extend_note)
    return "\n".join(lines)


LIST_MODELS = """List the Kling models and what each supports (durations, modes, 4k, native audio, \
Omni references, guidance parameters, the tools that take it), the default model, and every tool of \
this server with what it does.

Use it before choosing a model or tool, or when a generation was refused for a model rule. Free: \
answered from the table that validates requests, no API call."""


# --- The task resource ----------------------------------------------------------------------


async def read_task(task_id: str, ctx: Context) -> str:
    """The task's state now, as the JSON a generation tool would return (no waiting)."""
    app = app_state(ctx)
    try:
        check_identifier(task_id)
    except ValueError as error:
        raise ResourceError(f"task_id {error}") from None
    try:
        status = await app.client.retrieve(task_id, deadline=anyio.current_time() + QUERY_BUDGET)
    except KlingError as error:
        raise ResourceError(str(error)) from None
    return video_task(task_id, status, 0, app.settings.demo).model_dump_json(indent=2)


def register_resources(server: MCPServer[Any]) -> None:
    server.resource(
        "kling://tasks/{task_id}",
        name="kling_task",
        title="A Kling task",
        description="The current state of a Kling task: video_url, video_id and duration when done.",
        mime_type="application/json",
    )(read_task)


TOOLS = (
    ToolSpec(
        "kling_get_task",
        "Get a task, waiting for it",
        GetTaskInput,
        VideoTask,
        get_task,
        GET_TASK,
        shows_video=True,
    ),
    ToolSpec(
        "kling_get_tasks_batch",
        "Get many tasks",
        GetTasksBatchInput,
        TaskBatch,
        get_tasks_batch,
        GET_TASKS_BATCH,
    ),
    ToolSpec(
        "kling_list_models",
        "List Kling models and tools",
        ListModelsInput,
        ModelCatalog,
        list_models,
        LIST_MODELS,
        local_only=True,
    ),
)
