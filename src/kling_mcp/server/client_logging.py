"""`logging/setLevel`, for clients of the handshake era (protocol 2025-11-25 and before).

A tool call's log lines go to its client (logs.py). A handshake-era client picks the least severe
level it wants with `logging/setLevel`, which a server that logs to its client must serve and declare
(`capabilities.logging` in its `initialize` answer). MCPServer does neither, so this server
middleware does, for handshake connections only: protocol 2026-07-28 removed the method (each
request's `_meta` asks for a level, and the SDK filters), so there the SDK answers it as not found.
"""

from __future__ import annotations

from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, EmptyResult, SetLevelRequestParams
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from kling_mcp.logs import set_client_level


async def serve_log_levels(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Server middleware: answers `logging/setLevel` and declares `logging` on a handshake connection."""
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return await call_next(ctx)
    if ctx.method == "logging/setLevel":
        try:
            level = SetLevelRequestParams.model_validate(ctx.params or {}).level
        except ValidationError as error:
            raise MCPError(INVALID_PARAMS, f"logging/setLevel: {error.errors()[0]['msg']}") from None
        if ctx.session.client_params is not None:
            set_client_level(ctx.session.client_params, level)
        return EmptyResult()
    result = await call_next(ctx)
    if ctx.method == "initialize" and isinstance(result, dict):
        result["capabilities"]["logging"] = {}
    return result
