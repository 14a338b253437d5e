"""Faults to inject: the ways the real API, or the network in front of it, lets a client down.

A fault is planned for a path and answers the next request to that path in place of the
emulated API, which never sees that request (a delay or a cut lets it answer, late or
in part). A fault planned for a folder such as `/media` also answers the requests below it.
Faults planned for one path answer in the order they were planned.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .wire import error_response

logger = logging.getLogger("kling_mcp.emulator")

FaultKind = Literal["status", "drop", "cut", "delay", "html", "not_json"]

DROP_EXTENSION = "kling_mcp.emulator.drop"
"""The ASGI scope extension through which the server lets the app drop a connection.

`scope["extensions"][DROP_EXTENSION]["close"]` closes the connection at once, after the
response bytes already written: `serve_emulator` and `run_emulator` provide it (see `server.py`).
"""

NOT_JSON_BODY = "upstream said: ok<"

_GATEWAY_PAGE = """<html>
<head><title>{status} Bad Gateway</title></head>
<body>
<center><h1>{status} Bad Gateway</h1></center>
<hr><center>nginx</center>
</body>
</html>
"""


@dataclass(frozen=True)
class Fault:
    """One misbehaviour; build it with the class methods, e.g. `Fault.status(503)`."""

    kind: FaultKind
    status_code: int = 200
    error_code: str | None = None
    message: str | None = None
    retry_after: float | None = None
    seconds: float = 0.0
    after_bytes: int = 0

    @classmethod
    def status(
        cls,
        code: int,
        *,
        error_code: str | None = None,
        message: str | None = None,
        retry_after: float | None = None,
    ) -> Fault:
        """Answer HTTP `code` with the contract's error body (without `code` when error_code is None)."""
        return cls(
            "status", status_code=code, error_code=error_code, message=message, retry_after=retry_after
        )

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without any HTTP response."""
        return cls("drop")

    @classmethod
    def cut_after(cls, after_bytes: int) -> Fault:
        """Answer, but close the connection once `after_bytes` bytes of the body are sent."""
        return cls("cut", after_bytes=after_bytes)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Handle the request at once (a submission starts its task), but answer `seconds` late."""
        return cls("delay", seconds=seconds)

    @classmethod
    def html(cls, status: int = 502) -> Fault:
        """Answer a gateway's HTML error page."""
        return cls("html", status_code=status)

    @classmethod
    def not_json(cls, status: int = 200) -> Fault:
        """Answer a body that claims to be JSON and is not."""
        return cls("not_json", status_code=status)

    def response(self) -> Response:
        """The answer of a fault that answers (status, html, not_json)."""
        if self.kind == "html":
            return HTMLResponse(_GATEWAY_PAGE.format(status=self.status_code), status_code=self.status_code)
        if self.kind == "not_json":
            return Response(NOT_JSON_BODY, status_code=self.status_code, media_type="application/json")
        headers = {} if self.retry_after is None else {"retry-after": f"{self.retry_after:g}"}
        message = self.message or f"Injected HTTP {self.status_code} from the Kling API emulator."
        return error_response(self.status_code, self.error_code, message, headers)


class FaultOrder(BaseModel):
    """The body of `POST /_emulator/faults`: plan a fault from outside the process."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(pattern=r"^/")
    kind: FaultKind
    times: int = Field(default=1, ge=1)
    status: int | None = Field(default=None, ge=100, le=599)
    error_code: str | None = None
    message: str | None = None
    retry_after: float | None = Field(default=None, ge=0)
    seconds: float = Field(default=1.0, ge=0)
    after_bytes: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _status_given_for_status_faults(self) -> FaultOrder:
        if self.kind == "status" and self.status is None:
            raise ValueError("a fault of kind 'status' needs a status")
        return self

    def fault(self) -> Fault:
        if self.kind == "status":
            assert self.status is not None  # checked by the validator
            return Fault.status(
                self.status, error_code=self.error_code, message=self.message, retry_after=self.retry_after
            )
        if self.kind == "html":
            return Fault.html(self.status or 502)
        if self.kind == "not_json":
            return Fault.not_json(self.status or 200)
        if self.kind == "delay":
            return Fault.delay(self.seconds)
        if self.kind == "cut":
            return Fault.cut_after(self.after_bytes)
        return Fault.drop()


class FaultPlan:
    """Faults waiting for the requests they will answer, per path, first in first out."""

    def __init__(self) -> None:
        self._queues: defaultdict[str, deque[Fault]] = defaultdict(deque)

    def add(self, path: str, fault: Fault, times: int = 1) -> None:
        if times < 1:
            raise ValueError(f"times must be at least 1 (got {times})")
        self._queues[path].extend([fault] * times)

    def take(self, path: str) -> Fault | None:
        """The next fault planned for `path`, else for the nearest folder above it."""
        for planned in (path, *map(str, PurePosixPath(path).parents[:-1])):
            queue = self._queues.get(planned)
            if queue:
                return queue.popleft()
        return None

    def pending(self) -> dict[str, int]:
        return {path: len(queue) for path, queue in self._queues.items() if queue}


class FaultMiddleware:
    """Counts every HTTP request per path, and lets a planned fault answer it instead of the app."""

    def __init__(self, app: ASGIApp, plan: FaultPlan, counts: Counter[str]) -> None:
        self.app = app
        self.plan = plan
        self.counts = counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        self.counts[path] += 1
        fault = self.plan.take(path)
        if fault is None:
            await self.app(scope, receive, send)
            return
        logger.info("fault %s answers %s %s", fault.kind, scope["method"], path)
        if fault.kind == "delay":
            await self.app(scope, receive, _held_back(receive, send, fault.seconds))
        elif fault.kind == "drop":
            await drop_connection(scope, receive)
        elif fault.kind == "cut":
            await self.app(scope, receive, _cut_after(scope, receive, send, fault.after_bytes))
        else:
            await fault.response()(scope, receive, send)


def _held_back(receive: Receive, send: Send, seconds: float) -> Send:
    """`send`, but the answer starts only after `seconds`: the request itself is handled at once,
    as by a slow API that has already started the task when it finally answers. A client that
    leaves first ends the wait (the server then drops the answer), so stopping the server never
    waits on it."""

    async def send_late(message: Message) -> None:
        if message["type"] == "http.response.start":
            with anyio.move_on_after(seconds):
                await _until_disconnected(receive)
        await send(message)

    return send_late


def _cut_after(scope: Scope, receive: Receive, send: Send, limit: int) -> Send:
    """`send`, but the connection closes once `limit` body bytes are out, and nothing more goes."""
    close = _closer(scope)
    sent = 0
    cut = False

    async def send_until_cut(message: Message) -> None:
        nonlocal sent, cut
        if cut:
            return
        body: bytes = message.get("body", b"") if message["type"] == "http.response.body" else b""
        if sent + len(body) <= limit:
            sent += len(body)
            await send(message)
            return
        cut = True
        await send({"type": "http.response.body", "body": body[: limit - sent], "more_body": True})
        close()
        await _until_disconnected(receive)

    return send_until_cut


async def drop_connection(scope: Scope, receive: Receive) -> None:
    """Read the request, then close its connection without a byte of response."""
    close = _closer(scope)
    # Take the whole body first, so the client sees the close while it awaits the answer.
    message = await receive()
    while message["type"] == "http.request" and message.get("more_body", False):
        message = await receive()
    close()
    if message["type"] != "http.disconnect":
        await _until_disconnected(receive)


def _closer(scope: Scope) -> Callable[[], None]:
    close: Callable[[], None] | None = scope.get("extensions", {}).get(DROP_EXTENSION, {}).get("close")
    if close is None:
        raise RuntimeError(
            "Fault.drop() and Fault.cut_after() need a server started by serve_emulator() or run_emulator()"
        )
    return close


async def _until_disconnected(receive: Receive) -> None:
    """Return only once the server saw the connection go, so it does not answer a 500 instead."""
    while (await receive())["type"] != "http.disconnect":
        pass
