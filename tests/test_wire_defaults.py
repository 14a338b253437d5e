"""What goes on the wire: every value the API gets is one the caller set or one the tool's definition
declares, and every value a caller sets reaches the API or is refused, never dropped.

The minimal call of every tool is written down here with the exact body it sends, checked against
the wire contract (shared/kling-api.md: the endpoints' required fields and value sets) and against
the tool's own schema: a field the caller left out is on the wire only as the schema's declared
default (or as what the tool's description says it fixes), and every declared default is on the wire.
"""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from mcp.types import CallToolResult, TextContent, Tool

from kling_mcp.domain.capabilities import MODELS, AspectRatio, Mode
from tests.conftest import FakeKling

pytestmark = pytest.mark.anyio

PROMPT = "a red fox runs through the snow"
IMAGE = "https://cdn.test/fox.png"
VIDEO = "https://cdn.test/dance.mp4"
AUDIO = "https://cdn.test/speech.mp3"

# --- The wire contract (kling-api.md, "Generation endpoints" and "Newer capabilities") -----------

REQUIRED = {
    ("/kling/videos", "text2video"): {"prompt"},
    ("/kling/videos", "image2video"): {"prompt", "start_image_url"},
    ("/kling/videos", "extend"): {"video_id", "prompt"},
    ("/kling/motion", None): {"image_url", "video_url", "mode", "character_orientation"},
    ("/kling/lip-sync", None): {"mode"},
    ("/kling/talking-photo", None): {"image_url", "audio_url"},
    ("/kling/goods-studio", None): {"contents", "settings"},
    ("/kling/video-commerce", None): {"contents"},
}
VALUES: dict[str, set[Any]] = {
    "model": set(MODELS),
    "aspect_ratio": set(AspectRatio.__args__),
    "character_orientation": {"image", "video"},
    "shot_type": {"intelligence", "customize"},
}
MODES = {"/kling/lip-sync": {"audio2video", "text2video"}, "/kling/motion": {"std", "pro"}}


def check_against_the_contract(path: str, body: dict[str, Any]) -> None:
    action = body.get("action") if path == "/kling/videos" else None
    assert REQUIRED[(path, action)] <= set(body), (path, body)
    assert body["async"] is True  # kling-mcp never holds a call open: a dropped one would lose the task id
    assert body.get("mode", "std") in MODES.get(path, set(Mode.__args__)), body
    for name, allowed in VALUES.items():
        assert body.get(name, next(iter(allowed))) in allowed, (name, body)
    if path == "/kling/lip-sync":
        assert ("video_id" in body) != ("video_url" in body)
        needed = {"audio_url"} if body["mode"] == "audio2video" else {"text", "voice_id"}
        assert needed <= set(body), body
    if path == "/kling/video-commerce":
        kinds = {item["type"] for item in body["contents"]}
        assert "speech_script" in kinds


# --- The minimal call of every tool, and what it sends ---------------------------------------

MINIMAL: dict[str, tuple[dict[str, Any], str, dict[str, Any]]] = {
    "kling_generate_video": (
        {"prompt": PROMPT},
        "/kling/videos",
        {"action": "text2video", "prompt": PROMPT, "model": "kling-v2-master", "mode": "std"}
        | {"aspect_ratio": "16:9", "duration": 5},
    ),
    "kling_generate_video_from_image": (
        {"prompt": PROMPT, "start_image_url": IMAGE},
        "/kling/videos",
        {"action": "image2video", "prompt": PROMPT, "start_image_url": IMAGE, "model": "kling-v2-master"}
        | {"mode": "std", "aspect_ratio": "16:9", "duration": 5},
    ),
    "kling_extend_video": (
        {"prompt": PROMPT, "video_id": "video-made-elsewhere"},
        "/kling/videos",
        # Not made by this server: kling_generate_video's defaults, named in the answer (see below).
        {"action": "extend", "prompt": PROMPT, "video_id": "video-made-elsewhere", "model": "kling-v2-master"}
        | {"mode": "std", "duration": 5},
    ),
    "kling_generate_turbo_video": (
        {"prompt": PROMPT},
        "/kling/videos",
        {"action": "text2video", "prompt": PROMPT, "model": "kling-v3-turbo", "generate_audio": True}
        | {"mode": "std", "duration": 5, "aspect_ratio": "16:9"},
    ),
    "kling_generate_storyboard": (
        {"prompt": PROMPT},
        "/kling/videos",
        {"action": "text2video", "multi_shot": True, "prompt": PROMPT, "shot_type": "intelligence"}
        | {"model": "kling-v3", "mode": "std", "aspect_ratio": "16:9", "duration": 10},
    ),
    "kling_generate_with_assets": (
        {"prompt": PROMPT, "element_list": [{"element_id": "hero-1"}]},
        "/kling/videos",
        {"action": "text2video", "prompt": PROMPT, "element_list": [{"element_id": "hero-1"}]}
        | {"model": "kling-v3", "mode": "std", "aspect_ratio": "16:9", "duration": 5},
    ),
    "kling_generate_motion": (
        {"image_url": IMAGE, "video_url": VIDEO},
        "/kling/motion",
        {"image_url": IMAGE, "video_url": VIDEO, "character_orientation": "image", "mode": "std"},
    ),
    "kling_lip_sync": (
        {"video_id": "video-1", "audio_url": AUDIO},
        "/kling/lip-sync",
        {"mode": "audio2video", "video_id": "video-1", "audio_url": AUDIO},
    ),
    "kling_talking_photo": (
        {"image_url": IMAGE, "audio_url": AUDIO},
        "/kling/talking-photo",
        {"image_url": IMAGE, "audio_url": AUDIO, "model": "kling-v2-1-master", "duration": 5, "mode": "std"},
    ),
    "kling_goods_studio": (
        {"product_images": [IMAGE]},
        "/kling/goods-studio",
        {
            "contents": [{"type": "ref_image", "url": IMAGE}],
            "settings": {"resolution": "1080p", "aspect_ratio": "9:16", "duration": 15},
            "watermark": False,
        },
    ),
    "kling_video_commerce": (
        {"speech_script": "This mug keeps tea hot.", "product_images": [IMAGE]},
        "/kling/video-commerce",
        {
            # A voice-over on the product images: no presenter, which the API accepts.
            "contents": [
                {"type": "speech_script", "text": "This mug keeps tea hot."},
                {"type": "product_image", "url": IMAGE},
            ],
            "settings": {"resolution": "1080p", "aspect_ratio": "9:16", "allow_polish": False}
            | {"bgm_enabled": False, "speech_rate": 1.0},
            "watermark": False,
        },
    ),
}
SET_BY_THE_TOOL = {
    "kling_generate_turbo_video": {"model": "kling-v3-turbo", "generate_audio": "sound always on"},
    "kling_generate_storyboard": {"multi_shot": "several shots"},
    "kling_lip_sync": {"mode": "an audio track (audio_url), or text"},
}
"""Fields a tool sets itself (fixed, or following from what the call gave), and the words of its
description that say so."""
BUILT = {"action", "async", "contents", "settings"}
"""The request's frame: which endpoint action, never synchronous, and the commerce endpoints' shape."""
TEXT_ONLY = {"kling_lip_sync": {"voice_language", "voice_speed"}}
"""Declared defaults of speech from text, which an audio track has no use for (their descriptions
say "With text"; that they are sent with text is checked below)."""
LOCAL = {"timeout", "allow_duplicate", "callback_url"}
"""How long to wait, whether to pay twice, where to call back: the server's, not the request's."""


def sent(kling: FakeKling) -> tuple[str, dict[str, Any]]:
    assert len(kling.submissions) == 1, kling.submissions
    path, body = kling.submissions[0]
    return path, {key: value for key, value in body.items() if key != "async"}


def text(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


async def definition(client: Client, name: str) -> Tool:
    (tool,) = [tool for tool in (await client.list_tools()).tools if tool.name == name]
    return tool


def declared_defaults(tool: Tool) -> dict[str, Any]:
    properties = tool.input_schema["properties"]
    return {name: field["default"] for name, field in properties.items() if "default" in field}


def wire_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The body's fields, with a commerce request's settings taken as fields of their own."""
    return {**body, **body.get("settings", {})}


@pytest.mark.parametrize("tool", MINIMAL)
async def test_the_minimal_call_sends_what_is_written_here(
    client: Client, kling: FakeKling, tool: str
) -> None:
    arguments, path, body = MINIMAL[tool]
    result = await client.call_tool(tool, {**arguments, "timeout": 0})

    assert not result.is_error, text(result)
    assert sent(kling) == (path, body)
    check_against_the_contract(path, kling.submissions[0][1])


@pytest.mark.parametrize("tool", MINIMAL)
async def test_what_the_caller_left_out_is_sent_only_as_declared(
    client: Client, kling: FakeKling, tool: str
) -> None:
    arguments, _, _ = MINIMAL[tool]
    declared = await definition(client, tool)
    defaults = declared_defaults(declared)
    await client.call_tool(tool, {**arguments, "timeout": 0})
    _, body = sent(kling)
    fields = wire_fields(body)

    unset = {name: value for name, value in fields.items() if name not in arguments and name not in BUILT}
    if tool == "kling_extend_video":
        generate_video = declared_defaults(await definition(client, "kling_generate_video"))
        assert unset.pop("video_id", None) is None
        assert unset == {name: generate_video[name] for name in ("model", "mode", "duration")}
        assert "kling_generate_video's defaults" in declared.description
        return
    for name, value in unset.items():
        if name in SET_BY_THE_TOOL.get(tool, {}):
            assert SET_BY_THE_TOOL[tool][name] in declared.description, name
        else:
            assert name in defaults, (name, value)
            assert value == defaults[name], (name, value, defaults[name])
    on_the_wire = set(defaults) - LOCAL - TEXT_ONLY.get(tool, set())
    assert {name: fields.get(name) for name in on_the_wire} == {name: defaults[name] for name in on_the_wire}


# --- A value the caller sets reaches the wire -------------------------------------------------

EVERY_PARAMETER: dict[str, list[dict[str, Any]]] = {
    "kling_generate_video": [
        {
            "prompt": PROMPT,
            "model": "kling-v3",
            "mode": "pro",
            "aspect_ratio": "9:16",
            "duration": 12,
            "generate_audio": True,
            "negative_prompt": "blur",
            "cfg_scale": 0.4,
            "camera_control": {"type": "simple", "config": {"zoom": 0.5}},
            "element_list": [{"element_id": "hero-1"}],
        },
        {
            "prompt": PROMPT,
            "model": "kling-v3-omni",
            "image_list": [{"image_url": IMAGE, "type": "first_frame"}],
            "video_list": [{"video_url": VIDEO, "refer_type": "feature", "keep_original_sound": "yes"}],
        },
    ],
    "kling_generate_video_from_image": [
        {
            "prompt": PROMPT,
            "start_image_url": IMAGE,
            "end_image_url": IMAGE,
            "model": "kling-v2-1-master",
            "mode": "pro",
            "aspect_ratio": "1:1",
            "duration": 10,
            "negative_prompt": "blur",
            "cfg_scale": 0.2,
            "camera_control": {"type": "down_back"},
        },
        {
            "prompt": PROMPT,
            "start_image_url": IMAGE,
            "model": "kling-v3-omni",
            "generate_audio": True,
            "image_list": [{"image_url": IMAGE}],
            "element_list": [{"element_id": "hero-1"}],
        },
        {
            "prompt": PROMPT,
            "start_image_url": IMAGE,
            "model": "kling-v3-omni",
            "video_list": [{"video_url": VIDEO, "refer_type": "feature"}],
        },
    ],
    "kling_extend_video": [
        {
            "prompt": PROMPT,
            "video_id": "video-1",
            "model": "kling-v1-6",
            "mode": "pro",
            "duration": 10,
            "negative_prompt": "blur",
            "cfg_scale": 0.3,
        }
    ],
    "kling_generate_turbo_video": [
        {"prompt": PROMPT, "start_image_url": IMAGE, "mode": "pro", "duration": 8, "aspect_ratio": "9:16"}
    ],
    "kling_generate_storyboard": [
        {
            "prompt": PROMPT,
            "shot_type": "customize",
            "multi_prompt": [
                {"index": 1, "prompt": "wakes", "duration": 4},
                {"prompt": "runs", "duration": 5},
            ],
            "model": "kling-v3-omni",
            "mode": "4k",
            "aspect_ratio": "1:1",
            "duration": 9,
            "generate_audio": True,
            "start_image_url": IMAGE,
            "end_image_url": IMAGE,
        }
    ],
    "kling_generate_with_assets": [
        {
            "prompt": "<<<voice_1>>> says hello",
            "voice_list": [{"voice_id": "voice-1"}],
            "model": "kling-v2-6",
            "mode": "pro",
            "aspect_ratio": "9:16",
            "duration": 10,
            "generate_audio": True,
            "start_image_url": IMAGE,
        },
        {
            "prompt": PROMPT,
            "element_list": [{"element_id": "hero-1"}, {"element_id": "hero-2"}],
            "model": "kling-o1",
        },
    ],
    "kling_generate_motion": [
        {
            "image_url": IMAGE,
            "video_url": VIDEO,
            "character_orientation": "video",
            "mode": "pro",
            "prompt": "on a stage",
            "keep_original_sound": "no",
            "model_name": "motion-1",
        }
    ],
    "kling_lip_sync": [
        {
            "video_url": VIDEO,
            "text": "hello there",
            "voice_id": "oversea_male1",
            "voice_language": "zh",
            "voice_speed": 1.5,
        },
        {"video_id": "video-1", "audio_url": AUDIO},
    ],
    "kling_talking_photo": [
        {
            "image_url": IMAGE,
            "audio_url": AUDIO,
            "prompt": "smiles",
            "model": "kling-v2-6",
            "duration": 10,
            "mode": "pro",
        }
    ],
    "kling_goods_studio": [
        {
            "product_images": [IMAGE, "https://cdn.test/side.png"],
            "title": "Blue mug",
            "description": "Stoneware, 350 ml",
            "price": "$29.99",
            "selling_points": ["Keeps tea hot", "Dishwasher safe"],
            "resolution": "720p",
            "aspect_ratio": "1:1",
            "duration": 30,
            "watermark": True,
        }
    ],
    "kling_video_commerce": [
        {
            "speech_script": "This mug keeps tea hot.",
            "avatar_image": IMAGE,
            "product_images": [IMAGE],
            "voice_id": "oversea_male1",
            "speech_rate": 1.2,
            "action_prompt": "holds up the mug",
            "allow_polish": True,
            "bgm_enabled": True,
            "resolution": "720p",
            "aspect_ratio": "16:9",
            "watermark": True,
        },
        {"speech_script": "This mug keeps tea hot.", "avatar_id": "avatar-7"},
    ],
}
CONTENTS = {
    "product_images": ("ref_image", "product_image"),
    "title": ("goods_title",),
    "description": ("goods_description",),
    "price": ("goods_price",),
    "selling_points": ("goods_selling_point",),
    "speech_script": ("speech_script",),
    "avatar_image": ("avatar_image",),
    "avatar_id": ("avatar_id",),
}
"""Where the commerce tools' flat parameters go in the API's typed `contents` list."""


def in_contents(body: dict[str, Any], name: str) -> list[Any]:
    items = body.get("contents", [])
    return [item.get("url", item.get("text")) for item in items if item["type"] in CONTENTS.get(name, ())]


def test_every_parameter_of_every_paid_tool_is_exercised() -> None:
    """No parameter escapes the check below: each is set in one of the calls."""
    from kling_mcp.server.tools.catalog import TOOL_SPECS

    for spec in TOOL_SPECS:
        if spec.paid:
            exercised = {name for call in EVERY_PARAMETER[spec.name] for name in call}
            assert set(spec.input_model.model_fields) - LOCAL <= exercised, spec.name


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [(tool, arguments) for tool, calls in EVERY_PARAMETER.items() for arguments in calls],
)
async def test_every_value_a_caller_sets_reaches_the_wire(
    client: Client, kling: FakeKling, tool: str, arguments: dict[str, Any]
) -> None:
    result = await client.call_tool(tool, {**arguments, "timeout": 0})

    assert not result.is_error, text(result)
    path, body = sent(kling)
    check_against_the_contract(path, kling.submissions[0][1])
    fields = wire_fields(body)
    for name, value in arguments.items():
        if name in CONTENTS:
            assert in_contents(body, name) == (value if isinstance(value, list) else [value]), name
        elif name == "multi_prompt":
            assert [shot["prompt"] for shot in fields[name]] == [shot["prompt"] for shot in value]
        else:
            assert fields[name] == value, name


# --- The cases the issue names -----------------------------------------------------------------


async def test_lip_sync_sends_its_declared_voice_defaults_with_text(client: Client, kling: FakeKling) -> None:
    tool = await definition(client, "kling_lip_sync")
    defaults = declared_defaults(tool)
    await client.call_tool(
        "kling_lip_sync", {"video_id": "video-1", "text": "hello", "voice_id": "v-1", "timeout": 0}
    )

    _, body = sent(kling)
    assert body["mode"] == "text2video"
    assert (body["voice_language"], body["voice_speed"]) == (
        defaults["voice_language"],
        defaults["voice_speed"],
    )


@pytest.mark.parametrize("voice", [{"voice_id": "v-1"}, {"voice_language": "zh"}, {"voice_speed": 1.5}])
async def test_lip_sync_refuses_voice_settings_with_audio_rather_than_dropping_them(
    client: Client, kling: FakeKling, voice: dict[str, Any]
) -> None:
    result = await client.call_tool(
        "kling_lip_sync", {"video_id": "video-1", "audio_url": AUDIO, **voice, "timeout": 0}
    )

    assert result.is_error
    (name,) = voice
    assert f"{name}: only with text" in text(result)
    assert "nothing was sent" in text(result)
    assert kling.submissions == []


async def test_video_commerce_needs_something_to_show_without_a_presenter(
    client: Client, kling: FakeKling
) -> None:
    result = await client.call_tool("kling_video_commerce", {"speech_script": "Buy it.", "timeout": 0})

    assert result.is_error
    assert "product_images: required without a presenter" in text(result)
    assert kling.submissions == []


# --- Extending keeps the original's model, mode and duration ----------------------------------


async def make_original(client: Client, kling: FakeKling, **settings: Any) -> str:
    """A succeeded kling_generate_video with `settings`; its video_id."""
    result = await client.call_tool("kling_generate_video", {"prompt": PROMPT, **settings})
    assert result.structured_content is not None, text(result)
    assert result.structured_content["state"] == "succeeded", text(result)
    kling.submissions.clear()
    video_id: str = result.structured_content["video_id"]
    return video_id


async def test_extend_keeps_the_originals_model_mode_and_duration(client: Client, kling: FakeKling) -> None:
    video_id = await make_original(client, kling, model="kling-v2-1-master", mode="pro", duration=10)

    result = await client.call_tool(
        "kling_extend_video", {"prompt": "it leaps", "video_id": video_id, "timeout": 0}
    )

    assert not result.is_error, text(result)
    _, body = sent(kling)
    assert (body["model"], body["mode"], body["duration"]) == ("kling-v2-1-master", "pro", 10)
    assert "Kept from the original video: model kling-v2-1-master, mode pro, duration 10 s." in text(result)


async def test_extend_keeps_only_what_the_call_leaves_out(client: Client, kling: FakeKling) -> None:
    video_id = await make_original(client, kling, model="kling-v2-1-master", mode="pro", duration=10)

    await client.call_tool(
        "kling_extend_video", {"prompt": "it leaps", "video_id": video_id, "mode": "std", "timeout": 0}
    )

    _, body = sent(kling)
    assert (body["model"], body["mode"], body["duration"]) == ("kling-v2-1-master", "std", 10)


async def test_extend_of_an_unknown_video_says_which_defaults_it_used(
    client: Client, kling: FakeKling
) -> None:
    result = await client.call_tool(
        "kling_extend_video", {"prompt": "it leaps", "video_id": "video-made-elsewhere", "timeout": 0}
    )

    assert "kling_generate_video's defaults (this server did not make video-made-elsewhere): model " in text(
        result
    )
    assert "mode std, duration 5 s." in text(result)


async def test_extend_refuses_a_change_that_does_not_fit_what_it_keeps(
    client: Client, kling: FakeKling
) -> None:
    video_id = await make_original(client, kling, model="kling-v3", duration=7)

    result = await client.call_tool(
        "kling_extend_video", {"prompt": "it leaps", "video_id": video_id, "model": "kling-v2-master"}
    )

    assert result.is_error
    assert "duration: kling-v2-master makes videos of 5 or 10 seconds, not 7." in text(result)
    assert "Kept from the original video: mode std, duration 7 s." in text(result)
    assert kling.submissions == []


# --- The free tools -------------------------------------------------------------------------


async def test_the_lookups_send_only_queries_and_the_lists_nothing(client: Client, kling: FakeKling) -> None:
    await client.call_tool("kling_get_task", {"task_id": "task-1", "timeout": 0})
    await client.call_tool("kling_get_tasks_batch", {"task_ids": ["task-1", "task-2"]})
    await client.call_tool("kling_list_tasks", {})
    await client.call_tool("kling_list_models", {})

    assert kling.queries == [
        {"id": "task-1", "action": "retrieve"},
        {"ids": ["task-1", "task-2"], "action": "retrieve_batch"},
    ]
    assert kling.submissions == []
