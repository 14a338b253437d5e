"""Local files in a request: found in its media fields, checked, uploaded, and swapped for their
hosted URLs in the body, before anything is paid for.

A media field is any field typed with a `MediaSource` (ImageSource, VideoSource, AudioSource),
at any depth (image_list items, product_images). Every file is checked (local_files.py: allowed
directories, no hidden files, content sniffed from its bytes, size) before the first is uploaded,
so a refusal costs nothing and sends nothing. The same file (by SHA-256) is uploaded once.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import InputRequiredResult
from pydantic import BaseModel

from kling_mcp.domain.fields import MediaSource
from kling_mcp.domain.local_files import (
    LocalFile,
    LocalFileError,
    MediaKind,
    allowed_directories,
    check_local_file,
    is_local_reference,
)
from kling_mcp.server.roots import RootsRequired
from kling_mcp.server.state import AppState
from kling_mcp.server.tools.spec import NOTHING_SENT

Say = Callable[[str], Awaitable[None]]
MEGABYTE = 1_000_000


@dataclass(frozen=True)
class LocalMedia:
    field: str
    """Where the request holds it, as the tool's own parameters name it: `image_list.0.image_url`."""
    given: str
    kind: MediaKind


def local_media(request: BaseModel) -> list[LocalMedia]:
    """Every local file reference in `request`'s media fields."""
    return list(_find(request, ""))


def _find(model: BaseModel, prefix: str) -> Iterator[LocalMedia]:
    for name, info in type(model).model_fields.items():
        yield from _find_in(f"{prefix}{name}", info.annotation, info.metadata, getattr(model, name))


def _find_in(field: str, annotation: Any, metadata: list[Any], value: Any) -> Iterator[LocalMedia]:
    if isinstance(value, BaseModel):
        yield from _find(value, f"{field}.")
    elif isinstance(value, list):
        item_annotation, item_metadata = _list_item(annotation)
        for index, item in enumerate(value):
            yield from _find_in(f"{field}.{index}", item_annotation, item_metadata, item)
    elif isinstance(value, str) and is_local_reference(value):
        marker = _media_marker(annotation, metadata)
        if marker is not None:
            yield LocalMedia(field, value, marker.media)


def _media_marker(annotation: Any, metadata: list[Any]) -> MediaSource | None:
    for item in metadata:
        if isinstance(item, MediaSource):
            return item
    if typing.get_origin(annotation) is typing.Annotated:
        inner, *extra = typing.get_args(annotation)
        return _media_marker(inner, extra)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            found = _media_marker(option, [])
            if found is not None:
                return found
    return None


def _list_item(annotation: Any) -> tuple[Any, list[Any]]:
    """The item type of the list inside `annotation` (through Annotated and Optional)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _list_item(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            if option is not type(None):
                return _list_item(option)
    if origin is list:
        return typing.get_args(annotation)[0], []
    return Any, []


async def upload_local_media(
    request: BaseModel,
    app: AppState,
    ctx: Context,
    say: Say,
    *,
    before_upload: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, str] | InputRequiredResult:
    """Each local reference in `request` mapped to its hosted URL; raises ToolError on a refusal.

    `before_upload` runs once, after every file passed its checks and before the first one that
    must be sent (none was uploaded before); raising there stops the call with nothing uploaded.
    """
    found = local_media(request)
    if not found:
        return {}
    if app.settings.hosted:
        fields = ", ".join(item.field for item in found)
        raise ToolError(
            f"{fields}: this is a hosted kling-mcp, which reads no files from its own disk; give an "
            f"http(s) URL of the media instead ({NOTHING_SENT})."
        )
    try:
        roots = await app.roots.get(ctx)
    except RootsRequired as needed:
        return needed.result
    allowed = allowed_directories(roots, app.settings.input_dirs)
    files = await _checked(found, allowed)
    journal = app.keeper.journal
    known = {file.sha256: await journal.hosted_url(file.sha256) for file in files}
    if before_upload is not None and not all(known.values()):
        await before_upload()
    hosted: dict[str, str] = {}
    for item, file in zip(found, files, strict=True):
        url = known[file.sha256] or await _upload(app, file, say)
        hosted[item.given] = known[file.sha256] = url
    return hosted


async def _checked(found: list[LocalMedia], allowed: list[Any]) -> list[LocalFile]:
    files, problems = [], []
    for item in found:
        try:
            files.append(
                await anyio.to_thread.run_sync(check_local_file, item.field, item.given, item.kind, allowed)
            )
        except LocalFileError as refusal:
            problems.append(str(refusal))
    if problems:
        raise ToolError("Local files refused:\n" + "\n".join(f"- {problem}" for problem in problems))
    return files


async def _upload(app: AppState, file: LocalFile, say: Say) -> str:
    """Send `file` to the file hosting; the journal remembers its URL, so it is sent only once."""

    async def progress(sent: int, total: int) -> None:
        await say(f"uploading {file.name}, {sent / MEGABYTE:.1f} of {total / MEGABYTE:.1f} MB")

    from kling_mcp.api.uploads import UploadError, upload  # brings httpx, which start-up does without

    settings = app.settings
    try:
        url = await upload(
            app.http.client(), settings.platform_base_url, settings.upload_token, file, progress
        )
    except UploadError as error:
        raise ToolError(f"Uploading {file.name} failed; {NOTHING_SENT}. {error}") from None
    await app.keeper.journal.remember_upload(file.sha256, url, size=file.size, mime=file.mime)
    return url


def swap_hosted(body: Any, hosted: dict[str, str]) -> Any:
    """`body` with every local reference replaced by its hosted URL."""
    if isinstance(body, dict):
        return {key: swap_hosted(value, hosted) for key, value in body.items()}
    if isinstance(body, list):
        return [swap_hosted(item, hosted) for item in body]
    if isinstance(body, str):
        return hosted.get(body, body)
    return body
