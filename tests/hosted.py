"""Hosted kling-mcp for the tests and benchmarks: replicas as real processes, users as real HTTP clients.

`replica(env, workdir)` starts `python -m kling_mcp --transport http` on a free loopback port
with exactly `env` (see `hosted_env`), waits until `/healthz` answers, and stops it at the end
(SIGTERM, then SIGKILL if it lingers). `session(replica, token)` is an MCP client session over
the SDK's streamable HTTP client, every request carrying `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
from anyio.abc import ByteStream, Process
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.types import CallToolResult, TextContent

from kling_mcp.emulator import Emulator

START_LIMIT = 30.0
"""Seconds a replica may take to answer `/healthz`."""
STOP_LIMIT = 15.0
"""Seconds a replica may take to exit after SIGTERM (its grace period is 10 s)."""
CALL_LIMIT = 30.0
"""Seconds any one tool call of a test may take."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def default_env(workdir: Path) -> dict[str, str]:
    """Ours without any kling-mcp setting (no server-wide token): the defaults, but for where the
    journal and the videos go (in `workdir`)."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ACEDATACLOUD_", "KLING_")) and key != "LOG_LEVEL"
    }
    return {**inherited, "KLING_DATA_DIR": str(workdir / "data"), "KLING_OUTPUT_DIR": str(workdir / "videos")}


def hosted_env(api_base_url: str, workdir: Path, **env: str) -> dict[str, str]:
    """A replica's environment: the defaults on the API at `api_base_url`, no limits in the way, `env`."""
    return {
        **default_env(workdir),
        "ACEDATACLOUD_API_BASE_URL": api_base_url,
        "ACEDATACLOUD_PLATFORM_BASE_URL": api_base_url,
        "KLING_DAILY_TASK_LIMIT": "100000",
        "KLING_MAX_CONCURRENT_TASKS": "1000",
        "KLING_RATE_LIMIT": "100000",
        **env,
    }


@dataclass
class Replica:
    """A running hosted kling-mcp process."""

    process: Process
    port: int
    stderr_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mcp_url(self) -> str:
        return f"{self.base_url}/mcp"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def kill(self) -> None:
        """SIGKILL: the replica dies with no chance to clean up, as when its machine goes."""
        self.process.send_signal(signal.SIGKILL)

    async def stop(self) -> int:
        """SIGTERM, and its exit code once it exits."""
        self.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(STOP_LIMIT):
            return await self.process.wait()


@asynccontextmanager
async def replica(
    env: dict[str, str], workdir: Path, *args: str, module: str = "kling_mcp"
) -> AsyncIterator[Replica]:
    """Start a replica in `workdir` (so no .env is read) and yield it once it is ready.

    `module` is what `python -m` runs: kling-mcp, or a server that takes the same arguments.
    """
    port = free_port()
    stderr_path = workdir / f"replica-{port}.log"
    command = [sys.executable, "-m", module, "--transport", "http", "--port", str(port), *args]
    with stderr_path.open("w") as stderr:
        process = await anyio.open_process(
            command, env=env, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
        )
    running = Replica(process, port, stderr_path)
    try:
        await _until_ready(running)
        yield running
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            with anyio.move_on_after(STOP_LIMIT, shield=True):
                await process.wait()
        if process.returncode is None:
            process.kill()
            with anyio.CancelScope(shield=True):
                await process.wait()


async def _until_ready(running: Replica) -> None:
    async with httpx.AsyncClient(base_url=running.base_url, timeout=2) as http:
        with anyio.fail_after(START_LIMIT):
            while True:
                if running.process.returncode is not None:
                    raise RuntimeError(f"the replica exited at start:\n{running.stderr()[-3000:]}")
                with suppress(httpx.TransportError):
                    if (await http.get("/healthz")).status_code == 200:
                        return
                await anyio.sleep(0.05)


@asynccontextmanager
async def session(running: Replica, token: str) -> AsyncIterator[Client]:
    """An MCP session with `running` as the user of `token`."""
    http = create_mcp_http_client(headers={"authorization": f"Bearer {token}"})
    async with http, Client(streamable_http_client(running.mcp_url, http_client=http)) as client:
        yield client


async def call(client: Client, tool: str, arguments: dict[str, Any] | None = None) -> CallToolResult:
    with anyio.fail_after(CALL_LIMIT):
        return await client.call_tool(tool, arguments or {})


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def structured(result: CallToolResult) -> dict[str, Any]:
    content: dict[str, Any] | None = result.structured_content
    assert content is not None, text_of(result)
    return content


# --- Raw HTTP, for what a well-behaved client would never send ---------------------------------


async def raw_exchange(running: Replica, request: bytes, *, limit: float = CALL_LIMIT) -> bytes:
    """Send `request` as it is on a new connection; everything the server answers until it hangs up."""
    with anyio.fail_after(limit):
        async with await anyio.connect_tcp("127.0.0.1", running.port) as stream:
            with suppress(anyio.BrokenResourceError):  # it may answer, and hang up, before reading it all
                await stream.send(request)
            return await read_until_closed(stream)


async def read_until_closed(stream: ByteStream) -> bytes:
    answer = b""
    with suppress(anyio.EndOfStream, anyio.BrokenResourceError):
        while True:
            answer += await stream.receive()
    return answer


def status_of(answer: bytes) -> int:
    """The status code of a raw HTTP answer; 0 when the server hung up without one."""
    line = answer.partition(b"\r\n")[0].split()
    return int(line[1]) if len(line) >= 2 and line[0].startswith(b"HTTP/") else 0


def body_of(answer: bytes) -> bytes:
    return answer.partition(b"\r\n\r\n")[2]


def new_token(user: str) -> str:
    """A token no other test uses: its user's tasks, budget and throttle are its own."""
    return f"sk-{user}-{secrets.token_hex(12)}"


def base_url(api: Emulator) -> str:
    """Where a served emulator answers."""
    assert api.base_url is not None
    return api.base_url
