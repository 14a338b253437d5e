"""What kling_mcp.server.sdk relies on in the SDK: tools/list and tools/call go through MCPServer's public
`list_tools` and `call_tool`, and its errors mean what the SDK's own tools' errors mean. If an upgrade
changes that, these fail first."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, CallToolResult, TextContent, Tool, ToolAnnotations
from pydantic import BaseModel

from kling_mcp.server.sdk import ServerTool, ToolCall, ToolTableServer

pytestmark = pytest.mark.anyio

INPUT_SCHEMA = {"type": "object", "properties": {"x": {"type": "integer"}}}
OUTPUT_SCHEMA = {"type": "object", "properties": {"arguments": {"type": "object"}}}
META = {"ui": {"resourceUri": "ui://test/app.html"}}


class Echoed(BaseModel):
    arguments: dict[str, Any]


def answer(structured: dict[str, Any]) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text="done")], structured_content=structured)


async def echo(ctx: Context, arguments: dict[str, Any]) -> CallToolResult:
    return answer(Echoed(arguments=arguments).model_dump())


def table_tool(call: ToolCall = echo, name: str = "echo") -> ServerTool:
    definition = Tool(
        name=name,
        title="Echo",
        description="Answers with its arguments.",
        input_schema=INPUT_SCHEMA,
        output_schema=OUTPUT_SCHEMA,
        annotations=ToolAnnotations(read_only_hint=True),
        _meta=META,
    )
    return ServerTool(definition, call, Echoed)


def text(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


async def test_a_table_tool_gets_the_raw_arguments_and_publishes_our_definition() -> None:
    built: list[int] = []

    def build() -> list[ServerTool]:
        built.append(1)
        return [table_tool()]

    server = ToolTableServer(build, name="sdk-test")
    assert built == [], "tools were built before a client needed them"

    async with Client(server) as client:
        (tool,) = (await client.list_tools()).tools
        result = await client.call_tool("echo", {"x": "not an integer", "extra": [1, 2]})
        await client.list_tools()

    assert built == [1], "the tools are built once"
    assert tool.input_schema == INPUT_SCHEMA
    assert tool.output_schema == OUTPUT_SCHEMA
    assert tool.meta == META
    assert tool.annotations == ToolAnnotations(read_only_hint=True)
    assert not result.is_error
    assert result.structured_content == {"arguments": {"x": "not an integer", "extra": [1, 2]}}


async def test_an_unknown_tool_is_a_protocol_error_that_does_not_echo_its_whole_name() -> None:
    async with Client(ToolTableServer(lambda: [table_tool()], name="sdk-test")) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("x" * 10_000, {})

    assert refused.value.code == INVALID_PARAMS
    assert len(refused.value.message) < 400
    assert "10,000 characters" in refused.value.message


async def test_errors_keep_the_sdks_meaning() -> None:
    """An expected failure is an error result naming the tool; a crash says no more than that; an
    MCPError is a protocol error; a result that breaks its output schema is a crash."""

    async def expected(ctx: Context, arguments: dict[str, Any]) -> CallToolResult:
        raise ToolError("prompt: too long")

    async def crash(ctx: Context, arguments: dict[str, Any]) -> CallToolResult:
        raise RuntimeError("secret internals")

    async def protocol(ctx: Context, arguments: dict[str, Any]) -> CallToolResult:
        raise MCPError(INVALID_PARAMS, "no such task")

    async def off_schema(ctx: Context, arguments: dict[str, Any]) -> CallToolResult:
        return answer({"something": "else"})

    tools = [table_tool(call, call.__name__) for call in (expected, crash, protocol, off_schema)]
    async with Client(ToolTableServer(lambda: tools, name="sdk-test")) as client:
        failed = await client.call_tool("expected", {})
        crashed = await client.call_tool("crash", {})
        broken = await client.call_tool("off_schema", {})
        with pytest.raises(MCPError) as refused:
            await client.call_tool("protocol", {})

    assert failed.is_error
    assert text(failed) == "Error executing tool expected: prompt: too long"
    assert crashed.is_error
    assert text(crashed) == "Error executing tool crash"
    assert broken.is_error
    assert text(broken) == "Error executing tool off_schema"
    assert (refused.value.code, refused.value.message) == (INVALID_PARAMS, "no such task")


async def test_tools_given_to_the_sdk_itself_are_served_too() -> None:
    server = ToolTableServer(lambda: [table_tool()], name="sdk-test")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Adds."""
        return a + b

    async with Client(server) as client:
        names = [tool.name for tool in (await client.list_tools()).tools]
        result = await client.call_tool("add", {"a": 2, "b": 3})

    assert names == ["echo", "add"]
    assert result.structured_content == {"result": 5}
