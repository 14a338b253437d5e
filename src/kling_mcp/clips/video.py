"""Opening a saved video with PyAV, encoding one picture, and writing a file all at once or not at all."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from kling_mcp.errors import KlingMcpError

if TYPE_CHECKING:  # PyAV loads FFmpeg: imported by each function that needs it, never at start-up
    from av.container import InputContainer
    from av.video.frame import VideoFrame
    from av.video.stream import VideoStream


JPEG_QUALITY = 3
"""FFmpeg's JPEG scale, 2 (best) to 31: about 40-60 KB for a 768 px wide picture."""


class ClipError(KlingMcpError):
    """A video that cannot be read, or a file that cannot be written; the message says which and why."""


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    duration: float
    """Seconds."""
    width: int
    height: int


@contextmanager
def opened(path: Path) -> Iterator[tuple[InputContainer, VideoStream]]:
    """`path` opened for decoding, with its first video stream; ClipError if it is not a video."""
    import av

    try:
        container = av.open(str(path), "r")
    except (av.FFmpegError, OSError) as error:
        raise ClipError(f"{path} cannot be read as a video ({_reason(error)})") from None
    with container:
        if not container.streams.video:
            raise ClipError(f"{path} has no video stream")
        try:
            yield container, container.streams.video[0]
        except av.FFmpegError as error:
            raise ClipError(f"{path} could not be decoded ({_reason(error)})") from None


def probe(path: Path) -> VideoInfo:
    """The length and size of the video at `path`, read from its header (nothing is decoded)."""
    with opened(path) as (container, stream):
        return VideoInfo(path, duration_of(container, stream), stream.width, stream.height)


def duration_of(container: InputContainer, stream: VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE
    raise ClipError(f"{container.name} does not say how long it is")


def encode_picture(frame: VideoFrame, codec: str, pixel_format: str, quality: int | None = None) -> bytes:
    """`frame` as one still picture: `codec` "png", or "mjpeg" (JPEG) at `quality` (2 best, 31 worst)."""
    import av

    context = av.CodecContext.create(codec, "w")
    assert isinstance(context, av.VideoCodecContext)
    context.width, context.height, context.pix_fmt = frame.width, frame.height, pixel_format
    context.time_base = Fraction(1, 1)
    if quality is not None:
        context.qmin = context.qmax = quality  # a fixed quantizer: FFmpeg's `-q:v`
    picture = frame.reformat(format=pixel_format)
    picture.pts = 0
    return b"".join(bytes(packet) for packet in [*context.encode(picture), *context.encode(None)])


def even(size: float) -> int:
    """`size` rounded to an even number of pixels, as 4:2:0 pictures need; at least 2."""
    return max(2, round(size / 2) * 2)


def write_atomically(target: Path, write: Callable[[Path], object]) -> Path:
    """Have `write` fill a hidden temporary file beside `target`, then rename it to `target`.

    Readers see the whole file or none; the temporary file is removed if anything fails.
    """
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        write(temporary)
        os.replace(temporary, target)
    except OSError as error:
        raise ClipError(f"{target} could not be written ({error.strerror or error})") from None
    finally:
        with contextlib.suppress(OSError):  # it never existed, as when its folder cannot be written
            temporary.unlink(missing_ok=True)
    return target


def write_bytes_atomically(target: Path, data: bytes) -> Path:
    return write_atomically(target, lambda temporary: temporary.write_bytes(data))


def is_fresh(derived: Path, source: Path) -> bool:
    """`derived` exists and was made from `source` as it is now (not before it was saved again)."""
    try:
        return derived.stat().st_mtime_ns >= source.stat().st_mtime_ns
    except OSError:
        return False


def _reason(error: Exception) -> str:
    strerror = getattr(error, "strerror", None)
    return str(strerror or error)
