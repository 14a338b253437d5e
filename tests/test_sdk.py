"""What kling_mcp.server.sdk relies on in the SDK's internals: if an upgrade changes it, these fail first."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel

from kling_mcp.server.sdk import LazyToolsServer, make_tool

pytestmark = pytest.mark.anyio


class Echoed(BaseModel):
    arguments: dict[str, Any]


OUTPUT_SCHEMA = {"type": "object", "properties": {"arguments": {"type": "object"}}}


async def echo(ctx: Context, **arguments: Any) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text="echo")],
        structured_content=Echoed(arguments=arguments).model_dump(),
    )


def echo_tool() -> Any:
    return make_tool(
        echo,
        name="echo",
        title="Echo",
        description="Answers with its arguments.",
        input_schema={"type": "object", "properties": {"x": {"type": "integer"}}},
        output_model=Echoed,
        output_schema=OUTPUT_SCHEMA,
        annotations=ToolAnnotations(read_only_hint=True),
        meta={"ui": {"resourceUri": "ui://test/app.html"}},
    )


async def test_a_hand_built_tool_gets_the_raw_arguments_and_publishes_our_schemas() -> None:
    built: list[int] = []

    def build() -> list[Any]:
        built.append(1)
        return [echo_tool()]

    server = LazyToolsServer(build, name="sdk-test")
    assert built == [], "tools were built before a client needed them"

    async with Client(server) as client:
        tools = (await client.list_tools()).tools
        result = await client.call_tool("echo", {"x": "not an integer", "extra": [1, 2]})

    assert built == [1]
    (tool,) = tools
    assert tool.input_schema == {"type": "object", "properties": {"x": {"type": "integer"}}}
    assert tool.output_schema == OUTPUT_SCHEMA
    assert tool.meta == {"ui": {"resourceUri": "ui://test/app.html"}}
    assert result.structured_content == {"arguments": {"x": "not an integer", "extra": [1, 2]}}


async def test_an_unknown_tool_is_answered_without_echoing_its_whole_name() -> None:
    name = "x" * 10_000
    async with Client(LazyToolsServer(lambda: [echo_tool()], name="sdk-test")) as client:
        result = await client.call_tool(name, {})

    assert result.is_error
    block = result.content[0]
    assert isinstance(block, TextContent)
    assert len(block.text) < 400
    assert "10,000 characters" in block.text
