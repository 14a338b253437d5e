"""The emulated CDN: finished videos, signed links that expire, and byte ranges.

AceDataCloud hands out `video_url`s on a CDN that signs its links and lets them expire,
and that serves `Range` requests, so a client can resume a download; this is that CDN.
Its videos are either one tiny sample for every task (padded to any size), or each task's
own real clip (`task_clip`), which demo mode shows and the frame tools' tests decode.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import io
import itertools
import re
import secrets
import struct
from collections.abc import Iterator, Mapping
from importlib import resources
from typing import Any

from starlette.responses import Response

FREE_BOX_HEADER = 8
"""An MP4 box starts with its 32-bit size and its 4-letter type."""

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")

_EXPIRED_PAGE = """<?xml version="1.0" encoding="UTF-8"?>
<Error>
  <Code>AccessDenied</Code>
  <Message>{message}</Message>
</Error>
"""


@functools.cache
def sample_video() -> bytes:
    """A real, tiny MP4 (1 s, 64x36, H.264), served for every finished video by default."""
    return resources.files("kling_mcp.emulator").joinpath("sample.mp4").read_bytes()


def padded_video(size: int) -> bytes:
    """The sample video followed by a `free` box, `size` bytes in all: players skip the padding."""
    padding = size - len(sample_video())
    if not FREE_BOX_HEADER <= padding < 2**32:
        raise ValueError(
            f"video_bytes must be between {len(sample_video()) + FREE_BOX_HEADER} and 4 GiB (got {size})"
        )
    box = struct.pack(">I4s", padding, b"free") + bytes(padding - FREE_BOX_HEADER)
    return sample_video() + box


CLIP_SIZES = {"16:9": (512, 288), "9:16": (320, 568), "1:1": (384, 384)}
"""Each aspect ratio's clip size: at least 320 px wide, and small enough to make in a moment."""
CLIP_FRAME_RATE = 24
CLIP_KEYFRAME_SECONDS = 1
CLIP_ENCODING = {"preset": "ultrafast", "crf": "28"}


@functools.lru_cache(maxsize=8)
def task_clip(task_id: str, aspect_ratio: str, seconds: float) -> bytes:
    """A real H.264 MP4 of one task, `seconds` long at `aspect_ratio` (16:9 for any other).

    A moving test pattern with a running clock (so every frame differs from the one before) over
    a turning gradient whose colours come from `task_id` (so each task's video differs). Made
    in a few tenths of a second for 5 s, once per task; blocking, so run it in a thread.
    """
    import av

    width, height = CLIP_SIZES.get(aspect_ratio, CLIP_SIZES["16:9"])
    colours = hashlib.sha256(task_id.encode()).hexdigest()
    graph = av.filter.Graph()
    timing = f"rate={CLIP_FRAME_RATE}:duration={seconds}"
    steps = [
        graph.add("gradients", f"size={width}x{height}:{timing}:{_gradient(colours, width, height)}"),
        graph.add("overlay", "x=(W-w)/2:y=(H-h)/2"),
        graph.add("format", "yuv420p"),
        graph.add("buffersink"),
    ]
    pattern = graph.add("testsrc2", f"size={width // 2 // 2 * 2}x{height // 2 // 2 * 2}:{timing}")
    for step, following in itertools.pairwise(steps):
        step.link_to(following)
    pattern.link_to(steps[1], 0, 1)
    graph.configure()
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=CLIP_FRAME_RATE, options=CLIP_ENCODING)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = CLIP_FRAME_RATE * CLIP_KEYFRAME_SECONDS
        for frame in _frames_of(graph):
            frame.pts, frame.pict_type = None, av.video.frame.PictureType.NONE  # the encoder decides
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


def _gradient(colours: str, width: int, height: int) -> str:
    """A gradient between two colours of `colours` (hex digits), corner to corner, turning slowly.

    Everything is given: left to itself, the filter picks random points.
    """
    ends = f"x0=0:y0=0:x1={width - 1}:y1={height - 1}"
    return f"c0=0x{colours[:6]}:c1=0x{colours[6:12]}:nb_colors=2:{ends}:seed=1:speed=0.05"


def _frames_of(graph: Any) -> Iterator[Any]:
    import av

    while True:
        try:
            yield graph.vpull()
        except (av.EOFError, av.BlockingIOError):
            return


class SignedLinks:
    """Media links signed with a secret of this emulator, valid for `seconds` after they are made."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._key = secrets.token_bytes(32)

    def sign(self, url: str, task_id: str, now: float) -> str:
        expires = f"{now + self.seconds:.3f}"
        return f"{url}?expires={expires}&sig={self._signature(task_id, expires)}"

    def refusal(self, task_id: str, query: Mapping[str, str], now: float) -> str | None:
        """Why the CDN refuses a link with this query, or None when it is valid."""
        expires, signature = query.get("expires", ""), query.get("sig", "")
        if not hmac.compare_digest(signature, self._signature(task_id, expires)):
            return "The link is not validly signed: it has expired or was altered."
        if now > float(expires):
            return "Request has expired."
        return None

    def _signature(self, task_id: str, expires: str) -> str:
        return hmac.new(self._key, f"{task_id}:{expires}".encode(), hashlib.sha256).hexdigest()


def refused_link(message: str) -> Response:
    """A CDN's answer to an expired or badly signed link."""
    return Response(_EXPIRED_PAGE.format(message=message), status_code=403, media_type="application/xml")


def media_response(video: bytes, range_header: str | None) -> Response:
    """`video`, whole or the one byte range asked for (206), or 416 when that range is past its end."""
    headers = {"accept-ranges": "bytes"}
    wanted = _requested_range(range_header, len(video))
    if wanted is None:
        return Response(video, media_type="video/mp4", headers=headers)
    start, end = wanted
    if start >= end:
        return Response(status_code=416, headers={**headers, "content-range": f"bytes */{len(video)}"})
    headers["content-range"] = f"bytes {start}-{end - 1}/{len(video)}"
    return Response(video[start:end], status_code=206, media_type="video/mp4", headers=headers)


def _requested_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The [start, end) a single-range header asks for (empty when unsatisfiable), or None to send
    everything: no header, or one a server may ignore (malformed, or several ranges)."""
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None:
        return None
    first, last = match.groups()
    if first:
        start = int(first)
        if last and int(last) < start:
            return None
        return start, (min(int(last) + 1, size) if last else size)
    if last:
        return size - min(int(last), size), size  # the last N bytes; "-0" asks for none
    return None
