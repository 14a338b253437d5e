"""The emulated CDN: finished videos of any size, signed links that expire, and byte ranges.

AceDataCloud hands out `video_url`s on a CDN that signs its links and lets them expire,
and that serves `Range` requests, so a client can resume a download; this is that CDN.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import struct
from collections.abc import Mapping
from importlib import resources

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
