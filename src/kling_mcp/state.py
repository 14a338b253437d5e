"""What the server sets up once, in its lifespan, and every call shares."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, cast

from mcp.server.mcpserver import Context

from kling_mcp.client import KlingClient
from kling_mcp.polling import TaskPoller
from kling_mcp.settings import Settings

RECENT_TASKS = 100


@dataclass(frozen=True)
class AppState:
    settings: Settings
    client: KlingClient
    poller: TaskPoller
    started: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_TASKS))
    """Ids of the tasks this server submitted, newest last."""


def app_state(ctx: Context[Any, Any]) -> AppState:
    """The state of the server `ctx` belongs to."""
    return cast(AppState, ctx.request_context.lifespan_context)
