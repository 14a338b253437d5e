"""Saving finished videos to disk, over real loopback HTTP against the emulator's CDN."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import respx
from hypothesis import given
from hypothesis import strategies as st

from kling_mcp.api.downloads import Downloader, DownloadError, video_filename
from kling_mcp.emulator import Emulator, Fault, serve_emulator
from tests.test_emulator import mp4_boxes

TOKEN = "emulator-token"
VIDEO_BYTES = 3_000_000
NAME = re.compile(r"\d{4}-\d\d-\d\d_\d{4}_[a-z0-9]+(-[a-z0-9]+)*_[A-Za-z0-9]{1,8}(-\d+)?\.mp4")


@dataclass
class Video:
    task_id: str
    url: str
    created_at: float
    prompt: str


@dataclass
class Setup:
    emulator: Emulator
    api: httpx.AsyncClient
    downloader: Downloader

    async def finished(self, prompt: str = "a red fox in the snow") -> Video:
        """A finished generation's task id, fresh video link and creation time."""
        body = {"action": "text2video", "prompt": prompt, "async": True}
        task_id = (await self.api.post("/kling/videos", json=body)).json()["task_id"]
        return Video(task_id, await self.video_url(task_id), self.emulator.tasks[task_id].created_at, prompt)

    async def video_url(self, task_id: str) -> str:
        task = (await self.api.post("/kling/tasks", json={"action": "retrieve", "id": task_id})).json()
        url: str = task["response"]["video_url"]
        return url

    async def save(self, video: Video, **options: Any) -> Path:
        return await self.downloader.save(
            video.task_id, video.url, prompt=video.prompt, created_at=video.created_at, **options
        )

    def media_requests(self, video: Video) -> int:
        return self.emulator.counts[f"/media/{video.task_id}.mp4"]


@asynccontextmanager
async def serving(emulator: Emulator, output_dir: Path) -> AsyncIterator[Setup]:
    async with (
        serve_emulator(emulator) as base_url,
        httpx.AsyncClient(base_url=base_url, headers={"authorization": f"Bearer {TOKEN}"}) as api,
        httpx.AsyncClient() as pooled,  # like the server's pooled client: no token by default
    ):
        yield Setup(emulator, api, Downloader(pooled, output_dir))


@pytest.fixture
async def cdn(tmp_path: Path) -> AsyncIterator[Setup]:
    async with serving(Emulator(token=TOKEN, task_seconds=0, video_bytes=VIDEO_BYTES), tmp_path) as setup:
        yield setup


def entries(directory: Path) -> list[Path]:
    return sorted(directory.iterdir())


def only_file(directory: Path) -> Path:
    """The one entry of `directory` (no temporary file left beside it)."""
    [entry] = entries(directory)
    return entry


@pytest.mark.anyio
async def test_a_finished_video_is_saved_whole_under_its_name(cdn: Setup, tmp_path: Path) -> None:
    video = await cdn.finished("A cat surfing at sunset!")
    progress: list[tuple[int, int | None]] = []

    async def record(done: int, total: int | None) -> None:
        progress.append((done, total))

    path = await cdn.save(video, on_progress=record)

    assert path == only_file(tmp_path)
    assert path.read_bytes() == cdn.emulator.video
    when = datetime.fromtimestamp(video.created_at)
    short_id = video.task_id.replace("-", "")[:8]
    assert path.name == f"{when:%Y-%m-%d_%H%M}_a-cat-surfing-at-sunset_{short_id}.mp4"
    assert path == cdn.downloader.expected_path(video.task_id, video.prompt, video.created_at)
    assert progress[-1] == (VIDEO_BYTES, VIDEO_BYTES)
    assert [done for done, _ in progress] == sorted({done for done, _ in progress})
    assert len(progress) >= 2  # a 3 MB video reports along the way


@pytest.mark.anyio
async def test_a_connection_cut_mid_download_resumes_at_once_with_a_range_request(
    cdn: Setup, tmp_path: Path, clock: DownloaderClock
) -> None:
    video = await cdn.finished()
    cdn.emulator.inject("/media", Fault.cut_after(VIDEO_BYTES // 3))

    path = await cdn.save(video)

    assert path.read_bytes() == cdn.emulator.video
    assert cdn.emulator.media_ranges == [None, f"bytes={VIDEO_BYTES // 3}-"]
    assert clock.slept == [0]  # the cut brought bytes: no backoff before the rest
    assert only_file(tmp_path) == path


@pytest.mark.anyio
async def test_a_download_cut_again_and_again_gives_up_naming_the_directory(
    cdn: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kling_mcp.api.downloads.BACKOFF_SECONDS", 0.01)
    video = await cdn.finished()
    cdn.emulator.inject("/media", Fault.drop(), times=5)

    with pytest.raises(DownloadError) as raised:
        await cdn.save(video)

    assert str(tmp_path) in str(raised.value)
    assert "failed 5 times" in str(raised.value)
    assert "kling_download_video can retry later" in str(raised.value)
    assert cdn.media_requests(video) == 5
    assert entries(tmp_path) == []


@pytest.mark.anyio
async def test_an_expired_link_is_refreshed_through_refresh_url(tmp_path: Path) -> None:
    emulator = Emulator(token=TOKEN, task_seconds=0, video_bytes=VIDEO_BYTES, link_seconds=0.2)
    async with serving(emulator, tmp_path) as cdn:
        video = await cdn.finished()
        await anyio.sleep(0.3)  # the link expires
        refreshed: list[str] = []

        async def fresh_link() -> str:
            refreshed.append(await cdn.video_url(video.task_id))
            return refreshed[-1]

        path = await cdn.save(video, refresh_url=fresh_link)

        assert path.read_bytes() == emulator.video
        assert len(refreshed) == 1
        assert refreshed[0] != video.url
        assert cdn.media_requests(video) == 2


@pytest.mark.anyio
async def test_a_link_still_refused_after_one_refresh_is_a_download_error(tmp_path: Path) -> None:
    emulator = Emulator(token=TOKEN, task_seconds=0, link_seconds=60)
    async with serving(emulator, tmp_path) as cdn:
        video = await cdn.finished()
        altered = video.url.replace("sig=", "sig=0")

        async def altered_link() -> str:
            return altered

        with pytest.raises(DownloadError) as refreshed_in_vain:
            await cdn.save(
                Video(video.task_id, altered, video.created_at, video.prompt), refresh_url=altered_link
            )
        with pytest.raises(DownloadError) as not_refreshable:
            await cdn.save(Video(video.task_id, altered, video.created_at, video.prompt))

        assert (
            f"Could not save the video in {tmp_path}: the video link was refused as expired (HTTP 403), "
            "and so was the fresh one the API gave. "
        ) in str(refreshed_in_vain.value)
        assert (
            f"Could not save the video in {tmp_path}: the video link was refused as expired (HTTP 403). "
        ) in str(not_refreshable.value)
        assert cdn.media_requests(video) == 3
        assert entries(tmp_path) == []


@pytest.mark.anyio
async def test_a_cancelled_save_leaves_nothing_behind(cdn: Setup, tmp_path: Path) -> None:
    video = await cdn.finished()

    with anyio.CancelScope() as scope:

        async def cancel_halfway(done: int, total: int | None) -> None:
            scope.cancel()

        await cdn.save(video, on_progress=cancel_halfway)

    assert scope.cancelled_caught
    assert entries(tmp_path) == []
    assert await cdn.save(video) == only_file(tmp_path)  # and the task can be saved again


@pytest.mark.anyio
async def test_a_full_disk_is_a_download_error_and_leaves_no_temporary_file(
    cdn: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = await cdn.finished()
    write = anyio.AsyncFile.write
    written: list[int] = []

    async def write_until_full(self: anyio.AsyncFile[bytes], data: bytes) -> int:
        if written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(len(data))
        return await write(self, data)

    monkeypatch.setattr(anyio.AsyncFile, "write", write_until_full)

    with pytest.raises(DownloadError) as raised:
        await cdn.save(video)

    message = str(raised.value)
    assert str(tmp_path) in message
    assert "the disk is full (No space left on device); free some space" in message
    assert "KLING_OUTPUT_DIR" in message
    assert entries(tmp_path) == []


@pytest.mark.anyio
async def test_an_output_directory_that_cannot_be_created_is_a_download_error(
    cdn: Setup, tmp_path: Path
) -> None:
    video = await cdn.finished()
    (tmp_path / "notes.txt").write_text("a file, not a directory")
    beneath_a_file = tmp_path / "notes.txt" / "Kling"

    with pytest.raises(DownloadError) as raised:
        async with httpx.AsyncClient() as http:
            await Downloader(http, beneath_a_file).save(
                video.task_id, video.url, prompt=video.prompt, created_at=video.created_at
            )

    assert f"Could not save the video in {beneath_a_file}: it cannot be made a directory" in str(raised.value)
    assert cdn.media_requests(video) == 0


HOSTILE_PROMPTS = [
    "../../etc/passwd",
    "/etc/passwd",
    "..",
    "C:\\Windows\\System32\\evil.exe",
    "un café à Paris, 猫が海でサーフィン 🏄",
    "猫が海でサーフィン",
    "x" * 300,
    "",
]


@pytest.mark.anyio
async def test_hostile_or_unicode_prompts_and_task_ids_never_leave_the_directory(
    cdn: Setup, tmp_path: Path
) -> None:
    video = await cdn.finished()
    saved = []
    for prompt in HOSTILE_PROMPTS:
        for task_id in (video.task_id, "../../" + video.task_id, "/etc/passwd"):
            saved.append(
                await cdn.downloader.save(task_id, video.url, prompt=prompt, created_at=video.created_at)
            )

    assert sorted(set(saved)) == entries(tmp_path)  # a task id's hostile twin names the same file
    for path in saved:
        assert path.parent == tmp_path
        assert NAME.fullmatch(path.name), path.name
    slugs = [path.name.split("_")[2] for path in saved[::3]]
    assert slugs == [
        "etc-passwd",
        "etc-passwd",
        "video",
        "c-windows-system32-evil-exe",
        "un-cafe-a-paris",
        "video",  # nothing ASCII is left of the prompt
        "x" * 40,
        "video",
    ]
    assert {path.name.split("_")[3] for path in saved} == {
        video.task_id.replace("-", "")[:8] + ".mp4",
        "etcpassw.mp4",
    }


@given(st.text(), st.text())
def test_file_names_are_safe_whatever_the_prompt_and_task_id(prompt: str, task_id: str) -> None:
    name = video_filename(task_id, prompt, datetime(2026, 12, 1, 9, 41))
    assert NAME.fullmatch(name), name
    assert name.startswith("2026-12-01_0941_")
    assert len(name.split("_")[2]) <= 40


@pytest.mark.anyio
async def test_concurrent_saves_of_one_task_download_once(cdn: Setup, tmp_path: Path) -> None:
    video = await cdn.finished()
    paths: list[Path] = []

    async def save() -> None:
        paths.append(await cdn.save(video))

    async with anyio.create_task_group() as group:
        group.start_soon(save)
        group.start_soon(save)

    assert paths[0] == paths[1] == only_file(tmp_path)
    assert cdn.media_requests(video) == 1


@pytest.mark.anyio
async def test_saving_again_keeps_the_file_and_never_overwrites_another(cdn: Setup, tmp_path: Path) -> None:
    video = await cdn.finished()
    first = await cdn.save(video)
    again = await cdn.save(video)
    assert again == first == only_file(tmp_path)

    other = await cdn.finished("another prompt")
    squatter = cdn.downloader.expected_path(other.task_id, other.prompt, other.created_at)
    squatter.write_bytes(b"someone else's file")
    saved = await cdn.save(other)

    assert saved == squatter.with_name(squatter.stem + "-2.mp4")
    assert saved.read_bytes() == cdn.emulator.video
    assert squatter.read_bytes() == b"someone else's file"


@pytest.mark.anyio
async def test_a_20_mb_video_is_saved_as_a_playable_mp4(tmp_path: Path) -> None:
    emulator = Emulator(token=TOKEN, task_seconds=0, video_bytes=20_000_000)
    async with serving(emulator, tmp_path) as cdn:
        path = await cdn.save(await cdn.finished())

    data = path.read_bytes()
    assert len(data) == 20_000_000
    assert data[4:8] == b"ftyp"
    assert mp4_boxes(data) == ["ftyp", "moov", "free", "mdat", "free"]


# --- A scripted CDN: answers no real CDN should give, and a clock the test keeps ----------------

SCRIPTED_URL = "https://cdn.test/v.mp4"
SCRIPTED_VIDEO = bytes(range(256)) * 1000
SCRIPTED_SIZE = len(SCRIPTED_VIDEO)


class CutStream(httpx.AsyncByteStream):
    """A body that breaks off with a read error after `chunks`."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        raise httpx.ReadError("connection reset by peer")


def cut_after(size: int) -> httpx.Response:
    """The whole video announced, and the connection reset after its first `size` bytes."""
    return httpx.Response(
        200, headers={"content-length": str(SCRIPTED_SIZE)}, stream=CutStream(SCRIPTED_VIDEO[:size])
    )


def part(
    start: int,
    end: int = SCRIPTED_SIZE,
    *,
    claimed_end: int | None = None,
    total: str = "",
    cut: bool = False,
) -> httpx.Response:
    """A 206 answer with the video's bytes from `start` to `end`, claiming (in its Content-Range) to
    end at `claimed_end` of a video of `total` bytes (default: the truth); `cut`: then reset."""
    last = (end if claimed_end is None else claimed_end) - 1
    headers = {"content-range": f"bytes {start}-{last}/{total or SCRIPTED_SIZE}"}
    body = SCRIPTED_VIDEO[start:end]
    if cut:
        return httpx.Response(206, headers=headers, stream=CutStream(body))
    return httpx.Response(206, headers=headers, content=body)


class ScriptedCdn:
    """Answers the requests for SCRIPTED_URL with `answers` in turn; `ranges` are the Range headers asked."""

    def __init__(self, directory: Path, *answers: httpx.Response) -> None:
        self.directory = directory
        self.answers = answers
        self.ranges: list[str | None] = []
        self.authorized = False

    async def save(self, refresh_url: Any = None, on_progress: Any = None) -> Path:
        with respx.mock(assert_all_called=bool(self.answers)) as cdn:
            route = cdn.get(SCRIPTED_URL).mock(side_effect=list(self.answers))
            try:
                async with httpx.AsyncClient(headers={"authorization": f"Bearer {TOKEN}"}) as with_token:
                    downloader = Downloader(with_token, self.directory)
                    return await downloader.save(
                        "task-1",
                        SCRIPTED_URL,
                        prompt="p",
                        created_at=0,
                        refresh_url=refresh_url,
                        on_progress=on_progress,
                    )
            finally:
                self.ranges = [call.request.headers.get("range") for call in route.calls]
                self.authorized = any("authorization" in call.request.headers for call in route.calls)


class DownloaderClock:
    """Stands in for anyio in the downloads module: its sleeps return at once, and are recorded."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(anyio, name)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> DownloaderClock:
    clock = DownloaderClock()
    monkeypatch.setattr("kling_mcp.api.downloads.anyio", clock)
    return clock


@pytest.mark.anyio
async def test_a_whole_video_answered_to_a_range_request_starts_the_file_over(
    tmp_path: Path, kling_log: pytest.LogCaptureFixture
) -> None:
    cdn = ScriptedCdn(tmp_path, cut_after(1000), httpx.Response(200, content=SCRIPTED_VIDEO))

    path = await cdn.save()

    assert path.read_bytes() == SCRIPTED_VIDEO
    assert cdn.ranges == [None, "bytes=1000-"]
    assert not cdn.authorized
    assert only_file(tmp_path) == path
    assert logged(kling_log) == [
        "download interrupted after 1000 bytes (ReadError('connection reset by peer')); trying again",
        f"saved the video as {path} (0.3 MB)",
    ]


@pytest.mark.anyio
async def test_a_range_answer_from_byte_0_starts_the_file_over(tmp_path: Path) -> None:
    cdn = ScriptedCdn(tmp_path, cut_after(1000), part(0))

    assert (await cdn.save()).read_bytes() == SCRIPTED_VIDEO
    assert cdn.ranges == [None, "bytes=1000-"]


@pytest.mark.anyio
async def test_a_resumed_answer_that_starts_at_another_byte_is_refused_not_spliced(tmp_path: Path) -> None:
    cdn = ScriptedCdn(tmp_path, cut_after(1000), part(1500))  # 500 bytes of what was asked are skipped

    with pytest.raises(DownloadError) as raised:
        await cdn.save()

    assert f"the CDN answered a range that was not asked for ('bytes 1500-{SCRIPTED_SIZE - 1}/" in str(
        raised.value
    )
    assert cdn.ranges == [None, "bytes=1000-"]
    assert entries(tmp_path) == []


@pytest.mark.anyio
async def test_a_range_answer_without_its_content_range_is_refused(tmp_path: Path) -> None:
    cdn = ScriptedCdn(tmp_path, cut_after(1000), httpx.Response(206, content=SCRIPTED_VIDEO[1000:]))

    with pytest.raises(DownloadError, match=r"a range that was not asked for \(None\)"):
        await cdn.save()
    assert entries(tmp_path) == []


@pytest.mark.anyio
async def test_a_resumed_body_that_ends_short_is_resumed_again_not_saved_short(tmp_path: Path) -> None:
    ends_early = part(1000, 2000, claimed_end=SCRIPTED_SIZE)  # says it sends the rest, ends cleanly
    cdn = ScriptedCdn(tmp_path, cut_after(1000), ends_early, part(2000))

    assert (await cdn.save()).read_bytes() == SCRIPTED_VIDEO
    assert cdn.ranges == [None, "bytes=1000-", "bytes=2000-"]


@pytest.mark.anyio
async def test_a_video_whose_size_no_answer_gives_is_resumed_and_saved_whole(tmp_path: Path) -> None:
    unsized = httpx.Response(200, stream=CutStream(SCRIPTED_VIDEO[:1000]))  # no content-length
    cdn = ScriptedCdn(tmp_path, unsized, part(1000, total="*"))

    assert (await cdn.save()).read_bytes() == SCRIPTED_VIDEO
    assert cdn.ranges == [None, "bytes=1000-"]


@pytest.mark.anyio
async def test_a_cdn_error_is_tried_again_with_doubling_waits_and_a_cut_that_brought_bytes_at_once(
    tmp_path: Path, clock: DownloaderClock
) -> None:
    unavailable = httpx.Response(503)
    cdn = ScriptedCdn(
        tmp_path, unavailable, unavailable, httpx.Response(500), cut_after(1000), unavailable, part(1000)
    )

    assert (await cdn.save()).read_bytes() == SCRIPTED_VIDEO
    assert clock.slept == [0.25, 0.5, 1.0, 0, 0.25]
    assert cdn.ranges == [None, None, None, None, "bytes=1000-", "bytes=1000-"]


@pytest.mark.anyio
async def test_a_download_that_keeps_bringing_bytes_is_never_given_up(
    tmp_path: Path, clock: DownloaderClock
) -> None:
    cuts = [
        part(start, start + 1000, claimed_end=SCRIPTED_SIZE, cut=True) for start in range(1000, 7000, 1000)
    ]
    cdn = ScriptedCdn(tmp_path, cut_after(1000), *cuts, part(7000))

    assert (await cdn.save()).read_bytes() == SCRIPTED_VIDEO
    assert clock.slept == [0] * 7


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (httpx.Response(503), "the CDN answered HTTP 503"),
        (
            httpx.Response(200, headers={"content-length": str(SCRIPTED_SIZE)}),
            f"the body ended after 0 of {SCRIPTED_SIZE} bytes",
        ),
    ],
    ids=["503", "empty-body"],
)
@pytest.mark.anyio
async def test_five_answers_in_a_row_that_bring_nothing_give_up_saying_why(
    tmp_path: Path, clock: DownloaderClock, answer: httpx.Response, why: str
) -> None:
    cdn = ScriptedCdn(tmp_path, *[answer] * 5)

    with pytest.raises(DownloadError) as raised:
        await cdn.save()

    assert "the download failed 5 times in a row" in str(raised.value)
    assert why in str(raised.value)
    assert clock.slept == [0.25, 0.5, 1.0, 2.0]
    assert entries(tmp_path) == []


@pytest.mark.anyio
async def test_a_link_a_cdn_calls_expired_with_another_status_is_exchanged_for_a_fresh_one(
    tmp_path: Path, kling_log: pytest.LogCaptureFixture
) -> None:
    expired = httpx.Response(
        400, text="<Error><Code>AccessDenied</Code><Message>Request has Expired</Message>"
    )
    refreshed: list[str] = []

    async def fresh_link() -> str:
        refreshed.append(SCRIPTED_URL)
        return SCRIPTED_URL

    cdn = ScriptedCdn(tmp_path, expired, httpx.Response(200, content=SCRIPTED_VIDEO))

    assert (await cdn.save(refresh_url=fresh_link)).read_bytes() == SCRIPTED_VIDEO
    assert refreshed == [SCRIPTED_URL]
    assert (
        logged(kling_log)[0]
        == "the video link was refused as expired (HTTP 400); trying the task's fresh one"
    )


@pytest.mark.anyio
async def test_a_link_refused_for_another_reason_is_a_download_error_without_a_refresh(
    tmp_path: Path,
) -> None:
    async def no_refresh() -> str:
        raise AssertionError("a link refused as malformed, not expired, was refreshed")

    cdn = ScriptedCdn(tmp_path, httpx.Response(400, text="<Error><Code>InvalidArgument</Code></Error>"))

    with pytest.raises(DownloadError) as raised:
        await cdn.save(refresh_url=no_refresh)

    assert f"Could not save the video in {tmp_path}: the video link answered HTTP 400." in str(raised.value)


@pytest.mark.anyio
async def test_a_link_that_is_not_http_is_a_download_error(tmp_path: Path) -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(DownloadError) as raised:
            await Downloader(http, tmp_path).save("task-1", "ftp://cdn.test/v.mp4", prompt="p", created_at=0)

    assert "the video link is not an http(s) URL" in str(raised.value)


@pytest.mark.anyio
async def test_a_missing_output_directory_is_made_with_its_parents(tmp_path: Path) -> None:
    nested = tmp_path / "videos" / "kling"
    cdn = ScriptedCdn(nested, httpx.Response(200, content=SCRIPTED_VIDEO))

    assert (await cdn.save()).parent == nested


@pytest.mark.anyio
async def test_a_file_under_the_videos_name_that_leads_outside_the_directory_is_refused(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "elsewhere.mp4"
    outside.write_bytes(b"x" * SCRIPTED_SIZE)  # the video's size: it would pass for the saved video
    videos = tmp_path / "videos"
    videos.mkdir()
    name = video_filename("task-1", "p", datetime.fromtimestamp(0))
    (videos / name).symlink_to(outside)
    cdn = ScriptedCdn(videos, httpx.Response(200, content=SCRIPTED_VIDEO))

    with pytest.raises(DownloadError) as raised:
        await cdn.save()

    assert f"Could not save the video in {videos}: {name} leads outside it, to {outside}." in str(
        raised.value
    )
    assert outside.read_bytes() == b"x" * SCRIPTED_SIZE


DISK_PROBLEMS = [
    (
        errno.ENOSPC,
        "the disk is full",
        "free some space, or set KLING_OUTPUT_DIR to a directory on another disk",
    ),
    (errno.EROFS, "it is not writable", "make it writable, or set KLING_OUTPUT_DIR to a writable directory"),
    (errno.EACCES, "it is not writable", "make it writable, or set KLING_OUTPUT_DIR to a writable directory"),
    (errno.ENOTDIR, "it cannot be made a directory", "set KLING_OUTPUT_DIR to a directory"),
    (errno.EIO, "the file system refused", "check the directory, or set KLING_OUTPUT_DIR to another one"),
]


@pytest.mark.parametrize(
    ("code", "problem", "fix"), DISK_PROBLEMS, ids=lambda value: errno.errorcode.get(value, "")
)
@pytest.mark.anyio
async def test_each_disk_problem_is_named_with_its_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, problem: str, fix: str
) -> None:
    async def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(anyio, "open_file", refuse)
    cdn = ScriptedCdn(tmp_path)
    with pytest.raises(DownloadError) as raised:
        await cdn.save()

    assert cdn.ranges == [], "the video was asked for with no file to write it to"
    assert str(raised.value) == (
        f"Could not save the video in {tmp_path}: {problem} ({os.strerror(code)}); {fix}. "
        "The task's link is kept, so kling_download_video can retry later."
    )


@pytest.mark.anyio
async def test_a_disk_error_without_a_description_is_named_by_its_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("the volume went away")

    monkeypatch.setattr(anyio, "open_file", refuse)
    with pytest.raises(DownloadError, match=r"the file system refused \(the volume went away\)"):
        await ScriptedCdn(tmp_path).save()


def test_file_names_keep_the_task_ids_letters_and_the_prompts_whole_words() -> None:
    when = datetime(2026, 12, 1, 9, 41)
    prompt = "a red fox trotting through fresh snow at dawn, tracking shot"

    assert video_filename("AbC-12_XyZ9", prompt, when) == (
        "2026-12-01_0941_a-red-fox-trotting-through-fresh-snow-at_AbC12XyZ.mp4"
    )
    assert video_filename("--/--", "", when) == "2026-12-01_0941_video_task.mp4"


def logged(kling_log: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in kling_log.records]


@pytest.mark.anyio
async def test_progress_is_told_once_per_megabyte_saved_and_at_the_end(tmp_path: Path) -> None:
    megabyte = 1 << 20
    video = bytes(range(256)) * (megabyte * 7 // 2 // 256)
    first = httpx.Response(
        200,
        headers={"content-length": str(len(video))},
        stream=CutStream(video[:megabyte], video[megabyte : megabyte * 3 // 2]),  # then reset
    )
    rest = httpx.Response(
        206,
        headers={"content-range": f"bytes {megabyte * 3 // 2}-{len(video) - 1}/{len(video)}"},
        content=video[megabyte * 3 // 2 :],
    )
    told: list[tuple[int, int | None]] = []

    async def progress(done: int, total: int | None) -> None:
        told.append((done, total))

    with respx.mock(assert_all_called=True) as cdn:
        cdn.get(SCRIPTED_URL).mock(side_effect=[first, rest])
        async with httpx.AsyncClient() as http:
            path = await Downloader(http, tmp_path).save(
                "task-1", SCRIPTED_URL, prompt="p", created_at=0, on_progress=progress
            )

    assert path.read_bytes() == video
    assert told == [(megabyte, len(video)), (len(video), len(video))]


@pytest.mark.anyio
async def test_a_temporary_file_that_cannot_be_removed_never_hides_why_the_save_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unlink = Path.unlink

    def stuck(path: Path, missing_ok: bool = False) -> None:
        if path.name.endswith(".part") and path.exists():
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), str(path))
        unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", stuck)
    cdn = ScriptedCdn(tmp_path, httpx.Response(400, text="no such object"))

    with pytest.raises(DownloadError, match=r"the video link answered HTTP 400"):
        await cdn.save()
