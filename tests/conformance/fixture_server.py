"""kling-mcp with the conformance suite's fixtures, for the scenarios that call them by name.

Some of the suite's scenarios call prompts and tools of its own (`test_simple_prompt`,
`test_error_handling`, `slow_compute`, ...). A real server cannot have them, so tests/test_conformance.py
lists those scenarios as fixture-only for `kling-mcp --demo`, and runs the ones below against this
server instead: the demo server itself (`create_server`), whose fixtures go through kling-mcp's
own machinery, prompts as `PromptSpec`s (its registration, argument checks and completion), tools
as `ServerTool`s in its tool table (its error contract, and the client's roots asked for as its tools
ask), so that the suite checks our code. The Tasks fixtures `slow_compute` and `failing_job` are
paid generation tools like kling-mcp's own (`paid_tool`): a host that speaks Tasks gets a task of the
task service, the demo emulator making the video (in the seconds the prompt names, or failing it as
the prompt asks); any other host gets the waiting call.

Run as `python -m tests.conformance.fixture_server --transport http --port PORT` (the arguments of
`kling-mcp` that tests/hosted.py's `replica` passes); it answers `/healthz` once it serves.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, InputRequiredResult, TextContent
from mcp.types import Tool as MCPTool
from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from kling_mcp.server.app import KlingServer, create_server
from kling_mcp.server.prompts import PromptSpec
from kling_mcp.server.roots import RootsRequired
from kling_mcp.server.sdk import ServerTool, ToolCall
from kling_mcp.server.state import app_state
from kling_mcp.server.tools.catalog import build_tool, server_defaults
from kling_mcp.server.tools.common import GenerationRequest
from kling_mcp.server.tools.generation import paid_tool
from kling_mcp.settings import Settings

FAIL_MARKER = "[fail]"
"""What makes the emulator fail a generation (its default `fail_marker`)."""


def simple_prompt() -> str:
    """A prompt without arguments (the suite's `test_simple_prompt`)."""
    return "This is a simple prompt for testing."


def prompt_with_arguments(arg1: str, arg2: str) -> str:
    """A prompt with two required arguments (the suite's `test_prompt_with_arguments`)."""
    return f"Prompt with arguments: arg1={arg1!r}, arg2={arg2!r}"


FIXTURE_PROMPTS = (
    PromptSpec("test_simple_prompt", "Simple prompt", simple_prompt, {}),
    PromptSpec(
        "test_prompt_with_arguments",
        "Prompt with arguments",
        prompt_with_arguments,
        {"arg1": "First test argument", "arg2": "Second test argument"},
    ),
)


async def simple_text(ctx: Context[Any, Any], arguments: dict[str, Any]) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text="This is a simple text response for testing.")]
    )


async def error_handling(ctx: Context[Any, Any], arguments: dict[str, Any]) -> CallToolResult:
    raise ToolError("This tool intentionally returns an error for testing")


async def list_roots(
    ctx: Context[Any, Any], arguments: dict[str, Any]
) -> CallToolResult | InputRequiredResult:
    """The client's roots as kling-mcp's tools ask for them (an InputRequiredResult from 2026-07-28 on)."""
    try:
        roots = await app_state(ctx).roots.get(ctx)
    except RootsRequired as required:
        return required.result
    return CallToolResult(content=[TextContent(type="text", text=f"The client's roots: {roots}")])


async def greet(ctx: Context[Any, Any], arguments: dict[str, Any]) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=f"Hello, {arguments.get('name', 'World')}!")]
    )


class SlowCompute(GenerationRequest):
    """A text-to-video generation that the emulator takes `seconds` to make (its prompt says "[N s]")."""

    endpoint = "/kling/videos"

    seconds: float = Field(ge=0, le=999, description="How long the generation takes.")
    label: str = Field("slow_compute", max_length=200, description="Names the generation in its prompt.")

    def payload(self) -> dict[str, Any]:
        return {"action": "text2video", "prompt": f"{self.label} [{self.seconds:.3f} s]"}


class FailingJob(GenerationRequest):
    """A text-to-video generation that the emulator fails after a second."""

    endpoint = "/kling/videos"

    def payload(self) -> dict[str, Any]:
        return {"action": "text2video", "prompt": f"failing_job {FAIL_MARKER} [1 s]"}


def _fixture_tool(
    name: str, description: str, call: ToolCall, input_schema: dict[str, Any] | None = None
) -> ServerTool:
    definition = MCPTool(name=name, description=description, input_schema=input_schema or {"type": "object"})
    return ServerTool(definition, call)


FIXTURE_TOOLS = (
    _fixture_tool("test_simple_text", "Answers one text block (the suite's test_simple_text).", simple_text),
    _fixture_tool(
        "test_error_handling", "Fails as a tool does (the suite's test_error_handling).", error_handling
    ),
    _fixture_tool(
        "test_input_required_result_list_roots",
        "Asks for the client's roots (the suite's test_input_required_result_list_roots).",
        list_roots,
    ),
    _fixture_tool(
        "greet",
        "Says hello at once, never as a task (the suite's greet).",
        greet,
        {"type": "object", "properties": {"name": {"type": "string"}}},
    ),
)
GENERATION_FIXTURES = (
    paid_tool("slow_compute", "Slow compute", SlowCompute, "A generation taking `seconds` (the suite's)."),
    paid_tool("failing_job", "Failing job", FailingJob, "A generation that fails (the suite's failing_job)."),
)


def fixture_server(settings: Settings) -> KlingServer:
    """The demo server of `settings`, with the suite's fixtures besides its own prompts and tools."""
    server = create_server(dataclasses.replace(settings, demo=True))
    for spec in FIXTURE_PROMPTS:
        server.add_prompt(spec.prompt())
    generations = [build_tool(spec, server_defaults(spec, settings)) for spec in GENERATION_FIXTURES]
    server.tool_table.update({tool.name: tool for tool in (*FIXTURE_TOOLS, *generations)})

    @server.custom_route("/healthz", methods=["GET"])
    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"ready": True})

    return server


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--transport", choices=["http"], required=True)
    cli.add_argument("--port", type=int, required=True)
    port = cli.parse_args().port
    server = fixture_server(Settings.from_env())
    anyio.run(lambda: server.run_streamable_http_async(host="127.0.0.1", port=port, stateless_http=True))


if __name__ == "__main__":
    main()
