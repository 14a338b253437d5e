"""What the tool families share: the base of every paid request, the media field types, the video
task every generation answers with, and the words about waiting and money every generation says.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from kling_mcp.api.client import TaskState, TaskStatus
from kling_mcp.domain.fields import WebUrl
from kling_mcp.server.tools.spec import result_content

MAX_WAIT_SECONDS = 3600
Seconds = Annotated[float, Field(ge=0, le=MAX_WAIT_SECONDS)]

LOCAL_MEDIA = "Media: a URL, or a local path (folders the user allows) uploaded to AceDataCloud first."


def paid(priced_by: str, media: bool = True) -> str:
    """What every paid tool says about money, limits, waiting and its result, in its description;
    `priced_by`: what drives this tool's price; `media`: it takes media (URLs or local files)."""
    text = f"""Costs credits (priced by {priced_by}), sent once; refused unsent past the user's daily \
or concurrent task limit. Waits up to timeout with progress; 'running': resume with kling_get_task, \
never by calling again; 'failed': error says why. Saved to disk by default (file_path); video_url \
expires."""
    return f"{text} {LOCAL_MEDIA}" if media else text


class KlingModel(BaseModel):
    # Validators and schemas are built on first use, not at import: that keeps them off the
    # server's start-up path (tools are built when a client first lists or calls them).
    model_config = ConfigDict(defer_build=True)


class StrictModel(KlingModel):
    model_config = ConfigDict(extra="forbid")


class GenerationRequest(StrictModel):
    """What every paid tool takes besides its content: how long to wait, a webhook, duplicates."""

    endpoint: ClassVar[str]
    LOCAL_FIELDS: ClassVar[tuple[str, ...]] = ("timeout", "callback_url", "allow_duplicate")

    timeout: Seconds | None = Field(
        None, description="Seconds to wait; 0: answer at once. At most 55 in Claude Desktop."
    )
    callback_url: WebUrl | None = Field(None, description="A URL the API POSTs the result to.")
    allow_duplicate: bool = Field(False, description="true: pay again though an identical task runs.")

    def payload(self) -> dict[str, Any]:
        """The tool-specific part of the request body."""
        return self.model_dump(mode="json", exclude_none=True, exclude=set(self.LOCAL_FIELDS))

    def to_wire(self) -> dict[str, Any]:
        """The request body: always asynchronous, so a dropped connection never loses a task id."""
        body = self.payload()
        if self.callback_url:
            body["callback_url"] = self.callback_url
        body["async"] = True
        return body

    def price_terms(self) -> str:
        """The model, mode and duration that drive this request's price, in words."""
        body = self.payload()
        terms = [str(body[name]) for name in ("model", "mode") if body.get(name)]
        if body.get("duration"):
            terms.append(f"{body['duration']} s")
        return ", ".join(terms) or "the API's defaults"


def check(problems: list[str]) -> None:
    """Refuse a request that breaks the rules: each problem is a sentence naming its field."""
    if problems:
        raise ValueError("\n".join(problems))


# --- The answer of every generation and task lookup -----------------------------------------


class TaskFailure(KlingModel):
    message: str
    code: SkipJsonSchema[str | None] = None


class VideoTask(KlingModel):
    """A Kling task as this server last saw it.

    The published output schema leaves out what only repeats the request or the text (the
    `SkipJsonSchema` fields): results still carry them, and every byte of a schema is paid for.
    """

    task_id: str
    state: TaskState
    video_url: str | None = None
    video_id: str | None = None
    file_path: str | None = None
    error: TaskFailure | None = None
    next_step: SkipJsonSchema[str]
    demo: SkipJsonSchema[bool] = False
    duration: SkipJsonSchema[float | None] = None
    trace_id: SkipJsonSchema[str | None] = None
    upstream_state: SkipJsonSchema[str | None] = None
    waited_seconds: SkipJsonSchema[float] = 0
    prompt: SkipJsonSchema[str | None] = None
    model: SkipJsonSchema[str | None] = None
    mode: SkipJsonSchema[str | None] = None


DEMO_NOTE = "DEMO MODE: made by the local emulator, not by Kling; nothing was charged."


def video_task(
    task_id: str,
    status: TaskStatus | None,
    waited: float,
    demo: bool,
    trace_id: str | None = None,
    **known: Any,
) -> VideoTask:
    """What a caller should know about `task_id`, given the last status seen (None: not yet seen).

    `known` adds what this server knows besides the API (file_path, tool, prompt, model, mode).
    """
    if status is None:
        status = TaskStatus(task_id, "running", trace_id=trace_id)
    requested_duration = known.pop("duration", None)
    failure = None
    if status.state == "failed":
        code, message = status.failure
        failure = TaskFailure(code=code, message=message)
    return VideoTask(
        task_id=task_id,
        state=status.state,
        upstream_state=status.upstream_state,
        video_url=status.value("video_url"),
        video_id=status.value("video_id"),
        duration=_seconds(status.value("duration")) or requested_duration,
        trace_id=status.trace_id or trace_id,
        error=failure,
        waited_seconds=waited,
        next_step=next_step(task_id, status.state),
        demo=demo,
        **{name: value for name, value in known.items() if value is not None},
    )


def _seconds(value: str | None) -> float | None:
    try:
        return round(float(value), 3) if value is not None else None
    except ValueError:
        return None


def structured(result: BaseModel, text: str) -> CallToolResult:
    """A tool's answer: `result` as structured content, and `text` beside it for the reader."""
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=result_content(result)
    )


def next_step(task_id: str, state: str) -> str:
    if state == "succeeded":
        return (
            "Show the user the video (file_path once saved, or video_url: the link expires). To continue "
            "the clip use kling_extend_video with video_id; to re-voice it, kling_lip_sync."
        )
    if state == "failed":
        return (
            "Nothing to download. Read the error, change the prompt or media it points at, then generate "
            "again (a new paid task). Quote trace_id if you contact AceDataCloud support."
        )
    return (
        f"Still generating; nothing is lost and nothing more is charged. Call kling_get_task with "
        f"task_id '{task_id}' to wait for it (it answers as soon as the video is ready)."
    )


def video_text(task: VideoTask) -> str:
    """A few readable lines about one task; the same facts as the structured content."""
    lines = []
    if task.state == "succeeded":
        length = f" ({task.duration:g} s)" if task.duration else ""
        lines += [f"Video ready{length}: {task.video_url}", f"video_id: {task.video_id}"]
        if task.file_path:
            lines.append(f"Saved to: {task.file_path}")
    elif task.state == "failed":
        error = task.error or TaskFailure(message="unknown")
        lines.append(f"The task failed{f' ({error.code})' if error.code else ''}: {error.message}")
    else:
        seen = f" (API state: {task.upstream_state})" if task.upstream_state else ""
        lines.append(f"Still generating after {task.waited_seconds:.0f} s{seen}.")
    if task.model:
        lines.append(f"Made with: {task.model}" + (f", {task.mode} mode" if task.mode else ""))
    lines.append(f"task_id: {task.task_id}")
    if task.trace_id:
        lines.append(f"trace_id: {task.trace_id}")
    lines.append(f"Next: {task.next_step}")
    if task.demo:
        lines.append(DEMO_NOTE)
    return "\n".join(lines)
