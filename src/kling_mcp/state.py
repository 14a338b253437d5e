"""What the server sets up once, in its lifespan, and every call shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from mcp.server.mcpserver import Context

from kling_mcp.client import HttpPool, KlingClient
from kling_mcp.polling import TaskPoller
from kling_mcp.settings import Settings

if TYPE_CHECKING:
    from kling_mcp.keeper import TaskKeeper
    from kling_mcp.local_files import ClientRoots


@dataclass(frozen=True)
class AppState:
    settings: Settings
    http: HttpPool
    client: KlingClient
    poller: TaskPoller
    keeper: TaskKeeper
    roots: ClientRoots


def app_state(ctx: Context[Any, Any]) -> AppState:
    """The state of the server `ctx` belongs to."""
    return cast(AppState, ctx.request_context.lifespan_context)
