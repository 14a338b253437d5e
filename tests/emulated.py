"""The server as a user's MCP client sees it, in memory, against the API emulator over real loopback.

`emulated(emulator, tmp_path)` serves the emulator (API, CDN and file hosting) on a free port and
yields the settings of a server pointed at it; `connect(settings)` is that server's in-memory
client. The journal and the videos live under the test's directory, so a second `connect` with
the same settings is the same user's server after a restart.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.types import CallToolResult, ImageContent, ResourceLink, TextContent

from kling_mcp.emulator import Emulator, serve_emulator
from kling_mcp.server.app import create_server
from kling_mcp.settings import Settings

TOKEN = "sk-emulated-3c8e1f"
SETTLE_LIMIT = float(os.environ.get("KLING_TEST_SETTLE_LIMIT", "15"))
"""How long a test waits for something the server does on its own (a file saved, a task done).
The mutation run (benchmarks/mutation.py) shortens it: a mutant that never gets there fails in
seconds instead of running into mutmut's timeout."""
CALL_LIMIT = SETTLE_LIMIT + 5
"""No single call of a test may hang longer than this."""


@asynccontextmanager
async def emulated(emulator: Emulator, tmp_path: Path, **overrides: Any) -> AsyncIterator[Settings]:
    """Serve `emulator` and yield settings pointing a server at it, with `overrides` applied."""
    emulator.token = TOKEN
    async with serve_emulator(emulator) as base_url:
        settings = Settings(
            api_token=TOKEN,
            api_base_url=base_url,
            platform_base_url=base_url,
            poll_interval=0.05,
            data_dir=tmp_path / "data",
            output_dir=tmp_path / "videos",
            daily_task_limit=1000,
            max_concurrent_tasks=100,
        )
        yield dataclasses.replace(settings, **overrides)


def connect(settings: Settings, **options: Any) -> Client:
    """An in-memory client of a new server with `settings` (its lifespan runs while connected)."""
    return Client(create_server(settings), **options)


@dataclass
class Progress:
    """The progress notifications of one call."""

    updates: list[tuple[float, float | None, str | None]] = field(default_factory=list)

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.updates.append((progress, total, message))

    @property
    def values(self) -> list[float]:
        return [progress for progress, _, _ in self.updates]

    @property
    def messages(self) -> list[str]:
        return [message or "" for _, _, message in self.updates]


async def call(
    client: Client, tool: str, arguments: dict[str, Any], progress: Progress | None = None
) -> CallToolResult:
    with anyio.fail_after(CALL_LIMIT):
        return await client.call_tool(tool, arguments, progress_callback=progress)


def text_of(result: CallToolResult) -> str:
    """The answer's text: its first block; the others are the saved video's contact sheet (a line
    and the image) and a link to its file."""
    block, *others = result.content
    assert isinstance(block, TextContent)
    sheet = [other for other in others if not isinstance(other, ResourceLink)]
    assert len(others) - len(sheet) <= 1, others
    assert [type(part) for part in sheet] in ([], [TextContent, ImageContent]), sheet
    return block.text


def structured(result: CallToolResult) -> dict[str, Any]:
    content: dict[str, Any] | None = result.structured_content
    assert content is not None, text_of(result)
    return content


def video_link(result: CallToolResult) -> ResourceLink:
    """The result's link to the saved video file."""
    links = [block for block in result.content if isinstance(block, ResourceLink)]
    assert len(links) == 1, result.content
    return links[0]


async def eventually(check: Callable[[], Any], what: str, limit: float = SETTLE_LIMIT) -> Any:
    """The first truthy value of `check()` (awaited if a coroutine), polled for at most `limit` seconds."""
    with anyio.move_on_after(limit):
        while True:
            value = check()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            await anyio.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {limit:g} s")


async def contents(path: str | Path) -> bytes:
    return await anyio.Path(path).read_bytes()


def videos_in(directory: Path) -> list[Path]:
    """The finished videos in `directory` (no temporary `.part` file)."""
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.iterdir() if path.suffix == ".mp4" and path.is_file())
