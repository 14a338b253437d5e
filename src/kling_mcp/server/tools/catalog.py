"""Every tool of the server, and how each is served: its definition (lean schemas, defaults) and its call."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import Tool

from kling_mcp.errors import KlingMcpError
from kling_mcp.logs import relay_to_client
from kling_mcp.server.player import tool_meta
from kling_mcp.server.sdk import ServerTool, ToolResult
from kling_mcp.server.state import app_state
from kling_mcp.server.tools import clips, commerce, media, tasks, video
from kling_mcp.server.tools.common import GenerationRequest
from kling_mcp.server.tools.spec import ToolSpec, input_schema, output_schema, parse_arguments
from kling_mcp.settings import Settings

TOOL_SPECS: tuple[ToolSpec, ...] = (
    *video.TOOLS,
    *media.TOOLS,
    *commerce.TOOLS,
    *tasks.TOOLS,
    tasks.list_models_tool(lambda: TOOL_SPECS),
    *clips.TOOLS,
)
WAIT_FIELDS = tuple(GenerationRequest.model_fields)


def build_tools(settings: Settings) -> list[ServerTool]:
    return [build_tool(spec, server_defaults(spec, settings)) for spec in TOOL_SPECS]


def server_defaults(spec: ToolSpec, settings: Settings) -> dict[str, Any]:
    """Defaults that come from this server's settings rather than from the models."""
    model = spec.input_model
    defaults: dict[str, Any] = {}
    if "timeout" in model.model_fields:
        defaults["timeout"] = settings.default_wait_seconds
    if getattr(model, "uses_server_defaults", False):
        defaults |= {
            "model": settings.default_model,
            "mode": settings.default_mode,
            "aspect_ratio": settings.default_aspect_ratio,
        }
    return defaults


def build_tool(spec: ToolSpec, defaults: dict[str, Any]) -> ServerTool:
    """The served tool for `spec`; `defaults` fill what a call leaves out (and show in the schema)."""

    async def call_tool(ctx: Context, arguments: dict[str, Any]) -> ToolResult:
        given = {name: value for name, value in arguments.items() if value is not None}
        request = parse_arguments(spec.name, spec.input_model, {**defaults, **given})
        app = app_state(ctx)
        try:
            caller = app.caller(ctx)
            with relay_to_client(ctx.session):
                if app.policy.takes_over_on_request:
                    await app.tasks.take_over(caller)
                return await spec.handler(request, app, ctx, caller)
        except KlingMcpError as error:  # an expected failure, in the user's words
            raise ToolError(str(error)) from None

    definition = Tool(
        name=spec.name,
        title=spec.title,
        description=spec.description,
        input_schema=input_schema(spec.input_model, defaults, last=WAIT_FIELDS),
        output_schema=output_schema(spec.output_model),
        annotations=spec.annotations,
        _meta=tool_meta() if spec.shows_video else None,
    )
    return ServerTool(definition, call_tool, spec.output_model)
