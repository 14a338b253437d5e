"""What every answer of the emulated API shares: fresh ids and the contract's error body."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

Json = dict[str, Any]


def new_id() -> str:
    """A fresh id in the API's format (a uuid4), for tasks, videos and trace ids."""
    return str(uuid.uuid4())


def error_body(code: str | None, message: str) -> Json:
    """The contract's error body; a None code leaves `code` out, as some gateway answers do."""
    error: Json = {"message": message} if code is None else {"code": code, "message": message}
    return {"error": error, "trace_id": new_id()}


def error_response(
    status: int, code: str | None, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """An HTTP error answered with the contract's error body."""
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)
