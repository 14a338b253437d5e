"""The client's roots: the directories it shares, from which local files may be taken.

Asked in both protocol eras: by a `roots/list` request in the legacy era, and by an
`InputRequiredResult` from protocol 2026-07-28 on.
"""

from __future__ import annotations

import warnings
import weakref
from pathlib import Path
from typing import Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp.types import InputRequiredResult, ListRootsRequest, ListRootsResult
from mcp_types.version import is_version_at_least

from kling_mcp.domain.local_files import Refused, file_uri_path
from kling_mcp.logs import logger

ROOTS_INPUT_KEY = "kling_mcp.roots"
"""The key of the roots request inside an `InputRequiredResult` (protocol 2026-07-28)."""
ROOTS_TIMEOUT_SECONDS = 10.0
INPUT_REQUIRED_VERSION = "2026-07-28"
"""The first protocol revision where a server asks its client through `InputRequiredResult`."""


class RootsRequired(Exception):
    """The client answers roots only through an `InputRequiredResult` (protocol 2026-07-28).

    The tool call returns `result`; the client lists its roots and calls the tool again with the
    answer, which `ClientRoots.get` then reads.
    """

    def __init__(self) -> None:
        super().__init__("the client's roots are needed first")
        self.result = InputRequiredResult(input_requests={ROOTS_INPUT_KEY: ListRootsRequest()})


class ClientRoots:
    """The client's roots, in both protocol eras.

    Legacy era (an `initialize` handshake): asked once per connection with a `roots/list` request
    sent mid-call, and asked again after the client's `notifications/roots/list_changed` (install
    `watch` as server middleware to see those). Protocol 2026-07-28: no notification exists and
    the server may not send requests, so each call that needs them asks again by raising
    RootsRequired; a change takes effect on the next call either way.
    """

    def __init__(self, timeout: float = ROOTS_TIMEOUT_SECONDS) -> None:
        self._timeout = timeout
        self._by_connection: dict[int, list[Path] | None] = {}
        """Keyed by the identity of the connection's `initialize` parameters, dropped with them."""

    async def get(self, ctx: Context[Any, Any]) -> list[Path] | None:
        """The client's roots as directories; None when it offers none. May raise RootsRequired."""
        capabilities = ctx.client_capabilities
        if capabilities is None or capabilities.roots is None:
            return None
        version = ctx.protocol_version
        if version is not None and is_version_at_least(version, INPUT_REQUIRED_VERSION):
            return _answered_roots(ctx)
        connection = ctx.session.client_params
        if connection is not None and id(connection) in self._by_connection:
            return self._by_connection[id(connection)]
        try:
            roots = await self._ask(ctx)
        except _Unanswered as exc:  # not remembered: the next call asks again
            logger.warning(
                "The client did not list its roots (%s): using KLING_INPUT_DIRS and defaults.", exc
            )
            return None
        if connection is not None:
            self._by_connection[id(connection)] = roots
            weakref.finalize(connection, self._by_connection.pop, id(connection), None)
        return roots

    async def watch(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Server middleware (`server.middleware.append(roots.watch)`): forgets roots that changed."""
        if ctx.method == "notifications/roots/list_changed":
            self._by_connection.pop(id(ctx.session.client_params), None)
            logger.debug("The client's roots changed: asking again on the next call that needs them.")
        return await call_next(ctx)

    async def _ask(self, ctx: Context[Any, Any]) -> list[Path] | None:
        if not ctx.session.can_send_request:
            raise _Unanswered("this connection cannot carry a request to the client")
        with anyio.move_on_after(self._timeout):
            try:
                with warnings.catch_warnings():  # roots are deprecated in 2026-07-28, current before it
                    warnings.simplefilter("ignore", MCPDeprecationWarning)
                    answer = await ctx.session.send_request(
                        ListRootsRequest(),
                        ListRootsResult,
                        metadata=ServerMessageMetadata(related_request_id=ctx.request_id),
                    )
            except MCPError as exc:
                raise _Unanswered(str(exc)) from None
            return _root_directories(answer)
        raise _Unanswered(f"no answer within {self._timeout:g} s")


class _Unanswered(Exception):
    """The client was asked for its roots and gave none."""


def _answered_roots(ctx: Context[Any, Any]) -> list[Path] | None:
    answer = (ctx.input_responses or {}).get(ROOTS_INPUT_KEY)
    if answer is None:
        raise RootsRequired
    wire = answer.model_dump(mode="json", by_alias=True, exclude_none=True)
    try:
        return _root_directories(ListRootsResult.model_validate(wire))
    except ValueError:
        logger.warning("The client answered the roots request with something else: using KLING_INPUT_DIRS.")
        return None


def _root_directories(answer: ListRootsResult) -> list[Path] | None:
    """The local directories among the roots; None when there are none (so the defaults apply)."""
    directories = []
    for root in answer.roots:
        try:
            directories.append(file_uri_path(str(root.uri)))
        except Refused as exc:
            logger.warning("Ignoring the client's root %s: it %s.", root.uri, exc)
    return directories or None
