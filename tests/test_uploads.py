"""Uploading local files: to the emulator over real loopback HTTP, and against scripted failures (respx)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import respx

from kling_mcp.api.uploads import UPLOAD_PATH, UploadError, upload
from kling_mcp.domain.local_files import LocalFile, MediaKind, check_local_file
from kling_mcp.emulator import Emulator, Fault, serve_emulator
from tests import media

pytestmark = pytest.mark.anyio

TOKEN = "platform-upload-secret-7d1f"
HOST = "https://platform.test"


@pytest.fixture
def emu() -> Emulator:
    return Emulator(token=TOKEN)


@pytest.fixture
async def base_url(emu: Emulator) -> AsyncIterator[str]:
    async with serve_emulator(emu) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def checked(directory: Path, name: str, content: bytes, kind: MediaKind = "image") -> LocalFile:
    path = directory / name
    path.write_bytes(content)
    return check_local_file("image_url", str(path), kind, [directory])


class Progress:
    def __init__(self) -> None:
        self.reports: list[tuple[int, int]] = []

    async def __call__(self, sent: int, total: int) -> None:
        self.reports.append((sent, total))


async def test_a_png_is_uploaded_and_its_hosted_url_serves_exactly_its_bytes(
    tmp_path: Path, emu: Emulator, base_url: str, http: httpx.AsyncClient
) -> None:
    content = media.png()
    file = checked(tmp_path, "cat.png", content)
    progress = Progress()
    url = await upload(http, base_url, TOKEN, file, progress)
    assert url.startswith(f"{base_url}/files/")
    assert url.endswith(".png")
    served = await http.get(url)
    assert served.content == content
    assert served.headers["content-type"] == "image/png"
    assert (emu.uploads.received_count, emu.uploads.received_bytes) == (1, len(content))
    assert progress.reports == [(len(content), len(content))]


async def test_a_large_video_streams_with_progress(
    tmp_path: Path, emu: Emulator, base_url: str, http: httpx.AsyncClient
) -> None:
    content = media.mp4() + bytes(range(256)) * (12 * 1024)  # about 3.1 MB
    file = checked(tmp_path, "clip.MP4", content, "video")
    progress = Progress()
    url = await upload(http, base_url, TOKEN, file, progress)
    assert (await http.get(url)).content == content
    (stored,) = emu.uploads.files.values()
    assert stored.name == "clip.mp4"
    assert stored.mime == "video/mp4"
    assert stored.sha256 == hashlib.sha256(content).hexdigest()
    sent = [report[0] for report in progress.reports]
    assert len(sent) == 4
    assert sent == sorted(sent)
    assert sent[-1] == len(content)
    assert {total for _, total in progress.reports} == {len(content)}


async def test_a_rejected_token_says_a_platform_token_may_be_needed_without_leaking_it(
    tmp_path: Path, emu: Emulator, base_url: str, http: httpx.AsyncClient, kling_log: pytest.LogCaptureFixture
) -> None:
    wrong = "sk-api-token-not-for-files-93ab"
    file = checked(tmp_path, "cat.png", media.png())
    with pytest.raises(UploadError) as raised:
        await upload(http, base_url, wrong, file)
    message = str(raised.value)
    assert "HTTP 401" in message
    assert "The token is invalid." in message
    assert "ACEDATACLOUD_PLATFORM_TOKEN" in message
    assert "platform-" in message
    assert "https://platform.acedata.cloud" in message
    assert "nothing was charged" in message
    assert raised.value.status == 401
    assert raised.value.trace_id
    assert raised.value.trace_id in message
    assert wrong not in message
    assert "upload of cat.png -> 401" in kling_log.text, "the answer was not logged: nothing was checked"
    assert wrong not in kling_log.text
    assert emu.uploads.received_count == 0


async def test_the_hosts_own_words_and_trace_id_are_kept(
    tmp_path: Path, emu: Emulator, base_url: str, http: httpx.AsyncClient
) -> None:
    emu.inject(UPLOAD_PATH, Fault.status(507, error_code="storage_full", message="Storage quota exceeded."))
    file = checked(tmp_path, "cat.png", media.png())
    with pytest.raises(UploadError) as raised:
        await upload(http, base_url, TOKEN, file)
    assert "Uploading cat.png failed (HTTP 507): Storage quota exceeded." in str(raised.value)
    assert raised.value.trace_id
    assert f"trace_id: {raised.value.trace_id}" in str(raised.value)
    assert not raised.value.maybe_uploaded


async def test_a_file_changed_after_its_check_is_not_uploaded(
    tmp_path: Path, emu: Emulator, base_url: str, http: httpx.AsyncClient
) -> None:
    file = checked(tmp_path, "cat.png", media.png())
    (tmp_path / "cat.png").write_bytes(b"#!/bin/sh\necho not a picture\n")
    with pytest.raises(UploadError, match=r"Did not upload cat.png: .*after it was checked"):
        await upload(http, base_url, TOKEN, file)
    assert emu.uploads.received_count == 0


async def test_the_upload_stops_short_if_the_content_changes_in_place(
    tmp_path: Path, emu: Emulator, base_url: str, http: httpx.AsyncClient
) -> None:
    file = checked(tmp_path, "cat.png", media.png())
    stat = (tmp_path / "cat.png").stat()
    with (tmp_path / "cat.png").open("r+b") as handle:  # same size, same times: only the bytes differ
        handle.seek(20)
        handle.write(b"XXXX")
    os.utime(tmp_path / "cat.png", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(UploadError, match="content changed after it was checked"):
        await upload(http, base_url, TOKEN, file)
    assert emu.uploads.received_count == 0


async def test_no_token_sends_nothing(
    tmp_path: Path, emu: Emulator, base_url: str, http: httpx.AsyncClient
) -> None:
    file = checked(tmp_path, "cat.png", media.png())
    with pytest.raises(UploadError, match=r"no token is set\. Set ACEDATACLOUD_PLATFORM_TOKEN"):
        await upload(http, base_url, None, file)
    assert emu.counts[UPLOAD_PATH] == 0


# The host's answers and transport failures, scripted.


@pytest.fixture
def host() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=HOST, assert_all_called=False) as router:
        yield router


async def test_the_url_key_is_read_when_file_url_is_missing(
    tmp_path: Path, host: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    route = host.post(UPLOAD_PATH).respond(200, json={"url": "https://cdn.test/abc.png"})
    assert (
        await upload(http, HOST, TOKEN, checked(tmp_path, "cat.png", media.png()))
        == "https://cdn.test/abc.png"
    )
    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert b'name="file"; filename="cat.png"\r\nContent-Type: image/png\r\n\r\n' in request.content
    assert int(request.headers["content-length"]) == len(request.content)


@pytest.mark.parametrize(
    "answer",
    [{"file_url": "ftp://cdn.test/abc.png"}, {"success": True}, ["https://cdn.test/abc.png"]],
)
async def test_an_answer_without_an_http_url_is_an_error(
    tmp_path: Path, host: respx.MockRouter, http: httpx.AsyncClient, answer: object
) -> None:
    host.post(UPLOAD_PATH).respond(200, json=answer)
    with pytest.raises(UploadError, match=r"without an http\(s\) file URL|failed \(HTTP 200\)"):
        await upload(http, HOST, TOKEN, checked(tmp_path, "cat.png", media.png()))


async def test_a_connection_that_could_not_be_made_is_tried_once_more(
    tmp_path: Path, host: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    route = host.post(UPLOAD_PATH)
    route.side_effect = [
        httpx.ConnectError("refused"),
        httpx.Response(200, json={"file_url": "https://cdn.test/a.png"}),
    ]
    assert (
        await upload(http, HOST, TOKEN, checked(tmp_path, "cat.png", media.png())) == "https://cdn.test/a.png"
    )
    assert route.call_count == 2


async def test_a_host_that_stays_unreachable_is_an_error_saying_nothing_was_sent(
    tmp_path: Path, host: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    route = host.post(UPLOAD_PATH).mock(side_effect=httpx.ConnectError(f"refused for Bearer {TOKEN}"))
    with pytest.raises(UploadError, match="nothing was sent") as raised:
        await upload(http, HOST, TOKEN, checked(tmp_path, "cat.png", media.png()))
    assert route.call_count == 2
    assert TOKEN not in str(raised.value)


async def test_a_failure_after_sending_is_never_retried(
    tmp_path: Path, host: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    route = host.post(UPLOAD_PATH).mock(side_effect=httpx.ReadError("connection reset"))
    with pytest.raises(
        UploadError, match="were sent, but the connection was cut off before the host answered"
    ) as raised:
        await upload(http, HOST, TOKEN, checked(tmp_path, "cat.png", media.png()))
    assert route.call_count == 1
    assert raised.value.maybe_uploaded


async def test_a_cut_off_upload_never_shows_the_token_its_error_carried(
    tmp_path: Path, host: respx.MockRouter, http: httpx.AsyncClient, kling_log: pytest.LogCaptureFixture
) -> None:
    host.post(UPLOAD_PATH).mock(side_effect=httpx.ReadError(f"reset by a proxy that echoed Bearer {TOKEN}"))
    with pytest.raises(UploadError) as raised:
        await upload(http, HOST, TOKEN, checked(tmp_path, "cat.png", media.png()))
    assert "cut off" in str(raised.value)
    assert "reset by a proxy that echoed Bearer ***" in str(raised.value)
    assert TOKEN not in str(raised.value)
    assert "Uploading cat.png" in kling_log.text, "nothing was logged: nothing was checked"
    assert TOKEN not in kling_log.text


async def test_a_gateway_page_is_reported_in_words(
    tmp_path: Path, host: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    host.post(UPLOAD_PATH).respond(502, html="<html><body><h1>502 Bad Gateway</h1></body></html>")
    with pytest.raises(UploadError, match="failed \\(HTTP 502\\)"):
        await upload(http, HOST, TOKEN, checked(tmp_path, "cat.png", media.png()))


async def test_a_token_echoed_by_the_host_is_redacted(
    tmp_path: Path, host: respx.MockRouter, http: httpx.AsyncClient, kling_log: pytest.LogCaptureFixture
) -> None:
    host.post(UPLOAD_PATH).respond(400, json={"error": {"message": f"bad header: Bearer {TOKEN}"}})
    with pytest.raises(UploadError) as raised:
        await upload(http, HOST, TOKEN, checked(tmp_path, "cat.png", media.png()))
    assert "bad header: Bearer ***" in str(raised.value)
    assert "upload of cat.png -> 400" in kling_log.text, "the answer was not logged: nothing was checked"
    assert TOKEN not in kling_log.text
