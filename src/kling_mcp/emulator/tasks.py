"""Emulated generation tasks: their lifecycle, and the JSON the API answers about them.

A task's state is a pure function of the clock: it runs from `created_at` to `finishes_at`
and is done from then on, so nothing needs a timer to move it along.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from .wire import Json, new_id

FinalState = Literal["succeed", "failed"]

MODERATION_MARKER = "[moderation]"
"""A prompt (or lip-sync text) containing this ends `failed` with code `moderation_blocked`."""
SECONDS_MARKER = re.compile(r"\[(\d{1,3}(?:\.\d+)?) s\]")
"""A prompt (or lip-sync text) containing "[N s]" runs N seconds instead of the emulator's task_seconds."""

DEFAULT_DURATION = "5.066"
"""The duration a video reports when the request named none (the API's default is 5 s)."""


@dataclass(frozen=True)
class TaskError:
    """Why a task failed, as the `error` of its final result."""

    code: str
    message: str


@dataclass
class EmulatedTask:
    """One generation the emulated API accepted."""

    id: str
    request: Json
    created_at: float
    finishes_at: float
    trace_id: str
    error: TaskError | None = None
    video_id: str = field(default_factory=new_id)

    @property
    def final_state(self) -> FinalState:
        return "succeed" if self.error is None else "failed"

    def is_done(self, now: float) -> bool:
        return now >= self.finishes_at

    def seconds_left(self, now: float) -> float:
        return max(0.0, self.finishes_at - now)

    def final_result(self, video_url: str) -> Json:
        """What a synchronous call, a callback and a finished task's `response` carry.

        `video_url` is the link to this task's video (the emulator signs a fresh one each time)."""
        if self.error is not None:
            return {
                "success": False,
                "task_id": self.id,
                "state": "failed",
                "error": {"code": self.error.code, "message": self.error.message},
                "trace_id": self.trace_id,
            }
        return {
            "success": True,
            "task_id": self.id,
            "video_id": self.video_id,
            "video_url": video_url,
            "duration": _reported_duration(self.request),
            "state": "succeed",
            "trace_id": self.trace_id,
        }

    @property
    def aspect_ratio(self) -> str:
        """The aspect ratio asked for (the commerce endpoints say it in their settings); 16:9 if none."""
        return str(_setting(self.request, "aspect_ratio") or "16:9")

    @property
    def video_seconds(self) -> float:
        return float(_reported_duration(self.request))

    def as_task_object(self, now: float, video_url: str) -> Json:
        """The task object `/kling/tasks` answers: `response` grows as the task runs."""
        task: Json = {"id": self.id, "created_at": self.created_at, "request": self.request}
        if self.is_done(now):
            task["response"] = self.final_result(video_url)
            task["finished_at"] = self.finishes_at
            task["elapsed"] = round(self.finishes_at - self.created_at, 3)
        else:
            progress = self._progress(now)
            if progress is not None:
                task["response"] = progress
        return task

    def _progress(self, now: float) -> Json | None:
        """While running, `response` is first missing, then empty, then says "processing"."""
        length = self.finishes_at - self.created_at
        share_elapsed = (now - self.created_at) / length if length > 0 else 1.0
        if share_elapsed < 1 / 3:
            return None
        if share_elapsed < 2 / 3:
            return {}
        return {"state": "processing", "task_id": self.id}


def new_task(request: Json, *, task_seconds: float, fail_marker: str | None) -> EmulatedTask:
    """A task for a valid generation request, failing when its prompt asks for it."""
    now = time.time()
    return EmulatedTask(
        id=new_id(),
        request=request,
        created_at=now,
        finishes_at=now + _scripted_seconds(request, task_seconds),
        trace_id=new_id(),
        error=_scripted_error(request, fail_marker),
    )


def _scripted_seconds(request: Json, task_seconds: float) -> float:
    marked = SECONDS_MARKER.search(_words(request))
    return task_seconds if marked is None else float(marked[1])


def _scripted_error(request: Json, fail_marker: str | None) -> TaskError | None:
    words = _words(request)
    if MODERATION_MARKER in words:
        return TaskError(
            "moderation_blocked", "The request was blocked by the content policy: change the prompt."
        )
    if fail_marker and fail_marker in words:
        return TaskError(
            "task_failed", f"The video could not be generated: the prompt contains {fail_marker!r}."
        )
    return None


def _words(request: Json) -> str:
    """What a request says in words: its prompt, or its lip-sync text."""
    return " ".join(str(request.get(key, "")) for key in ("prompt", "text"))


def _reported_duration(request: Json) -> str:
    """Kling reports a few frames more than asked: 10 s comes back as "10.033"."""
    requested = _setting(request, "duration")
    return DEFAULT_DURATION if requested is None else f"{int(requested)}.033"


def _setting(request: Json, name: str) -> Any:
    """`name` from the request's top level or, as the commerce endpoints say it, from its settings."""
    settings = request.get("settings")
    if name not in request and isinstance(settings, dict):
        return settings.get(name)
    return request.get(name)
