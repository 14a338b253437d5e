"""`kling-mcp try "a prompt"`: one video, start to finish, through a real MCP session.

The server is started in-process (demo mode by default: the built-in emulator, no token, no cost)
and called like any MCP host would, with `kling_generate_video`; its progress notifications drive
a bar on stderr, and the finished video (file path and link) goes to stdout.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, Implementation, TextContent

from kling_mcp import __version__
from kling_mcp.doctor import innermost, this_command
from kling_mcp.settings import TOKEN_HELP, Settings

WAIT_STEP = 300.0
"""Seconds one tool call waits; a real video that takes longer is waited for with kling_get_task."""
MAX_WAIT = 1800.0
"""Seconds `try` waits for a real video in all before it hands over the task id."""
DEFAULT_DURATION = 5
BAR_WIDTH = 30
DEMO_NOTE = "Demo mode: a test clip from the built-in emulator; nothing was charged."


@dataclass(frozen=True)
class TrialRequest:
    prompt: str
    model: str | None = None
    duration: int | None = None
    real: bool = False
    demo_seconds: float = 5.0
    confirmed: bool = False
    """--yes: the user agreed to the cost up front."""

    def arguments(self, wait: float) -> dict[str, Any]:
        arguments: dict[str, Any] = {"prompt": self.prompt, "timeout": wait}
        if self.model:
            arguments["model"] = self.model
        if self.duration:
            arguments["duration"] = self.duration
        return arguments


def trial_settings(settings: Settings, request: TrialRequest) -> Settings:
    """Demo settings with the requested task length, or the user's own settings for a real run.

    The server's INFO lines would bury the progress bar: only warnings show, unless LOG_LEVEL=DEBUG.
    """
    quiet = dataclasses.replace(settings, log_level="DEBUG" if settings.log_level == "DEBUG" else "WARNING")
    if request.real:
        return dataclasses.replace(quiet, demo=False)
    return dataclasses.replace(quiet, demo=True, demo_task_seconds=request.demo_seconds)


def spending_summary(settings: Settings, request: TrialRequest) -> str:
    model = request.model or settings.default_model
    duration = request.duration or DEFAULT_DURATION
    return (
        f"This starts one paid Kling task at AceDataCloud: model {model}, mode {settings.default_mode}, "
        f"{duration} s, charged to the account of ACEDATACLOUD_API_TOKEN."
    )


def confirm_spending(summary: str, *, assume_yes: bool, stdin: TextIO, stderr: TextIO) -> str | None:
    """None when the user agreed to spend; otherwise why not."""
    stderr.write(summary + "\n")
    if assume_yes:
        return None
    if not stdin.isatty():
        return "Standard input is not a terminal, so nobody can confirm: add --yes to agree to the cost."
    stderr.write("Go ahead? [y/N] ")
    stderr.flush()
    if stdin.readline().strip().lower() in ("y", "yes"):
        return None
    return "Cancelled: nothing was sent, nothing was charged."


class ProgressBar:
    """One line on stderr, redrawn on each progress notification (seconds waited, the task's state)."""

    def __init__(self, stream: TextIO, expected_seconds: float | None) -> None:
        self._stream = stream
        self._expected = expected_seconds
        self._redraw = stream.isatty()
        self._drawn = False

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        expected = total or self._expected
        if expected:
            filled = min(BAR_WIDTH, int(BAR_WIDTH * progress / expected))
            bar = f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] "
        else:
            bar = ""
        line = f"{bar}{progress:5.1f} s  {message or ''}"
        self._stream.write(f"\r\x1b[K{line}" if self._redraw else f"{line}\n")
        self._stream.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._drawn and self._redraw:
            self._stream.write("\n")
            self._stream.flush()


async def run_trial(
    settings: Settings,
    request: TrialRequest,
    *,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
    stderr: TextIO = sys.stderr,
) -> int:
    """Make one video through the MCP server; 0 when it is ready, 1 (and why, on stderr) otherwise."""
    from kling_mcp.server.app import create_server

    if request.real:
        if not settings.api_token:
            stderr.write(f"kling-mcp try --real needs a token. {TOKEN_HELP}\n")
            return 1
        summary = spending_summary(settings, request)
        refusal = confirm_spending(summary, assume_yes=request.confirmed, stdin=stdin, stderr=stderr)
        if refusal:
            stderr.write(refusal + "\n")
            return 1
    bar = ProgressBar(stderr, None if request.real else settings.demo_task_seconds)
    try:
        result = await _make_video(create_server(settings), request, bar)
    except Exception as error:
        bar.finish()
        stderr.write(f"kling-mcp try failed: {innermost(error)}\n")
        return 1
    bar.finish()
    video = _video(result)
    if result.is_error or video is None:
        stderr.write(f"kling-mcp try failed:\n{_text(result)}\n")
        return 1
    if video.get("state") != "succeeded":
        stderr.write(f"The video is not ready:\n{_text(result)}\n")
        return 1
    stdout.write(_where_it_is(video, settings))
    if video.get("demo"):
        stderr.write(f"{DEMO_NOTE}\n{next_steps(request)}\n")
    return 0


def next_steps(request: TrialRequest) -> str:
    """What to run next, with the command that starts this very installation."""
    command = shlex.join(this_command())
    return (
        f"A real Kling video (costs credits): {command} try --real {shlex.quote(request.prompt)}\n"
        f"Your MCP client's entry: {command} doctor"
    )


async def _make_video(server: MCPServer[Any], request: TrialRequest, bar: ProgressBar) -> CallToolResult:
    client_info = Implementation(name="kling-mcp-try", version=__version__)
    async with Client(server, client_info=client_info) as client:
        first_wait = WAIT_STEP if request.real else request.demo_seconds + 60
        result = await client.call_tool(
            "kling_generate_video", request.arguments(first_wait), progress_callback=bar
        )
        if request.real:
            result = await _wait_until_done(client, result, bar)
    return result


async def _wait_until_done(client: Client, result: CallToolResult, bar: ProgressBar) -> CallToolResult:
    """A real video can take minutes: wait on with kling_get_task (free), up to MAX_WAIT in all."""
    for _ in range(int(MAX_WAIT // WAIT_STEP) - 1):
        video = _video(result)
        if video is None or video.get("state") != "running":
            break
        arguments = {"task_id": video["task_id"], "timeout": WAIT_STEP}
        result = await client.call_tool("kling_get_task", arguments, progress_callback=bar)
    return result


def _video(result: CallToolResult) -> Mapping[str, Any] | None:
    content = result.structured_content
    return content if isinstance(content, Mapping) and "task_id" in content else None


def _text(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def _where_it_is(video: Mapping[str, Any], settings: Settings) -> str:
    file_path = video.get("file_path")
    saved = f"Video file: {file_path}" if file_path else f"Videos are saved in: {settings.output_dir}"
    return f"{saved}\nVideo URL: {video.get('video_url')}\n"
