"""The kling-mcp server: settings in, an MCPServer with its tools, prompts and resources out."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

import anyio
from mcp.server.mcpserver import MCPServer

from kling_mcp import __version__
from kling_mcp.client import KlingClient
from kling_mcp.logs import configure_logging, logger
from kling_mcp.polling import TaskPoller
from kling_mcp.prompts import register_prompts
from kling_mcp.sdk import LazyToolsServer
from kling_mcp.settings import Settings
from kling_mcp.state import AppState
from kling_mcp.tools.tasks import register_resources

if TYPE_CHECKING:
    import httpx
    from mcp.server.mcpserver.tools import Tool

INSTRUCTIONS = """Kling video generation through AceDataCloud. Every tool whose annotations are not
read-only starts one paid task and waits for it, reporting progress; if the wait ends first it returns
the task_id with state 'running': resume with kling_get_task, never by generating again.
kling_list_models tells what each model and tool does. Finished videos are saved to disk (file_path)."""

DEMO_TOKEN = "demo-token"


def create_server(settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> LazyToolsServer:
    """The server, ready to run; `transport` lets tests route its HTTP calls."""
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        async with AsyncExitStack() as stack:
            active = await stack.enter_async_context(_demo_api(settings)) if settings.demo else settings
            client = KlingClient(active, transport=transport)
            stack.push_async_callback(client.aclose)
            poller = TaskPoller(client, min_interval=active.poll_interval)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(poller.run)
                yield AppState(active, client, poller)
                tasks.cancel_scope.cancel()

    def build_tools() -> list[Tool]:
        from kling_mcp.tools import build_tools

        return build_tools(settings)

    server = LazyToolsServer(
        build_tools,
        name="kling-mcp",
        title="Kling video (AceDataCloud)",
        version=__version__,
        instructions=INSTRUCTIONS,
        # The SDK's own log lines (and its libraries') at INFO at most: DEBUG is for ours.
        log_level="INFO" if settings.log_level == "DEBUG" else settings.log_level,
        lifespan=lifespan,
    )
    register_prompts(server)
    register_resources(server)
    return server


@asynccontextmanager
async def _demo_api(settings: Settings) -> AsyncIterator[Settings]:
    """Run the emulator in-process on a loopback port and point the settings at it."""
    from kling_mcp.emulator import Emulator, serve_emulator

    emulator = Emulator(token=DEMO_TOKEN, task_seconds=settings.demo_task_seconds)
    async with serve_emulator(emulator) as base_url:
        logger.warning("Demo mode: videos come from the local emulator at %s; nothing is charged.", base_url)
        yield dataclasses.replace(settings, api_base_url=base_url, api_token=DEMO_TOKEN)


async def serve(settings: Settings) -> None:
    server = create_server(settings)
    if not settings.api_token and not settings.demo:
        logger.warning("ACEDATACLOUD_API_TOKEN is not set: tools will answer with how to set it.")
    await server.run_stdio_async()
