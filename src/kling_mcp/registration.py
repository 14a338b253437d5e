"""How a tool becomes an SDK tool: its input model's schema is published, and that model alone
validates the arguments.

The SDK would derive a validating model from a tool function's signature. Here the arguments
reach the tool's input model untouched instead, so every rejection reads the same way, names its
field, and lists all problems at once, and the schema clients see is the model's own.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, ConfigDict, ValidationError

from kling_mcp.logs import relay_to_client
from kling_mcp.models import GenerationRequest
from kling_mcp.state import AppState, app_state

WAIT_FIELDS = tuple(GenerationRequest.model_fields)
InputT = TypeVar("InputT", bound=BaseModel)
Handler = Callable[[Any, AppState, Context], Awaitable[CallToolResult]]


@dataclass(frozen=True)
class ToolSpec:
    name: str
    title: str
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    handler: Handler
    description: str
    paid: bool

    @property
    def annotations(self) -> ToolAnnotations:
        return ToolAnnotations(
            title=self.title,
            read_only_hint=not self.paid,
            destructive_hint=False,
            idempotent_hint=not self.paid,
            open_world_hint=self.name != "kling_list_models",
        )


def build_tool(spec: ToolSpec, defaults: dict[str, Any]) -> Tool:
    """The SDK tool for `spec`; `defaults` fill what a call leaves out (and show in the schema)."""

    async def call_tool(ctx: Context, **arguments: Any) -> CallToolResult:
        given = {name: value for name, value in arguments.items() if value is not None}
        request = parse_arguments(spec.name, spec.input_model, {**defaults, **given})
        with relay_to_client(ctx.session):
            return await spec.handler(request, app_state(ctx), ctx)

    return Tool(
        fn=call_tool,
        name=spec.name,
        title=spec.title,
        description=spec.description,
        parameters=input_schema(spec.input_model, defaults),
        fn_metadata=_pass_through(spec.output_model),
        is_async=True,
        context_kwarg="ctx",
        annotations=spec.annotations,
    )


class _RawArguments(ArgModelBase):
    """The arguments of a call, exactly as sent."""

    model_config = ConfigDict(extra="allow")

    def model_dump_one_level(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


@functools.cache
def _pass_through(output_model: type[BaseModel]) -> FuncMetadata:
    """Raw arguments in; results checked against `output_model` (its schema built once)."""
    return FuncMetadata(arg_model=_RawArguments, output_model=output_model)


def input_schema(model: type[BaseModel], defaults: dict[str, Any]) -> dict[str, Any]:
    """`model`'s JSON schema with this server's defaults, each property standing alone."""
    schema = _inline_refs(model.model_json_schema())
    # The content of a request first, then how to wait for it (pydantic puts base fields first).
    properties = sorted(schema.get("properties", {}).items(), key=lambda item: item[0] in WAIT_FIELDS)
    schema["properties"] = {
        name: {**field, "default": defaults[name]} if name in defaults else field
        for name, field in properties
    }
    return schema


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace `$ref`s into `$defs` with the definitions, so each property stands alone."""
    definitions = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                siblings = {key: value for key, value in node.items() if key != "$ref"}
                return resolve({**definitions[ref.removeprefix("#/$defs/")], **siblings})
            return {key: resolve(value) for key, value in node.items() if key != "$defs"}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def parse_arguments(tool: str, model: type[InputT], arguments: dict[str, Any]) -> InputT:
    """Validate a call's arguments, or raise a ToolError that lists every fix to make."""
    try:
        return model.model_validate(arguments)
    except ValidationError as exc:
        problems = "\n".join(f"- {problem}" for problem in describe_errors(exc))
        raise ToolError(
            f"Invalid arguments for {tool} (nothing was sent, nothing was charged):\n{problems}"
        ) from None


def describe_errors(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "required"
        elif error["type"] == "extra_forbidden":
            message = "unknown parameter; check the spelling against the tool's schema"
        if field:
            problems.append(f"{field}: {message}")
        else:
            problems.extend(message.splitlines())
    return problems
