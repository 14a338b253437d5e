"""The task resources, registered at start-up; what they read is imported when first read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import Context, MCPServer

from kling_mcp.server.state import AppState, app_state

TASK_TEMPLATE = "kling://tasks/{task_id}"
"""A task's resource; completion offers the caller's newest task ids for `task_id`."""


def register_resources(server: MCPServer[Any], running: Callable[[], AppState]) -> None:
    """`kling://tasks` and `kling://tasks/{task_id}`; `running` gives the static one the server's state."""

    async def read_recent_tasks() -> str:
        """The newest tasks this server started, from its journal."""
        from kling_mcp.server.tools.tasks import recent_tasks_json

        return await recent_tasks_json(running())

    async def read_task(task_id: str, ctx: Context) -> str:
        """A Kling task's state now, with its saved file."""
        from kling_mcp.server.tools.tasks import task_json

        app = app_state(ctx)
        return await task_json(app, app.caller(ctx), task_id)

    server.resource(
        "kling://tasks",
        name="kling_tasks",
        title="Recent Kling tasks",
        description="The 50 newest tasks this server started, from its journal.",
        mime_type="application/json",
    )(read_recent_tasks)
    server.resource(
        TASK_TEMPLATE,
        name="kling_task",
        title="A Kling task",
        description="A Kling task's state now: video_url, video_id, duration and file_path when done.",
        mime_type="application/json",
    )(read_task)
