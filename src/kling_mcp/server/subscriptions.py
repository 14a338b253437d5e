"""`resources/subscribe` and `resources/unsubscribe`, for clients of the handshake era (2025-11-25).

A client subscribed to `kling://tasks/{task_id}` (or to `kling://tasks`, every task) is sent
`notifications/resources/updated` when the task's state changes, so it can read it again instead
of polling. MCPServer serves neither method, so this server middleware does, and declares
`resources.subscribe` in the `initialize` answer. A subscription lasts as long as its connection:
on stdio, the session; on the stateless HTTP of a hosted server, one request, so there it is
accepted but never fires (a hosted client polls `kling_get_task`, or uses MCP Tasks). Protocol
2026-07-28 removed the methods; there the SDK answers them as not found.
"""

from __future__ import annotations

import weakref
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, EmptyResult, SubscribeRequestParams, UnsubscribeRequestParams
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, ValidationError

from kling_mcp.api.client import TaskStatus
from kling_mcp.logs import logger

EVERY_TASK = "kling://tasks"
TASK_URI = "kling://tasks/{task_id}"
_METHODS: dict[str, type[BaseModel]] = {
    "resources/subscribe": SubscribeRequestParams,
    "resources/unsubscribe": UnsubscribeRequestParams,
}


class TaskSubscriptions:
    """Which sessions want which task resources, and the last state each task was announced in."""

    def __init__(self) -> None:
        self._connections: dict[int, tuple[ServerSession, set[str]]] = {}
        """By the identity of the connection's `initialize` parameters, dropped with them."""
        self._announced: dict[str, tuple[str, str | None]] = {}

    async def serve(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Server middleware: answers the two methods and declares them on a handshake connection."""
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return await call_next(ctx)
        if ctx.method in _METHODS:
            uri = self._uri(ctx)
            uris = self._subscriptions_of(ctx.session)
            if ctx.method == "resources/subscribe":
                uris.add(uri)
            else:
                uris.discard(uri)
            return EmptyResult()
        result = await call_next(ctx)
        if ctx.method == "initialize" and isinstance(result, dict):
            result["capabilities"].setdefault("resources", {})["subscribe"] = True
        return result

    async def changed(self, statuses: dict[str, TaskStatus]) -> None:
        """Tell each subscribed session of the tasks whose state changed since last announced."""
        if not self._connections:
            return
        news = []
        for task_id, status in statuses.items():
            state = (status.state, status.upstream_state)
            if self._announced.get(task_id) != state:
                self._announced[task_id] = state
                news.append(task_id)
        for session, uris in list(self._connections.values()):
            for task_id in news:
                for uri in {EVERY_TASK, TASK_URI.format(task_id=task_id)} & uris:
                    await _announce(session, uri)

    def _subscriptions_of(self, session: ServerSession) -> set[str]:
        connection = session.client_params
        if connection is None:  # no handshake: nothing lasts beyond this request
            return set()
        if id(connection) not in self._connections:
            self._connections[id(connection)] = (session, set())
            weakref.finalize(connection, self._connections.pop, id(connection), None)
        return self._connections[id(connection)][1]

    @staticmethod
    def _uri(ctx: ServerRequestContext[Any, Any]) -> str:
        try:
            params = _METHODS[ctx.method].model_validate(ctx.params or {})
        except ValidationError as error:
            raise MCPError(INVALID_PARAMS, f"{ctx.method}: {error.errors()[0]['msg']}") from None
        return str(getattr(params, "uri", ""))


async def _announce(session: ServerSession, uri: str) -> None:
    try:
        await session.send_resource_updated(uri)
    except Exception as error:  # a closed connection: its subscriptions end with it
        logger.debug("Could not announce %s: %s", uri, error)
