"""The emulated file hosting: `POST /api/v1/files/` stores a file, `GET /files/<id>.<ext>` serves it.

It answers as the contract says (`file_url`, `mime`, `size`, `sha256`), checks the token like every
other call, and records what it received, so tests can check exactly which bytes arrived and demo
mode can take local files end to end.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .wire import error_response, new_id

MAX_UPLOAD_BYTES = 100 * 1024 * 1024
"""The contract's limit per file."""
MULTIPART_OVERHEAD_BYTES = 64 * 1024
_EXTENSION = re.compile(r"\.([A-Za-z0-9]{1,8})$")


@dataclass(frozen=True)
class StoredFile:
    name: str
    """What the upload called it."""
    mime: str
    content: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


class FileHosting:
    """The upload endpoint and the hosted files, with what it received."""

    def __init__(
        self, check_token: Callable[[str | None], Response | None], base_url: Callable[[Request], str]
    ) -> None:
        self._check_token = check_token
        self._base_url = base_url
        self.files: dict[str, StoredFile] = {}
        """Hosted files by the name in their URL (`<id>.<ext>`)."""
        self.received_count = 0
        self.received_bytes = 0

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/files/", self._upload, methods=["POST"]),
            Route("/files/{name}", self._serve, methods=["GET"]),
        ]

    async def _upload(self, request: Request) -> Response:
        denied = self._check_token(request.headers.get("authorization"))
        if denied is not None:
            return denied
        if int(request.headers.get("content-length") or 0) > MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD_BYTES:
            return error_response(413, "too_large", "The file is over the 100 MB limit.")
        # A malformed multipart body is Starlette's own 400 answer.
        async with request.form(max_files=1, max_fields=0) as form:
            part = form.get("file")
            if not isinstance(part, UploadFile):
                return error_response(400, "bad_request", "Send the file as the multipart field 'file'.")
            stored = StoredFile(part.filename or "", part.content_type or "", await part.read())
        if len(stored.content) > MAX_UPLOAD_BYTES:
            return error_response(413, "too_large", "The file is over the 100 MB limit.")
        self.received_count += 1
        self.received_bytes += len(stored.content)
        match = _EXTENSION.search(stored.name)
        name = f"{new_id()}.{match.group(1).lower() if match else 'bin'}"
        self.files[name] = stored
        return JSONResponse(
            {
                "success": True,
                "file_url": f"{self._base_url(request)}/files/{name}",
                "mime": stored.mime or "application/octet-stream",
                "size": len(stored.content),
                "sha256": stored.sha256,
                "trace_id": new_id(),
            }
        )

    async def _serve(self, request: Request) -> Response:
        stored = self.files.get(request.path_params["name"])
        if stored is None:
            return error_response(404, "not_found", "no such file")
        return Response(stored.content, media_type=stored.mime or "application/octet-stream")
