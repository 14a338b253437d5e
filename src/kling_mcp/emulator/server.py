"""Serving the emulator over real HTTP: inside a running event loop, or as a blocking command.

Both use uvicorn's h11 protocol, extended so the app can drop a connection without any
response (`Fault.drop()`), and keep stdout untouched: uvicorn's own logging config is not
applied, access logs are off and uvicorn logs warnings only, through the host's handlers
(Python's last-resort handler writes those to stderr).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .app import Emulator
from .faults import DROP_EXTENSION

GRACEFUL_SHUTDOWN_SECONDS = 2
"""How long stopping waits for calls in flight (a held synchronous call, a callback) before cancelling."""


class _DroppableH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, offering each request a way to close its connection at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        app = self.app

        async def app_offering_drop(scope: Any, receive: Any, send: Any) -> None:
            scope.setdefault("extensions", {})[DROP_EXTENSION] = {"close": self.transport.close}
            await app(scope, receive, send)

        self.app = app_offering_drop


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves Ctrl-C and SIGTERM to the program hosting it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve_emulator(emulator: Emulator, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve `emulator` in the current event loop; yields its base URL (port 0 picks a free port).

    Sets `emulator.base_url`. On exit the server stops accepting, finishes the calls in flight
    (cancelling them after GRACEFUL_SHUTDOWN_SECONDS) and closes its socket.
    """
    sock = _bind(host, port)
    server = _EmbeddedServer(_config(emulator))
    stopped = anyio.Event()

    async def serve() -> None:
        try:
            await server.serve(sockets=[sock])
        finally:
            stopped.set()

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(serve)
        while not server.started:
            if stopped.is_set():
                raise RuntimeError("the Kling API emulator stopped before it started")
            await anyio.sleep(0.005)
        emulator.base_url = _base_url(host, sock.getsockname()[1])
        try:
            yield emulator.base_url
        finally:
            server.should_exit = True
            with anyio.CancelScope(shield=True):
                await stopped.wait()


def run_emulator(
    host: str = "127.0.0.1", port: int = 8765, token: str | None = None, task_seconds: float = 5.0
) -> None:
    """Serve a new emulator until Ctrl-C or SIGTERM (the `kling-mcp emulator` command)."""
    emulator = Emulator(token=token, task_seconds=task_seconds, clips=True)
    sock = _bind(host, port)
    emulator.base_url = _base_url(host, sock.getsockname()[1])
    logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kling_mcp.emulator").setLevel(logging.INFO)
    print(
        f"Kling API emulator on {emulator.base_url}: set ACEDATACLOUD_API_BASE_URL={emulator.base_url}"
        f" and ACEDATACLOUD_API_TOKEN={token if token is not None else '<any token>'}",
        file=sys.stderr,
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(_config(emulator)).run(sockets=[sock])


def _config(emulator: Emulator) -> uvicorn.Config:
    return uvicorn.Config(
        emulator.app,
        http=_DroppableH11Protocol,
        ws="none",
        lifespan="off",
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port; unlike uvicorn's own binding, failure raises instead of exiting.

    Naming IPPROTO_TCP matters: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
    sockets that say they are TCP, and with it on every keep-alive call waits ~40 ms for a
    delayed ACK between uvicorn's header and body writes.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
