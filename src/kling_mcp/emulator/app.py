"""The emulated AceDataCloud Kling API as a Starlette app, and the record of what it received."""

from __future__ import annotations

import functools
import json
import logging
import time
from collections import Counter

import anyio
import anyio.to_thread
import httpx
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .faults import Fault, FaultMiddleware, FaultOrder, FaultPlan
from .media import SignedLinks, media_response, padded_video, refused_link, sample_video, task_clip
from .tasks import EmulatedTask, new_task
from .uploads import FileHosting
from .validation import (
    GENERATION_PATHS,
    MAX_BODY_DEPTH,
    problem_with,
    task_id_problem,
    task_ids_problem,
    too_deep,
)
from .wire import Json, error_response, new_id

logger = logging.getLogger("kling_mcp.emulator")

CALLBACK_TIMEOUT_SECONDS = 10.0


class Emulator:
    """A faithful local stand-in for the Kling API; see the package docstring for its behaviour."""

    def __init__(
        self,
        token: str | None = None,
        task_seconds: float = 5.0,
        fail_marker: str | None = "[fail]",
        video_bytes: int | None = None,
        link_seconds: float | None = None,
        clips: bool = False,
    ) -> None:
        self.token = token
        self.task_seconds = task_seconds
        self.fail_marker = fail_marker
        self.video = sample_video() if video_bytes is None else padded_video(video_bytes)
        self.clips = clips
        """Serve each task its own real clip (`task_clip`) instead of `video`."""
        self._links = None if link_seconds is None else SignedLinks(link_seconds)
        self.base_url: str | None = None
        self.counts: Counter[str] = Counter()
        self.submissions: list[Json] = []
        self.tasks: dict[str, EmulatedTask] = {}
        self.queried_ids: list[list[str]] = []
        self.media_ranges: list[str | None] = []
        self.uploads = FileHosting(self._check_token, self._media_base_url)
        self._faults = FaultPlan()
        self.app = Starlette(
            routes=self._routes(),
            middleware=[Middleware(FaultMiddleware, plan=self._faults, counts=self.counts)],
            exception_handlers={HTTPException: _http_error},
        )

    def inject(self, path: str, fault: Fault, times: int = 1) -> None:
        """Let `fault` answer the next `times` requests to `path` instead of the API."""
        self._faults.add(path, fault, times)

    def _routes(self) -> list[Route]:
        generation = [
            Route(path, functools.partial(self._generate, path), methods=["POST"])
            for path in GENERATION_PATHS
        ]
        return [
            *generation,
            Route("/kling/tasks", self._query_tasks, methods=["POST"]),
            Route("/media/{task_id}.mp4", self._media, methods=["GET"]),
            Route("/health", _health, methods=["GET"]),
            *self.uploads.routes(),
            Route("/_emulator/faults", self._order_fault, methods=["POST"]),
            Route("/_emulator/stats", self._stats, methods=["GET"]),
        ]

    async def _generate(self, path: str, request: Request) -> Response:
        body = await self._read_call(request)
        if isinstance(body, Response):
            return body
        self.submissions.append(body)
        problem = problem_with(path, body)
        if problem is not None:
            return error_response(400, "bad_request", problem)
        task = new_task(body, task_seconds=self.task_seconds, fail_marker=self.fail_marker)
        self.tasks[task.id] = task
        seconds = task.finishes_at - task.created_at
        logger.info("%s: task %s will %s in %.1f s", path, task.id, task.final_state, seconds)
        media_base_url = self._media_base_url(request)
        callback_url = body.get("callback_url")
        if isinstance(callback_url, str):
            return self._accepted(task, BackgroundTask(self._call_back, task, callback_url, media_base_url))
        if body.get("async") is True:
            return self._accepted(task)
        await anyio.sleep(task.seconds_left(time.time()))
        return JSONResponse(task.final_result(self._video_url(task, media_base_url)))

    @staticmethod
    def _accepted(task: EmulatedTask, background: BackgroundTask | None = None) -> Response:
        return JSONResponse(
            {"success": True, "task_id": task.id, "trace_id": task.trace_id}, background=background
        )

    async def _call_back(self, task: EmulatedTask, url: str, media_base_url: str) -> None:
        """POST the final result to the caller's callback_url once done; failures are only logged."""
        await anyio.sleep(task.seconds_left(time.time()))
        try:
            async with httpx.AsyncClient(timeout=CALLBACK_TIMEOUT_SECONDS) as client:
                await client.post(url, json=task.final_result(self._video_url(task, media_base_url)))
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            logger.warning("callback for task %s to %s failed: %r", task.id, url, exc)

    async def _query_tasks(self, request: Request) -> Response:
        body = await self._read_call(request)
        if isinstance(body, Response):
            return body
        media_base_url = self._media_base_url(request)
        action = body.get("action")
        if action == "retrieve":
            return self._retrieve(body.get("id"), media_base_url)
        if action == "retrieve_batch":
            return self._retrieve_batch(body.get("ids"), media_base_url)
        return error_response(
            400, "bad_request", f"action must be retrieve or retrieve_batch (got {action!r})"
        )

    def _retrieve(self, task_id: object, media_base_url: str) -> Response:
        if not isinstance(task_id, str) or not task_id:
            return error_response(400, "bad_request", "id is required: the task_id a generation answered")
        problem = task_id_problem("id", task_id)
        if problem is not None:
            return error_response(400, "bad_request", problem)
        self.queried_ids.append([task_id])
        task = self.tasks.get(task_id)
        if task is None:
            return error_response(404, "not_found", f"task {task_id} not found")
        return JSONResponse({**self._task_object(task, time.time(), media_base_url), "trace_id": new_id()})

    def _retrieve_batch(self, ids: object, media_base_url: str) -> Response:
        problem = task_ids_problem(ids)
        if problem is not None:
            return error_response(400, "bad_request", problem)
        assert isinstance(ids, list)  # task_ids_problem refuses anything else
        self.queried_ids.append(list(ids))
        now = time.time()
        items = [
            self._task_object(self.tasks[task_id], now, media_base_url)
            for task_id in ids
            if task_id in self.tasks
        ]
        return JSONResponse({"items": items, "count": len(items), "trace_id": new_id()})

    async def _media(self, request: Request) -> Response:
        task_id: str = request.path_params["task_id"]
        self.media_ranges.append(request.headers.get("range"))
        now = time.time()
        refusal = None if self._links is None else self._links.refusal(task_id, request.query_params, now)
        if refusal is not None:
            return refused_link(refusal)
        task = self.tasks.get(task_id)
        if task is None or task.final_state != "succeed" or not task.is_done(now):
            return error_response(404, "not_found", "no such video")
        return media_response(await self.video_of(task), request.headers.get("range"))

    async def video_of(self, task: EmulatedTask) -> bytes:
        """The bytes `task`'s video link serves."""
        if not self.clips:
            return self.video
        return await anyio.to_thread.run_sync(task_clip, task.id, task.aspect_ratio, task.video_seconds)

    def _task_object(self, task: EmulatedTask, now: float, media_base_url: str) -> Json:
        return task.as_task_object(now, self._video_url(task, media_base_url))

    def _video_url(self, task: EmulatedTask, media_base_url: str) -> str:
        """The link to `task`'s video; signed, and valid for `link_seconds` from now, if set."""
        url = f"{media_base_url}/media/{task.id}.mp4"
        return url if self._links is None else self._links.sign(url, task.id, time.time())

    async def _order_fault(self, request: Request) -> Response:
        try:
            order = FaultOrder.model_validate_json(await request.body())
        except ValidationError as exc:
            return error_response(400, "bad_request", _describe(exc))
        self.inject(order.path, order.fault(), order.times)
        return JSONResponse({"ok": True, "pending_faults": self._faults.pending()})

    async def _stats(self, request: Request) -> Response:
        return JSONResponse(
            {
                "counts": dict(self.counts),
                "submissions": len(self.submissions),
                "tasks": len(self.tasks),
                "pending_faults": self._faults.pending(),
            }
        )

    async def _read_call(self, request: Request) -> Json | Response:
        """The JSON object a call carries, or the error answer when it is unauthorized or malformed."""
        denied = self._check_token(request.headers.get("authorization"))
        if denied is not None:
            return denied
        raw = await request.body()
        if too_deep(raw):
            return error_response(
                400, "bad_request", f"the request body is nested more than {MAX_BODY_DEPTH} levels deep"
            )
        try:
            body = json.loads(raw)
        except ValueError:
            return error_response(400, "bad_request", "the request body is not valid JSON")
        if not isinstance(body, dict):
            return error_response(400, "bad_request", "the request body must be a JSON object")
        return body

    def _check_token(self, authorization: str | None) -> Response | None:
        if not authorization:
            return error_response(
                401, "no_token", "No token given: send the header 'authorization: Bearer <token>'."
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return error_response(401, "invalid_token", "The authorization header must be 'Bearer <token>'.")
        if self.token is not None and token.strip() != self.token:
            return error_response(401, "invalid_token", "The token is invalid.")
        return None

    def _media_base_url(self, request: Request) -> str:
        return self.base_url or str(request.base_url).rstrip("/")


async def _health(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405 answers, in the contract's error body."""
    if not isinstance(exc, HTTPException):
        raise exc
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
    return error_response(exc.status_code, code, exc.detail, exc.headers)


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, error['loc'])) or 'body'}: {error['msg']}" for error in exc.errors()
    )
