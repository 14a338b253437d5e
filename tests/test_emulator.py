"""The Kling API emulator over real loopback HTTP, as the wire contract describes the API."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.memory import MemoryObjectReceiveStream

from kling_mcp.emulator import Emulator, Fault, serve_emulator

pytestmark = pytest.mark.anyio

TOKEN = "emulator-token"
TASK_SECONDS = 0.2
TEXT2VIDEO = {"action": "text2video", "prompt": "a red fox in the snow", "async": True}


@pytest.fixture
def emu() -> Emulator:
    return Emulator(token=TOKEN, task_seconds=TASK_SECONDS, fail_marker="[fail]")


@pytest.fixture
async def api(emu: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serve_emulator(emu) as base_url,
        httpx.AsyncClient(base_url=base_url, headers={"authorization": f"Bearer {TOKEN}"}) as client,
    ):
        yield client


async def submit(api: httpx.AsyncClient, body: dict[str, Any], path: str = "/kling/videos") -> str:
    response = await api.post(path, json=body)
    assert response.status_code == 200, response.text
    task_id: str = response.json()["task_id"]
    return task_id


async def retrieve(api: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    response = await api.post("/kling/tasks", json={"action": "retrieve", "id": task_id})
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


async def wait_until_done(api: httpx.AsyncClient, task_id: str) -> list[dict[str, Any]]:
    """Every task object seen while polling, the finished one last."""
    seen = [await retrieve(api, task_id)]
    while "finished_at" not in seen[-1]:
        await anyio.sleep(0.02)
        seen.append(await retrieve(api, task_id))
    return seen


def assert_error(response: httpx.Response, status: int, code: str | None) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"].get("code") == code
    assert body["trace_id"]
    message: str = body["error"]["message"]
    return message


async def test_serve_emulator_sets_base_url_and_keeps_stdout_clean(
    emu: Emulator, api: httpx.AsyncClient, capfd: pytest.CaptureFixture[str]
) -> None:
    assert emu.base_url == str(api.base_url).rstrip("/")
    assert emu.base_url.startswith("http://127.0.0.1:")
    async with httpx.AsyncClient() as anonymous:
        assert (await anonymous.get(f"{emu.base_url}/health")).json() == {"ok": True}
    assert_error(await api.post("/kling/nothing", json={}), 404, "not_found")
    assert_error(await api.get("/kling/videos"), 405, "method_not_allowed")
    assert capfd.readouterr().out == ""


async def test_auth_errors(api: httpx.AsyncClient) -> None:
    no_header = await api.post("/kling/videos", json=TEXT2VIDEO, headers={"authorization": ""})
    assert_error(no_header, 401, "no_token")
    wrong = await api.post("/kling/tasks", json={"id": "x"}, headers={"authorization": "Bearer nope"})
    assert_error(wrong, 401, "invalid_token")
    not_bearer = await api.post("/kling/videos", json=TEXT2VIDEO, headers={"authorization": TOKEN})
    assert_error(not_bearer, 401, "invalid_token")


async def test_any_token_passes_when_none_is_set() -> None:
    emu = Emulator(token=None, task_seconds=0)
    async with serve_emulator(emu) as base_url, httpx.AsyncClient(base_url=base_url) as api:
        any_token = await api.post("/kling/videos", json=TEXT2VIDEO, headers={"authorization": "Bearer x"})
        assert any_token.is_success
        assert_error(await api.post("/kling/videos", json=TEXT2VIDEO), 401, "no_token")


async def test_text2video_async_then_retrieve_until_succeed_then_download(
    emu: Emulator, api: httpx.AsyncClient
) -> None:
    accepted = (await api.post("/kling/videos", json=TEXT2VIDEO)).json()
    assert accepted.keys() == {"success", "task_id", "trace_id"}
    assert accepted["success"] is True
    task_id = accepted["task_id"]
    assert_error(await api.get(f"/media/{task_id}.mp4"), 404, "not_found")  # no video yet

    task = emu.tasks[task_id]
    scheduled = task.created_at, task.finishes_at
    responses = []
    for share in (0.1, 0.5, 0.9):  # a run of an hour, a tenth, half and nine tenths through
        task.created_at = time.time() - share * 3600
        task.finishes_at = task.created_at + 3600
        responses.append((await retrieve(api, task_id)).get("response", "missing"))
    assert responses == ["missing", {}, {"state": "processing", "task_id": task_id}]
    task.created_at, task.finishes_at = scheduled

    done = (await wait_until_done(api, task_id))[-1]
    assert (done["id"], done["request"]) == (task_id, TEXT2VIDEO)
    assert done["elapsed"] == pytest.approx(TASK_SECONDS, abs=0.01)
    assert done["finished_at"] == pytest.approx(done["created_at"] + TASK_SECONDS)
    result = done["response"]
    assert result == {
        "success": True,
        "task_id": task_id,
        "video_id": result["video_id"],
        "video_url": f"{emu.base_url}/media/{task_id}.mp4",
        "duration": "5.066",
        "state": "succeed",
        "trace_id": accepted["trace_id"],
    }
    assert (task.request, task.final_state) == (TEXT2VIDEO, "succeed")
    assert task.finishes_at == pytest.approx(task.created_at + TASK_SECONDS)

    async with httpx.AsyncClient() as cdn:  # signed CDN links need no token
        video = await cdn.get(result["video_url"])
    assert video.status_code == 200
    assert video.headers["content-type"] == "video/mp4"
    assert video.content[4:8] == b"ftyp"
    assert len(video.content) < 30_000


async def test_retrieve_batch_leaves_out_unknown_ids(emu: Emulator, api: httpx.AsyncClient) -> None:
    first = await submit(api, TEXT2VIDEO)
    second = await submit(api, {**TEXT2VIDEO, "prompt": "a blue whale"})

    response = await api.post(
        "/kling/tasks", json={"action": "retrieve_batch", "ids": [first, "nope", second]}
    )

    body = response.json()
    assert body["count"] == 2
    assert [task["id"] for task in body["items"]] == [first, second]
    assert body["trace_id"]
    assert emu.queried_ids == [[first, "nope", second]]
    assert emu.submissions == [TEXT2VIDEO, {**TEXT2VIDEO, "prompt": "a blue whale"}]


async def test_task_query_errors(emu: Emulator, api: httpx.AsyncClient) -> None:
    unknown = await api.post("/kling/tasks", json={"action": "retrieve", "id": "no-such-task"})
    assert "no-such-task" in assert_error(unknown, 404, "not_found")
    no_id = await api.post("/kling/tasks", json={"action": "retrieve"})
    assert "id" in assert_error(no_id, 400, "bad_request")
    no_ids = await api.post("/kling/tasks", json={"action": "retrieve_batch"})
    assert "ids" in assert_error(no_ids, 400, "bad_request")
    bad_action = await api.post("/kling/tasks", json={"action": "list", "id": "x"})
    assert "action" in assert_error(bad_action, 400, "bad_request")
    not_json = await api.post("/kling/tasks", content=b"{oops")
    assert "JSON" in assert_error(not_json, 400, "bad_request")
    assert emu.queried_ids == [["no-such-task"]]


INVALID_GENERATIONS: list[tuple[str, dict[str, Any], str]] = [
    ("/kling/videos", {"action": "text2video"}, "prompt"),
    ("/kling/videos", {"action": "image2video", "prompt": "p"}, "start_image_url"),
    ("/kling/videos", {"action": "extend", "prompt": "p"}, "video_id"),
    ("/kling/videos", {"action": "remix", "prompt": "p"}, "action"),
    ("/kling/videos", {"prompt": "p"}, "action"),
    ("/kling/videos", {"action": "text2video", "prompt": "p", "duration": "ten"}, "duration"),
    ("/kling/videos", {"action": "text2video", "prompt": "p", "callback_url": "ftp://x"}, "callback_url"),
    (
        "/kling/motion",
        {"image_url": "http://i", "video_url": "http://v", "mode": "std"},
        "character_orientation",
    ),
    (
        "/kling/motion",
        {"video_url": "http://v", "mode": "std", "character_orientation": "image"},
        "image_url",
    ),
    ("/kling/lip-sync", {"mode": "audio2video", "audio_url": "http://a"}, "video_url or video_id"),
    ("/kling/lip-sync", {"mode": "audio2video", "video_id": "v"}, "audio_url or audio_file"),
    ("/kling/lip-sync", {"mode": "text2video", "video_id": "v", "text": "hi"}, "voice_id"),
    ("/kling/lip-sync", {"video_id": "v", "text": "hi", "voice_id": "x"}, "mode"),
    ("/kling/talking-photo", {"image_url": "http://i"}, "audio_url"),
]


async def test_invalid_generations_are_bad_requests_naming_the_field(
    emu: Emulator, api: httpx.AsyncClient
) -> None:
    for path, body, named in INVALID_GENERATIONS:
        message = assert_error(await api.post(path, json={**body, "async": True}), 400, "bad_request")
        assert named in message, (path, body)
    assert emu.tasks == {}
    assert len(emu.submissions) == len(INVALID_GENERATIONS)


async def test_every_generation_endpoint_accepts_a_valid_request(
    emu: Emulator, api: httpx.AsyncClient
) -> None:
    bodies = {
        "/kling/videos": {"action": "image2video", "prompt": "p", "start_image_url": "http://i"},
        "/kling/motion": {
            "image_url": "http://i",
            "video_url": "http://v",
            "mode": "pro",
            "character_orientation": "video",
        },
        "/kling/lip-sync": {"mode": "audio2video", "video_id": "v", "audio_file": "UklGRg=="},
        "/kling/talking-photo": {"image_url": "http://i", "audio_url": "http://a"},
    }
    for path, body in bodies.items():
        await submit(api, {**body, "async": True}, path)
    assert len(emu.tasks) == 4
    assert emu.submissions == [{**body, "async": True} for body in bodies.values()]


async def test_sync_mode_holds_the_call_until_the_video_is_done(api: httpx.AsyncClient) -> None:
    started = time.monotonic()
    response = await api.post("/kling/videos", json={"action": "text2video", "prompt": "p", "duration": 10})
    assert time.monotonic() - started >= TASK_SECONDS * 0.9
    result = response.json()
    assert (result["state"], result["duration"]) == ("succeed", "10.033")
    assert result["video_url"].endswith(f"/media/{result['task_id']}.mp4")

    photo = {"image_url": "http://i", "audio_url": "http://a", "prompt": "[fail]"}
    failed = (await api.post("/kling/talking-photo", json=photo)).json()
    assert (failed["success"], failed["state"], failed["error"]["code"]) == (False, "failed", "task_failed")


async def test_scripted_failures(emu: Emulator, api: httpx.AsyncClient) -> None:
    failing = await submit(api, {**TEXT2VIDEO, "prompt": "a fox [fail]"})
    blocked = await submit(api, {**TEXT2VIDEO, "prompt": "[moderation] a fox"})
    lip_sync = {"mode": "text2video", "video_id": "v", "text": "say [fail]", "voice_id": "x", "async": True}
    failing_text = await submit(api, lip_sync, "/kling/lip-sync")

    expected = {
        failing: ("task_failed", "could not be generated"),
        blocked: ("moderation_blocked", "content policy"),
        failing_text: ("task_failed", "could not be generated"),
    }
    for task_id, (code, words) in expected.items():
        result = (await wait_until_done(api, task_id))[-1]["response"]
        assert (result["success"], result["state"], result["error"]["code"]) == (False, "failed", code)
        assert words in result["error"]["message"]
        assert emu.tasks[task_id].final_state == "failed"
        assert_error(await api.get(f"/media/{task_id}.mp4"), 404, "not_found")


async def test_callback_url_receives_the_final_result(api: httpx.AsyncClient) -> None:
    async with callback_sink() as (url, received):
        task_id = await submit(api, {"action": "text2video", "prompt": "p", "callback_url": url})
        with anyio.fail_after(3):
            result = await received.receive()
    assert (result["task_id"], result["state"]) == (task_id, "succeed")


async def test_status_faults(emu: Emulator, api: httpx.AsyncClient) -> None:
    emu.inject("/kling/videos", Fault.status(429, error_code="too_many_requests", retry_after=2), times=2)
    emu.inject("/kling/tasks", Fault.status(403, message="blocked"))

    for _ in range(2):
        limited = await api.post("/kling/videos", json=TEXT2VIDEO)
        assert_error(limited, 429, "too_many_requests")
        assert limited.headers["retry-after"] == "2"
    assert (await api.post("/kling/videos", json=TEXT2VIDEO)).is_success
    assert assert_error(await api.post("/kling/tasks", json={}), 403, None) == "blocked"

    assert emu.counts["/kling/videos"] == 3  # faulted requests count too
    assert len(emu.submissions) == 1  # but never reached the API
    assert emu.counts["/kling/tasks"] == 1


async def test_drop_fault_closes_the_connection_without_a_response(
    emu: Emulator, api: httpx.AsyncClient, capfd: pytest.CaptureFixture[str]
) -> None:
    emu.inject("/kling/videos", Fault.drop())

    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await api.post("/kling/videos", json=TEXT2VIDEO)
    assert (await api.post("/kling/videos", json=TEXT2VIDEO)).is_success

    assert emu.counts["/kling/videos"] == 2
    assert len(emu.submissions) == len(emu.tasks) == 1
    assert "Internal Server Error" not in capfd.readouterr().err


async def test_delay_fault_answers_normally_after_waiting(emu: Emulator, api: httpx.AsyncClient) -> None:
    emu.inject("/kling/tasks", Fault.delay(0.2))
    task_id = await submit(api, TEXT2VIDEO)
    started = time.monotonic()
    assert (await retrieve(api, task_id))["id"] == task_id
    assert time.monotonic() - started >= 0.2
    assert emu.queried_ids == [[task_id]]


async def test_a_delayed_answer_whose_client_left_is_dropped_so_stopping_waits_for_nothing(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    emu.inject("/kling/videos", Fault.delay(30))
    authorized = {"authorization": f"Bearer {TOKEN}"}
    async with (
        serve_emulator(emu) as url,
        httpx.AsyncClient(base_url=url, headers=authorized, timeout=0.2) as api,
    ):
        with pytest.raises(httpx.ReadTimeout):
            await api.post("/kling/videos", json=TEXT2VIDEO)

    assert len(emu.submissions) == 1  # the slow API started the task all the same
    assert [record.message for record in caplog.records if record.levelname == "ERROR"] == []


async def test_html_and_not_json_faults(emu: Emulator, api: httpx.AsyncClient) -> None:
    emu.inject("/kling/tasks", Fault.html())
    emu.inject("/kling/tasks", Fault.not_json())

    gateway = await api.post("/kling/tasks", json={"action": "retrieve", "id": "x"})
    assert gateway.status_code == 502
    assert gateway.headers["content-type"].startswith("text/html")
    assert "<html>" in gateway.text
    garbled = await api.post("/kling/tasks", json={"action": "retrieve", "id": "x"})
    assert garbled.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        garbled.json()
    assert emu.queried_ids == []


async def test_faults_can_be_planned_over_http(api: httpx.AsyncClient) -> None:
    order = {"path": "/kling/motion", "kind": "status", "status": 503, "times": 2}
    planned = await api.post("/_emulator/faults", json=order)
    assert planned.json() == {"ok": True, "pending_faults": {"/kling/motion": 2}}
    assert_error(await api.post("/kling/motion", json={}), 503, None)
    no_status = await api.post("/_emulator/faults", json={"path": "/x", "kind": "status"})
    assert "status" in assert_error(no_status, 400, "bad_request")

    stats = (await api.get("/_emulator/stats")).json()

    assert stats["counts"]["/kling/motion"] == 1
    assert stats["pending_faults"] == {"/kling/motion": 1}


async def finished_video_url(api: httpx.AsyncClient) -> str:
    task_id = await submit(api, TEXT2VIDEO)
    url: str = (await wait_until_done(api, task_id))[-1]["response"]["video_url"]
    return url


async def test_media_honours_range_requests_like_a_cdn(emu: Emulator, api: httpx.AsyncClient) -> None:
    url = await finished_video_url(api)
    video, size = emu.video, len(emu.video)
    async with httpx.AsyncClient() as cdn:
        whole = await cdn.get(url)
        assert (whole.status_code, whole.content) == (200, video)
        assert (whole.headers["accept-ranges"], whole.headers["content-length"]) == ("bytes", str(size))

        ranges = {"bytes=0-99": (0, 100), "bytes=2000-": (2000, size), "bytes=-31": (size - 31, size)}
        for header, (start, end) in ranges.items():
            part = await cdn.get(url, headers={"range": header})
            assert part.status_code == 206, header
            assert part.headers["content-range"] == f"bytes {start}-{end - 1}/{size}"
            assert part.headers["content-length"] == str(end - start)
            assert part.content == video[start:end]

        past_the_end = await cdn.get(url, headers={"range": f"bytes={size}-"})
        assert (past_the_end.status_code, past_the_end.headers["content-range"]) == (416, f"bytes */{size}")
        backwards = await cdn.get(url, headers={"range": "bytes=9-3"})  # invalid: ignored, as RFC 9110 allows
        assert (backwards.status_code, backwards.content) == (200, video)
    assert emu.media_ranges == [None, *ranges, f"bytes={size}-", "bytes=9-3"]


def mp4_boxes(data: bytes) -> list[str]:
    """The top-level MP4 boxes that make up `data`, which must cover it exactly."""
    boxes, offset = [], 0
    while offset < len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        assert size >= 8, f"bad box size {size} at {offset}"
        boxes.append(data[offset + 4 : offset + 8].decode("ascii"))
        offset += size
    assert offset == len(data)
    return boxes


async def test_video_bytes_pads_the_sample_into_a_larger_valid_mp4() -> None:
    emu = Emulator(token=None, task_seconds=0, video_bytes=100_000)
    async with serve_emulator(emu) as base_url, httpx.AsyncClient(base_url=base_url) as api:
        api.headers["authorization"] = "Bearer any"
        video = (await api.get(await finished_video_url(api))).content
    assert len(video) == 100_000
    assert mp4_boxes(video) == ["ftyp", "moov", "free", "mdat", "free"]
    with pytest.raises(ValueError, match="video_bytes must be between 2239 and 4 GiB"):
        Emulator(video_bytes=2238)


async def test_signed_links_are_fresh_per_query_and_expire_like_a_cdns() -> None:
    emu = Emulator(token=TOKEN, task_seconds=0, link_seconds=0.3)
    async with (
        serve_emulator(emu) as base_url,
        httpx.AsyncClient(base_url=base_url, headers={"authorization": f"Bearer {TOKEN}"}) as api,
        httpx.AsyncClient() as cdn,
    ):
        task_id = await submit(api, TEXT2VIDEO)
        first, second = [(await retrieve(api, task_id))["response"]["video_url"] for _ in range(2)]
        assert first != second
        assert first.startswith(f"{base_url}/media/{task_id}.mp4?expires=")
        assert "&sig=" in first
        assert (await cdn.get(first)).content == emu.video

        altered = await cdn.get(first.replace("sig=", "sig=0"))
        unsigned = await cdn.get(first.partition("?")[0])
        await anyio.sleep(0.4)
        expired = await cdn.get(second)

    for refused in (altered, unsigned, expired):
        assert refused.status_code == 403
        assert refused.headers["content-type"].startswith("application/xml")
        assert "<Code>AccessDenied</Code>" in refused.text
        assert "expired" in refused.text
    assert "<Message>Request has expired.</Message>" in expired.text


async def read_into(received: bytearray, client: httpx.AsyncClient, url: str) -> None:
    async with client.stream("GET", url) as response:
        async for chunk in response.aiter_raw():
            received += chunk


async def test_cut_fault_closes_the_connection_mid_body(
    emu: Emulator, api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    url = await finished_video_url(api)
    order = {"path": "/media", "kind": "cut", "after_bytes": 1000}
    assert (await api.post("/_emulator/faults", json=order)).json()["pending_faults"] == {"/media": 1}
    received = bytearray()

    async with httpx.AsyncClient() as cdn:
        with pytest.raises(
            httpx.RemoteProtocolError, match=f"received 1000 bytes, expected {len(emu.video)}"
        ):
            await read_into(received, cdn, url)
        assert (await cdn.get(url)).content == emu.video  # the fault answered once

    assert bytes(received) == emu.video[:1000]
    assert emu.counts[url.removeprefix(str(emu.base_url))] == 2
    assert [record.message for record in caplog.records if record.levelname == "ERROR"] == []


@asynccontextmanager
async def callback_sink() -> AsyncIterator[tuple[str, MemoryObjectReceiveStream[dict[str, Any]]]]:
    """A bare HTTP listener that passes on the JSON bodies POSTed to it."""
    sender, receiver = anyio.create_memory_object_stream[dict[str, Any]](10)

    async def handle(stream: SocketStream) -> None:
        async with stream:
            data = b""
            while b"\r\n\r\n" not in data:
                data += await stream.receive()
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                int(line.partition(b":")[2])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(body) < length:
                body += await stream.receive()
            await sender.send(json.loads(body))
            await stream.send(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, sender, receiver, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, handle)
        yield f"http://127.0.0.1:{listener.extra(SocketAttribute.local_port)}/done", receiver
        task_group.cancel_scope.cancel()
