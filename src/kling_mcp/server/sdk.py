"""Every use of the MCP SDK's internals, in one place.

kling-mcp publishes each tool's input model as its schema and lets that model alone validate the
arguments (so every rejection names its field and lists all problems at once). The SDK's public
`MCPServer.add_tool` derives a validating model from a function signature instead, and builds it at
registration, which is most of this server's start-up time. So three internals are used here:

- `Tool(...)` built by hand with `FuncMetadata`: the published `parameters` are our schema, and the
  SDK's argument model is `_RawArguments`, a pass-through (`ArgModelBase` with extra fields allowed),
  so the raw arguments reach the tool function untouched. The public replacement would be an
  `add_tool(..., input_schema=..., validate=False)`, which mcp 2.3 does not offer.
- `MCPServer._tool_manager`, replaced by a `ToolManager(tools=...)` built on the first `tools/list`
  or `tools/call`, so no tool is built before a client needs one. The public replacement would be a
  lazy tool provider; `add_tool` at start-up works too, at the cost of start-up time.
- `ToolManager.get_tool`, to answer an unknown tool name without echoing it back whole (the SDK's own
  "Unknown tool: <name>" quotes a 10,000-character name in full).

tests/test_sdk.py fails loudly if an SDK upgrade changes what these rely on.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool, ToolManager
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp.types import CallToolResult, InputRequiredResult, ToolAnnotations
from mcp.types import Tool as MCPTool
from pydantic import BaseModel, ConfigDict

from kling_mcp.domain.fields import quote

ToolFunction = Callable[..., Awaitable[CallToolResult | InputRequiredResult]]


class _RawArguments(ArgModelBase):
    """The arguments of a call, exactly as sent."""

    model_config = ConfigDict(extra="allow")

    def model_dump_one_level(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


@functools.cache
def _pass_through(output_model: type[BaseModel], output_schema_json: str) -> FuncMetadata:
    """Raw arguments in; results checked against `output_model`, published with our schema."""
    return FuncMetadata(
        arg_model=_RawArguments, output_model=output_model, output_schema=json.loads(output_schema_json)
    )


def make_tool(
    fn: ToolFunction,
    *,
    name: str,
    title: str,
    description: str,
    input_schema: dict[str, Any],
    output_model: type[BaseModel],
    output_schema: dict[str, Any],
    annotations: ToolAnnotations,
    meta: dict[str, Any] | None = None,
) -> Tool:
    """An SDK tool whose `fn(ctx, **arguments)` gets the raw arguments and publishes `input_schema`."""
    return Tool(
        fn=fn,
        name=name,
        title=title,
        description=description,
        parameters=input_schema,
        fn_metadata=_pass_through(output_model, json.dumps(output_schema, sort_keys=True)),
        is_async=True,
        context_kwarg="ctx",
        annotations=annotations,
        meta=meta,
    )


class LazyToolsServer(MCPServer[Any]):
    """An MCPServer whose tools are built when first listed or called, not at start-up."""

    def __init__(self, build_tools: Callable[[], Sequence[Tool]], **options: Any) -> None:
        super().__init__(**options)
        self._make_tools = build_tools
        self._tools_built = False

    def _build_tools(self) -> None:
        if not self._tools_built:
            # The SDK takes ready-made tools only when its tool manager is made, so make it anew.
            self._tool_manager = ToolManager(tools=list(self._make_tools()))
            self._tools_built = True

    async def list_tools(self) -> list[MCPTool]:
        self._build_tools()
        return await super().list_tools()

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        self._build_tools()
        if self._tool_manager.get_tool(name) is None:
            raise ToolError(f"Unknown tool {quote(name)}: call tools/list for the tools this server has.")
        return await super().call_tool(name, arguments, context)
