"""The free tools: look up, list and save tasks, list the models; and what the task resources read."""

from __future__ import annotations

import functools
import time
import typing
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import CallToolResult
from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from kling_mcp.api.client import TaskStatus
from kling_mcp.domain.capabilities import MODELS, Mode, ModelSpec, describe_durations
from kling_mcp.domain.fields import Identifier, JsonText, Text, check_identifier, quote
from kling_mcp.server.state import AppState
from kling_mcp.server.tools.common import (
    DEMO_NOTE,
    KlingModel,
    Seconds,
    StrictModel,
    VideoTask,
    structured,
    video_task,
)
from kling_mcp.server.tools.generation import (
    ProgressReport,
    answer,
    facts,
    follow_through,
    wait_budget,
    waited,
)
from kling_mcp.server.tools.spec import ToolSpec
from kling_mcp.tasks.callers import Caller
from kling_mcp.tasks.journal import TaskRecord
from kling_mcp.tasks.service import TaskError

# --- kling_get_task -------------------------------------------------------------------------


class GetTaskInput(StrictModel):
    task_id: Identifier = Field(description="The task_id a generation answered with.")
    timeout: Seconds | None = Field(
        None,
        description="Seconds to wait; 0: answer at once. At most 55 in Claude Desktop.",
    )


async def get_task(request: GetTaskInput, app: AppState, ctx: Context, caller: Caller) -> CallToolResult:
    started = anyio.current_time()
    deadline = started + wait_budget(request.timeout, app, ctx)
    status = await app.tasks.lookup(caller, request.task_id)
    record = await app.tasks.record(request.task_id, owner=caller.owner)
    report = ProgressReport(ctx, started, request.task_id)
    task_id = request.task_id
    return await follow_through(app, caller, task_id, record, started, deadline, report, status=status)


GET_TASK = """Check a Kling task by task_id and, by default, wait for it: answers as soon as it is \
done, or 'running' when timeout runs out (call again to wait on).

Use it to resume after a generation answered 'running', or to look up any task of the user's \
AceDataCloud account: video_url, video_id, duration, or error. Free; progress while waiting. A video \
this server started is saved to disk by default (file_path); video_url expires, each lookup gives a \
fresh one. Several tasks: kling_get_tasks_batch; finding task ids: kling_list_tasks. An unknown task_id \
is an error."""


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
        description="The task_ids to look up; left out: the newest tasks this server started.",
    )


async def get_tasks_batch(
    request: GetTasksBatchInput, app: AppState, ctx: Context, caller: Caller
) -> CallToolResult:
    if request.task_ids:
        task_ids = list(dict.fromkeys(request.task_ids))
    else:
        recent, _ = await app.tasks.list(limit=BATCH_LIMIT, owner=caller.owner)
        task_ids = [record.task_id for record in reversed(recent) if record.task_id]  # in the order started
    if not task_ids:
        raise ToolError("No task_ids given, and the journal holds no task that this server started.")
    found = await app.tasks.lookup_many(caller, task_ids)
    tasks = []
    for task_id in task_ids:
        if task_id in found:
            record = await app.tasks.record(task_id, owner=caller.owner)
            known = facts(record) if record is not None else {}
            tasks.append(video_task(task_id, found[task_id], 0, app.settings.demo, **known))
    batch = TaskBatch(tasks=tasks, missing=[task_id for task_id in task_ids if task_id not in found])
    return structured(batch, batch_text(batch))


def batch_text(batch: TaskBatch) -> str:
    lines = [f"{len(batch.tasks)} task(s) found."]
    for task in batch.tasks:
        detail = (task.file_path or task.video_url) if task.state == "succeeded" else ""
        if task.error:
            detail = task.error.message
        lines.append(f"- {task.task_id}: {task.state}{f' - {detail}' if detail else ''}")
    if batch.missing:
        lines.append(f"Unknown to the API: {', '.join(quote(task_id) for task_id in batch.missing)}")
    if any(task.demo for task in batch.tasks):
        lines.append(DEMO_NOTE)
    return "\n".join(lines)


GET_TASKS_BATCH = f"""Look up to {BATCH_LIMIT} Kling tasks in one request, without waiting: each \
one's live state, video_url, video_id, file_path and error; ids the API does not know come back in \
missing.

Use it to refresh several tasks, or with no task_ids the newest this server started. Free, read-only. \
To wait for one: kling_get_task; to find tasks by state, tool or age in the local journal: \
kling_list_tasks."""


# --- kling_list_tasks -----------------------------------------------------------------------

MAY_HAVE_STARTED = (
    "The submission may have reached AceDataCloud, but no task id came back: check your tasks at "
    "https://platform.acedata.cloud before generating it again."
)
ListedState = Annotated[
    Literal["running", "succeeded", "failed", "maybe_started", "not_started"],
    Field(
        description="Only this state. 'maybe_started': its answer was lost, it may run and be charged; "
        "'not_started': refused, not charged."
    ),
]


class ListTasksInput(StrictModel):
    state: ListedState | None = None
    tool: Annotated[str, Text(64)] | None = Field(
        None, description="Only this tool's tasks, e.g. kling_generate_video."
    )
    since_hours: float | None = Field(
        None, gt=0, le=24 * 365, description="Only tasks started within this many hours."
    )
    limit: int = Field(20, ge=1, le=100, description="Tasks per page.")
    cursor: Annotated[str, Text(200)] | None = Field(
        None, description="The next_cursor of the previous page, for the next one."
    )


class TaskEntry(KlingModel):
    task_id: str | None = None
    state: str
    tool: str
    created_at: str
    prompt: str | None = None
    model: str | None = None
    mode: str | None = None
    video_url: str | None = None
    video_id: str | None = None
    file_path: str | None = None
    error: str | None = None
    note: str | None = None

    @classmethod
    def from_record(cls, record: TaskRecord) -> TaskEntry:
        state = "running" if record.state == "submitting" else record.state
        return cls(
            task_id=record.task_id,
            state=state,
            tool=record.tool,
            created_at=datetime.fromtimestamp(record.created_at, timezone.utc).isoformat(timespec="seconds"),
            prompt=record.prompt if record.prompt is None else record.prompt[:PROMPT_SHOWN],
            model=record.model,
            mode=record.mode,
            video_url=record.video_url,
            video_id=record.video_id,
            file_path=record.file_path,
            error=record.error_message or record.download_error,
            note=MAY_HAVE_STARTED if record.state == "maybe_started" else None,
        )


PROMPT_SHOWN = 100


class TaskList(KlingModel):
    tasks: list[TaskEntry]
    next_cursor: str | None = Field(None, description="Pass as cursor for the next page.")


async def list_tasks(request: ListTasksInput, app: AppState, ctx: Context, caller: Caller) -> CallToolResult:
    since = time.time() - request.since_hours * 3600 if request.since_hours else None
    records, next_cursor = await app.tasks.list(
        states=(request.state,) if request.state else (),
        tool=request.tool,
        since=since,
        limit=request.limit,
        cursor=request.cursor,
        owner=caller.owner,
    )
    listing = TaskList(tasks=[TaskEntry.from_record(record) for record in records], next_cursor=next_cursor)
    return structured(listing, list_text(listing))


def list_text(listing: TaskList) -> str:
    if not listing.tasks:
        return "No tasks match."
    lines = [f"{len(listing.tasks)} task(s), newest first:"]
    for task in listing.tasks:
        detail = task.file_path or task.video_url or task.error or task.note or ""
        prompt = f' "{task.prompt}"' if task.prompt else ""
        lines.append(
            f"- {task.created_at} {task.task_id or '(no id)'} {task.tool}: {task.state}{prompt} {detail}"
        )
    if listing.next_cursor:
        lines.append(f"More: call again with cursor {listing.next_cursor}")
    return "\n".join(lines)


LIST_TASKS = """List the tasks this server started for the user, newest first, from its local journal \
(kept across restarts): state as last seen, tool, prompt, model, video_url, file_path, error; a page \
at a time.

Use it to find an earlier video, see what runs, or recover a task whose call was cut off. Free, \
read-only, no API call, so states may be stale: live ones via kling_get_task (one, waits) or \
kling_get_tasks_batch (many)."""


# --- kling_download_video -------------------------------------------------------------------


class DownloadVideoInput(StrictModel):
    task_id: Identifier = Field(description="The task_id of a succeeded task.")


async def download_video(
    request: DownloadVideoInput, app: AppState, ctx: Context, caller: Caller
) -> CallToolResult:
    app.policy.refuse_local_disk(
        "saves no videos to its own disk", "use the task's video_url (kling_get_task gives a fresh one)."
    )
    started = anyio.current_time()
    report = ProgressReport(ctx, started, request.task_id)
    record, path = await app.tasks.save(caller, request.task_id, report.on_save)
    status = TaskStatus.from_result(request.task_id, {"state": "succeed", "video_url": record.video_url})
    known = {**facts(record), "file_path": str(path)}
    task = video_task(request.task_id, status, waited(started), app.settings.demo, record.trace_id, **known)
    return answer(task.model_copy(update={"video_id": record.video_id, "duration": record.duration}))


DOWNLOAD_VIDEO = """Save (again) a finished task's video into the user's video folder \
(KLING_OUTPUT_DIR); answers with its file_path.

Use it when a video was not saved (saving off, a full disk, a failed download) or its file was deleted; \
only for tasks this server started. Free; an expired link is refreshed by a lookup. It never overwrites: \
the server names the file (date, prompt, task id). A hosted server saves nothing: give the user \
video_url."""


# --- kling_list_models ----------------------------------------------------------------------


class ListModelsInput(StrictModel):
    """kling_list_models takes no arguments."""


class ModelInfo(KlingModel):
    name: str
    durations: list[int]
    modes: list[Mode]
    native_audio_modes: list[Mode]
    omni_references: bool = Field(description="Takes image_list / video_list.")
    guidance: bool = Field(description="Takes negative_prompt, cfg_scale and camera_control.")
    tools: list[str]
    notes: str
    duration_text: SkipJsonSchema[str]


class ModelCatalog(KlingModel):
    default_model: str
    models: list[ModelInfo]
    tools: dict[str, str] = Field(description="Each tool and what it does.")
    extend_note: SkipJsonSchema[str] = (
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
            tools=[tool.name for tool in specs if spec.name in model_choices(tool) or tool.name == spec.tool],
            notes=spec.notes,
        )

    return ModelCatalog(
        default_model=default_model,
        models=[info(spec) for spec in MODELS.values()],
        tools={tool.name: tool.title for tool in specs},
    )


async def list_models(
    request: ListModelsInput,
    app: AppState,
    ctx: Context,
    caller: Caller,
    *,
    every_tool: Callable[[], tuple[ToolSpec, ...]],
) -> CallToolResult:
    catalog = model_catalog(app.settings.default_model, every_tool())
    return structured(catalog, catalog_text(catalog))


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


RECENT_TASKS = 50


async def task_json(app: AppState, caller: Caller, task_id: str) -> str:
    """The task's state now, with what the journal knows (its file), as a generation would answer."""
    try:
        check_identifier(task_id)
    except ValueError as error:
        raise ResourceError(f"task_id {error}") from None
    try:
        status = await app.tasks.lookup(caller, task_id)
    except TaskError as error:
        raise ResourceError(str(error)) from None
    record = await app.tasks.record(task_id, owner=caller.owner)
    known = facts(record) if record is not None else {}
    return video_task(task_id, status, 0, app.settings.demo, **known).model_dump_json(indent=2)


async def recent_tasks_json(app: AppState) -> str:
    """The newest tasks from the journal, as kling_list_tasks lists them (the one local user's)."""
    if app.policy.hosted:
        raise ResourceError("A hosted kling-mcp lists each user's tasks with kling_list_tasks, not here.")
    records, next_cursor = await app.tasks.list(owner="", limit=RECENT_TASKS)
    entries = [TaskEntry.from_record(record) for record in records]
    return TaskList(tasks=entries, next_cursor=next_cursor).model_dump_json(indent=2)


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
        "kling_list_tasks",
        "List your tasks",
        ListTasksInput,
        TaskList,
        list_tasks,
        LIST_TASKS,
        local_only=True,
    ),
    ToolSpec(
        "kling_download_video",
        "Save a video to disk",
        DownloadVideoInput,
        VideoTask,
        download_video,
        DOWNLOAD_VIDEO,
        shows_video=True,
        saves_files=True,
    ),
)


def list_models_tool(every_tool: Callable[[], tuple[ToolSpec, ...]]) -> ToolSpec:
    """kling_list_models, which describes `every_tool()` of the server (itself among them)."""
    handler = functools.partial(list_models, every_tool=every_tool)
    return ToolSpec(
        "kling_list_models",
        "List Kling models and tools",
        ListModelsInput,
        ModelCatalog,
        handler,
        LIST_MODELS,
        local_only=True,
    )
