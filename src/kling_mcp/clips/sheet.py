"""A contact sheet: one JPEG of frames taken evenly across a clip, from its first frame to its last.

Made once per video and kept beside it (`<video name>.sheet.jpg`), so a later look costs a file
read. Decoding skips what a thumbnail does not need (frames no other frame refers to, the
deblocking filter), which makes it several times faster than a full decode.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

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
    from av.video.frame import VideoFrame

COLUMNS = ROWS = 3
SHEET_FRAMES = COLUMNS * ROWS
TILE_BOX = (256, 342)
"""The largest tile (width, height): a 16:9 sheet is 768 px wide, a 9:16 one 1026 px tall."""
MIN_TILE_WIDTH = 172
"""So that any sheet is at least 512 px wide."""
FAST_DECODING = {"skip_loop_filter": "all", "flags2": "+fast"}


def sheet_path(video: Path) -> Path:
    return video.with_name(f"{video.stem}.sheet.jpg")


def contact_sheet(video: Path) -> Path:
    """The contact sheet of `video`, made now unless an up-to-date one is already beside it."""
    target = sheet_path(video)
    if is_fresh(target, video):
        return target
    return write_bytes_atomically(target, _sheet_jpeg(video))


def _sheet_jpeg(video: Path) -> bytes:
    with opened(video) as (container, stream):
        width, height = tile_size(stream.width, stream.height)
        stream.codec_context.skip_frame = "NONREF"
        stream.codec_context.options = FAST_DECODING
        duration = duration_of(container, stream)
        targets = [duration * index / (SHEET_FRAMES - 1) for index in range(SHEET_FRAMES - 1)]
        tiles: list[bytes] = []
        last = None
        for frame in container.decode(stream):
            last = frame
            while len(tiles) < len(targets) and (frame.time or 0.0) >= targets[len(tiles)]:
                tiles.append(_tile(frame, width, height))
        if last is None:
            raise ClipError(f"{video} has no frame that can be decoded")
        tiles.append(_tile(last, width, height))
    return encode_picture(_grid(tiles, width, height), "mjpeg", "yuvj420p", JPEG_QUALITY)


def tile_size(width: int, height: int) -> tuple[int, int]:
    """The size of one tile for a video `width` x `height`: as large as TILE_BOX allows, even numbers."""
    scale = max(min(TILE_BOX[0] / width, TILE_BOX[1] / height), MIN_TILE_WIDTH / width)
    return even(width * scale), even(height * scale)


def _tile(frame: VideoFrame, width: int, height: int) -> bytes:
    """`frame` scaled to a tile, as packed RGB rows."""
    tile = frame.reformat(width, height, "rgb24", interpolation="AREA")
    plane, row = tile.planes[0], width * 3
    data = bytes(plane)
    return b"".join(data[y * plane.line_size : y * plane.line_size + row] for y in range(height))


def _grid(tiles: list[bytes], width: int, height: int) -> VideoFrame:
    """The tiles laid out left to right, top to bottom; cells without a tile stay black."""
    import av

    sheet = av.VideoFrame(width * COLUMNS, height * ROWS, "rgb24")
    plane, row = sheet.planes[0], width * 3
    pixels = bytearray(plane.buffer_size)
    for index, tile in enumerate(tiles):
        top, left = (index // COLUMNS) * height, (index % COLUMNS) * row
        for y in range(height):
            start = (top + y) * plane.line_size + left
            pixels[start : start + row] = tile[y * row : (y + 1) * row]
    plane.update(bytes(pixels))
    return sheet
