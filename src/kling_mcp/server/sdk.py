"""Where kling-mcp's tools meet the MCP SDK: through `MCPServer`'s public methods only.

kling-mcp publishes each tool's input model as its schema and lets that model alone validate the
arguments (so every rejection names its field and lists all problems at once). The SDK's own tools
(`add_tool`, `MCPServer(tools=[...])`) derive a validating model from a function signature instead,
and build it at registration. So a `ToolTableServer` keeps its own table of tools, built when first
needed, and serves it from the two public methods every `tools/list` and `tools/call` goes through:
`list_tools()` and `call_tool()`. A tool is its published definition (`mcp.types.Tool`) and a
function of the raw arguments. (The SDK does not know these tools' schemas, so it finds no
`x-mcp-header` parameter in them to check `Mcp-Param-*` headers against; none of ours declares one.)

`call_tool` keeps the SDK's contract: a `ToolError` (the caller's mistake, or an expected failure)
becomes an error result that names the tool, anything else an error result that says no more than
the tool's name (the details go to the log), and an `MCPError` a protocol error. An unknown tool is
a protocol error (invalid params) whose message quotes the name short: a client may send anything.

tests/test_sdk.py fails if an SDK upgrade stops routing tools through these methods.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, CallToolResult, InputRequiredResult
from mcp.types import Tool as MCPTool
from pydantic import BaseModel

from kling_mcp.domain.fields import quote

ToolResult = CallToolResult | InputRequiredResult
ToolCall = Callable[[Context[Any, Any], dict[str, Any]], Awaitable[ToolResult]]
"""`call(ctx, arguments)`: the call's context and its arguments exactly as sent."""


@dataclass(frozen=True)
class ServerTool:
    definition: MCPTool
    """What `tools/list` publishes."""
    call: ToolCall
    output_model: type[BaseModel] | None = None
    """What a successful result's structured content must be, as `definition.output_schema` says."""

    @property
    def name(self) -> str:
        return self.definition.name

    async def run(self, arguments: dict[str, Any], ctx: Context[Any, Any]) -> ToolResult:
        """Call the tool, with the SDK's error contract (see the module's docstring)."""
        try:
            result = await self.call(ctx, arguments)
            if self.output_model is not None and isinstance(result, CallToolResult) and not result.is_error:
                self.output_model.model_validate(result.structured_content)
            return result
        except MCPError:
            raise
        except ToolError as error:
            raise ToolError(f"Error executing tool {self.name}: {error}") from error
        except Exception as error:
            raise UnexpectedToolError(f"Error executing tool {self.name}") from error


class ToolTableServer(MCPServer[Any]):
    """An MCPServer serving a table of `ServerTool`s, built when a client first calls one, or lists
    them (unless `published_definitions` knows them without it).

    Tools given to the SDK itself (by an extension, or `add_tool`) are listed and called as well.
    """

    def __init__(self, build_tools: Callable[[], Sequence[ServerTool]], **options: Any) -> None:
        super().__init__(**options)
        self._build_tools = build_tools

    @functools.cached_property
    def tool_table(self) -> dict[str, ServerTool]:
        return {tool.name: tool for tool in self._build_tools()}

    @property
    def tools_built(self) -> bool:
        return "tool_table" in vars(self)  # where functools.cached_property keeps it

    @functools.cached_property
    def definitions(self) -> list[MCPTool]:
        return self.published_definitions()

    def published_definitions(self) -> list[MCPTool]:
        """What `tools/list` publishes of the table, asked once."""
        return [tool.definition for tool in self.tool_table.values()]

    async def list_tools(self) -> list[MCPTool]:
        return self.definitions + await super().list_tools()

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> ToolResult:
        tool = self.tool_table.get(name)
        if tool is None:
            if name not in {listed.name for listed in await super().list_tools()}:
                raise MCPError(
                    INVALID_PARAMS,
                    f"Unknown tool {quote(name)}: call tools/list for the tools this server has.",
                )
            return await super().call_tool(name, arguments, context)
        return await tool.run(arguments, context or Context(mcp_server=self))
