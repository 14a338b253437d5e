"""The kling-mcp server: settings in, an MCPServer with its tools, prompts and resources out."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver import MCPServer
from mcp.types import Tool as MCPTool

from kling_mcp import __version__
from kling_mcp.api.client import HttpPool, KlingClient
from kling_mcp.logs import configure_logging, logger, write_one_line
from kling_mcp.policy import Policy
from kling_mcp.server.client_logging import serve_log_levels
from kling_mcp.server.completion import register_completion
from kling_mcp.server.player import player_extension
from kling_mcp.server.prompts import register_prompts
from kling_mcp.server.roots import ClientRoots
from kling_mcp.server.sdk import ServerTool, ToolTableServer
from kling_mcp.server.state import AppState
from kling_mcp.server.subscriptions import TaskSubscriptions
from kling_mcp.server.tasks_extension import TasksExtension
from kling_mcp.server.tool_cache import kept_definitions
from kling_mcp.server.tools.resources import register_resources
from kling_mcp.settings import Settings
from kling_mcp.tasks.callers import OWNER_KEY

if TYPE_CHECKING:
    import httpx

INSTRUCTIONS = """Kling video generation through AceDataCloud. Each tool that is neither read-only nor
idempotent starts one paid Kling task on the user's account (priced by model, mode, duration, 4K and
audio) and waits for it with progress; if the wait ends first it answers state 'running' with the
task_id: resume with kling_get_task (free), never by generating again. The user's limits,
KLING_DAILY_TASK_LIMIT (per 24 hours) and KLING_MAX_CONCURRENT_TASKS, refuse a task before anything is
sent. Finished videos are saved to the user's video folder (KLING_OUTPUT_DIR; file_path in results)
unless KLING_AUTO_DOWNLOAD=0; video_url links expire. A local file given as media is uploaded to
AceDataCloud's file hosting, and only from the client's roots or KLING_INPUT_DIRS (else the user's
Pictures, Videos, Music, Downloads, Desktop and Documents). An error says whether anything was sent or
charged; state 'failed' carries Kling's reason, and trace_id for AceDataCloud support. Results marked
DEMO MODE come from the built-in emulator: nothing was charged. kling_list_tasks lists every task
across restarts; kling_list_models tells what each model and tool does."""

DEMO_TOKEN = "demo-token"


class KlingServer(ToolTableServer):
    """The kling-mcp MCPServer; `state()` is its running state, for what gets no request context.

    Its tools are built on the first call; `tools/list` answers from the definitions kept from an
    earlier start when they still hold (see `tool_cache`), so a client that starts the server does
    not wait for them to be built.
    """

    def __init__(self, settings: Settings, **options: Any) -> None:
        super().__init__(functools.partial(_build_tools, settings), **options)
        self.kling_settings = settings
        self.states: list[AppState] = []

    def published_definitions(self) -> list[MCPTool]:
        if self.tools_built:  # at hand, and it may hold tools added to it (a test's fixtures)
            return super().published_definitions()
        return kept_definitions(self.kling_settings, super().published_definitions)

    def state(self) -> AppState:
        if not self.states:
            raise RuntimeError("the kling-mcp server is not running")
        return self.states[-1]


def create_server(settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> KlingServer:
    """The server, ready to run; `transport` lets tests route its HTTP calls."""
    configure_logging(settings.log_level)
    roots = ClientRoots()
    subscriptions = TaskSubscriptions()

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        async with AsyncExitStack() as stack:
            active = await stack.enter_async_context(_demo_api(settings)) if settings.demo else settings
            app = await stack.enter_async_context(_running(active, transport, roots))
            app.tasks.listen(subscriptions.changed)
            server.states.append(app)
            try:
                yield app
            finally:
                server.states.remove(app)

    server = KlingServer(
        settings,
        name="kling-mcp",
        title="Kling video (AceDataCloud)",
        version=__version__,
        instructions=INSTRUCTIONS,
        # The SDK's own log lines (and its libraries') at INFO at most: DEBUG is for ours.
        log_level="INFO" if settings.log_level == "DEBUG" else settings.log_level,
        lifespan=lifespan,
        extensions=[player_extension(settings), TasksExtension()],
    )
    server.middleware.append(roots.watch)
    server.middleware.append(serve_log_levels)
    server.middleware.append(subscriptions.serve)
    write_one_line()  # the SDK's log handler, set up with the server, quotes what clients send
    register_prompts(server)
    register_resources(server, server.state)
    register_completion(server)
    return server


def _build_tools(settings: Settings) -> list[ServerTool]:
    from kling_mcp.server.tools.catalog import build_tools

    return build_tools(settings)


@asynccontextmanager
async def _running(
    settings: Settings, transport: httpx.AsyncBaseTransport | None, roots: ClientRoots
) -> AsyncIterator[AppState]:
    """The machinery every call shares, running: the HTTP pool and the task service."""
    from kling_mcp.tasks.service import running_service

    policy = Policy.of(settings)
    async with AsyncExitStack() as stack:
        http = HttpPool(transport)
        stack.push_async_callback(http.aclose)
        client = KlingClient(settings, http)
        tasks = await stack.enter_async_context(running_service(settings, policy, http, client))
        owner_key = await tasks.shared_secret(OWNER_KEY) if policy.hosted else b""
        yield AppState(settings, policy, client, tasks, roots, owner_key)


@asynccontextmanager
async def _demo_api(settings: Settings) -> AsyncIterator[Settings]:
    """Run the emulator in-process on a loopback port and point the settings at it."""
    from kling_mcp.emulator import Emulator, serve_emulator

    # A hosted demo takes any user's token; on stdio the server's own is the demo token.
    token = None if settings.hosted else DEMO_TOKEN
    emulator = Emulator(token=token, task_seconds=settings.demo_task_seconds, clips=True)
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
