"""The connections a hosted server keeps: each client address holds a few, and each must keep talking.

Below the gate (hosting.py), at the level of TCP connections, uvicorn's HTTP/1.1 protocol with
three additions: a request's headers must all arrive within KLING_HEADER_TIMEOUT of its first
byte (or of the connection's opening), else 408 and the connection is closed; one client
address holds at most KLING_MAX_CONNECTIONS_PER_ADDRESS connections (a proxy the operator trusts
carries many clients and is exempt), the one past it gets 503 and is closed; and a connection
answered before its request's body ended (a refusal, a 408) is closed, so that a client cannot
keep it open by trickling the rest. So half-sent requests cannot pile up and hold the server.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Sequence
from ipaddress import ip_address, ip_network
from typing import Any

import h11
from mcp.types import INVALID_REQUEST
from uvicorn.protocols.http.h11_impl import H11Protocol

TOO_MANY_CONNECTIONS = (
    "Too many connections from your address: close some, or send requests one after another, then try again."
)
HEADERS_TOO_SLOW = "The request's headers did not arrive in time (KLING_HEADER_TIMEOUT): send them at once."


def raw_answer(status: int, reason: str, message: str) -> bytes:
    """A whole HTTP/1.1 answer with a JSON-RPC error body, that closes the connection."""
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": INVALID_REQUEST, "message": message}})
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return (head + body).encode()


class ConnectionCounts:
    """How many connections each client address holds, against a limit; trusted proxies are not counted."""

    def __init__(self, limit: int, trusted_proxies: Sequence[str]) -> None:
        self.limit = limit
        self._trusted = [ip_network(network) for network in trusted_proxies]
        self._open: Counter[str] = Counter()

    def admit(self, address: str) -> bool:
        """Count a new connection from `address`; False (and not counted) when it holds the limit already."""
        if self._is_trusted(address):
            return True
        if self._open[address] >= self.limit:
            return False
        self._open[address] += 1
        return True

    def release(self, address: str) -> None:
        if self._is_trusted(address):
            return
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]

    def _is_trusted(self, address: str) -> bool:
        try:
            parsed = ip_address(address)
        except ValueError:
            return False
        return any(parsed in network for network in self._trusted)


def guarded_protocol(counts: ConnectionCounts, header_timeout: float) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol with `counts` and `header_timeout` (for `uvicorn.Config(http=...)`)."""

    class Guarded(_GuardedProtocol):
        _counts = counts
        _header_timeout = header_timeout

    return Guarded


class _GuardedProtocol(H11Protocol):
    _counts: ConnectionCounts
    _header_timeout: float

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._address: str | None = None
        """The client address this connection is counted under; None when not counted."""
        self._headers_due: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn
        super().connection_made(transport)
        address = self.client[0] if self.client else ""
        if not self._counts.admit(address):
            transport.write(raw_answer(503, "Service Unavailable", TOO_MANY_CONNECTIONS))
            transport.close()
            return
        self._address = address
        self._expect_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._address is not None:
            self._counts.release(self._address)
            self._address = None
        self._stop_expecting_headers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._expect_headers()  # part of a request's headers came: the rest is due
        else:
            self._stop_expecting_headers()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            self.transport.close()  # answered before the body ended: the rest cannot start a new request

    def _expect_headers(self) -> None:
        if self._headers_due is None:
            self._headers_due = self.loop.call_later(self._header_timeout, self._headers_late)

    def _stop_expecting_headers(self) -> None:
        if self._headers_due is not None:
            self._headers_due.cancel()
            self._headers_due = None

    def _headers_late(self) -> None:
        self._headers_due = None
        if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
            return
        if self.conn.trailing_data[0]:  # a request was begun: say why it ends
            self.transport.write(raw_answer(408, "Request Timeout", HEADERS_TOO_SLOW))
        self.transport.close()
