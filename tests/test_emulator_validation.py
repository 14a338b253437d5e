"""The emulated API refuses what the real one would: over-long or blank prompts, bad links, bad ids,
malformed Turbo, storyboard, saved-voice and commerce requests, and bodies nested too deep.

Each refusal is a 400 `bad_request` naming the field, and starts no task. What kling-mcp's own
tools send for the newer endpoints is accepted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from kling_mcp.emulator import Emulator
from kling_mcp.server.tools.commerce import GoodsStudioInput, VideoCommerceInput
from kling_mcp.server.tools.common import GenerationRequest
from kling_mcp.server.tools.video import AssetsVideoInput, StoryboardInput, TurboVideoInput

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
TURBO = {**TEXT2VIDEO, "model": "kling-v3-turbo", "generate_audio": True, "mode": "pro", "duration": 8}
STORYBOARD = {
    **TEXT2VIDEO,
    "model": "kling-v3",
    "multi_shot": True,
    "shot_type": "customize",
    "duration": 7,
    "multi_prompt": [
        {"index": 1, "prompt": "a fox wakes up", "duration": 3},
        {"index": 2, "prompt": "it runs into the snow", "duration": 4},
    ],
}
VOICES = {
    **TEXT2VIDEO,
    "model": "kling-v2-6",
    "mode": "pro",
    "generate_audio": True,
    "prompt": "<<<voice_1>>> says hello",
    "voice_list": [{"voice_id": "voice-1"}],
}
GOODS = {
    "contents": [
        {"type": "ref_image", "url": "https://cdn.example.com/mug.png"},
        {"type": "goods_title", "text": "Blue mug"},
        {"type": "goods_selling_point", "text": "Keeps tea hot"},
    ],
    "settings": {"resolution": "1080p", "aspect_ratio": "9:16", "duration": 30},
    "watermark": False,
    "async": True,
}
COMMERCE = {
    "contents": [
        {"type": "avatar_id", "text": "avatar-7"},
        {"type": "speech_script", "text": "This mug keeps your tea hot for hours."},
        {"type": "product_image", "url": "https://cdn.example.com/mug.png"},
    ],
    "settings": {
        "resolution": "720p",
        "aspect_ratio": "16:9",
        "speech_rate": 1.2,
        "voice_id": "oversea_male1",
    },
    "watermark": True,
    "async": True,
}


def shots(*durations: int) -> list[dict[str, Any]]:
    return [{"index": n, "prompt": f"shot {n}", "duration": d} for n, d in enumerate(durations, 1)]


def with_settings(body: dict[str, Any], **settings: Any) -> dict[str, Any]:
    return {**body, "settings": {**body["settings"], **settings}}


def with_contents(body: dict[str, Any], *contents: dict[str, Any]) -> dict[str, Any]:
    return {**body, "contents": list(contents)}


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
    # Turbo
    ("/kling/videos", {**TURBO, "generate_audio": False}, "generate_audio must be true with kling-v3-turbo"),
    ("/kling/videos", {k: v for k, v in TURBO.items() if k != "generate_audio"}, "generate_audio must be"),
    ("/kling/videos", {**TURBO, "cfg_scale": 0.5}, "kling-v3-turbo takes no cfg_scale"),
    (
        "/kling/videos",
        {
            **TURBO,
            "action": "image2video",
            "start_image_url": "https://a.com/1.png",
            "end_image_url": "https://a.com/2.png",
        },
        "kling-v3-turbo takes no end_image_url",
    ),
    ("/kling/videos", {**TURBO, "mode": "4k"}, "mode must be one of std, pro (got '4k')"),
    # Storyboards
    ("/kling/videos", {**STORYBOARD, "multi_shot": "yes"}, "multi_shot must be true or left out"),
    (
        "/kling/videos",
        {**STORYBOARD, "shot_type": "auto"},
        "shot_type must be one of intelligence, customize",
    ),
    (
        "/kling/videos",
        {**STORYBOARD, "shot_type": "intelligence"},
        "multi_prompt is only for shot_type customize",
    ),
    ("/kling/videos", {**STORYBOARD, "multi_prompt": []}, "multi_prompt must be a list of 1-6 shots"),
    ("/kling/videos", {**STORYBOARD, "multi_prompt": shots(1, 1, 1, 1, 1, 1, 1)}, "1-6 shots"),
    (
        "/kling/videos",
        {k: v for k, v in STORYBOARD.items() if k != "multi_prompt"},
        "multi_prompt is required",
    ),
    (
        "/kling/videos",
        {**STORYBOARD, "duration": 10},
        "the shots' durations add up to 7 s, not duration (10 s)",
    ),
    (
        "/kling/videos",
        {**STORYBOARD, "multi_prompt": [{**shots(7)[0], "index": 2}]},
        "multi_prompt[0].index must be 1",
    ),
    (
        "/kling/videos",
        {**STORYBOARD, "multi_prompt": [{**shots(7)[0], "duration": 0}]},
        "multi_prompt[0].duration",
    ),
    (
        "/kling/videos",
        {**STORYBOARD, "multi_prompt": [{**shots(7)[0], "prompt": "p" * 513}]},
        "multi_prompt[0].prompt must be at most 512 characters",
    ),
    (
        "/kling/videos",
        {**STORYBOARD, "multi_prompt": [{**shots(7)[0], "prompt": " "}]},
        "multi_prompt[0].prompt must be non-blank",
    ),
    ("/kling/videos", {**TEXT2VIDEO, "multi_prompt": shots(5)}, "multi_prompt needs multi_shot true"),
    # Saved voices
    ("/kling/videos", {**VOICES, "voice_list": [{"voice_id": DROP_TABLE}]}, "voice_list[0].voice_id must be"),
    ("/kling/videos", {**VOICES, "voice_list": [{"voice_id": "a"}] * 3}, "voice_list must be a list of 1-2"),
    ("/kling/videos", {**VOICES, "voice_list": []}, "voice_list must be a list of 1-2"),
    ("/kling/videos", {**VOICES, "generate_audio": False}, "generate_audio must be true with voice_list"),
    (
        "/kling/videos",
        {**VOICES, "element_list": [{"element_id": "e-1"}]},
        "voice_list and element_list cannot be combined",
    ),
    # Goods studio
    ("/kling/goods-studio", {**GOODS, "contents": []}, "contents is required"),
    ("/kling/goods-studio", {k: v for k, v in GOODS.items() if k != "contents"}, "contents is required"),
    (
        "/kling/goods-studio",
        with_contents(GOODS, {"type": "goods_title", "text": "Blue mug"}),
        "contents needs an item of type ref_image",
    ),
    (
        "/kling/goods-studio",
        with_contents(GOODS, {"type": "ref_image", "url": "https://"}),
        "contents[0].url must be an http(s) URL",
    ),
    (
        "/kling/goods-studio",
        with_contents(GOODS, *GOODS["contents"], {"type": "goods_price", "text": ""}),
        "contents[3].text must be non-blank text",
    ),
    (
        "/kling/goods-studio",
        with_contents(GOODS, *GOODS["contents"], {"type": "coupon", "text": "10% off"}),
        "contents[3] must be an object whose type is one of ref_image, goods_title",
    ),
    (
        "/kling/goods-studio",
        with_contents(GOODS, "https://cdn.example.com/mug.png"),
        "contents[0] must be an object",
    ),
    ("/kling/goods-studio", {**GOODS, "settings": None}, "settings is required"),
    (
        "/kling/goods-studio",
        with_settings(GOODS, duration=20),
        "settings.duration must be one of 15, 30, 60 (got 20)",
    ),
    ("/kling/goods-studio", with_settings(GOODS, aspect_ratio="4:3"), "settings.aspect_ratio must be one of"),
    (
        "/kling/goods-studio",
        {**GOODS, "settings": {"resolution": "720p"}},
        "settings.aspect_ratio must be one of",
    ),
    ("/kling/goods-studio", {**GOODS, "watermark": "no"}, "watermark must be true or false"),
    # Video commerce
    (
        "/kling/video-commerce",
        with_contents(COMMERCE, COMMERCE["contents"][0]),
        "contents needs an item of type speech_script",
    ),
    (
        "/kling/video-commerce",
        with_contents(COMMERCE, {"type": "avatar_id", "text": DROP_TABLE}, COMMERCE["contents"][1]),
        "contents[0].text must be 1-128 letters",
    ),
    (
        "/kling/video-commerce",
        with_contents(
            COMMERCE, {"type": "avatar_image", "url": "https://cdn/../me.png"}, COMMERCE["contents"][1]
        ),
        "contents[0].url must not contain '..'",
    ),
    (
        "/kling/video-commerce",
        with_settings(COMMERCE, speech_rate=1.5),
        "settings.speech_rate must be one of 0.8",
    ),
    (
        "/kling/video-commerce",
        with_settings(COMMERCE, aspect_ratio="1:1"),
        "settings.aspect_ratio must be one of",
    ),
    ("/kling/video-commerce", with_settings(COMMERCE, voice_id="voice 1"), "settings.voice_id must be 1-128"),
    (
        "/kling/video-commerce",
        with_settings(COMMERCE, action_prompt="a" * 2501),
        "settings.action_prompt must be",
    ),
    ("/kling/video-commerce", with_settings(COMMERCE, bgm_enabled=1), "bgm_enabled must be true or false"),
    ("/kling/video-commerce", {**COMMERCE, "settings": []}, "settings is required"),
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
    ("/kling/video-commerce", with_contents(COMMERCE, *COMMERCE["contents"][1:])),  # a voice-over
    ("/kling/videos", {**TEXT2VIDEO, "element_list": [{"element_id": "123456"}], "image_list": []}),
    ("/kling/motion", {**MOTION, "prompt": None}),
    ("/kling/lip-sync", {**LIP_SYNC, "voice_id": "oversea_male1.en"}),
    ("/kling/videos", TURBO),
    ("/kling/videos", {**TURBO, "action": "image2video", "start_image_url": "https://cdn.example.com/a.png"}),
    ("/kling/videos", STORYBOARD),
    ("/kling/videos", {**STORYBOARD, "multi_prompt": shots(*[2] * 5, 5), "duration": "15"}),
    (
        "/kling/videos",
        {**STORYBOARD, "shot_type": "intelligence", "multi_prompt": None},
    ),
    (
        "/kling/videos",
        {k: v for k, v in {**STORYBOARD, "shot_type": "intelligence"}.items() if k != "multi_prompt"},
    ),
    ("/kling/videos", {**VOICES, "voice_list": [{"voice_id": "voice-1"}, {"voice_id": "voice_2.en"}]}),
    ("/kling/goods-studio", GOODS),
    ("/kling/goods-studio", with_settings(GOODS, duration=60, aspect_ratio="1:1", resolution="720p")),
    ("/kling/video-commerce", COMMERCE),
    (
        "/kling/video-commerce",
        {
            **with_contents(
                COMMERCE,
                {"type": "avatar_image", "url": "https://cdn.example.com/me.jpg"},
                COMMERCE["contents"][1],
            ),
            "settings": {
                "resolution": "1080p",
                "aspect_ratio": "9:16",
                "allow_polish": True,
                "bgm_enabled": False,
            },
        },
    ),
]


@pytest.mark.parametrize(("path", "body"), ACCEPTED)
async def test_valid_look_alikes_are_accepted(
    emu: Emulator, api: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    response = await api.post(path, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["task_id"] in emu.tasks


# --- What kling-mcp's tools send is what the emulated API accepts -------------------------------

TOOL_REQUESTS: list[GenerationRequest] = [
    TurboVideoInput(prompt="a fox", start_image_url="https://cdn.example.com/fox.png", mode="pro"),
    StoryboardInput(
        prompt="a fox's day",
        shot_type="customize",
        duration=9,
        multi_prompt=[{"prompt": "wakes", "duration": 4}, {"prompt": "runs", "duration": 5}],
    ),
    StoryboardInput(prompt="a fox's day", model="kling-v3-omni", end_image_url=None),
    AssetsVideoInput(
        prompt="<<<voice_1>>> greets <<<voice_2>>>",
        voice_list=[{"voice_id": "v-1"}, {"voice_id": "v-2"}],
        model="kling-v2-6",
        mode="pro",
        generate_audio=True,
    ),
    AssetsVideoInput(prompt="the hero walks in", element_list=[{"element_id": "123"}]),
    GoodsStudioInput(
        product_images=["https://cdn.example.com/1.png", "https://cdn.example.com/2.png"],
        title="Blue mug",
        description="Stoneware, 350 ml",
        price="$29.99",
        selling_points=["Keeps tea hot", "Dishwasher safe"],
        duration=60,
        callback_url="https://hooks.example.com/kling",
    ),
    VideoCommerceInput(
        speech_script="This mug keeps your tea hot for hours.",
        avatar_image="https://cdn.example.com/me.jpg",
        product_images=["https://cdn.example.com/1.png"],
        voice_id="oversea_male1",
        speech_rate=0.8,
        action_prompt="holds up the mug",
        bgm_enabled=True,
    ),
    VideoCommerceInput(speech_script="Buy it.", avatar_id="avatar-7"),
]


@pytest.mark.parametrize("request_model", TOOL_REQUESTS, ids=lambda request: type(request).__name__)
async def test_the_tools_wire_bodies_are_accepted(
    emu: Emulator, api: httpx.AsyncClient, request_model: GenerationRequest
) -> None:
    body = request_model.to_wire()
    response = await api.post(request_model.endpoint, json=body)

    assert response.status_code == 200, response.text
    assert emu.tasks[response.json()["task_id"]].request == body


async def test_a_commerce_video_reports_the_duration_its_settings_asked_for(
    emu: Emulator, api: httpx.AsyncClient
) -> None:
    task_id = (await api.post("/kling/goods-studio", json=GOODS)).json()["task_id"]
    await anyio.sleep(emu.task_seconds)

    task = (await api.post("/kling/tasks", json={"action": "retrieve", "id": task_id})).json()
    assert task["response"]["state"] == "succeed"
    assert task["response"]["duration"] == "30.033"


# --- Task queries and malformed bodies -------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"action": "retrieve", "id": DROP_TABLE}, "id must be 1-128 letters"),
        ({"action": "retrieve", "id": "9" * 100_000}, "id must be 1-128 letters"),
        ({"action": "retrieve", "id": 42}, "id is required"),
        ({"action": "retrieve_batch", "ids": ["task-1", DROP_TABLE]}, "ids[1] must be 1-128 letters"),
        ({"action": "retrieve_batch", "ids": ["task-1", 7]}, "ids[1] must be 1-128 letters"),
        ({"action": "retrieve_batch", "ids": "task-1"}, "ids is required: a list of task ids"),
    ],
)
async def test_task_queries_check_the_id_format(
    emu: Emulator, api: httpx.AsyncClient, query: dict[str, Any], named: str
) -> None:
    message = bad_request_message(await api.post("/kling/tasks", json=query))

    assert named in message
    assert len(message) < 300
    assert emu.queried_ids == []


async def test_an_unknown_well_formed_id_is_a_short_404(api: httpx.AsyncClient) -> None:
    task_id = "f" * 128
    response = await api.post("/kling/tasks", json={"action": "retrieve", "id": task_id})

    assert response.status_code == 404
    assert response.json()["error"] == {"code": "not_found", "message": f"task {task_id} not found"}


@pytest.mark.parametrize("path", ["/kling/videos", "/kling/goods-studio", "/kling/tasks"])
@pytest.mark.parametrize("depth", [33, 100_000])
async def test_a_body_nested_too_deep_is_a_bad_request_not_a_crash(
    emu: Emulator, api: httpx.AsyncClient, path: str, depth: int
) -> None:
    nested = "[" * depth + "]" * depth
    body = f'{{"action": "text2video", "prompt": "p", "image_list": {nested}}}'
    message = bad_request_message(await api.post(path, content=body))

    assert message == "the request body is nested more than 32 levels deep"
    assert emu.tasks == {}


async def test_brackets_inside_strings_do_not_count_as_nesting(emu: Emulator, api: httpx.AsyncClient) -> None:
    response = await api.post("/kling/videos", json={**TEXT2VIDEO, "prompt": "[[{" * 800 + ' "\\" ]'})

    assert response.status_code == 200, response.text
    assert response.json()["task_id"] in emu.tasks


async def test_the_deepest_body_allowed_is_checked_as_usual(api: httpx.AsyncClient) -> None:
    nested: Any = {"image_url": "ftp://x/a.png"}
    for _ in range(28):  # the body, image_list, its item, 28 lists and the innermost object: 32 levels
        nested = [nested]
    body = {
        **TEXT2VIDEO,
        "image_list": [{"image_url": "https://cdn.example.com/a.png", "image_list": nested}],
    }
    message = bad_request_message(await api.post("/kling/videos", json=body))

    assert message.startswith("image_list[0].image_list[0] must be an object")
