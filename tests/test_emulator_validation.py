"""The emulated API refuses what the real one would: over-long or blank prompts, bad links, bad ids.

Each refusal is a 400 `bad_request` naming the field, and starts no task.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from kling_mcp.emulator import Emulator

pytestmark = pytest.mark.anyio

TOKEN = "emulator-token"
TEXT2VIDEO = {"action": "text2video", "prompt": "a red fox in the snow", "async": True}
IMAGE2VIDEO = {**TEXT2VIDEO, "action": "image2video", "start_image_url": "https://cdn.example.com/fox.png"}
MOTION = {
    "image_url": "https://cdn.example.com/dancer.png",
    "video_url": "https://cdn.example.com/moves.mp4",
    "mode": "std",
    "character_orientation": "image",
    "async": True,
}
LIP_SYNC = {
    "mode": "text2video",
    "video_id": "video-1",
    "text": "hello",
    "voice_id": "voice-1",
    "async": True,
}
DROP_TABLE = "'; DROP TABLE tasks; --"


@pytest.fixture
def emu() -> Emulator:
    return Emulator(token=TOKEN, task_seconds=0.1)


@pytest.fixture
async def api(emu: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=emu.app)
    headers = {"authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator", headers=headers) as client:
        yield client


def bad_request_message(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"]["code"] == "bad_request"
    message: str = body["error"]["message"]
    return message


REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("/kling/videos", {**TEXT2VIDEO, "prompt": "   \n"}, "prompt must be non-blank text"),
    (
        "/kling/videos",
        {**TEXT2VIDEO, "prompt": "x" * 2501},
        "prompt must be at most 2500 characters (got 2501)",
    ),
    ("/kling/videos", {**TEXT2VIDEO, "prompt": "x" * 2_000_000}, "prompt must be at most 2500 characters"),
    ("/kling/videos", {**TEXT2VIDEO, "prompt": 42}, "prompt must be non-blank text"),
    ("/kling/videos", {**TEXT2VIDEO, "negative_prompt": ""}, "negative_prompt must be non-blank text"),
    ("/kling/videos", {**TEXT2VIDEO, "negative_prompt": "y" * 2501}, "negative_prompt must be at most 2500"),
    (
        "/kling/videos",
        {**IMAGE2VIDEO, "start_image_url": "https://"},
        "start_image_url must be an http(s) URL",
    ),
    ("/kling/videos", {**IMAGE2VIDEO, "end_image_url": "http:///x"}, "end_image_url must be an http(s) URL"),
    (
        "/kling/videos",
        {**IMAGE2VIDEO, "end_image_url": "https://cdn/../x"},
        "end_image_url must not contain '..'",
    ),
    (
        "/kling/videos",
        {**IMAGE2VIDEO, "start_image_url": "https://@"},
        "start_image_url must be an http(s) URL",
    ),
    (
        "/kling/videos",
        {**IMAGE2VIDEO, "start_image_url": "https://cdn.example.com/" + "a" * 2048},
        "start_image_url must be an http(s) URL",
    ),
    (
        "/kling/videos",
        {**TEXT2VIDEO, "callback_url": "https://hooks.example.com/\x00"},
        "callback_url must not",
    ),
    (
        "/kling/videos",
        {**TEXT2VIDEO, "callback_url": "javascript:alert(1)"},
        "callback_url must be an http(s)",
    ),
    (
        "/kling/videos",
        {**TEXT2VIDEO, "image_list": [{"image_url": "ftp://x/a.png"}]},
        "image_list[0].image_url",
    ),
    (
        "/kling/videos",
        {**TEXT2VIDEO, "video_list": [{"video_url": "https://a b/c.mp4"}]},
        "video_list[0].video_url",
    ),
    (
        "/kling/videos",
        {**TEXT2VIDEO, "image_list": "https://cdn.example.com/a.png"},
        "image_list must be a list",
    ),
    (
        "/kling/videos",
        {**TEXT2VIDEO, "image_list": ["https://cdn.example.com/a.png"]},
        "image_list[0] must be an",
    ),
    (
        "/kling/videos",
        {**TEXT2VIDEO, "element_list": [{"element_id": DROP_TABLE}]},
        "element_list[0].element_id",
    ),
    ("/kling/videos", {**TEXT2VIDEO, "action": "extend", "video_id": DROP_TABLE}, "video_id must be 1-128"),
    ("/kling/videos", {**TEXT2VIDEO, "action": "extend", "video_id": "v" * 129}, "video_id must be 1-128"),
    (
        "/kling/motion",
        {**MOTION, "image_url": "https://cdn.example.com/a b.png"},
        "image_url must not contain",
    ),
    (
        "/kling/motion",
        {**MOTION, "video_url": "file:///home/me/moves.mp4"},
        "video_url must be an http(s) URL",
    ),
    ("/kling/motion", {**MOTION, "prompt": "z" * 2501}, "prompt must be at most 2500"),
    ("/kling/lip-sync", {**LIP_SYNC, "voice_id": "voice 1"}, "voice_id must be 1-128"),
    ("/kling/lip-sync", {**LIP_SYNC, "video_id": DROP_TABLE}, "video_id must be 1-128"),
    (
        "/kling/talking-photo",
        {
            "image_url": "https://cdn.example.com/p.jpg",
            "audio_url": "data:audio/mp3;base64,AAAA",
            "async": True,
        },
        "audio_url must be an http(s) URL",
    ),
]


@pytest.mark.parametrize(("path", "body", "named"), REFUSED)
async def test_invalid_fields_are_bad_requests_naming_the_field(
    emu: Emulator, api: httpx.AsyncClient, path: str, body: dict[str, Any], named: str
) -> None:
    message = bad_request_message(await api.post(path, json=body))
    assert named in message
    assert len(message) < 300
    assert emu.tasks == {}


async def test_an_echoed_value_is_cut_short(api: httpx.AsyncClient) -> None:
    huge_id = "9" * 100_000
    message = bad_request_message(
        await api.post("/kling/videos", json={**TEXT2VIDEO, "action": "extend", "video_id": huge_id})
    )
    assert message.startswith("video_id must be 1-128 letters, digits, '-', '_' or '.' (got '999")
    assert "9" * 100 not in message


async def test_unencodable_text_is_refused_not_crashed_on(api: httpx.AsyncClient) -> None:
    body = b'{"action": "image2video", "prompt": "p", "start_image_url": "https://x.com/\\ud800.png"}'
    message = bad_request_message(await api.post("/kling/videos", content=body))
    assert message.startswith("start_image_url must not contain whitespace or control characters")
    assert "\\ud800" in message


ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("/kling/videos", {**TEXT2VIDEO, "prompt": "猫" * 2500, "negative_prompt": "blur,\nlow quality\r\n"}),
    (
        "/kling/videos",
        {
            **IMAGE2VIDEO,
            "start_image_url": "https://d1q70pf5vjeyhc.cloudfront.net/out/fox.png?X-Amz-Credential=AKIA%2F2024"
            "%2Fus-east-1&X-Amz-Signature=deadbeef",
            "end_image_url": "http://[::1]:8080/frames/last..png",
        },
    ),
    ("/kling/videos", {**TEXT2VIDEO, "action": "extend", "video_id": "0b9c3f64-1d2e.v2_final"}),
    ("/kling/videos", {**TEXT2VIDEO, "element_list": [{"element_id": "123456"}], "image_list": []}),
    ("/kling/motion", {**MOTION, "prompt": None}),
    ("/kling/lip-sync", {**LIP_SYNC, "voice_id": "oversea_male1.en"}),
]


@pytest.mark.parametrize(("path", "body"), ACCEPTED)
async def test_valid_look_alikes_are_accepted(
    emu: Emulator, api: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    response = await api.post(path, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["task_id"] in emu.tasks
