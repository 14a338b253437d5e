"""What `tools/list` costs a model's context, and that the bytes it costs are spent on what matters.

Every byte of a tool definition is paid in every conversation. The budget: a median definition of at
most 2.5 KB and the whole list within 40 KB (compact JSON, as a client receives it).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator
from typing import Any

import pytest
from mcp import Client
from mcp.types import Tool

pytestmark = pytest.mark.anyio

MEDIAN_BUDGET = 2_500
TOTAL_BUDGET = 40_000


def compact_size(tool: Tool) -> int:
    wire = tool.model_dump(mode="json", by_alias=True, exclude_none=True)
    return len(json.dumps(wire, separators=(",", ":"), ensure_ascii=False).encode())


def schema_nodes(node: Any, naming: bool = False) -> Iterator[dict[str, Any]]:
    """Every schema object inside `node` (not the maps from property names to schemas)."""
    if isinstance(node, list):
        for item in node:
            yield from schema_nodes(item)
    elif isinstance(node, dict):
        if not naming:
            yield node
        for key, value in node.items():
            yield from schema_nodes(value, naming=key == "properties" and not naming)


async def listed(client: Client) -> list[Tool]:
    return (await client.list_tools()).tools


async def test_tool_definitions_stay_within_the_context_budget(client: Client) -> None:
    sizes = {tool.name: compact_size(tool) for tool in await listed(client)}

    assert statistics.median(sizes.values()) <= MEDIAN_BUDGET, sizes
    assert sum(sizes.values()) <= TOTAL_BUDGET, sizes


async def test_schemas_carry_no_generated_titles_refs_or_null_wrappers(client: Client) -> None:
    for tool in await listed(client):
        for schema in (tool.input_schema, tool.output_schema or {}):
            for node in schema_nodes(schema):
                assert "title" not in node, (tool.name, node)
                assert "$ref" not in node, (tool.name, node)
                assert "$defs" not in node, (tool.name, node)
                assert {"type": "null"} not in node.get("anyOf", []), (tool.name, node)
        assert all(node.get("default", 0) is not None for node in schema_nodes(tool.input_schema)), tool.name


async def test_each_description_says_what_the_tool_does_and_when_to_use_it(client: Client) -> None:
    for tool in await listed(client):
        purpose, *rest = tool.description.split("\n\n")
        assert purpose.endswith((".", ")")), (tool.name, purpose)
        assert any(paragraph.startswith("Use it") for paragraph in rest), tool.name
        if not tool.annotations.idempotent_hint:  # the paid tools
            assert "credits" in tool.description
            assert "kling_get_task" in tool.description
            assert "allow_duplicate" in tool.description


async def test_a_rule_is_stated_once_per_tool(client: Client) -> None:
    """The durations rule is in the description of each video tool, not repeated in its schema."""
    for tool in await listed(client):
        duration = tool.input_schema["properties"].get("duration", {})
        assert "kling-" not in duration.get("description", ""), tool.name
