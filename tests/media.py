"""Tiny real media files for tests: the headers and structure of each format, a few bytes each."""

from __future__ import annotations

import base64
import io
import struct
import wave
import zlib
from importlib import resources


def png() -> bytes:
    """A valid 1x1 RGB PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x80\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def jpeg() -> bytes:
    """A 1x1 baseline JPEG (JFIF)."""
    return base64.b64decode(
        "/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAP//////////////////////////////////////////////////////////"
        "////////////////////////////wgALCAABAAEBAREA/8QAFBABAAAAAAAAAAAAAAAAAAAAAP/aAAgBAQABPxA="
    )


def webp() -> bytes:
    """A 1x1 lossless WebP."""
    return base64.b64decode("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==")


def mp4() -> bytes:
    """The emulator's real 1 s H.264 MP4."""
    return resources.files("kling_mcp.emulator").joinpath("sample.mp4").read_bytes()


def mov() -> bytes:
    """A QuickTime file: `ftyp` with the `qt  ` brand, then an empty `mdat`."""
    return _box(b"ftyp", b"qt  " + b"\x00\x00\x02\x00" + b"qt  ") + _box(b"mdat", b"")


def old_mov() -> bytes:
    """A QuickTime file from before `ftyp`: a `wide` box, then `mdat`."""
    return _box(b"wide", b"") + _box(b"mdat", b"\x00" * 16)


def m4a() -> bytes:
    return _box(b"ftyp", b"M4A " + b"\x00\x00\x00\x00" + b"M4A isom") + _box(b"mdat", b"")


def wav() -> bytes:
    """10 ms of 8 kHz mono silence."""
    out = io.BytesIO()
    with wave.open(out, "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(8000)
        sound.writeframes(b"\x00\x00" * 80)
    return out.getvalue()


def mp3(id3: bool = True) -> bytes:
    """One MPEG-1 Layer III frame (128 kb/s, 44.1 kHz), after an ID3v2 tag when `id3`."""
    tag = b"ID3\x04\x00\x00\x00\x00\x00\x00" if id3 else b""
    return tag + b"\xff\xfb\x90\x64" + b"\x00" * 413


def aac() -> bytes:
    """One ADTS frame header (AAC-LC, 44.1 kHz, stereo) and its payload."""
    return b"\xff\xf1\x50\x80\x02\x1f\xfc" + b"\x00" * 9


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload
