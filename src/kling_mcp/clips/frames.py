"""One frame of a saved video as a PNG beside it: the first, the last, or the one shown at a time.

The last frame of one clip is the start image of the next shot, so frames are decoded in full
(no shortcut a thumbnail could take) and saved losslessly.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from kling_mcp.clips.video import (
    JPEG_QUALITY,
    ClipError,
    duration_of,
    encode_picture,
    even,
    is_fresh,
    opened,
    write_bytes_atomically,
)

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.frame import VideoFrame
    from av.video.stream import VideoStream

FramePosition = Literal["first", "last"] | float
"""Which frame: the first, the last, or the one shown at this many seconds."""
PREVIEW_WIDTH = 768
"""A frame is shown at most this wide in a result (the PNG keeps every pixel)."""
LAST_FRAME_SEEK_SECONDS = 1.0
"""How far before the end decoding starts to find the last frame (from the keyframe before it)."""


class BeyondTheEnd(ClipError):
    """The time asked for is past the end of the video."""


def frame_path(video: Path, at: FramePosition) -> Path:
    label = at if isinstance(at, str) else f"at-{at:g}s"
    return video.with_name(f"{video.stem}.{label}.png")


def extract_frame(video: Path, at: FramePosition) -> Path:
    """The frame of `video` at `at`, saved as a PNG beside it (reused if already saved since)."""
    target = frame_path(video, at)
    if is_fresh(target, video):
        return target
    with opened(video) as (container, stream):
        frame = _frame_at(container, stream, at)
        picture = encode_picture(frame, "png", "rgb24")
    return write_bytes_atomically(target, picture)


def _frame_at(container: InputContainer, stream: VideoStream, at: FramePosition) -> VideoFrame:
    duration = duration_of(container, stream)
    if at == "first":
        wanted = 0.0
    elif at == "last":
        wanted = duration
    else:
        if at > duration:
            raise BeyondTheEnd(f"{at:g} s is past the end of the video ({duration:.3f} s long)")
        wanted = at
    if wanted > 0 and stream.time_base is not None:
        start = max(wanted - LAST_FRAME_SEEK_SECONDS, 0.0) if at == "last" else wanted
        container.seek(round(start / stream.time_base), stream=stream, backward=True)
    shown = None
    for frame in container.decode(stream):
        if shown is not None and (frame.time or 0.0) > wanted:
            break
        shown = frame
    if shown is None:
        raise ClipError(f"{container.name} has no frame that can be decoded")
    return shown


def frame_preview(picture: Path) -> bytes:
    """A JPEG of the still `picture`, at most PREVIEW_WIDTH px wide: light enough to show in a result."""
    with opened(picture) as (container, stream):
        frame = next(container.decode(stream))
    scale = min(1.0, PREVIEW_WIDTH / frame.width)
    small = frame.reformat(even(frame.width * scale), even(frame.height * scale), interpolation="AREA")
    return encode_picture(small, "mjpeg", "yuvj420p", JPEG_QUALITY)
