"""The kling-mcp server: settings in, an MCPServer with its tools, prompts and resources out."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

import anyio
from mcp.server.mcpserver import MCPServer

from kling_mcp import __version__
from kling_mcp.client import HttpPool, KlingClient
from kling_mcp.local_files import ClientRoots
from kling_mcp.logs import configure_logging, logger
from kling_mcp.player import player_extension
from kling_mcp.polling import TaskPoller
from kling_mcp.prompts import register_prompts
from kling_mcp.sdk import LazyToolsServer
from kling_mcp.settings import Settings
from kling_mcp.state import AppState
from kling_mcp.tools.resources import register_resources

if TYPE_CHECKING:
    import httpx
    from mcp.server.mcpserver.tools import Tool

INSTRUCTIONS = """Kling video generation through AceDataCloud. Each tool that is neither read-only nor
idempotent starts one paid task and waits for it, reporting progress; if the wait ends first it
returns the task_id with state 'running': resume with kling_get_task, never by generating again.
Finished videos are saved to disk (file_path); kling_list_tasks lists every task across restarts.
kling_list_models tells what each model and tool does."""

DEMO_TOKEN = "demo-token"


def create_server(settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> LazyToolsServer:
    """The server, ready to run; `transport` lets tests route its HTTP calls."""
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        async with AsyncExitStack() as stack:
            active = await stack.enter_async_context(_demo_api(settings)) if settings.demo else settings
            app = await stack.enter_async_context(_running(active, transport, roots))
            running.append(app)
            try:
                yield app
            finally:
                running.remove(app)

    # The state of the running server, for what gets no request context (a static resource).
    running: list[AppState] = []

    roots = ClientRoots()

    def build_tools() -> list[Tool]:
        from kling_mcp.tools.catalog import build_tools

        return build_tools(settings)

    roots = ClientRoots()
    server = LazyToolsServer(
        build_tools,
        name="kling-mcp",
        title="Kling video (AceDataCloud)",
        version=__version__,
        instructions=INSTRUCTIONS,
        # The SDK's own log lines (and its libraries') at INFO at most: DEBUG is for ours.
        log_level="INFO" if settings.log_level == "DEBUG" else settings.log_level,
        lifespan=lifespan,
        extensions=[player_extension(settings)],
    )
    server.middleware.append(roots.watch)
    register_prompts(server)
    register_resources(server, lambda: running[-1])
    return server


@asynccontextmanager
async def _running(
    settings: Settings, transport: httpx.AsyncBaseTransport | None, roots: ClientRoots
) -> AsyncIterator[AppState]:
    """The machinery every call shares, running: the HTTP pool, the poller, the journal and the keeper."""
    from kling_mcp.journal import Journal
    from kling_mcp.keeper import TaskKeeper

    async with AsyncExitStack() as stack:
        http = HttpPool(transport)
        stack.push_async_callback(http.aclose)
        client = KlingClient(settings, http)
        poller = TaskPoller(client, min_interval=settings.poll_interval)
        journal = await Journal.open(settings.data_dir)
        stack.push_async_callback(journal.aclose)
        background = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(background.cancel_scope.cancel)
        keeper = TaskKeeper(
            journal,
            client,
            poller,
            background,
            http=http,
            output_dir=settings.output_dir,
            auto_download=settings.auto_download,
        )
        background.start_soon(poller.run)
        background.start_soon(keeper.resume)
        yield AppState(settings, http, client, poller, keeper, roots)


@asynccontextmanager
async def _demo_api(settings: Settings) -> AsyncIterator[Settings]:
    """Run the emulator in-process on a loopback port and point the settings at it."""
    from kling_mcp.emulator import Emulator, serve_emulator

    emulator = Emulator(token=DEMO_TOKEN, task_seconds=settings.demo_task_seconds)
    async with serve_emulator(emulator) as base_url:
        logger.warning("Demo mode: videos come from the local emulator at %s; nothing is charged.", base_url)
        yield dataclasses.replace(
            settings,
            api_base_url=base_url,
            api_token=DEMO_TOKEN,
            platform_base_url=base_url,
            platform_token=DEMO_TOKEN,
            # Demo tasks and their fake videos are kept apart from real ones.
            data_dir=settings.data_dir / "demo",
            output_dir=settings.output_dir / "demo",
        )


async def serve(settings: Settings) -> None:
    server = create_server(settings)
    if not settings.api_token and not settings.demo:
        logger.warning("ACEDATACLOUD_API_TOKEN is not set: tools will answer with how to set it.")
    await server.run_stdio_async()
