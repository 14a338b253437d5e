"""The kling-mcp server: settings in, an MCPServer with its tools, prompts and resources out."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.tools import ToolManager
from mcp.types import CallToolResult, InputRequiredResult
from mcp.types import Tool as MCPTool

from kling_mcp import __version__
from kling_mcp.client import KlingClient
from kling_mcp.logs import configure_logging, logger
from kling_mcp.polling import TaskPoller
from kling_mcp.prompts import register_prompts
from kling_mcp.settings import Settings
from kling_mcp.state import AppState
from kling_mcp.tools import build_tools

if TYPE_CHECKING:
    import httpx

INSTRUCTIONS = """Kling video generation through AceDataCloud. Generation tools (kling_generate_video,
kling_generate_video_from_image, kling_extend_video, kling_generate_motion, kling_lip_sync,
kling_talking_photo) each start one paid task and wait for it, reporting progress; if the wait ends
first they return the task_id with state 'running': resume with kling_get_task, never by generating
again. kling_list_models tells what each model supports. Video links expire: suggest downloading."""

DEMO_TOKEN = "demo-token"


class KlingServer(MCPServer[AppState]):
    """An MCPServer whose tools are built when first listed or called, not at start-up.

    Building them (their input and output schemas) is most of this server's own start-up
    time, and no client needs them before the handshake is done.
    """

    def __init__(self, settings: Settings, **options: Any) -> None:
        super().__init__(**options)
        self._settings = settings
        self._tools_built = False

    def _build_tools(self) -> None:
        if not self._tools_built:
            # The SDK takes ready-made tools only when its tool manager is made, so make it anew.
            self._tool_manager = ToolManager(tools=build_tools(self._settings))
            self._tools_built = True

    async def list_tools(self) -> list[MCPTool]:
        self._build_tools()
        return await super().list_tools()

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[AppState, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        self._build_tools()
        return await super().call_tool(name, arguments, context)


def create_server(settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> KlingServer:
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

    server = KlingServer(
        settings,
        name="kling-mcp",
        title="Kling video (AceDataCloud)",
        version=__version__,
        instructions=INSTRUCTIONS,
        # The SDK's own log lines (and its libraries') at INFO at most: DEBUG is for ours.
        log_level="INFO" if settings.log_level == "DEBUG" else settings.log_level,
        lifespan=lifespan,
    )
    register_prompts(server)
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
