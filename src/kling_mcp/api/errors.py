"""Errors from the AceDataCloud API, told apart and worded for the person who reads them.

Every error keeps the API's own message, the task id and the trace id when there are
any: support asks for the trace id, and a task id is a paid video that must not be lost.
"""

from __future__ import annotations

from enum import Enum

from kling_mcp.errors import KlingMcpError
from kling_mcp.settings import TOKEN_HELP


class ErrorKind(Enum):
    NO_TOKEN = "no_token"
    AUTH = "auth"
    ACCESS = "access"
    BALANCE = "balance"
    RATE_LIMITED = "rate_limited"
    FORBIDDEN = "forbidden"
    INVALID_REQUEST = "invalid_request"
    NOT_FOUND = "not_found"
    SERVER = "server"
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    BAD_RESPONSE = "bad_response"


TRANSIENT = frozenset(
    {
        ErrorKind.RATE_LIMITED,
        ErrorKind.SERVER,
        ErrorKind.UNREACHABLE,
        ErrorKind.TIMEOUT,
        ErrorKind.BAD_RESPONSE,
    }
)

# What each kind means and what to do about it: one line each, shown above the API's words.
ADVICE: dict[ErrorKind, str] = {
    ErrorKind.NO_TOKEN: f"No API token is configured. {TOKEN_HELP}",
    ErrorKind.AUTH: f"AceDataCloud rejected the API token (missing, wrong or expired). {TOKEN_HELP}",
    ErrorKind.ACCESS: "This token may not use the Kling service, or the service is disabled for the "
    "account: check the token's application at https://platform.acedata.cloud.",
    ErrorKind.BALANCE: "The AceDataCloud balance is used up: top up at https://platform.acedata.cloud, "
    "then retry.",
    ErrorKind.RATE_LIMITED: "AceDataCloud is rate limiting this token: wait a little and retry.",
    ErrorKind.FORBIDDEN: "AceDataCloud refused the request: usually content moderation (change the prompt or "
    "media) or no access to this feature.",
    ErrorKind.INVALID_REQUEST: "AceDataCloud says the request is invalid: fix what its message names.",
    ErrorKind.NOT_FOUND: "AceDataCloud does not know this resource: check the id.",
    ErrorKind.SERVER: "AceDataCloud had a temporary server error.",
    ErrorKind.UNREACHABLE: "Could not reach AceDataCloud (network problem or the API is down).",
    ErrorKind.TIMEOUT: "AceDataCloud was reached but did not answer in time.",
    ErrorKind.BAD_RESPONSE: "AceDataCloud answered with something that is not the API's JSON "
    "(a gateway page?).",
}


def kind_for(status: int | None, code: str | None) -> ErrorKind:
    """Classify an error answer by its code first (more precise), then its HTTP status."""
    by_code = {
        "no_token": ErrorKind.AUTH,
        "invalid_token": ErrorKind.AUTH,
        "token_expired": ErrorKind.AUTH,
        "token_mismatched": ErrorKind.ACCESS,
        "disabled": ErrorKind.ACCESS,
        "used_up": ErrorKind.BALANCE,
        "too_many_requests": ErrorKind.RATE_LIMITED,
        "bad_request": ErrorKind.INVALID_REQUEST,
        "not_found": ErrorKind.NOT_FOUND,
    }
    if code in by_code:
        return by_code[code]
    if status == 401:
        return ErrorKind.AUTH
    if status == 429:
        return ErrorKind.RATE_LIMITED
    if status == 403:
        return ErrorKind.FORBIDDEN
    if status == 404:
        return ErrorKind.NOT_FOUND
    if status in (408, 409) or (status is not None and status >= 500):
        return ErrorKind.SERVER
    return ErrorKind.INVALID_REQUEST


class KlingError(KlingMcpError):
    """A failed API call, or an API that could not be reached."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str = "",
        *,
        status: int | None = None,
        code: str | None = None,
        trace_id: str | None = None,
        task_id: str | None = None,
        retry_after: float | None = None,
        note: str | None = None,
        never_sent: bool = False,
        maybe_submitted: bool = False,
    ) -> None:
        self.kind = kind
        self.message = message
        self.status = status
        self.code = code
        self.trace_id = trace_id
        self.task_id = task_id
        self.retry_after = retry_after
        self.note = note
        self.never_sent = never_sent
        """True when the request provably never reached the server (safe to send again)."""
        self.maybe_submitted = maybe_submitted
        """True when a submission failed in a way that may still have started a paid task."""
        super().__init__(self.describe())

    def __str__(self) -> str:
        return self.describe()

    @property
    def transient(self) -> bool:
        return self.kind in TRANSIENT

    def describe(self) -> str:
        lines = [ADVICE[self.kind]]
        if self.message:
            said = f"API said ({self.status}{', ' + self.code if self.code else ''}): " if self.status else ""
            lines.append(f"{said or 'Detail: '}{self.message}")
        if self.note:
            lines.append(self.note)
        if self.task_id:
            lines.append(f"task_id: {self.task_id}")
        if self.trace_id:
            lines.append(f"trace_id: {self.trace_id}")
        return "\n".join(lines)
