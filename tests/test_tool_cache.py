"""The tool definitions kept between starts: a later start lists them without building a tool, and
never lists definitions that other code or other settings made."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import Tool

import kling_mcp
from kling_mcp.server import tool_cache
from kling_mcp.server.app import create_server
from kling_mcp.server.sdk import ServerTool
from kling_mcp.server.tools import catalog
from kling_mcp.settings import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """The settings of every build of the tools, in order."""
    built: list[Settings] = []
    build = catalog.build_tools

    def counted(settings: Settings) -> list[ServerTool]:
        built.append(settings)
        return build(settings)

    monkeypatch.setattr(catalog, "build_tools", counted)
    return built


async def listed(settings: Settings) -> list[Tool]:
    return await create_server(settings).list_tools()


def kept_file(settings: Settings) -> Path:
    return settings.data_dir / tool_cache.CACHE_FILE


def schema_default(tools: list[Tool], tool: str, field: str) -> Any:
    (definition,) = (listed_tool for listed_tool in tools if listed_tool.name == tool)
    return definition.input_schema["properties"][field]["default"]


async def test_a_later_start_lists_the_kept_definitions_and_builds_its_tools_on_the_first_call(
    settings: Settings, builds: list[Settings]
) -> None:
    first = await listed(settings)
    assert builds == [settings]

    async with Client(create_server(settings)) as client:
        again = (await client.list_tools()).tools
        assert len(builds) == 1, "the tools were built although their definitions were kept"
        await client.call_tool("kling_list_models", {})

    assert again == first
    assert len(builds) == 2


async def test_other_settings_shown_in_the_definitions_build_them_anew(
    settings: Settings, builds: list[Settings]
) -> None:
    await listed(settings)
    changed = dataclasses.replace(settings, default_model="kling-v2-6", default_wait_seconds=20.0)

    tools = await listed(changed)

    assert builds == [settings, changed]
    assert schema_default(tools, "kling_generate_video", "model") == "kling-v2-6"
    assert schema_default(tools, "kling_generate_video", "timeout") == 20.0
    assert schema_default(await listed(settings), "kling_generate_video", "timeout") == 50.0


@pytest.mark.parametrize(
    "content",
    [
        b'{"key": "from other code", "tools": []}',
        b'{"key": "',
        b"[1, 2]",
        b'{"tools": [{"name": "broken"}]}',
    ],
)
async def test_a_kept_file_this_code_did_not_write_is_replaced(
    settings: Settings, builds: list[Settings], content: bytes
) -> None:
    path = kept_file(settings)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)

    tools = await listed(settings)

    assert len(tools) == len(catalog.TOOL_SPECS)
    assert builds == [settings]
    assert json.loads(path.read_bytes())["key"] == tool_cache.definitions_key(settings)


async def test_a_kept_file_with_this_codes_key_but_unreadable_tools_is_replaced(
    settings: Settings, builds: list[Settings]
) -> None:
    path = kept_file(settings)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"key": tool_cache.definitions_key(settings), "tools": [{"title": 1}]}))

    assert len(await listed(settings)) == len(catalog.TOOL_SPECS)
    assert builds == [settings]


async def test_a_data_directory_that_cannot_be_written_only_costs_time(
    settings: Settings, builds: list[Settings]
) -> None:
    settings.data_dir.mkdir(parents=True)
    kept_file(settings).parent.write_text("a file where the cache folder would be")

    assert len(await listed(settings)) == len(catalog.TOOL_SPECS)
    assert len(await listed(settings)) == len(catalog.TOOL_SPECS)
    assert builds == [settings, settings]


async def test_no_secret_is_kept_nor_part_of_the_key(settings: Settings) -> None:
    secrets = {
        "api_token": "sk-kept-4f9c",
        "platform_token": "pt-kept-77aa",
        "database_url": "postgres://u:pw@db/k",
    }
    with_secrets = dataclasses.replace(settings, **secrets)

    await listed(with_secrets)

    kept = kept_file(settings).read_text()
    assert not [secret for secret in secrets.values() if secret in kept]
    assert tool_cache.definitions_key(with_secrets) == tool_cache.definitions_key(settings)


def test_the_key_changes_with_any_source_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "kling_mcp"
    (package / "server").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    model = package / "server" / "models.py"
    model.write_text("class Input: prompt: str\n")
    monkeypatch.setattr(kling_mcp, "__file__", str(package / "__init__.py"))
    settings = Settings(data_dir=tmp_path / "data")

    keys = {tool_cache.definitions_key(settings)}
    model.write_text("class Input: prompt: int\n")
    keys.add(tool_cache.definitions_key(settings))
    model.rename(package / "server" / "moved.py")
    keys.add(tool_cache.definitions_key(settings))

    assert len(keys) == 3


async def test_a_table_at_hand_is_listed_as_it_is_and_not_kept(settings: Settings) -> None:
    """A tool added to the table (as the conformance fixtures are) is listed, and only by its server."""
    server = create_server(settings)
    (extra,) = [tool for tool in catalog.build_tools(settings) if tool.name == "kling_list_models"]
    server.tool_table["fixture"] = dataclasses.replace(
        extra, definition=extra.definition.model_copy(update={"name": "fixture"})
    )

    assert "fixture" in {tool.name for tool in await server.list_tools()}
    assert "fixture" not in {tool.name for tool in await listed(settings)}
