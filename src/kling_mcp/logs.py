"""One logger, `kling_mcp`: to stderr always, and to the MCP client during a tool call.

stdout belongs to the protocol, so nothing here writes to it. While a tool call runs,
its records are also sent to that call's client as MCP log messages (the client picks
the level it wants); records from outside a call (the shared poller) stay on stderr.
Nothing logged here contains the API token: the client redacts it from what it logs. A message
is one line on stderr whatever its values hold: control characters are escaped (`\\n`), so a file
name, an API answer or a header a client sent cannot forge a log line of its own, nor send a
terminal an escape sequence. That holds for the SDK's and uvicorn's records too, once
`write_one_line` has run after the SDK set its handler up on the root logger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

from mcp.shared.exceptions import MCPDeprecationWarning

logger = logging.getLogger("kling_mcp")

McpLevel = Literal["debug", "info", "warning", "error", "critical"]
_MCP_LEVELS: dict[int, McpLevel] = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}
_call_session: ContextVar[Any] = ContextVar("kling_mcp_call_session", default=None)
_CLIENT_THRESHOLDS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO + 5,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "alert": logging.CRITICAL + 5,
    "emergency": logging.CRITICAL + 10,
}
_client_thresholds: dict[int, int] = {}
"""The least severe record each handshake-era client asked for (`logging/setLevel`), keyed by the
identity of its connection's `initialize` parameters and dropped with them."""


def configure_logging(level: str) -> None:
    """Send the `kling_mcp` logger to stderr and to the current call's client, at `level`."""
    logger.setLevel(level)
    logger.propagate = False
    # httpx logs each request at INFO; ours (at DEBUG, with bodies) say more.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not logger.handlers:
        stderr = logging.StreamHandler(sys.stderr)
        stderr.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(stderr)
        logger.addHandler(ClientLogHandler())
    write_one_line()


def write_one_line() -> None:
    """Have the stderr handlers, ours and the root logger's (the SDK's, which also writes uvicorn's
    records), escape control characters; again after the SDK has set its handler up."""
    for handler in (*logger.handlers, *logging.getLogger().handlers):
        if not isinstance(handler, ClientLogHandler) and not any(
            isinstance(existing, OneLine) for existing in handler.filters
        ):
            handler.addFilter(OneLine())


_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """`text` with its control characters (and Unicode line separators) escaped: `a\\nb`."""
    return _CONTROL_CHARACTERS.sub(lambda found: found[0].encode("unicode_escape").decode("ascii"), text)


class OneLine(logging.Filter):
    """On a handler: each record's message as one line, its control characters escaped (a traceback
    logged with it keeps its own lines)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if (escaped := printable(message)) != message:
            record.msg, record.args = escaped, None
        return True


@contextmanager
def relay_to_client(session: Any) -> Iterator[None]:
    """Within this block (and tasks it starts), log records also go to `session`'s client."""
    token = _call_session.set(session)
    try:
        yield
    finally:
        _call_session.reset(token)


def set_client_level(connection: object, level: str) -> None:
    """Send the client of `connection` (its `initialize` parameters) only records at `level` or above."""
    key = id(connection)
    if key not in _client_thresholds:
        weakref.finalize(connection, _client_thresholds.pop, key, None)
    _client_thresholds[key] = _CLIENT_THRESHOLDS[level]


class ClientLogHandler(logging.Handler):
    """Forwards records to the client of the tool call that logged them."""

    def __init__(self) -> None:
        super().__init__()
        self._sending: set[asyncio.Task[None]] = set()

    def emit(self, record: logging.LogRecord) -> None:
        session = _call_session.get()
        if session is None or record.levelno < _client_thresholds.get(id(session.client_params), 0):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        level = _MCP_LEVELS.get(record.levelno, "info")
        task = loop.create_task(_send(session, level, record.getMessage(), record.name))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)


async def _send(session: Any, level: McpLevel, message: str, name: str) -> None:
    # The logging capability is deprecated as of protocol 2026-07-28, where the SDK itself
    # drops messages the client did not ask for; older clients still show them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        sending = session.send_log_message(level=level, data=message, logger=name)
    with contextlib.suppress(Exception):  # the client went away: nothing to tell it
        await sending
