"""Uploading local files: to the emulator over real loopback HTTP, and against scripted failures (respx)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import respx

from kling_mcp.api import uploads
from kling_mcp.api.uploads import NO_TASK, UPLOAD_PATH, UploadError, upload
from kling_mcp.domain.local_files import MB, LocalFile, MediaKind, check_local_file
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


def logged(log: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in log.records]


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
    assert raised.value.status == 507
    assert raised.value.trace_id
    assert f"trace_id: {raised.value.trace_id}" in str(raised.value)


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
    with pytest.raises(UploadError) as raised:
        await upload(http, base_url, TOKEN, file)
    assert (
        str(raised.value) == f"Stopped uploading cat.png: its content changed after it was checked\n{NO_TASK}"
    )
    assert emu.uploads.received_count == 0


async def test_the_upload_stops_short_if_the_file_grows_in_place(
    tmp_path: Path, emu: Emulator, base_url: str, http: httpx.AsyncClient
) -> None:
    file = checked(tmp_path, "cat.png", media.png())
    stat = (tmp_path / "cat.png").stat()
    with (tmp_path / "cat.png").open("ab") as handle:
        handle.write(b"appended after the check")
    os.utime(tmp_path / "cat.png", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(UploadError) as raised:
        await upload(http, base_url, TOKEN, file)
    assert (
        str(raised.value)
        == f"Stopped uploading cat.png: it grew past the {file.size} bytes checked\n{NO_TASK}"
    )
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


@pytest.fixture
def no_retry_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uploads, "RETRY_DELAY_SECONDS", 0)


async def test_the_url_key_is_read_when_file_url_is_missing(
    tmp_path: Path, host: respx.MockRouter, http: httpx.AsyncClient, kling_log: pytest.LogCaptureFixture
) -> None:
    route = host.post(UPLOAD_PATH).respond(200, json={"url": "https://cdn.test/abc.png"})
    assert (
        await upload(http, HOST, TOKEN, checked(tmp_path, "cat.png", media.png()))
        == "https://cdn.test/abc.png"
    )
    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["accept"] == "application/json"
    assert b'name="file"; filename="cat.png"\r\nContent-Type: image/png\r\n\r\n' in request.content
    assert int(request.headers["content-length"]) == len(request.content)
    assert "Uploaded cat.png: https://cdn.test/abc.png" in logged(kling_log)


async def test_each_upload_has_its_own_random_multipart_boundary(
    tmp_path: Path, host: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    route = host.post(UPLOAD_PATH).respond(200, json={"file_url": "https://cdn.test/abc.png"})
    file = checked(tmp_path, "cat.png", media.png())
    await upload(http, HOST, TOKEN, file)
    await upload(http, HOST, TOKEN, file)
    boundaries = set()
    for call in route.calls:
        content_type = call.request.headers["content-type"]
        assert content_type.startswith("multipart/form-data; boundary=")
        boundary = content_type.partition("boundary=")[2]
        assert call.request.content.startswith(f"--{boundary}\r\n".encode())
        assert call.request.content.endswith(f"\r\n--{boundary}--\r\n".encode())
        boundaries.add(boundary)
    assert len(boundaries) == 2, "a boundary known in advance could be forged inside a file"


async def test_a_base_url_with_a_path_and_a_trailing_slash_keeps_its_path(
    tmp_path: Path, host: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    route = host.post(f"/BOX{UPLOAD_PATH}").respond(200, json={"file_url": "https://cdn.test/abc.png"})
    file = checked(tmp_path, "cat.png", media.png())
    assert await upload(http, f"{HOST}/BOX/", TOKEN, file) == "https://cdn.test/abc.png"
    assert route.call_count == 1


@pytest.mark.parametrize(
    "answer",
    [{"file_url": "ftp://cdn.test/abc.png"}, {"success": True}, ["https://cdn.test/abc.png"]],
)
async def test_an_answer_without_an_http_url_is_an_error(
    tmp_path: Path, host: respx.MockRouter, http: httpx.AsyncClient, answer: object
) -> None:
    host.post(UPLOAD_PATH).respond(200, json=answer)
    with pytest.raises(UploadError, match=r"without an http\(s\) file URL|failed \(HTTP 200\)") as raised:
        await upload(http, HOST, TOKEN, checked(tmp_path, "cat.png", media.png()))
    assert raised.value.status == 200


async def test_an_answer_without_a_url_keeps_the_hosts_trace_id(
    tmp_path: Path, host: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    host.post(UPLOAD_PATH).respond(200, text='{"success": true, "trace_id": "t-42"}')
    with pytest.raises(UploadError) as raised:
        await upload(http, HOST, TOKEN, checked(tmp_path, "cat.png", media.png()))
    assert str(raised.value) == (
        "The file hosting answered the upload of cat.png without an http(s) file URL: "
        f'{{"success": true, "trace_id": "t-42"}}\ntrace_id: t-42\n{NO_TASK}'
    )
    assert (raised.value.status, raised.value.trace_id) == (200, "t-42")


@pytest.mark.parametrize(
    ("status", "answer", "said"),
    [
        (404, '{"detail": "Not found."}', "Not found."),
        (413, '{"message": "File too large.", "trace_id": 42}', "File too large."),  # not a trace id
        (400, '{"error": "bad request"}', "bad request"),
        (422, '{"detail": [{"msg": "field required"}]}', '{"detail": [{"msg": "field required"}]}'),
        (502, "<html><body><h1>502 Bad Gateway</h1></body></html>", "502 Bad Gateway"),
        (
            503,
            "<p>Service\n\n  unavailable</p> " + "retry " * 60,
            ("Service unavailable " + "retry " * 60)[:300],
        ),
        (500, "", "no message"),
    ],
)
async def test_an_error_quotes_the_hosts_words(
    tmp_path: Path, host: respx.MockRouter, http: httpx.AsyncClient, status: int, answer: str, said: str
) -> None:
    host.post(UPLOAD_PATH).respond(status, text=answer)
    with pytest.raises(UploadError) as raised:
        await upload(http, HOST, TOKEN, checked(tmp_path, "cat.png", media.png()))
    assert str(raised.value) == f"Uploading cat.png failed (HTTP {status}): {said}\n{NO_TASK}"
    assert (raised.value.status, raised.value.trace_id) == (status, None)


async def test_a_connection_that_could_not_be_made_is_tried_once_more(
    tmp_path: Path, host: respx.MockRouter, http: httpx.AsyncClient, kling_log: pytest.LogCaptureFixture
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
    assert "Could not connect to upload cat.png; trying once more." in logged(kling_log)


@pytest.mark.usefixtures("no_retry_delay")
@pytest.mark.parametrize(
    ("failure", "described"),
    [(httpx.ConnectError("refused"), "ConnectError: refused"), (httpx.ConnectTimeout(""), "ConnectTimeout")],
)
async def test_an_unreachable_host_is_named_with_the_failure(
    tmp_path: Path, host: respx.MockRouter, http: httpx.AsyncClient, failure: Exception, described: str
) -> None:
    host.post(UPLOAD_PATH).mock(side_effect=failure)
    with pytest.raises(UploadError) as raised:
        await upload(http, HOST, TOKEN, checked(tmp_path, "cat.png", media.png()))
    assert str(raised.value) == (
        f"Could not reach the file hosting at {HOST}{UPLOAD_PATH} to upload cat.png ({described}); "
        f"nothing was sent.\n{NO_TASK}"
    )


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
    route = host.post(UPLOAD_PATH).mock(side_effect=httpx.ReadError(""))
    content = media.png() + bytes(MB // 2 - len(media.png()))
    with pytest.raises(UploadError) as raised:
        await upload(http, HOST, TOKEN, checked(tmp_path, "cat.png", content))
    assert str(raised.value) == (
        "All 0.5 MB of cat.png were sent, but the connection was cut off before the host answered "
        f"(ReadError): it may have stored the file. Uploads are free: calling again is safe.\n{NO_TASK}"
    )
    assert route.call_count == 1


class BreaksAfterTheFirstMegabyte(httpx.AsyncBaseTransport):
    """A connection that breaks while it sends the file's second megabyte."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        parts = aiter(request.stream)
        await anext(parts)  # the part's head
        await anext(parts)  # the first megabyte
        await anext(parts)  # the second, handed over but not yet sent
        raise httpx.WriteError("connection reset")


async def test_an_upload_cut_off_midway_says_how_much_was_sent(
    tmp_path: Path, kling_log: pytest.LogCaptureFixture
) -> None:
    content = media.mp4() + bytes(3 * MB - len(media.mp4()))
    file = checked(tmp_path, "clip.mp4", content, "video")
    async with httpx.AsyncClient(transport=BreaksAfterTheFirstMegabyte()) as http:
        with pytest.raises(UploadError) as raised:
            await upload(http, HOST, TOKEN, file)
    assert str(raised.value) == (
        "The upload of clip.mp4 was cut off after 1.0 of 3.0 MB had been sent (WriteError: connection "
        "reset): the host did not get the whole file and gave no URL for it. Uploads are free: calling "
        f"again sends it anew.\n{NO_TASK}"
    )
    assert f"Uploading clip.mp4 (3.0 MB) to {HOST}{UPLOAD_PATH}" in logged(kling_log)


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


async def test_a_token_echoed_by_the_host_is_redacted(
    tmp_path: Path, host: respx.MockRouter, http: httpx.AsyncClient, kling_log: pytest.LogCaptureFixture
) -> None:
    answer = json.dumps({"error": {"message": f"bad header: Bearer {TOKEN}", "echo": "x" * 600}})
    host.post(UPLOAD_PATH).respond(400, text=answer)
    with pytest.raises(UploadError) as raised:
        await upload(http, HOST, TOKEN, checked(tmp_path, "cat.png", media.png()))
    assert "bad header: Bearer ***" in str(raised.value)
    shown = answer[:500].replace(TOKEN, "***")  # the log keeps the answer's first 500 characters
    assert f"upload of cat.png -> 400 {shown}" in logged(kling_log)
    assert TOKEN not in kling_log.text
