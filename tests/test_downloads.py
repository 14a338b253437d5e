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
async def test_a_connection_cut_mid_download_resumes_with_a_range_request(cdn: Setup, tmp_path: Path) -> None:
    video = await cdn.finished()
    cdn.emulator.inject("/media", Fault.cut_after(VIDEO_BYTES // 3))

    path = await cdn.save(video)

    assert path.read_bytes() == cdn.emulator.video
    assert cdn.emulator.media_ranges == [None, f"bytes={VIDEO_BYTES // 3}-"]
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

        assert "expired (HTTP 403), and so was the fresh one" in str(refreshed_in_vain.value)
        assert "expired (HTTP 403)" in str(not_refreshable.value)
        assert str(tmp_path) in str(not_refreshable.value)
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


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
@pytest.mark.anyio
async def test_an_unwritable_directory_is_a_download_error(
    cdn: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    video = await cdn.finished()

    async def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(anyio, "open_file", refuse)

    with pytest.raises(DownloadError) as raised:
        await cdn.save(video)

    assert f"Could not save the video in {tmp_path}: it is not writable ({os.strerror(code)})" in str(
        raised.value
    )
    assert "set KLING_OUTPUT_DIR to a writable directory" in str(raised.value)
    assert cdn.media_requests(video) == 0
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


class CutStream(httpx.AsyncByteStream):
    """A body that breaks off with a read error after `data`."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data
        raise httpx.ReadError("connection reset by peer")


@pytest.mark.anyio
async def test_a_whole_video_answered_to_a_range_request_starts_the_file_over(tmp_path: Path) -> None:
    video = bytes(range(256)) * 1000
    answers = [
        httpx.Response(200, headers={"content-length": str(len(video))}, stream=CutStream(video[:1000])),
        httpx.Response(200, content=video),
    ]
    with respx.mock(assert_all_called=True) as cdn:
        route = cdn.get("https://cdn.test/v.mp4").mock(side_effect=answers)
        async with httpx.AsyncClient(headers={"authorization": f"Bearer {TOKEN}"}) as with_token:
            path = await Downloader(with_token, tmp_path).save(
                "task-1", "https://cdn.test/v.mp4", prompt="p", created_at=0
            )

    assert path.read_bytes() == video
    assert route.calls[1].request.headers["range"] == "bytes=1000-"
    assert all("authorization" not in call.request.headers for call in route.calls)
    assert only_file(tmp_path) == path
