"""Local files in a request: found in its media fields and checked, before anything is paid for
(the task service uploads them, once the task is admitted, and sends their hosted URLs).

A media field is any field typed with a `MediaSource` (ImageSource, VideoSource, AudioSource),
at any depth (image_list items, product_images). Every file is checked (local_files.py: allowed
directories, no hidden files, content sniffed from its bytes, size) before the first is uploaded,
so a refusal costs nothing and sends nothing. The same file (by SHA-256) is uploaded once.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
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
from kling_mcp.errors import NOTHING_SENT
from kling_mcp.server.roots import RootsRequired
from kling_mcp.server.state import AppState


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


async def checked_local_media(
    request: BaseModel, app: AppState, ctx: Context
) -> dict[str, LocalFile] | InputRequiredResult:
    """Each local reference in `request`, checked; raises ToolError naming every refused one.

    Nothing is uploaded here: the task service uploads them once the task is admitted.
    """
    found = local_media(request)
    if not found:
        return {}
    fields = ", ".join(item.field for item in found)
    app.policy.refuse_local_disk(
        "reads no files from its own disk", f"give {fields} as an http(s) URL instead ({NOTHING_SENT})."
    )
    try:
        roots = await app.roots.get(ctx)
    except RootsRequired as needed:
        return needed.result
    allowed = allowed_directories(roots, app.settings.input_dirs, always=(app.settings.output_dir,))
    files = await _checked(found, allowed)
    return {item.given: file for item, file in zip(found, files, strict=True)}


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
