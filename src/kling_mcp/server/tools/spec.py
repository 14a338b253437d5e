"""What a tool is (`ToolSpec`), the lean JSON schemas it publishes, and how its arguments are read.

Every byte of `tools/list` is paid in every conversation, so the published schemas are pydantic's
without the noise: no generated `title`s, no `$ref`/`$defs` indirection, and an optional field is
its type, not `anyOf [type, null]` with `default: null`. Arguments reach the tool's input model
untouched, and a ValidationError becomes one message listing every fix, each naming its field.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, InputRequiredResult, ToolAnnotations
from pydantic import BaseModel, ValidationError

from kling_mcp.domain.fields import quote
from kling_mcp.errors import NOTHING_SENT

InputT = TypeVar("InputT", bound=BaseModel)
Handler = Callable[..., Awaitable[CallToolResult | InputRequiredResult]]
"""`handler(request, app, ctx)`: the validated input model, the server's state, the call's context."""
FIELD_QUOTE_LIMIT = 100
MAX_PROBLEMS_SHOWN = 10
"""A call with more problems than this gets the first ones: enough to fix, not a flood."""


@dataclass(frozen=True)
class ToolSpec:
    name: str
    title: str
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    handler: Handler
    description: str
    paid: bool = False
    local_only: bool = False
    """Answered from this server's own data, without calling the API."""
    shows_video: bool = False
    """Its result is a video task, which the MCP Apps player can show."""
    saves_files: bool = False
    """Writes into the output directory (not read-only, though free and idempotent)."""

    @property
    def annotations(self) -> ToolAnnotations:
        """All four hints, stated: a client need not know the protocol's defaults. The title is the
        tool's own, not repeated here. No tool deletes or overwrites anything of the user's."""
        return ToolAnnotations(
            read_only_hint=not (self.paid or self.saves_files),
            destructive_hint=False,
            idempotent_hint=not self.paid,
            open_world_hint=not self.local_only,
        )


def input_schema(model: type[BaseModel], defaults: dict[str, Any], last: tuple[str, ...]) -> dict[str, Any]:
    """`model`'s lean schema with this server's `defaults`; the properties named in `last` go last."""
    schema = lean_schema(model.model_json_schema())
    _allow_only_known_at_top(schema)
    properties = sorted(schema.get("properties", {}).items(), key=lambda item: item[0] in last)
    schema["properties"] = {
        name: {**field, "default": defaults[name]} if name in defaults else field
        for name, field in properties
    }
    return schema


def _allow_only_known_at_top(schema: dict[str, Any]) -> None:
    """Say `additionalProperties: false` once, for the call's own parameters: nested objects are
    validated just as strictly, and repeating it in each of them costs bytes and says nothing new."""

    def drop(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("additionalProperties") is False:
                del node["additionalProperties"]
            for value in node.values():
                drop(value)
        elif isinstance(node, list):
            for item in node:
                drop(item)

    for field in schema.get("properties", {}).values():
        drop(field)


def output_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s lean schema as results are serialised (see `result_content`), without defaults
    and without the model's docstring, which is written for this code's readers."""
    schema = lean_schema(model.model_json_schema(mode="serialization"), drop=("title", "$defs", "default"))
    schema.pop("description", None)
    return schema


def result_content(result: BaseModel) -> dict[str, Any]:
    """`result` as structured content: what is unknown is left out, as its schema says (a field
    typed `X`, not `X or null`, is what every client's schema dialect can read)."""
    return result.model_dump(mode="json", exclude_none=True)


def lean_schema(schema: dict[str, Any], drop: tuple[str, ...] = ("title", "$defs")) -> dict[str, Any]:
    """`schema` with `$ref`s inlined, `title`s dropped and `anyOf [X, null]` made plain `X`.

    An inlined model keeps its field's description but not its docstring, written for this code's readers.
    """
    definitions = {
        name: {key: value for key, value in definition.items() if key != "description"}
        for name, definition in schema.get("$defs", {}).items()
    }

    def lean(node: Any, naming: bool = False) -> Any:
        """`naming`: `node` maps property names to schemas (a property may be called "title")."""
        if isinstance(node, list):
            return [lean(item) for item in node]
        if not isinstance(node, dict):
            return node
        if naming:
            return {name: lean(value) for name, value in node.items()}
        node = _without_null(node)
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            siblings = {key: value for key, value in node.items() if key != "$ref"}
            return lean({**definitions[ref.removeprefix("#/$defs/")], **siblings})
        if "enum" in node:  # the values say their type
            node = {key: value for key, value in node.items() if key != "type"}
        return {
            key: lean(value, naming=key in ("properties", "$defs"))
            for key, value in node.items()
            if key not in drop and not (key == "default" and value is None)
        }

    result: dict[str, Any] = lean(schema)
    return result


def _without_null(node: dict[str, Any]) -> dict[str, Any]:
    """`{"anyOf": [X, {"type": "null"}], ...}` as `{**X, ...}`: none is said by leaving it out."""
    options = node.get("anyOf")
    if not isinstance(options, list) or {"type": "null"} not in options:
        return node
    others = [option for option in options if option != {"type": "null"}]
    rest = {key: value for key, value in node.items() if key != "anyOf"}
    if len(others) == 1:
        return {**others[0], **rest}
    return {"anyOf": others, **rest}


def parse_arguments(tool: str, model: type[InputT], arguments: dict[str, Any]) -> InputT:
    """Validate a call's arguments, or raise a ToolError that lists every fix to make."""
    try:
        return model.model_validate(arguments)
    except ValidationError as exc:
        found = describe_errors(exc)
        shown = found[:MAX_PROBLEMS_SHOWN]
        if len(found) > len(shown):
            shown.append(f"... and {len(found) - len(shown):,} more: fix these first")
        problems = "\n".join(f"- {problem}" for problem in shown)
        raise ToolError(f"Invalid arguments for {tool} ({NOTHING_SENT}):\n{problems}") from None


def describe_errors(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        # A dict key that is not allowed is located at "<key>.[key]": name the key itself.
        field = ".".join(str(part) for part in error["loc"]).removesuffix(".[key]")
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "required"
        elif error["type"] == "extra_forbidden":
            message = "unknown parameter; check the spelling against the tool's schema"
        if field:
            problems.append(f"{field if len(field) <= FIELD_QUOTE_LIMIT else quote(field)}: {message}")
        else:
            problems.extend(message.splitlines())
    return problems
