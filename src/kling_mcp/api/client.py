"""The AceDataCloud Kling API client: submissions and task queries over one pooled connection.

Two rules shape it (shared/kling-api.md):
- Task queries are free and idempotent, so transient failures are retried with backoff
  and jitter, honouring Retry-After, but never past the caller's deadline.
- Submissions cost money: one per tool call. One is sent again only when it provably
  never reached the server (the connection could not be made).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import anyio

from kling_mcp import __version__
from kling_mcp.api.errors import ErrorKind, KlingError, kind_for
from kling_mcp.settings import Settings

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger("kling_mcp")

TaskState = Literal["succeeded", "failed", "running"]
SUCCEEDED = frozenset({"succeed", "succeeded", "success", "completed", "complete", "done", "finished"})
FAILED = frozenset({"failed", "fail", "failure", "error", "cancelled", "canceled"})
SUBMIT_ATTEMPTS = 3
QUERY_BUDGET = 15.0
"""Seconds one task lookup may take, retries included."""
BACKOFF_BASE = 0.25
BACKOFF_CAP = 8.0


@dataclass(frozen=True)
class TaskStatus:
    """One task as the API last described it, its state read with tolerance for spellings."""

    task_id: str
    state: TaskState
    upstream_state: str | None = None
    response: Mapping[str, Any] = field(default_factory=dict)
    trace_id: str | None = None
    """The task's own trace id, once its result carries one (not that of the query that read it)."""

    @classmethod
    def from_task(cls, task: Mapping[str, Any]) -> TaskStatus:
        """Read a `/kling/tasks` task object (`{"id", "request", "response", ...}`)."""
        response = task.get("response")
        response = response if isinstance(response, Mapping) else {}
        task_id = str(task.get("id") or response.get("task_id") or "")
        return cls.from_result(task_id, response)

    @classmethod
    def from_result(cls, task_id: str, result: Mapping[str, Any]) -> TaskStatus:
        """Read a generation result (`{"success", "state", "video_url", ...}`), final or not."""
        raw_state = result.get("state")
        upstream = str(raw_state) if raw_state is not None else None
        spelled = (upstream or "").lower()
        state: TaskState = "running"
        if spelled in FAILED or result.get("success") is False:
            state = "failed"
        elif spelled in SUCCEEDED or (not spelled and result.get("video_url")):
            state = "succeeded"
        return cls(task_id, state, upstream, result, result.get("trace_id"))

    @property
    def done(self) -> bool:
        return self.state != "running"

    def value(self, name: str) -> str | None:
        found = self.response.get(name)
        return str(found) if found not in (None, "") else None

    @property
    def failure(self) -> tuple[str | None, str]:
        """The API's error code and words for a failed task."""
        error = self.response.get("error")
        if isinstance(error, Mapping):
            return error.get("code"), str(error.get("message") or error.get("code") or "no reason given")
        return None, str(error or self.response.get("message") or "The task failed; the API gave no reason.")


@dataclass(frozen=True)
class Submitted:
    task_id: str
    trace_id: str | None


class HttpPool:
    """The server's one pool of HTTP connections, shared by the API client, uploads and downloads.

    Made on first use: importing and setting up httpx (TLS context included) is the largest part
    of the server's start-up otherwise. It carries no credentials: each API request adds its own
    bearer token, so none ever travels to a CDN or a file host by default.
    """

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(
                headers={"user-agent": f"kling-mcp/{__version__}"},
                transport=self._transport,
                limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


class KlingClient:
    """A thin, typed client of the Kling endpoints; one per server, on the server's HTTP pool."""

    def __init__(self, settings: Settings, pool: HttpPool | None = None) -> None:
        """On the server's `pool`; without one, on a pool of its own that `aclose()` closes."""
        self._settings = settings
        self._token = settings.api_token
        self._own_pool = pool is None
        self._pool = pool or HttpPool()
        self._headers = {"accept": "application/json"}
        if self._token:
            self._headers["authorization"] = f"Bearer {self._token}"

    @property
    def token(self) -> str | None:
        """Whose requests these are (a poller groups tasks by it); never to be logged or shown."""
        return self._token

    def with_token(self, token: str) -> KlingClient:
        """A client on the same pool whose requests carry `token` (a hosted request's own)."""
        return KlingClient(dataclasses.replace(self._settings, api_token=token), self._pool)

    async def aclose(self) -> None:
        if self._own_pool:
            await self._pool.aclose()

    async def submit(self, endpoint: str, body: Mapping[str, Any], *, deadline: float) -> Submitted:
        """Start a paid generation and return its task id."""
        try:
            answer, trace_id = await self._send_once(endpoint, body, deadline)
        except KlingError as error:
            if error.transient and not error.never_sent and error.kind is not ErrorKind.RATE_LIMITED:
                error.maybe_submitted = True
                error.note = error.note or _MAYBE_SENT
            raise
        task_id = answer.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            raise KlingError(
                ErrorKind.BAD_RESPONSE,
                f"The submission was answered without a task_id: {answer}",
                trace_id=trace_id,
                note=_MAYBE_SENT,
                maybe_submitted=True,
            )
        return Submitted(task_id, trace_id)

    async def _send_once(
        self, endpoint: str, body: Mapping[str, Any], deadline: float
    ) -> tuple[dict[str, Any], str | None]:
        """POST a submission; again only when the connection could not be made (nothing was sent)."""
        for attempt in range(SUBMIT_ATTEMPTS):
            try:
                return await self._post(endpoint, body, deadline)
            except KlingError as error:
                delay = _backoff(attempt)
                last_try = attempt + 1 == SUBMIT_ATTEMPTS or anyio.current_time() + delay >= deadline
                if not error.never_sent or last_try:
                    raise
                logger.warning("Could not connect to submit (nothing was sent); retrying in %.1f s", delay)
                await anyio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def retrieve(self, task_id: str, *, deadline: float) -> TaskStatus:
        """One task's status, retrying transient failures until `deadline`."""
        answer, trace_id = await self._query({"id": task_id, "action": "retrieve"}, deadline)
        if not answer.get("id") and not answer.get("response"):
            raise KlingError(
                ErrorKind.NOT_FOUND, f"No task with id {task_id}.", task_id=task_id, trace_id=trace_id
            )
        return TaskStatus.from_task({"id": task_id, **answer})

    async def retrieve_batch(
        self, task_ids: list[str], *, deadline: float, retry: bool = True
    ) -> dict[str, TaskStatus]:
        """Many tasks in one request; ids the API does not know are absent from the answer.

        `retry=False` makes one attempt, for a caller that schedules its own retries.
        """
        body = {"ids": task_ids, "action": "retrieve_batch"}
        if retry:
            answer, _ = await self._query(body, deadline)
        else:
            answer, _ = await self._post("/kling/tasks", body, deadline)
        items = answer.get("items")
        if not isinstance(items, list):
            raise KlingError(ErrorKind.BAD_RESPONSE, "retrieve_batch answered without an items list.")
        statuses = (TaskStatus.from_task(item) for item in items if isinstance(item, Mapping))
        return {status.task_id: status for status in statuses if status.task_id}

    async def _query(self, body: Mapping[str, Any], deadline: float) -> tuple[dict[str, Any], str | None]:
        attempt = 0
        while True:
            try:
                return await self._post("/kling/tasks", body, deadline)
            except KlingError as error:
                delay = retry_delay(error, attempt)
                if delay is None or anyio.current_time() + delay >= deadline:
                    raise
                logger.info(
                    "Task query failed (%s); retry %d in %.1f s", error.kind.value, attempt + 1, delay
                )
                await anyio.sleep(delay)
                attempt += 1

    async def _post(
        self, path: str, body: Mapping[str, Any], deadline: float
    ) -> tuple[dict[str, Any], str | None]:
        if not self._token:
            raise KlingError(ErrorKind.NO_TOKEN)
        pool = self._pool.client()
        import httpx  # loaded by the pool: this only binds the name

        remaining = max(deadline - anyio.current_time(), 0.05)
        timeout = httpx.Timeout(
            min(self._settings.read_timeout, remaining),
            connect=min(self._settings.connect_timeout, remaining),
        )
        logger.debug("POST %s %s", path, json.dumps(body, ensure_ascii=False))
        try:
            response = await pool.post(
                self._settings.api_base_url + path, json=body, headers=self._headers, timeout=timeout
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise KlingError(
                ErrorKind.UNREACHABLE, self._describe(exc), never_sent=True, note=_NOT_SENT
            ) from None
        except httpx.TimeoutException as exc:
            waited = f"No answer within {self._settings.read_timeout:g} s (KLING_READ_TIMEOUT)."
            raise KlingError(ErrorKind.TIMEOUT, f"{waited} {self._describe(exc)}") from None
        except httpx.TransportError as exc:
            raise KlingError(ErrorKind.UNREACHABLE, self._describe(exc)) from None
        text = self._redact(response.text)
        logger.debug("%s %s -> %d %s", "POST", path, response.status_code, text[:2000])
        try:
            answer = json.loads(text)
        except ValueError:
            answer = None
        trace_id = answer.get("trace_id") if isinstance(answer, dict) else None
        if response.is_error or not isinstance(answer, dict) or answer.get("error"):
            raise _error_from_response(response, answer, text, trace_id)
        return answer, trace_id

    def _describe(self, exc: httpx.TransportError) -> str:
        reason = str(exc)
        return self._redact(f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__)

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text


_NOT_SENT = "Nothing was sent: the connection could not be made."
_MAYBE_SENT = (
    "The submission may have reached AceDataCloud and started a paid task. "
    "Before submitting again, check your tasks at https://platform.acedata.cloud so you do not pay twice."
)


def retry_delay(error: KlingError, attempt: int) -> float | None:
    """Seconds to wait before retrying a free query after `error`, or None not to retry."""
    if not error.transient:
        return None
    if error.retry_after is not None:
        return error.retry_after
    return _backoff(attempt)


def _backoff(attempt: int) -> float:
    """Exponential backoff, jittered so that many clients do not retry in step."""
    return random.uniform(0.5, 1.0) * min(BACKOFF_CAP, BACKOFF_BASE * 2.0**attempt)


def _error_from_response(
    response: httpx.Response, answer: object, text: str, trace_id: str | None
) -> KlingError:
    if isinstance(answer, dict):
        error = _error_from_body(response.status_code, answer, trace_id)
    else:
        kind = ErrorKind.BAD_RESPONSE if response.is_success else kind_for(response.status_code, None)
        error = KlingError(kind, _readable(text) or response.reason_phrase, status=response.status_code)
    error.retry_after = _retry_after(response)
    return error


def _error_from_body(status: int, body: Mapping[str, Any], trace_id: str | None) -> KlingError:
    raw = body.get("error")
    if isinstance(raw, Mapping):
        code, message = raw.get("code"), str(raw.get("message") or "")
    else:
        code, message = None, str(raw or body.get("message") or "")
    code = str(code) if code else None
    return KlingError(
        kind_for(status, code),
        message or "The API gave no message.",
        status=status,
        code=code,
        trace_id=trace_id or body.get("trace_id"),
        task_id=body.get("task_id"),
    )


def _retry_after(response: httpx.Response) -> float | None:
    value: str = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _readable(text: str, limit: int = 300) -> str:
    """The words of a non-JSON body (an HTML gateway page, say), on one line."""
    visible = re.sub(r"<(script|style)\b.*?</\1\s*>", " ", text, flags=re.DOTALL | re.IGNORECASE)
    words = " ".join(re.sub(r"<[^>]+>", " ", visible).split())
    return words if len(words) <= limit else words[: limit - 1] + "…"
