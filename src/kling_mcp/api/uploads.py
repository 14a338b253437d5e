"""Uploading a checked local file to AceDataCloud's file hosting, for its URL to go into a request.

The file is streamed (a 100 MB video is never held in memory) as the one `file` part of a
multipart POST, reporting progress as it goes. Uploads cost nothing, but one that may have
reached the host is never sent again on its own: only a connection that could not be made
is retried. An error says what was sent: nothing (no connection), part of the file (cut off
midway: the host cannot have it whole), or all of it (cut off before the host answered: it may
have stored it). The token never appears in an error or a log line.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import IO

import anyio
import httpx

from kling_mcp.domain.local_files import MB, LocalFile, LocalFileError
from kling_mcp.errors import KlingMcpError
from kling_mcp.logs import logger

UPLOAD_PATH = "/api/v1/files/"
CHUNK_BYTES = MB
CONNECT_ATTEMPTS = 2
RETRY_DELAY_SECONDS = 0.5
PLATFORM_TOKEN_HELP = (
    "Uploads may need a platform token, which is not the API token: create one at "
    "https://platform.acedata.cloud (console, platform tokens; it starts with 'platform-') "
    "and set it as ACEDATACLOUD_PLATFORM_TOKEN in the server's env."
)
NO_TASK = "No video task was started and nothing was charged."

OnProgress = Callable[[int, int], Awaitable[None]]
"""Called with (bytes of the file sent, its size) as the upload goes."""


class UploadError(KlingMcpError):
    """An upload that failed; the message keeps the host's own words and its trace id."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        trace_id: str | None = None,
    ) -> None:
        self.status = status
        self.trace_id = trace_id
        lines = [message, f"trace_id: {trace_id}" if trace_id else "", NO_TASK]
        super().__init__("\n".join(line for line in lines if line))


class _ChangedWhileSending(Exception):
    """The bytes read while sending are not the ones that were checked."""


@dataclass
class _Sent:
    """How many bytes of the file the body has handed to the connection so far."""

    bytes: int = 0


async def upload(
    http: httpx.AsyncClient,
    base_url: str,
    token: str | None,
    file: LocalFile,
    on_progress: OnProgress | None = None,
) -> str:
    """Upload `file` to the file hosting at `base_url` and answer its hosted URL, as the host gave it;
    raises UploadError. (The task service remembers the URL, so the same content goes up once.)"""
    if not token:
        raise UploadError(
            f"Cannot upload {file.name}: no token is set. "
            "Set ACEDATACLOUD_PLATFORM_TOKEN (or ACEDATACLOUD_API_TOKEN)."
        )
    return await _send(http, base_url.rstrip("/") + UPLOAD_PATH, token, file, on_progress)


async def _send(
    http: httpx.AsyncClient, endpoint: str, token: str, file: LocalFile, on_progress: OnProgress | None
) -> str:
    boundary = uuid.uuid4().hex
    head, tail = _part_envelope(boundary, file)
    headers = {
        "authorization": f"Bearer {token}",
        "accept": "application/json",
        "content-type": f"multipart/form-data; boundary={boundary}",
        "content-length": str(len(head) + file.size + len(tail)),
    }
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            stream = file.open()
        except LocalFileError as exc:
            raise UploadError(f"Did not upload {file.name}: {exc}") from None
        with stream:
            sent = _Sent()
            try:
                logger.info("Uploading %s (%.1f MB) to %s", file.name, file.size / MB, endpoint)
                body = _body(stream, file, head, tail, on_progress, sent)
                response = await http.post(endpoint, content=body, headers=headers)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                if attempt == CONNECT_ATTEMPTS:
                    raise UploadError(
                        f"Could not reach the file hosting at {endpoint} to upload {file.name} "
                        f"({_redact(_describe(exc), token)}); nothing was sent."
                    ) from None
                logger.info("Could not connect to upload %s; trying once more.", file.name)
                await anyio.sleep(RETRY_DELAY_SECONDS)
                continue
            except _ChangedWhileSending as exc:
                raise UploadError(f"Stopped uploading {file.name}: {exc}") from None
            except httpx.TransportError as exc:
                raise _cut_off(file, sent.bytes, _redact(_describe(exc), token)) from None
        return _hosted_url(response, token, file)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _cut_off(file: LocalFile, sent: int, reason: str) -> UploadError:
    """The connection broke after the upload began; what reached the host depends on how much was sent."""
    if sent < file.size:
        return UploadError(
            f"The upload of {file.name} was cut off after {sent / MB:.1f} of {file.size / MB:.1f} MB had "
            f"been sent ({reason}): the host did not get the whole file and gave no URL for it. Uploads "
            "are free: calling again sends it anew."
        )
    return UploadError(
        f"All {file.size / MB:.1f} MB of {file.name} were sent, but the connection was cut off before the "
        f"host answered ({reason}): it may have stored the file. Uploads are free: calling again is safe."
    )


def _part_envelope(boundary: str, file: LocalFile) -> tuple[bytes, bytes]:
    """What goes before and after the file's bytes in a multipart body with one `file` part."""
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{file.upload_name}"\r\n'
        f"Content-Type: {file.mime}\r\n\r\n"
    )
    return head.encode("ascii"), f"\r\n--{boundary}--\r\n".encode("ascii")


async def _body(
    stream: IO[bytes], file: LocalFile, head: bytes, tail: bytes, on_progress: OnProgress | None, sent: _Sent
) -> AsyncIterator[bytes]:
    """The multipart body, read as it is sent; it stops short of its end if the file is not as checked."""
    yield head
    reader = anyio.wrap_file(stream)
    digest = hashlib.sha256()
    while chunk := await reader.read(CHUNK_BYTES):
        if sent.bytes + len(chunk) > file.size:
            raise _ChangedWhileSending(f"it grew past the {file.size} bytes checked")
        digest.update(chunk)
        yield chunk
        sent.bytes += len(chunk)
        if on_progress is not None:
            await on_progress(sent.bytes, file.size)
    if sent.bytes != file.size or digest.hexdigest() != file.sha256:
        raise _ChangedWhileSending("its content changed after it was checked")
    yield tail


def _hosted_url(response: httpx.Response, token: str, file: LocalFile) -> str:
    logger.debug(
        "upload of %s -> %d %s", file.name, response.status_code, _redact(response.text[:500], token)
    )
    try:
        answer = json.loads(response.text)
    except ValueError:
        answer = None
    body = answer if isinstance(answer, dict) else {}
    trace_id = body.get("trace_id") if isinstance(body.get("trace_id"), str) else None
    said = _redact(_said(body, response.text), token)
    if response.status_code == 401:
        raise UploadError(
            f"The file hosting refused the token (HTTP 401: {said}). {PLATFORM_TOKEN_HELP}",
            status=401,
            trace_id=trace_id,
        )
    if response.is_error or not isinstance(answer, dict):
        raise UploadError(
            f"Uploading {file.name} failed (HTTP {response.status_code}): {said}",
            status=response.status_code,
            trace_id=trace_id,
        )
    url = body.get("file_url") or body.get("url")
    if not isinstance(url, str) or not url.lower().startswith(("https://", "http://")):
        raise UploadError(
            f"The file hosting answered the upload of {file.name} without an http(s) file URL: {said}",
            status=response.status_code,
            trace_id=trace_id,
        )
    logger.info("Uploaded %s: %s", file.name, url)
    return url


def _said(body: dict[str, object], text: str) -> str:
    """The host's own words: its error message, else the start of what it answered."""
    error = body.get("error")
    message = error.get("message") if isinstance(error, dict) else error
    message = message or body.get("detail") or body.get("message")
    if isinstance(message, str) and message:
        return message
    return " ".join(re.sub(r"<[^>]+>", " ", text).split())[:300] or "no message"


def _describe(exc: httpx.TransportError) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _redact(text: str, token: str) -> str:
    return text.replace(token, "***")
