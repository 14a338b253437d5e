"""Local files as media: telling a local reference from a URL, resolving and checking the file,
recognising its content, and the directories files may come from (the client's roots among them).

A local file named in a tool call is uploaded to a third party, and the name may come from a
prompt injection ("animate ~/.ssh/id_rsa"), so every path is treated as hostile. A file is used
only when, resolved (symlinks and `..` followed), it lies inside an allowed directory, is not
hidden, is a regular file within the size limit of its kind, and its bytes (never its name) are
an image, video or audio format the API takes.

The file is opened by one walk that cannot leave its allowed directory: on Linux 5.6 and later
by `openat2` with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, elsewhere (macOS, older kernels) one
folder at a time from the allowed directory's descriptor with O_NOFOLLOW | O_DIRECTORY; every
byte is read from that descriptor, and fstat confirms it is the file checked. So a folder or
file swapped for a symlink at any moment gets a refusal, never a file from outside. Windows,
where os.open takes no directory descriptor, opens by path and then asks Windows which path the
opened handle has (GetFinalPathNameByHandle): it must lie inside the allowed directory.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import hashlib
import os
import stat
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import IO, Literal
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import platformdirs

from kling_mcp.errors import NOTHING_SENT, KlingMcpError
from kling_mcp.logs import printable

MediaKind = Literal["image", "video", "audio"]

MB = 1024 * 1024
SIZE_LIMITS: dict[MediaKind, int] = {"image": 10 * MB, "audio": 20 * MB, "video": 100 * MB}
FORMATS: dict[MediaKind, str] = {
    "image": "JPEG, PNG or WebP",
    "video": "MP4 or MOV",
    "audio": "MP3, WAV, M4A or AAC",
}
HEAD_BYTES = 64
"""Enough of a file's start to recognise every format taken."""
SHOWN_PATH_CHARACTERS = 100
WIDEN_HINT = (
    "To use a file from another folder, share that folder with your MCP client as a root, "
    "or add it to KLING_INPUT_DIRS (separate several with '{sep}')."
)
NOTHING_DONE = f"{NOTHING_SENT.capitalize()}."

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
_OPEN_FLAGS |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_FOLDER_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | getattr(os, "O_DIRECTORY", 0)
_FOLDER_FLAGS |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
"""A folder on the way, never through a symlink (O_PATH, where there is one: search permission is enough)."""
_SYS_OPENAT2 = 437
"""The same number on every Linux architecture."""
_RESOLVE_BENEATH_WITHOUT_SYMLINKS = 0x08 | 0x04
_SWAPPED = {errno.ELOOP, errno.ENOTDIR, errno.EXDEV, errno.EAGAIN, errno.ENOENT}
"""What a walk meets when a folder on the path became a symlink, a file or nothing since it was resolved."""
_MOVED = "was moved, or swapped for a symbolic link, while being checked"


class LocalFileError(KlingMcpError, ValueError):
    """A local file that may not be used; the message names the field, the path, the rule and the fix."""


class Refused(Exception):
    """A rule the file breaks, worded to follow "the local file '<path>' ..."."""


@dataclass(frozen=True)
class MediaType:
    kind: MediaKind
    label: str
    mime: str
    extension: str


JPEG = MediaType("image", "JPEG", "image/jpeg", "jpg")
PNG = MediaType("image", "PNG", "image/png", "png")
WEBP = MediaType("image", "WebP", "image/webp", "webp")
MP4 = MediaType("video", "MP4", "video/mp4", "mp4")
MOV = MediaType("video", "MOV", "video/quicktime", "mov")
MP3 = MediaType("audio", "MP3", "audio/mpeg", "mp3")
WAV = MediaType("audio", "WAV", "audio/wav", "wav")
M4A = MediaType("audio", "M4A", "audio/mp4", "m4a")
AAC = MediaType("audio", "AAC", "audio/aac", "aac")

_MP4_BRANDS = frozenset(
    {
        b"isom",
        b"iso2",
        b"iso3",
        b"iso4",
        b"iso5",
        b"iso6",
        b"mp41",
        b"mp42",
        b"avc1",
        b"M4V ",
        b"dash",
        b"mmp4",
    }
)
_M4A_BRANDS = frozenset({b"M4A ", b"M4B "})
_QUICKTIME_FIRST_BOXES = frozenset({b"moov", b"mdat", b"wide", b"free"})


def sniff(head: bytes) -> MediaType | None:
    """The media format of a file starting with `head`, or None when it is none of those taken."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head[:4] == b"RIFF" and head[8:12] in (b"WEBP", b"WAVE"):
        return WEBP if head[8:12] == b"WEBP" else WAV
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand == b"qt  ":
            return MOV
        return M4A if brand in _M4A_BRANDS else MP4 if brand in _MP4_BRANDS else None
    if head[4:8] in _QUICKTIME_FIRST_BOXES:
        return MOV
    if head.startswith(b"ID3"):
        return MP3
    return _sniff_audio_frame(head)


def _sniff_audio_frame(head: bytes) -> MediaType | None:
    """An MPEG audio frame (MP3) or an ADTS header (AAC): both start with a run of set sync bits."""
    if len(head) < 4 or head[0] != 0xFF:
        return None
    second, third = head[1], head[2]
    if second & 0xF6 == 0xF0:  # 12 sync bits, then layer 00: ADTS
        return AAC if (third >> 2) & 0x0F < 13 else None
    version, layer = (second >> 3) & 0x03, (second >> 1) & 0x03
    bitrate, sample_rate = third >> 4, (third >> 2) & 0x03
    if second & 0xE0 == 0xE0 and version != 1 and layer != 0 and bitrate != 0x0F and sample_rate != 3:
        return MP3
    return None


@dataclass(frozen=True)
class LocalFile:
    """A local file that passed every check, ready to upload."""

    path: Path
    """Fully resolved."""
    name: str
    """The file's own name, for messages ("uploading cat.png")."""
    kind: MediaKind
    mime: str
    extension: str
    """What the content is (without a dot), whatever the name says."""
    size: int
    sha256: str
    identity: tuple[int, int, int] = field(repr=False)
    """Device, inode and modification time when checked."""
    root: Path = field(repr=False)
    """The allowed directory (resolved) it lies in, from which it is opened again."""

    @property
    def upload_name(self) -> str:
        """A header-safe name whose extension matches the content (`holiday 1.PNG` -> `holiday_1.png`)."""
        stem = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in Path(self.name).stem)
        return f"{stem.strip('_')[:80] or 'upload'}.{self.extension}"

    def open(self) -> IO[bytes]:
        """The file opened for reading, refused if it is no longer the file that was checked."""

        def unchanged(status: os.stat_result) -> None:
            if (status.st_dev, status.st_ino) != self.identity[:2]:
                raise Refused("was replaced by another file")

        try:
            stream = _open_beneath(self.root, self.path.relative_to(self.root), unchanged)
        except (Refused, OSError) as exc:
            raise LocalFileError(
                f"{self.path} changed after it was checked ({exc}); {NOTHING_DONE}"
            ) from None
        if _identity(os.fstat(stream.fileno())) != self.identity:
            stream.close()
            raise LocalFileError(f"{self.path} was modified after it was checked; {NOTHING_DONE}")
        return stream


def is_local_reference(value: str) -> bool:
    """True when `value` names a local file (absolute path, `~/` path or `file://` URI), not a URL."""
    if value.startswith(("/", "~/")) or value[:7].lower() == "file://":
        return True
    return sys.platform == "win32" and (value.startswith("~\\") or _is_windows_absolute(value))


def _is_windows_absolute(value: str) -> bool:
    return len(value) > 2 and value[0].isascii() and value[0].isalpha() and value[1:3] in (":\\", ":/")


def _local_path(given: str) -> Path:
    if "\x00" in given:
        raise Refused("contains a NUL character")
    if given[:7].lower() == "file://":
        return file_uri_path(given)
    if given.startswith(("~/", "~\\")):
        return Path.home() / given[2:].lstrip("/\\")
    path = Path(given)
    if not path.is_absolute():
        raise Refused("is not an absolute path (start it with / or ~/, or give an http(s) URL)")
    return path


def file_uri_path(uri: str) -> Path:
    parts = urlsplit(uri)
    if parts.netloc.lower() not in ("", "localhost"):
        raise Refused(
            f"names another machine ({unquote(parts.netloc)!r}): only files on this computer can be used"
        )
    if parts.query or parts.fragment:
        raise Refused("has a query or fragment (?/#): percent-encode those characters in a file name")
    path = Path(url2pathname(parts.path))
    if "\x00" in str(path) or not path.is_absolute():
        raise Refused("is not a file:///absolute/path URI")
    return path


def default_directories() -> list[Path]:
    """The user's pictures, videos, music, downloads, desktop and documents directories that exist."""
    home = Path.home().resolve()
    candidates = (
        platformdirs.user_pictures_dir(),
        platformdirs.user_videos_dir(),
        platformdirs.user_music_dir(),
        platformdirs.user_downloads_dir(),
        platformdirs.user_desktop_dir(),
        platformdirs.user_documents_dir(),
    )
    # Where a platform has no such folder, platformdirs may answer the home directory itself.
    return _unique(Path(path) for path in candidates if Path(path).is_dir() and Path(path).resolve() != home)


def allowed_directories(
    roots: Sequence[Path] | None, configured: Sequence[Path], always: Sequence[Path] = ()
) -> list[Path]:
    """Where local files may come from: the client's roots and KLING_INPUT_DIRS, else the defaults;
    and `always` in any case (the output directory: the server's own videos and their frames)."""
    chosen = [*(roots or ()), *configured]
    return _unique([*(chosen or default_directories()), *always])


def _unique(paths: Iterable[Path]) -> list[Path]:
    return list(dict.fromkeys(paths))


def check_local_file(field: str, given: str, kind: MediaKind, allowed: Sequence[Path]) -> LocalFile:
    """Every check on the local file `given` for `field`; blocking (it hashes the file): run it in a thread.

    Raises LocalFileError naming the field, the path, the rule broken and how to allow the file.
    """
    try:
        return _check(_local_path(given), kind, allowed)
    except Refused as exc:
        rule = str(exc)
    except OSError as exc:
        rule = f"cannot be read ({exc.strerror or exc})"
    raise LocalFileError(_refusal(field, given, rule, allowed))


def _refusal(field: str, given: str, rule: str, allowed: Sequence[Path]) -> str:
    directories = (
        ", ".join(str(path) for path in allowed) or "none (no root, no KLING_INPUT_DIRS, no default)"
    )
    return "\n".join(
        (
            f"{field}: the local file {_shown(given)} {rule}.",
            f"Allowed directories: {directories}.",
            WIDEN_HINT.format(sep=os.pathsep),
            NOTHING_DONE,
        )
    )


def _shown(given: str) -> str:
    if len(given) <= SHOWN_PATH_CHARACTERS:
        return repr(given)
    return f"{given[:SHOWN_PATH_CHARACTERS]!r}... ({len(given)} characters)"


def _check(path: Path, kind: MediaKind, allowed: Sequence[Path]) -> LocalFile:
    resolved = _resolve(path)
    root = _containing_root(resolved, allowed)
    if root is None:
        raise Refused(f"is outside the allowed directories (it resolves to {printable(str(resolved))})")
    hidden = [part for part in (*resolved.relative_to(root).parts, path.name) if part.startswith(".")]
    if hidden:
        raise Refused(
            f"is hidden or inside a hidden directory ({hidden[0]!r}): hidden files are never uploaded"
        )
    with _open_beneath(
        root, resolved.relative_to(root), lambda status: _check_type_and_size(status, kind)
    ) as stream:
        head = stream.read(HEAD_BYTES)
        media = sniff(head)
        if media is None or media.kind != kind:
            found = f"a {media.label} {media.kind}" if media else "not a recognised media format"
            wanted = f"{_article(kind)} {kind} ({FORMATS[kind]})"
            raise Refused(f"is {found}, not {wanted}; its content decides, not its name")
        digest, size = _hash_rest(stream, head, SIZE_LIMITS[kind])
        identity = _identity(os.fstat(stream.fileno()))
    name = printable(resolved.name)
    return LocalFile(resolved, name, kind, media.mime, media.extension, size, digest, identity, root)


def _resolve(path: Path) -> Path:
    try:
        return Path(os.path.realpath(path, strict=True))
    except FileNotFoundError:
        raise Refused("does not exist") from None
    except PermissionError:
        raise Refused("cannot be read (permission denied)") from None
    except OSError as exc:
        raise Refused(f"cannot be resolved ({exc.strerror or exc})") from None


def _containing_root(resolved: Path, allowed: Sequence[Path]) -> Path | None:
    """The first allowed directory, itself resolved, that holds `resolved` (compared by path components)."""
    for directory in allowed:
        root = Path(os.path.realpath(directory))
        if resolved.is_relative_to(root):
            return root
    return None


def _check_type_and_size(status: os.stat_result, kind: MediaKind) -> None:
    mode = status.st_mode
    if not stat.S_ISREG(mode):
        what = (
            "a directory"
            if stat.S_ISDIR(mode)
            else "a FIFO (named pipe)"
            if stat.S_ISFIFO(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "not a regular file"
        )
        raise Refused(f"is {what}, not a regular file")
    if status.st_size == 0:
        raise Refused("is empty")
    _check_size(status.st_size, kind)


def _check_size(size: int, kind: MediaKind) -> None:
    limit = SIZE_LIMITS[kind]
    if size > limit:
        raise Refused(f"is {size / MB:.1f} MB, over the {limit // MB} MB limit for {_article(kind)} {kind}")


def _open_beneath(root: Path, relative: PurePath, judge: Callable[[os.stat_result], None]) -> IO[bytes]:
    """`root/relative` opened by one walk that follows no symlink below `root`.

    `relative` was resolved, so a symlink met now was swapped in since: refused. `judge` sees the
    file's status before it is opened (so a device is never opened) and refuses by raising; the
    opened file must then be the one judged.
    """
    if sys.platform == "win32":
        return _open_confirmed_by_final_path(root, relative, judge)
    folder = _open_folder(root, relative.parent)
    try:
        status = os.stat(relative.name, dir_fd=folder, follow_symlinks=False)
        if stat.S_ISLNK(status.st_mode):
            raise Refused(_MOVED)
        judge(status)
        return _confirmed(os.open(relative.name, _OPEN_FLAGS, dir_fd=folder), status)
    finally:
        os.close(folder)


def _open_folder(root: Path, relative: PurePath) -> int:
    """A descriptor of the folder `root/relative`, reached without following any symlink below `root`."""
    top = os.open(root, _FOLDER_FLAGS)
    if not relative.parts:
        return top
    try:
        if _has_openat2():
            return _openat2_beneath(top, str(relative), _FOLDER_FLAGS)
        return _walk(top, relative.parts)
    except OSError as error:
        if error.errno in _SWAPPED:
            raise Refused(_MOVED) from None
        raise
    finally:
        os.close(top)


def _walk(top: int, parts: Sequence[str]) -> int:
    """The folder `parts` (of a resolved path: no `..`) below `top`, opened one folder at a time, none
    of them through a symlink."""
    current = top
    try:
        for part in parts:
            following = os.open(part, _FOLDER_FLAGS, dir_fd=current)
            if current != top:
                os.close(current)
            current = following
    except BaseException:
        if current != top:
            os.close(current)
        raise
    return current


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _openat2_beneath(folder: int, relative: str, flags: int) -> int:
    """openat2(2): `relative` below `folder`, resolved by the kernel beneath it and through no symlink."""
    how = _OpenHow(flags, 0, _RESOLVE_BENEATH_WITHOUT_SYMLINKS)
    opened = _syscall()(
        ctypes.c_long(_SYS_OPENAT2),
        ctypes.c_long(folder),
        ctypes.c_char_p(os.fsencode(relative)),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if opened < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), relative)
    return int(opened)


@functools.cache
def _syscall() -> Callable[..., int]:
    """The C library's syscall(2), which answers a long."""
    syscall = ctypes.CDLL(None, use_errno=True).syscall
    syscall.restype = ctypes.c_long
    return syscall


@functools.cache
def _has_openat2() -> bool:
    """Whether this kernel has openat2 (Linux 5.6), and no sandbox (seccomp) forbids it."""
    if sys.platform != "linux":
        return False
    root = os.open("/", _FOLDER_FLAGS)
    try:
        os.close(_openat2_beneath(root, ".", _FOLDER_FLAGS))
    except OSError:  # ENOSYS before 5.6, EPERM in a sandbox: the walk is as safe, if slower
        return False
    finally:
        os.close(root)
    return True


def _confirmed(fd: int, status: os.stat_result) -> IO[bytes]:
    """`fd` as a stream, refused unless it is the regular file whose `status` was judged."""
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (
            status.st_dev,
            status.st_ino,
        ):
            raise Refused("was replaced by another file while being checked")
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


if sys.platform == "win32":
    import msvcrt

    def _open_confirmed_by_final_path(
        root: Path, relative: PurePath, judge: Callable[[os.stat_result], None]
    ) -> IO[bytes]:
        """By path (os.open takes no directory descriptor here), then the handle's own path must be
        inside `root`: a folder swapped for a junction or symlink meanwhile is caught there."""
        path = root / relative
        status = os.stat(path, follow_symlinks=False)
        if stat.S_ISLNK(status.st_mode) or status.st_file_attributes & stat.FILE_ATTRIBUTE_REPARSE_POINT:
            raise Refused(_MOVED)
        judge(status)
        stream = _confirmed(os.open(path, _OPEN_FLAGS), status)
        if not _final_path(stream.fileno()).is_relative_to(root):
            stream.close()
            raise Refused(_MOVED)
        return stream

    def _final_path(fd: int) -> Path:
        size = 32_768
        buffer = ctypes.create_unicode_buffer(size)
        if not ctypes.windll.kernel32.GetFinalPathNameByHandleW(msvcrt.get_osfhandle(fd), buffer, size, 0):
            raise ctypes.WinError()
        final = buffer.value
        if final.startswith("\\\\?\\UNC\\"):
            return Path("\\\\" + final[len("\\\\?\\UNC\\") :])
        return Path(final.removeprefix("\\\\?\\"))


def _hash_rest(stream: IO[bytes], head: bytes, limit: int) -> tuple[str, int]:
    """The sha256 and size of a file whose first bytes `head` were read; never reads past `limit`."""
    digest = hashlib.sha256(head)
    size = len(head)
    while chunk := stream.read(MB):
        size += len(chunk)
        if size > limit:
            raise Refused(f"grew past the {limit // MB} MB limit while being read")
        digest.update(chunk)
    return digest.hexdigest(), size


def _identity(status: os.stat_result) -> tuple[int, int, int]:
    return status.st_dev, status.st_ino, status.st_mtime_ns


def _article(kind: MediaKind) -> str:
    return "an" if kind in ("image", "audio") else "a"
