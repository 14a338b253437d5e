"""The tool definitions as a model reads them in `tools/list`: within their budget, and saying exactly
what happens.

Every byte of a definition is paid in every conversation. The budget: a median definition of at most
2.5 KB and at most 2.6 KB a tool in all (compact JSON, as a client receives it). Within it every
parameter is described, no prose contradicts the schema (a "required" the schema does not require, an
option its enum does not list), no sentence is said twice, and all four annotations are stated.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Iterator
from typing import Any

import pytest
from mcp import Client
from mcp.types import Tool

pytestmark = pytest.mark.anyio

MEDIAN_BUDGET = 2_500
BUDGET_PER_TOOL = 2_600
MIN_DESCRIPTION_WORDS = 3
"""Fewer words than this ("Seconds.", "Native sound.") cannot say what a value changes."""
REQUIRED_IN_PROSE = re.compile(r"\b(?:is|are) required\b|\(required\)|\bmust be (?:given|provided)\b")
CONDITIONAL = re.compile(
    r"\b(?:required|given|provided) (?:with|when|if|unless|without)\b|\b(?:either|one of)\b"
)
"""A requirement that holds only sometimes ("voice_id: required with text"), which a schema cannot say."""
QUOTED = re.compile(r"'([^'\s]+)'")
WORD = re.compile(r"[a-z0-9]+")


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


def properties(node: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every named property inside the schema `node`, at any depth."""
    for schema in schema_nodes(node):
        yield from schema.get("properties", {}).items()


def options(field: dict[str, Any]) -> set[Any] | None:
    """The values a property's enum allows (through an anyOf), or None when it has no enum."""
    enums = [node["enum"] for node in schema_nodes(field) if "enum" in node]
    return {value for enum in enums for value in enum} if enums else None


def sentences(text: str) -> list[str]:
    return [sentence for sentence in re.split(r"(?<=[.;:])\s+|\n+", text) if sentence.strip()]


def texts(tool: Tool) -> Iterator[str]:
    """Every sentence of the definition: the description's and each property's."""
    yield from sentences(tool.description or "")
    for _, field in properties(tool.input_schema):
        yield from sentences(field.get("description", ""))


async def listed(client: Client) -> list[Tool]:
    return (await client.list_tools()).tools


async def test_tool_definitions_stay_within_the_context_budget(client: Client) -> None:
    sizes = {tool.name: compact_size(tool) for tool in await listed(client)}

    assert statistics.median(sizes.values()) <= MEDIAN_BUDGET, sizes
    assert sum(sizes.values()) <= BUDGET_PER_TOOL * len(sizes), sizes


async def test_schemas_carry_no_generated_titles_refs_or_null_wrappers(client: Client) -> None:
    for tool in await listed(client):
        for schema in (tool.input_schema, tool.output_schema or {}):
            for node in schema_nodes(schema):
                assert "title" not in node, (tool.name, node)
                assert "$ref" not in node, (tool.name, node)
                assert "$defs" not in node, (tool.name, node)
                assert {"type": "null"} not in node.get("anyOf", []), (tool.name, node)
        assert all(node.get("default", 0) is not None for node in schema_nodes(tool.input_schema)), tool.name


async def test_output_schemas_carry_no_docstrings(client: Client) -> None:
    """A model's docstring is written for this code's readers, not for the model calling the tool."""
    for tool in await listed(client):
        for node in schema_nodes(tool.output_schema or {}):
            assert "\n" not in node.get("description", ""), (tool.name, node["description"])


async def test_each_description_says_what_the_tool_does_and_when_to_use_it(client: Client) -> None:
    for tool in await listed(client):
        purpose, *rest = (tool.description or "").split("\n\n")
        assert purpose.endswith((".", ")")), (tool.name, purpose)
        assert any(paragraph.startswith("Use it") for paragraph in rest), tool.name
        if not tool.annotations.idempotent_hint:  # the paid tools
            assert "credits" in tool.description
            assert "kling_get_task" in tool.description


async def test_every_parameter_says_what_it_changes(client: Client) -> None:
    for tool in await listed(client):
        for name, field in tool.input_schema["properties"].items():
            words = WORD.findall(field.get("description", "").lower())
            assert len(words) >= MIN_DESCRIPTION_WORDS, (tool.name, name, field.get("description"))
            assert set(words) - set(WORD.findall(name.lower())), (tool.name, name, field["description"])


async def test_no_prose_requires_what_the_schema_does_not(client: Client) -> None:
    for tool in await listed(client):
        names = set(tool.input_schema["properties"])
        required = set(tool.input_schema.get("required", []))
        for sentence in texts(tool):
            if REQUIRED_IN_PROSE.search(sentence) and not CONDITIONAL.search(sentence):
                named = {name for name in names if re.search(rf"\b{name}\b", sentence)}
                assert named <= required, (tool.name, sentence)


async def test_every_option_a_description_lists_is_in_the_enum(client: Client) -> None:
    for tool in await listed(client):
        fields = dict(properties(tool.input_schema))
        for name, field in properties(tool.input_schema):
            allowed = options(field)
            if allowed is not None:
                listed_here = set(QUOTED.findall(field.get("description", "")))
                assert listed_here <= {str(value) for value in allowed}, (tool.name, name, listed_here)
        for name, value in re.findall(r"\b(\w+) '([^'\s]+)'", tool.description or ""):
            allowed = options(fields[name]) if name in fields else None
            assert allowed is None or value in allowed, (tool.name, name, value)


async def test_no_sentence_is_said_twice_in_a_definition(client: Client) -> None:
    for tool in await listed(client):
        said = [sentence.strip() for sentence in texts(tool) if len(sentence.split()) >= 4]
        assert len(said) == len(set(said)), (tool.name, sorted(s for s in said if said.count(s) > 1))


async def test_every_tool_states_all_four_annotations(client: Client) -> None:
    for tool in await listed(client):
        hints = tool.annotations.model_dump(exclude={"title"}) if tool.annotations else {}
        assert set(hints) >= {"read_only_hint", "destructive_hint", "idempotent_hint", "open_world_hint"}
        assert None not in hints.values(), (tool.name, hints)
        assert not (hints["read_only_hint"] and hints["destructive_hint"]), tool.name
        if not tool.annotations.idempotent_hint:  # a paid task is the API's: the open world
            assert hints["open_world_hint"] is True, tool.name
