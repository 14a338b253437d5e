"""`kling-mcp` as a host runs it: a subprocess speaking MCP over stdio, legacy `initialize` first."""

from __future__ import annotations

import os
import sys

import pytest
from mcp import Client, StdioServerParameters
from mcp.types import TextContent

from kling_mcp import __version__

pytestmark = pytest.mark.anyio


def server_process(**env: str) -> StdioServerParameters:
    clean = {
        key: value for key, value in os.environ.items() if not key.startswith(("ACEDATACLOUD_", "KLING_"))
    }
    return StdioServerParameters(command=sys.executable, args=["-m", "kling_mcp"], env={**clean, **env})


async def test_a_host_can_start_list_and_call_without_a_token() -> None:
    async with Client(server_process(LOG_LEVEL="DEBUG"), mode="legacy") as client:
        info = client.server_info
        tools = (await client.list_tools()).tools
        models = await client.call_tool("kling_list_models", {})
        generation = await client.call_tool("kling_generate_video", {"prompt": "a cat"})

    assert info is not None
    assert (info.name, info.version) == ("kling-mcp", __version__)
    assert "kling_generate_video_from_image" in {tool.name for tool in tools}
    assert not models.is_error
    assert models.structured_content
    assert models.structured_content["default_model"] == "kling-v2-master"
    assert generation.is_error
    block = generation.content[0]
    assert isinstance(block, TextContent)
    assert "ACEDATACLOUD_API_TOKEN" in block.text
