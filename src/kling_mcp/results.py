"""Turn task statuses into tool results: structured `VideoTask`s and the short text beside them."""

from __future__ import annotations

from kling_mcp.client import TaskStatus
from kling_mcp.models import TaskBatch, TaskFailure, VideoTask

DEMO_NOTE = "DEMO MODE: made by the local emulator, not by Kling; nothing was charged."


def video_task(
    task_id: str,
    status: TaskStatus | None,
    waited: float,
    demo: bool,
    trace_id: str | None = None,
) -> VideoTask:
    """What a caller should know about `task_id`, given the last status seen (None: not yet seen)."""
    if status is None:
        status = TaskStatus(task_id, "running", trace_id=trace_id)
    failure = None
    if status.state == "failed":
        code, message = status.failure
        failure = TaskFailure(code=code, message=message)
    duration = status.value("duration")
    return VideoTask(
        task_id=task_id,
        state=status.state,
        upstream_state=status.upstream_state,
        video_url=status.value("video_url"),
        video_id=status.value("video_id"),
        duration=_seconds(duration),
        trace_id=status.trace_id or trace_id,
        error=failure,
        waited_seconds=waited,
        next_step=_next_step(task_id, status.state),
        demo=demo,
    )


def _seconds(value: str | None) -> float | None:
    try:
        return round(float(value), 3) if value is not None else None
    except ValueError:
        return None


def _next_step(task_id: str, state: str) -> str:
    if state == "succeeded":
        return (
            "Show the user video_url and suggest downloading it soon: the link expires. "
            "To continue the clip use kling_extend_video with video_id; to re-voice it, kling_lip_sync."
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
    elif task.state == "failed":
        error = task.error or TaskFailure(message="unknown")
        lines.append(f"The task failed{f' ({error.code})' if error.code else ''}: {error.message}")
    else:
        seen = f" (API state: {task.upstream_state})" if task.upstream_state else ""
        lines.append(f"Still generating after {task.waited_seconds:.0f} s{seen}.")
    lines.append(f"task_id: {task.task_id}")
    if task.trace_id:
        lines.append(f"trace_id: {task.trace_id}")
    lines.append(f"Next: {task.next_step}")
    if task.demo:
        lines.append(DEMO_NOTE)
    return "\n".join(lines)


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
