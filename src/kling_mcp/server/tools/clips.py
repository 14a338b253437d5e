"""The free local tools on saved videos: a frame as a PNG (the next shot's start image), clips
joined into one MP4; and the contact sheet every finished result shows the model.

A source is a finished task of the caller's (its saved video, saved now if it is not) or the path
of a video inside the allowed directories, checked as an upload would be (the output directory
is always allowed, so this server's videos and frames go straight back into a generation). The
decoding runs in a worker thread. A hosted server keeps no files, so it refuses these tools.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Annotated, Literal

import anyio
import anyio.to_thread
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import (
    CallToolResult,
    ContentBlock,
    ImageContent,
    InputRequiredResult,
    ResourceLink,
    TextContent,
)
from pydantic import AfterValidator, Field
from pydantic.json_schema import SkipJsonSchema

from kling_mcp import clips
from kling_mcp.domain.fields import JsonText, Text, check_identifier, quote
from kling_mcp.domain.local_files import (
    LocalFileError,
    allowed_directories,
    check_local_file,
    is_local_reference,
)
from kling_mcp.logs import logger
from kling_mcp.server.roots import RootsRequired
from kling_mcp.server.state import AppState
from kling_mcp.server.tools.common import KlingModel, StrictModel
from kling_mcp.server.tools.spec import ToolSpec, result_content
from kling_mcp.tasks.callers import Caller
from kling_mcp.tasks.service import TaskError

MAX_JOINED = 20


def _check_source(value: str) -> str:
    if is_local_reference(value):
        return value
    try:
        return check_identifier(value)
    except ValueError:
        raise ValueError(
            f"must be a finished task's task_id, or the absolute path (or ~/ path, or file:// URI) of a "
            f"saved video (got {quote(value)})"
        ) from None


ClipSource = Annotated[str, Text(4096), AfterValidator(_check_source)]
SOURCE_HELP = "A finished task's task_id, or the path of a saved MP4/MOV."


# --- Where a source's video is --------------------------------------------------------------


async def resolve_sources(
    given: list[tuple[str, str]], app: AppState, ctx: Context, caller: Caller
) -> list[Path] | InputRequiredResult:
    """The video file of each (field, source); raises ToolError naming every field that is wrong."""
    app.policy.refuse_local_disk(
        "keeps no video files, so it takes no frames from videos and joins none",
        "download the videos from their video_url (kling_get_task gives a fresh one) and edit them locally.",
    )
    allowed: list[Path] = []
    if any(is_local_reference(source) for _, source in given):
        try:
            roots = await app.roots.get(ctx)
        except RootsRequired as needed:
            return needed.result
        allowed = allowed_directories(roots, app.settings.input_dirs, always=(app.settings.output_dir,))
    found: list[Path] = []
    problems: list[str] = []
    for field, source in given:
        try:
            path = await _video_file(field, source, allowed, app, ctx, caller)
            await anyio.to_thread.run_sync(clips.probe, path)
            found.append(path)
        except (LocalFileError, clips.ClipError, TaskError) as error:
            problems.append(_named(field, error))
    if problems:
        raise ToolError("\n".join(problems))
    return found


def _named(field: str, error: Exception) -> str:
    message = str(error)
    return message if message.startswith(f"{field}:") else f"{field}: {message}"


async def _video_file(
    field: str, source: str, allowed: list[Path], app: AppState, ctx: Context, caller: Caller
) -> Path:
    if is_local_reference(source):
        checked = await anyio.to_thread.run_sync(check_local_file, field, source, "video", allowed)
        return checked.path
    record = await app.tasks.record(source, owner=caller.owner)
    if record is None:
        raise TaskError(
            f"kling-mcp did not start task {quote(source)}, so it has no video of it: give the path of "
            "the video file instead (kling_list_tasks lists the tasks it knows, with their file_path)."
        )
    if record.file_path and await anyio.Path(record.file_path).is_file():
        return Path(record.file_path)

    async def saving(done: int, total: int | None) -> None:
        await ctx.report_progress(done, total, message=f"saving the video of task {source}")

    _, path = await app.tasks.save(caller, source, saving)
    return path


# --- kling_extract_frame --------------------------------------------------------------------


class ExtractFrameInput(StrictModel):
    source: ClipSource = Field(description=SOURCE_HELP)
    at: Literal["first", "last"] | Annotated[float, Field(ge=0)] = Field(
        "last", description="'first', 'last' (the next shot's start) or seconds from the start."
    )


class SavedFrame(KlingModel):
    file_path: str = Field(description="The PNG; pass it as is as start_image_url.")
    video_path: str


async def extract_frame(
    request: ExtractFrameInput, app: AppState, ctx: Context, caller: Caller
) -> CallToolResult | InputRequiredResult:
    sources = await resolve_sources([("source", request.source)], app, ctx, caller)
    if isinstance(sources, InputRequiredResult):
        return sources
    video = sources[0]
    try:
        png = await anyio.to_thread.run_sync(clips.extract_frame, video, request.at)
        preview = await anyio.to_thread.run_sync(clips.frame_preview, png)
    except clips.BeyondTheEnd as error:
        raise ToolError(f"at: {error}; give 'last' or fewer seconds.") from None
    except clips.ClipError as error:
        raise ToolError(f"source: {error}") from None
    frame = SavedFrame(file_path=str(png), video_path=str(video))
    which = request.at if isinstance(request.at, str) else f"{request.at:g} s"
    text = (
        f"Saved the frame at {which} of {video.name} to {png}.\nTo start the next shot on it, pass that "
        "path as start_image_url to kling_generate_video_from_image."
    )
    content: list[ContentBlock] = [TextContent(type="text", text=text), _jpeg(preview)]
    return CallToolResult(content=content, structured_content=result_content(frame))


EXTRACT_FRAME = """Save one frame of a finished video as a PNG beside the video: the first, the last, \
or the one at a time; answers its file_path and shows it. Free and local: no API call, nothing charged.

Use it for continuity: the last frame's file_path, passed as is as start_image_url to \
kling_generate_video_from_image, starts the next shot exactly where this one ends (the output folder \
always counts as an allowed folder). source: a finished task's task_id (its saved video; saved now if \
it is not) or the path of an MP4/MOV in an allowed folder. Refused on a hosted server, which keeps no \
files."""


# --- kling_join_videos ----------------------------------------------------------------------

_FILE_NAME = re.compile(r"\w[\w .()-]{0,115}\.mp4")


def _check_output_name(value: str) -> str:
    name = value if value.lower().endswith(".mp4") else f"{value}.mp4"
    if not _FILE_NAME.fullmatch(name):
        raise ValueError(
            f"must be a plain file name of letters, digits, spaces and -_.() (no folder, not starting with "
            f"'.'), e.g. 'my-film.mp4' (got {quote(value)})"
        )
    return name


class JoinVideosInput(StrictModel):
    sources: JsonText[list[ClipSource]] = Field(
        min_length=2,
        max_length=MAX_JOINED,
        description=f"2-{MAX_JOINED} task_ids and/or saved video paths, in playing order.",
    )
    output: Annotated[str, Text(120), AfterValidator(_check_output_name)] | None = Field(
        None, description="File name in the output folder, e.g. 'my-film.mp4'. Default: named by its clips."
    )


class JoinedFile(KlingModel):
    file_path: str
    duration: float = Field(description="Seconds.")
    re_encoded: bool = Field(description="The clips' formats differed; otherwise copied losslessly.")
    sources: SkipJsonSchema[list[str]]


async def join_videos(
    request: JoinVideosInput, app: AppState, ctx: Context, caller: Caller
) -> CallToolResult | InputRequiredResult:
    given = [(f"sources.{index}", source) for index, source in enumerate(request.sources)]
    sources = await resolve_sources(given, app, ctx, caller)
    if isinstance(sources, InputRequiredResult):
        return sources
    await ctx.report_progress(0, len(sources), message=f"joining {len(sources)} clips")
    try:
        joined = await anyio.to_thread.run_sync(_join_into, sources, app.settings.output_dir, request.output)
    except OSError as error:
        raise ToolError(f"The output folder {app.settings.output_dir} cannot be written ({error}).") from None
    except clips.ClipError as error:
        raise ToolError(f"The clips could not be joined; nothing was written. {error}") from None
    result = JoinedFile(
        file_path=str(joined.path),
        duration=joined.duration,
        re_encoded=not joined.copied,
        sources=[str(path) for path in sources],
    )
    how = "re-encoded, as their formats differ" if result.re_encoded else "copied without re-encoding"
    text = f"Joined {len(sources)} clips into {joined.path} ({joined.duration:g} s; {how})."
    sheet = await anyio.to_thread.run_sync(sheet_content, result.file_path)
    content: list[ContentBlock] = [TextContent(type="text", text=text), *sheet, _video_link(joined.path)]
    return CallToolResult(content=content, structured_content=result_content(result))


def _joined_name(paths: list[Path]) -> str:
    """A name that only these clips, as they are now, get: joining them again finds the file made."""
    identity = hashlib.sha256()
    for path in paths:
        status = path.stat()
        identity.update(f"{path}\0{status.st_size}\0{status.st_mtime_ns}\0".encode())
    return f"joined_{len(paths)}_clips_{identity.hexdigest()[:10]}.mp4"


def _join_into(paths: list[Path], folder: Path, name: str | None) -> clips.JoinedVideo:
    """The clips joined into `folder`/`name`, or by default into the file a join of the same clips
    made before (found, not made again); a file of the name asked for is never overwritten."""
    target = folder / (name or _joined_name(paths))
    if name and target.exists():
        raise ToolError(f"output: {target} exists already; give another name, or leave output out.")
    if all(clips.is_fresh(target, path) for path in paths):
        return clips.JoinedVideo(target, round(clips.probe(target).duration, 3), clips.copyable(paths))
    folder.mkdir(parents=True, exist_ok=True)
    return clips.join_videos(paths, target)


JOIN_VIDEOS = f"""Join 2-{MAX_JOINED} finished clips, in order, into one MP4 in the output folder; \
answers its file_path, duration and a contact sheet of it. Free and local: no API call, nothing charged.

Use it to make a film longer than one Kling clip (5-10 s): start each shot on the last one's final \
frame (kling_extract_frame), then join them. Clips of one format (Kling's, same model and size) are \
copied losslessly in a moment; otherwise re-encoded at the first clip's size, which takes about as \
long as the film. Never overwrites a file. Refused on a hosted server, which keeps no files."""


# --- The contact sheet of a finished result -------------------------------------------------


def sheet_content(video_path: str) -> list[ContentBlock]:
    """The contact sheet of the saved video (made now if need be, kept beside it) as an image with a
    line saying how to read it; nothing when it cannot be made (the result is whole without it)."""
    try:
        sheet = clips.contact_sheet(Path(video_path))
        data = sheet.read_bytes()
    except (clips.ClipError, OSError) as error:
        logger.warning("No contact sheet for %s: %s", video_path, error)
        return []
    about = (
        f"Contact sheet: {clips.SHEET_FRAMES} frames from the first to the last, left to right, top to "
        f"bottom ({sheet})."
    )
    return [TextContent(type="text", text=about), _jpeg(data)]


def _jpeg(data: bytes) -> ImageContent:
    return ImageContent(type="image", data=base64.b64encode(data).decode("ascii"), mime_type="image/jpeg")


def _video_link(path: Path) -> ResourceLink:
    return ResourceLink(type="resource_link", name=path.name, uri=path.as_uri(), mime_type="video/mp4")


TOOLS = (
    ToolSpec(
        "kling_extract_frame",
        "Save a frame of a video",
        ExtractFrameInput,
        SavedFrame,
        extract_frame,
        EXTRACT_FRAME,
        local_only=True,
        saves_files=True,
    ),
    ToolSpec(
        "kling_join_videos",
        "Join clips into one video",
        JoinVideosInput,
        JoinedFile,
        join_videos,
        JOIN_VIDEOS,
        local_only=True,
        saves_files=True,
    ),
)
