"""Saving finished videos into the output directory, before their signed links expire.

AceDataCloud's `video_url` is a signed CDN link that stops working after a while, so the
server keeps every video it makes as a file. A download streams into a hidden temporary
file beside its final name and is renamed into place only once complete, so a file under a
video's name is always the whole video. A dropped connection resumes with a `Range`
request; an expired link is exchanged once for a fresh one (the caller asks the API again).
File names are made here, never from a URL or a model's words, and nothing is written
outside the output directory.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import anyio
import httpx

from kling_mcp.errors import KlingMcpError
from kling_mcp.logs import logger

SLUG_CHARS = 40
TASK_ID_CHARS = 8
ATTEMPTS = 5
"""Requests in a row that may fail without bringing a new byte before a download gives up."""
BACKOFF_SECONDS = 0.25
"""The wait after the first request that brought nothing; it doubles with each one after.
A connection that drops after bringing bytes is resumed at once."""
WRITE_BYTES = 1 << 20
"""The body goes to the file in writes of up to this many bytes, each from a worker thread."""
PROGRESS_STEP = 1 << 20
"""Progress is reported at most once per this many bytes, and at the end."""
EXPIRED_STATUSES = (403, 404, 410)
"""What CDNs answer for a signed link past its expiry (or one they no longer know)."""

_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+|\*)")

ProgressCallback = Callable[[int, "int | None"], Awaitable[None]]
"""Called with the bytes saved so far and the total size (None when the CDN does not say)."""
RefreshUrl = Callable[[], Awaitable["str | None"]]
"""Asks the API for the task again and returns its fresh `video_url` (None if there is none)."""


class DownloadError(KlingMcpError):
    """A video could not be saved; the message names the directory, the reason and what to do."""

    def __init__(self, directory: Path, reason: str) -> None:
        super().__init__(
            f"Could not save the video in {directory}: {reason}. "
            "The task's link is kept, so kling_download_video can retry later."
        )


def video_filename(task_id: str, prompt: str | None, when: datetime) -> str:
    """`2026-12-01_0941_cat-surfing-at-sunset_1a2b3c4d.mp4`: local time, prompt, task id.

    Only ASCII letters, digits, `-` and `_` come before the extension, whatever the inputs.
    """
    short_id = re.sub(r"[^A-Za-z0-9]", "", task_id)[:TASK_ID_CHARS] or "task"
    return f"{when:%Y-%m-%d_%H%M}_{_slug(prompt or '')}_{short_id}.mp4"


def _slug(prompt: str) -> str:
    """The prompt's first words in lower-case ASCII joined by `-`, at most SLUG_CHARS long."""
    ascii_text = unicodedata.normalize("NFKD", prompt).encode("ascii", "ignore").decode().lower()
    slug = ""
    for word in re.findall(r"[a-z0-9]+", ascii_text):
        longer = f"{slug}-{word}" if slug else word[:SLUG_CHARS]
        if len(longer) > SLUG_CHARS:
            break
        slug = longer
    return slug or "video"


@dataclass
class _Saving:
    """A save under way, for a second save of the same task to wait on."""

    done: anyio.Event = field(default_factory=anyio.Event)
    path: Path | None = None


class Downloader:
    """Saves finished videos into `output_dir` through the server's pooled HTTP client.

    Its requests never carry an `authorization` header, whatever the client's defaults:
    CDN links are signed, and the API token must not travel to a CDN.
    """

    def __init__(self, http: httpx.AsyncClient, output_dir: Path) -> None:
        self._http = http
        self._output_dir = output_dir
        self._saving: dict[str, _Saving] = {}

    def expected_path(self, task_id: str, prompt: str | None, created_at: float) -> Path:
        """Where `save()` puts this task's video (as `-2`, `-3`... if another file has the name)."""
        name = video_filename(task_id, prompt, datetime.fromtimestamp(created_at))
        return self._output_dir.resolve() / name

    async def save(
        self,
        task_id: str,
        url: str,
        *,
        prompt: str | None,
        created_at: float,
        refresh_url: RefreshUrl | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Path:
        """Download the video at `url` into the output directory; return the file's path.

        A call for a task already being saved waits for that save and returns its file.
        Raises DownloadError when the directory, the disk or the link will not do.
        """
        while (running := self._saving.get(task_id)) is not None:
            await running.done.wait()
            if running.path is not None:
                return running.path
        saving = self._saving[task_id] = _Saving()
        try:
            name = self.expected_path(task_id, prompt, created_at).name
            saving.path = await self._save(name, url, refresh_url, on_progress)
            return saving.path
        finally:
            del self._saving[task_id]
            saving.done.set()

    async def _save(
        self, name: str, url: str, refresh_url: RefreshUrl | None, on_progress: ProgressCallback | None
    ) -> Path:
        directory = self._prepare_directory()
        target = directory / name
        part = directory / f".{name}.part"
        with _disk_errors(directory):
            try:
                part.unlink(missing_ok=True)  # left by a save that was interrupted
                async with await anyio.open_file(part, "xb") as file:
                    transfer = _Transfer(self._http, directory, file, on_progress)
                    await transfer.run(url, refresh_url, lambda total: _same_video(target, total))
                    if transfer.already_saved is not None:
                        return _inside(directory, transfer.already_saved)
                    await file.flush()
                    await anyio.to_thread.run_sync(os.fsync, file.wrapped.fileno())
                final = _inside(directory, _free_name(target))
                os.replace(part, final)
            finally:
                with contextlib.suppress(OSError):  # never hide why the save failed
                    part.unlink(missing_ok=True)
        logger.debug("saved the video as %s (%.1f MB)", final, transfer.size / 1e6)
        return final

    def _prepare_directory(self) -> Path:
        """The output directory, created if missing, with symlinks resolved."""
        with _disk_errors(self._output_dir):
            self._output_dir.mkdir(parents=True, exist_ok=True)
            return self._output_dir.resolve(strict=True)


class _Interrupted(Exception):
    """The CDN failed in a way worth another request: a 5xx, or a body cut short."""


class _Transfer:
    """One video's bytes from the CDN into an open file, resumed after a dropped connection."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        directory: Path,
        file: anyio.AsyncFile[bytes],
        on_progress: ProgressCallback | None,
    ) -> None:
        self._http = http
        self._directory = directory
        self._file = file
        self._on_progress = on_progress
        self._reported = 0
        self.size = 0
        self.total: int | None = None
        self.already_saved: Path | None = None

    async def run(
        self, url: str, refresh_url: RefreshUrl | None, existing: Callable[[int | None], Path | None]
    ) -> None:
        """Fill the file, or stop at the first answer when `existing(total)` already holds the video."""
        failures = 0
        refreshed = False
        while True:
            size_before = self.size
            try:
                async with self._get(url) as response:
                    if await _has_expired(response):
                        url = await self._fresh_link(refresh_url, refreshed, response.status_code)
                        refreshed = True
                        continue
                    if await self._start(response) and (found := existing(self.total)) is not None:
                        self.already_saved = found
                        return
                    await self._receive(response)
                if self.total is not None and self.size != self.total:
                    raise _Interrupted(f"the body ended after {self.size} of {self.total} bytes")
                return
            except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
                raise self._error(f"the video link is not an http(s) URL ({exc})") from exc
            except (httpx.TransportError, _Interrupted) as exc:
                failures = 0 if self.size > size_before else failures + 1
                if failures >= ATTEMPTS:
                    raise self._error(f"the download failed {failures} times in a row ({exc!r})") from exc
                logger.info("download interrupted after %d bytes (%r); trying again", self.size, exc)
                await anyio.sleep(BACKOFF_SECONDS * 2 ** (failures - 1) if failures else 0)

    @contextlib.asynccontextmanager
    async def _get(self, url: str) -> AsyncIterator[httpx.Response]:
        """The answer to a GET of the rest of the video: from where the file ends."""
        headers = {"accept-encoding": "identity"}
        if self.size:
            headers["range"] = f"bytes={self.size}-"
        request = self._http.build_request("GET", url, headers=headers)
        request.headers.pop("authorization", None)
        response = await self._http.send(request, stream=True, auth=None, follow_redirects=True)
        try:
            yield response
        finally:
            await response.aclose()

    async def _fresh_link(self, refresh_url: RefreshUrl | None, refreshed: bool, status: int) -> str:
        fresh = None if refreshed or refresh_url is None else await refresh_url()
        if not fresh:
            again = ", and so was the fresh one the API gave" if refreshed else ""
            raise self._error(f"the video link was refused as expired (HTTP {status}){again}")
        logger.info("the video link was refused as expired (HTTP %d); trying the task's fresh one", status)
        return fresh

    async def _start(self, response: httpx.Response) -> bool:
        """Take the size from an answer, and start the file over unless the answer continues it.

        Returns whether the file starts empty (the first answer, or an answer from byte 0)."""
        if response.status_code >= 500:
            raise _Interrupted(f"the CDN answered HTTP {response.status_code}")
        if response.status_code not in (200, 206):
            raise self._error(f"the video link answered HTTP {response.status_code}")
        start, self.total = self._extent(response)
        if start != self.size:  # a whole video where a range was asked for
            await self._file.seek(0)
            await self._file.truncate()
            self.size = self._reported = 0
        return self.size == 0

    def _extent(self, response: httpx.Response) -> tuple[int, int | None]:
        """Where the answer's body starts in the video, and the video's full size if known."""
        if response.status_code == 200:
            length = response.headers.get("content-length", "")
            return 0, int(length) if length.isdigit() else None
        match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", ""))
        if match is None or int(match[1]) not in (0, self.size):
            answered = response.headers.get("content-range")
            raise self._error(f"the CDN answered a range that was not asked for ({answered!r})")
        return int(match[1]), None if match[2] == "*" else int(match[2])

    async def _receive(self, response: httpx.Response) -> None:
        """Append the answer's body to the file, up to where the connection ends."""
        pending = bytearray()
        try:
            async for chunk in response.aiter_bytes():
                pending += chunk
                if len(pending) >= WRITE_BYTES:
                    await self._write(pending)
        finally:  # keep what came before a dropped connection, for the resume to follow it
            if pending:
                await self._write(pending)

    async def _write(self, pending: bytearray) -> None:
        """Write out the bytes pending, leaving `pending` empty, and report progress."""
        data = bytes(pending)
        pending.clear()
        await self._file.write(data)
        self.size += len(data)
        finished = self.size == self.total
        if self._on_progress is not None and (finished or self.size - self._reported >= PROGRESS_STEP):
            self._reported = self.size
            await self._on_progress(self.size, self.total)

    def _error(self, reason: str) -> DownloadError:
        return DownloadError(self._directory, reason)


async def _has_expired(response: httpx.Response) -> bool:
    """Whether the CDN refuses the link as expired: by its status, or by saying so in the body."""
    if response.status_code in EXPIRED_STATUSES:
        return True
    return response.is_client_error and b"expired" in (await response.aread()).lower()


def _names(target: Path) -> Iterator[Path]:
    """`target`, then `target` with `-2`, `-3`... before its extension."""
    yield target
    for number in itertools.count(2):
        yield target.with_name(f"{target.stem}-{number}{target.suffix}")


def _same_video(target: Path, total: int | None) -> Path | None:
    """The file this video was saved as before: under one of its names, and of its size."""
    if total is None:
        return None
    taken = itertools.takewhile(Path.exists, _names(target))
    return next((name for name in taken if name.stat().st_size == total), None)


def _free_name(target: Path) -> Path:
    return next(name for name in _names(target) if not name.exists() and not name.is_symlink())


def _inside(directory: Path, path: Path) -> Path:
    """`path`, once checked to lead to a file directly in `directory` (symlinks followed)."""
    if path.resolve().parent != directory:
        raise DownloadError(directory, f"{path.name} leads outside it, to {path.resolve()}")
    return path


@contextlib.contextmanager
def _disk_errors(directory: Path) -> Iterator[None]:
    """Turn what the file system says (disk full, read-only, ...) into a DownloadError."""
    try:
        yield
    except OSError as exc:
        raise DownloadError(directory, _disk_problem(exc)) from exc


def _disk_problem(exc: OSError) -> str:
    """What went wrong on the disk, and what the user can do about it."""
    cause = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        problem, fix = (
            "the disk is full",
            "free some space, or set KLING_OUTPUT_DIR to a directory on another disk",
        )
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        problem, fix = (
            "it is not writable",
            "make it writable, or set KLING_OUTPUT_DIR to a writable directory",
        )
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST):
        problem, fix = "it cannot be made a directory", "set KLING_OUTPUT_DIR to a directory"
    else:
        problem, fix = (
            "the file system refused",
            "check the directory, or set KLING_OUTPUT_DIR to another one",
        )
    return f"{problem} ({cause}); {fix}"
