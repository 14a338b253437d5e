"""The tools' input models: every rule of the wire contract is checked before anything is sent.

A rejected request costs nothing; its message must name the field to change. An accepted one
turns into exactly the body the contract describes (`to_wire()`).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from kling_mcp.server.tools.media import LipSyncInput, MotionInput, TalkingPhotoInput
from kling_mcp.server.tools.tasks import GetTaskInput, GetTasksBatchInput
from kling_mcp.server.tools.video import ExtendVideoInput, ImageToVideoInput, TextToVideoInput

IMAGE = "https://cdn.test/fox.png"
END_IMAGE = "https://cdn.test/fox-asleep.png"
VIDEO = "https://cdn.test/dance.mp4"
AUDIO = "https://cdn.test/speech.mp3"
WEBHOOK = "https://hooks.test/kling"
PROMPT = "a red fox trots through fresh snow, the camera follows"


def image(frame: str | None = None, url: str = IMAGE) -> dict[str, Any]:
    """An image_list item, optionally typed first_frame or end_frame."""
    return {"image_url": url} if frame is None else {"image_url": url, "type": frame}


def video(refer_type: str = "feature", url: str = VIDEO) -> dict[str, Any]:
    return {"video_url": url, "refer_type": refer_type}


def images(count: int) -> list[dict[str, Any]]:
    return [image(url=f"https://cdn.test/ref-{n}.png") for n in range(count)]


def elements(count: int) -> list[dict[str, str]]:
    return [{"element_id": f"subject-{n}"} for n in range(count)]


def text2video(**fields: Any) -> dict[str, Any]:
    return {"prompt": PROMPT, **fields}


def image2video(**fields: Any) -> dict[str, Any]:
    return {"prompt": PROMPT, "start_image_url": IMAGE, **fields}


def rejection(model: type[BaseModel], fields: dict[str, Any]) -> str:
    """What the user is told: one problem a line, `field: what to change`, as the tools word it."""
    with pytest.raises(ValidationError) as caught:
        model.model_validate(fields)
    lines: list[str] = []
    for error in caught.value.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"]).removesuffix(".[key]")
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.extend([f"{field}: {message}"] if field else message.splitlines())
    return "\n".join(lines)


def blamed(model: type[BaseModel], fields: dict[str, Any]) -> set[str]:
    """The fields a rejection is about: the names before each problem's first ': '."""
    names: set[str] = set()
    for line in rejection(model, fields).splitlines():
        subject = line.split(": ", 1)[0]
        names.update(name.strip() for name in re.split(r"[/,]", subject))
    return names


def contains_none(value: Any) -> bool:
    if isinstance(value, dict):
        return any(contains_none(item) for item in value.values())
    if isinstance(value, list):
        return any(contains_none(item) for item in value)
    return value is None


# --- Text and image to video: accepted -------------------------------------------------------

ACCEPTED_VIDEO_REQUESTS = [
    # durations per model
    *(
        pytest.param(model, {"model": name, "duration": duration}, id=f"{name}-{duration}s")
        for model in (TextToVideoInput,)
        for name, duration in [
            ("kling-v3", 3),
            ("kling-v3", 7),
            ("kling-v3", 15),
            ("kling-v3-omni", 12),
            ("kling-o1", 5),
            ("kling-v1", 5),
            ("kling-v1-6", 10),
            ("kling-v2-master", 10),
            ("kling-v2-5-turbo", 5),
            ("kling-v2-6", 10),
        ]
    ),
    # 4k
    pytest.param(TextToVideoInput, {"model": "kling-v3", "mode": "4k"}, id="4k-v3"),
    pytest.param(ImageToVideoInput, {"model": "kling-v3-omni", "mode": "4k"}, id="4k-v3-omni"),
    # guidance
    pytest.param(TextToVideoInput, {"cfg_scale": 0}, id="cfg-0"),
    pytest.param(TextToVideoInput, {"cfg_scale": 1}, id="cfg-1"),
    pytest.param(TextToVideoInput, {"negative_prompt": "blur", "cfg_scale": 0.5}, id="guidance"),
    pytest.param(TextToVideoInput, {"camera_control": '{"type": "forward_up"}'}, id="camera-json-string"),
    pytest.param(
        TextToVideoInput, {"camera_control": {"type": "simple", "config": {"zoom": -1}}}, id="camera-object"
    ),
    pytest.param(
        TextToVideoInput, {"model": "kling-v3-omni", "negative_prompt": "blur"}, id="omni-guidance-no-refs"
    ),
    # Omni references
    pytest.param(TextToVideoInput, {"model": "kling-o1", "image_list": [image()]}, id="o1-image-list"),
    pytest.param(TextToVideoInput, {"model": "kling-v3-omni", "video_list": [video()]}, id="omni-video"),
    pytest.param(TextToVideoInput, {"model": "kling-v3-omni", "image_list": images(7)}, id="7-references"),
    pytest.param(
        TextToVideoInput,
        {"model": "kling-v3-omni", "image_list": images(6), "element_list": elements(1)},
        id="6-images-1-subject",
    ),
    pytest.param(
        TextToVideoInput,
        {"model": "kling-v3-omni", "image_list": images(4), "video_list": [video()]},
        id="4-references-with-video",
    ),
    pytest.param(
        ImageToVideoInput,
        {"model": "kling-v3-omni", "video_list": [video("feature")]},
        id="feature-video-with-start-frame",
    ),
    # audio
    pytest.param(TextToVideoInput, {"model": "kling-v3", "generate_audio": True}, id="audio-v3-std"),
    pytest.param(
        TextToVideoInput, {"model": "kling-v3", "mode": "4k", "generate_audio": True}, id="audio-v3-4k"
    ),
    pytest.param(
        TextToVideoInput, {"model": "kling-v3-omni", "mode": "pro", "generate_audio": True}, id="audio-omni"
    ),
    pytest.param(
        TextToVideoInput, {"model": "kling-v2-6", "mode": "pro", "generate_audio": True}, id="audio-v2-6"
    ),
    pytest.param(TextToVideoInput, {"generate_audio": False}, id="no-audio-any-model"),
    # frames
    pytest.param(ImageToVideoInput, {"end_image_url": END_IMAGE}, id="start-and-end-frames"),
    pytest.param(
        TextToVideoInput,
        {"model": "kling-o1", "image_list": [image("first_frame"), image("end_frame", END_IMAGE)]},
        id="frames-in-image-list",
    ),
]


@pytest.mark.parametrize(("model", "fields"), ACCEPTED_VIDEO_REQUESTS)
def test_a_video_request_within_the_rules_is_accepted(model: type[BaseModel], fields: dict[str, Any]) -> None:
    base = image2video if model is ImageToVideoInput else text2video
    model.model_validate(base(**fields))


# --- Text and image to video: rejected, naming the field ---------------------------------------

REJECTED_VIDEO_REQUESTS = [
    # durations per model
    *(
        pytest.param({"model": name, "duration": duration}, "duration", id=f"{name}-{duration}s")
        for name, duration in [
            ("kling-v3", 2),
            ("kling-v3", 16),
            ("kling-v3-omni", 20),
            ("kling-o1", 10),
            ("kling-o1", 3),
            ("kling-v1", 3),
            ("kling-v2-master", 7),
            ("kling-v2-5-turbo", 15),
            ("kling-v2-6", 6),
        ]
    ),
    # 4k
    *(
        pytest.param({"model": name, "mode": "4k"}, "mode", id=f"4k-{name}")
        for name in ("kling-v2-master", "kling-v2-6", "kling-o1", "kling-v1")
    ),
    pytest.param(
        {"model": "kling-v3-omni", "mode": "4k", "image_list": [image()]}, "mode", id="4k-image-list"
    ),
    pytest.param(
        {"model": "kling-v3-omni", "mode": "4k", "video_list": [video()]}, "mode", id="4k-video-list"
    ),
    pytest.param({"mode": "8k"}, "mode", id="unknown-mode"),
    pytest.param({"model": "kling-v4"}, "model", id="unknown-model"),
    pytest.param({"aspect_ratio": "4:3"}, "aspect_ratio", id="unknown-aspect-ratio"),
    # cfg_scale and camera_control
    pytest.param({"cfg_scale": -0.1}, "cfg_scale", id="cfg-below-0"),
    pytest.param({"cfg_scale": 1.5}, "cfg_scale", id="cfg-above-1"),
    pytest.param({"camera_control": "forward up please"}, "camera_control", id="camera-bad-json"),
    pytest.param({"camera_control": 5}, "camera_control", id="camera-number"),
    pytest.param({"camera_control": ["forward_up"]}, "camera_control", id="camera-list"),
    pytest.param({"camera_control": '"forward_up"'}, "camera_control", id="camera-json-not-object"),
    pytest.param(
        {"camera_control": {"type": "barrel_roll"}}, "camera_control.type", id="camera-unknown-type"
    ),
    pytest.param(
        {"camera_control": {"type": "simple", "config": {"zoom": 1.5}}},
        "camera_control.config.zoom",
        id="camera-zoom-above-1",
    ),
    pytest.param(
        {"camera_control": '{"type": "simple", "config": {"pan": -2}}'},
        "camera_control.config.pan",
        id="camera-json-pan-below-minus-1",
    ),
    pytest.param(
        {"camera_control": {"type": "simple", "config": {"dolly": 0.5}}},
        "camera_control.config.dolly",
        id="camera-unknown-movement",
    ),
    # Omni references only with Omni models, and then without guidance
    pytest.param({"model": "kling-v3", "image_list": [image()]}, "image_list", id="image-list-on-v3"),
    pytest.param({"model": "kling-v2-master", "video_list": [video()]}, "video_list", id="video-list-on-v2"),
    *(
        pytest.param(
            {"model": "kling-v3-omni", "image_list": [image()], field: value},
            field,
            id=f"{field}-with-references",
        )
        for field, value in [
            ("negative_prompt", "blur"),
            ("cfg_scale", 0.5),
            ("camera_control", {"type": "forward_up"}),
        ]
    ),
    *(
        pytest.param({"model": "kling-o1", field: value}, field, id=f"{field}-on-o1")
        for field, value in [
            ("negative_prompt", "blur"),
            ("cfg_scale", 0.5),
            ("camera_control", '{"type": "forward_up"}'),
        ]
    ),
    # generate_audio
    pytest.param({"model": "kling-v2-6", "generate_audio": True}, "generate_audio", id="audio-v2-6-std"),
    pytest.param({"model": "kling-o1", "generate_audio": True}, "generate_audio", id="audio-o1"),
    pytest.param(
        {"model": "kling-v2-master", "mode": "pro", "generate_audio": True},
        "generate_audio",
        id="audio-v2-master",
    ),
    pytest.param(
        {"model": "kling-v3-omni", "video_list": [video()], "generate_audio": True},
        "generate_audio",
        id="audio-with-video-list",
    ),
    # video_list
    pytest.param(
        {"model": "kling-v3-omni", "video_list": [video(), video(url="https://cdn.test/two.mp4")]},
        "video_list",
        id="two-videos",
    ),
    pytest.param(
        {"model": "kling-v3-omni", "video_list": [video("base")], "image_list": [image("first_frame")]},
        "video_list",
        id="base-video-with-first-frame",
    ),
    pytest.param(
        {
            "model": "kling-v3-omni",
            "video_list": [{"video_url": VIDEO}],
            "image_list": [image("first_frame")],
        },
        "video_list",
        id="default-base-video-with-first-frame",
    ),
    pytest.param(
        {"model": "kling-v3-omni", "video_list": [video("remix")]},
        "video_list.0.refer_type",
        id="bad-refer-type",
    ),
    pytest.param(
        {"model": "kling-o1", "image_list": [image("middle_frame")]},
        "image_list.0.type",
        id="unknown-frame-type",
    ),
    # reference counts
    pytest.param({"model": "kling-v3-omni", "image_list": images(8)}, "image_list", id="8-references"),
    pytest.param(
        {"model": "kling-v3-omni", "image_list": images(7), "element_list": elements(1)},
        "element_list",
        id="7-images-1-subject",
    ),
    pytest.param(
        {"model": "kling-v3-omni", "image_list": images(5), "video_list": [video()]},
        "image_list",
        id="5-references-with-video",
    ),
    pytest.param({"element_list": elements(8)}, "element_list", id="8-subjects"),
    pytest.param({"element_list": [{"element_id": ""}]}, "element_list.0.element_id", id="empty-subject"),
    # prompt
    pytest.param({"prompt": ""}, "prompt", id="empty-prompt"),
    pytest.param({"prompt": "x" * 2501}, "prompt", id="prompt-too-long"),
]


@pytest.mark.parametrize(("fields", "named"), REJECTED_VIDEO_REQUESTS)
def test_a_text_to_video_request_that_breaks_a_rule_is_rejected_naming_the_field(
    fields: dict[str, Any], named: str
) -> None:
    assert named in blamed(TextToVideoInput, text2video(**fields))


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        pytest.param({"start_image_url": None}, "start_image_url", id="no-start-frame"),
        pytest.param(
            {"start_image_url": None, "model": "kling-o1", "image_list": [image()]},
            "start_image_url",
            id="only-plain-references",
        ),
        pytest.param(
            {"start_image_url": None, "end_image_url": END_IMAGE}, "end_image_url", id="end-without-start"
        ),
        pytest.param(
            {"model": "kling-v3-omni", "video_list": [video("base")]},
            "video_list",
            id="base-video-with-start-frame",
        ),
        pytest.param({"model": "kling-o1", "duration": 10}, "duration", id="o1-10s"),
        pytest.param({"model": "kling-v2-master", "mode": "4k"}, "mode", id="4k-v2-master"),
    ],
)
def test_an_image_to_video_request_that_breaks_a_rule_is_rejected_naming_the_field(
    fields: dict[str, Any], named: str
) -> None:
    assert named in blamed(ImageToVideoInput, image2video(**fields))


@pytest.mark.parametrize(
    ("model", "fields", "problem", "sources"),
    [
        pytest.param(
            TextToVideoInput,
            text2video(model="kling-o1", image_list=[image("first_frame"), image("first_frame", END_IMAGE)]),
            "one first frame only",
            ["image_list"],
            id="two-first-frames-in-image-list",
        ),
        pytest.param(
            TextToVideoInput,
            text2video(
                model="kling-o1", image_list=[image("first_frame"), image("end_frame"), image("end_frame")]
            ),
            "one end frame only",
            ["image_list"],
            id="two-end-frames-in-image-list",
        ),
        pytest.param(
            ImageToVideoInput,
            image2video(model="kling-o1", image_list=[image("first_frame", END_IMAGE)]),
            "one first frame only",
            ["start_image_url", "image_list"],
            id="start-image-and-first-frame-item",
        ),
        pytest.param(
            ImageToVideoInput,
            image2video(model="kling-o1", end_image_url=END_IMAGE, image_list=[image("end_frame")]),
            "one end frame only",
            ["end_image_url", "image_list"],
            id="end-image-and-end-frame-item",
        ),
    ],
)
def test_a_second_first_or_end_frame_is_rejected_naming_where_frames_come_from(
    model: type[BaseModel], fields: dict[str, Any], problem: str, sources: list[str]
) -> None:
    message = rejection(model, fields)

    assert problem in message
    for source in sources:
        assert source in message


def test_an_image_to_video_request_may_take_its_first_frame_from_image_list() -> None:
    request = ImageToVideoInput.model_validate(
        {"prompt": PROMPT, "model": "kling-o1", "image_list": [image("first_frame")]}
    )

    assert request.to_wire()["image_list"] == [image("first_frame")]


def test_a_text_to_video_end_frame_without_first_frame_names_image_list() -> None:
    fields = text2video(model="kling-o1", image_list=[image("end_frame")])

    assert "image_list" in blamed(TextToVideoInput, fields)
    assert "start_image_url" not in rejection(TextToVideoInput, fields)


@pytest.mark.parametrize(
    "url", ["ftp://cdn.test/fox.png", "local/path/fox.png", "data:image/png;base64,iVBO", ""]
)
@pytest.mark.parametrize(
    ("fields", "named"),
    [
        pytest.param(lambda url: {"start_image_url": url}, "start_image_url", id="start_image_url"),
        pytest.param(lambda url: {"end_image_url": url}, "end_image_url", id="end_image_url"),
        pytest.param(
            lambda url: {"model": "kling-o1", "image_list": [image(url=url)]},
            "image_list.0.image_url",
            id="image_list",
        ),
        pytest.param(
            lambda url: {"model": "kling-o1", "video_list": [video(url=url)]},
            "video_list.0.video_url",
            id="video_list",
        ),
        pytest.param(lambda url: {"callback_url": url}, "callback_url", id="callback_url"),
    ],
)
def test_a_media_url_that_is_not_http_is_rejected_naming_the_field(fields: Any, named: str, url: str) -> None:
    fields_given = image2video(**fields(url))

    assert named in blamed(ImageToVideoInput, fields_given)
    assert "http(s) URL" in rejection(ImageToVideoInput, fields_given)


@pytest.mark.parametrize("path", ["/home/me/fox.png", "~/Pictures/fox.png", "file:///home/me/fox.png"])
def test_a_media_field_takes_a_local_file_reference_checked_when_the_call_runs(path: str) -> None:
    ImageToVideoInput.model_validate(image2video(start_image_url=path))
    MotionInput.model_validate({"image_url": path, "video_url": VIDEO})

    assert "callback_url" in blamed(ImageToVideoInput, image2video(callback_url=path))


@pytest.mark.parametrize(
    ("model", "fields", "named"),
    [
        pytest.param(
            MotionInput, {"image_url": "fox.png", "video_url": VIDEO}, "image_url", id="motion-relative"
        ),
        pytest.param(
            LipSyncInput, {"video_url": "ftp://x/v.mp4", "audio_url": AUDIO}, "video_url", id="lip-sync"
        ),
        pytest.param(LipSyncInput, {"video_id": "v", "audio_url": "speech.mp3"}, "audio_url", id="lip-sync"),
        pytest.param(
            TalkingPhotoInput,
            {"image_url": "data:image/png;base64,x", "audio_url": AUDIO},
            "image_url",
            id="photo",
        ),
        pytest.param(
            TalkingPhotoInput, {"image_url": IMAGE, "audio_url": "https://"}, "audio_url", id="photo"
        ),
    ],
)
def test_other_tools_reject_media_urls_that_are_not_http(
    model: type[BaseModel], fields: dict[str, Any], named: str
) -> None:
    assert named in blamed(model, fields)


# --- Extend, motion, lip-sync, talking photo, tasks ------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({}, id="minimal"),
        pytest.param({"duration": 7}, id="duration-left-to-the-api"),
        pytest.param({"model": "kling-v3", "duration": 7, "mode": "pro"}, id="v3-7s"),
        pytest.param({"model": "kling-v1", "negative_prompt": "blur", "cfg_scale": 0.3}, id="guidance"),
    ],
)
def test_an_extend_request_within_the_rules_is_accepted(fields: dict[str, Any]) -> None:
    ExtendVideoInput.model_validate({"video_id": "video-1", "prompt": PROMPT, **fields})


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        pytest.param({"video_id": None}, "video_id", id="no-video-id"),
        pytest.param({"video_id": ""}, "video_id", id="empty-video-id"),
        pytest.param({"prompt": None}, "prompt", id="no-prompt"),
        pytest.param({"model": "kling-v1", "duration": 7}, "duration", id="v1-7s"),
        pytest.param({"model": "kling-v1", "mode": "4k"}, "mode", id="v1-4k"),
        pytest.param({"model": "kling-o1", "negative_prompt": "blur"}, "negative_prompt", id="o1-negative"),
        pytest.param({"cfg_scale": 2}, "cfg_scale", id="cfg-above-1"),
    ],
)
def test_an_extend_request_that_breaks_a_rule_is_rejected_naming_the_field(
    fields: dict[str, Any], named: str
) -> None:
    request = {"video_id": "video-1", "prompt": PROMPT, **fields}

    assert named in blamed(ExtendVideoInput, {k: v for k, v in request.items() if v is not None})


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        pytest.param({"video_url": None}, "video_url", id="no-video"),
        pytest.param({"mode": "4k"}, "mode", id="4k"),
        pytest.param({"character_orientation": "camera"}, "character_orientation", id="orientation"),
        pytest.param({"keep_original_sound": "maybe"}, "keep_original_sound", id="sound"),
    ],
)
def test_a_motion_request_that_breaks_a_rule_is_rejected_naming_the_field(
    fields: dict[str, Any], named: str
) -> None:
    request = {"image_url": IMAGE, "video_url": VIDEO, **fields}

    assert named in blamed(MotionInput, {k: v for k, v in request.items() if v is not None})


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"video_id": "video-1", "audio_url": AUDIO}, id="audio"),
        pytest.param({"video_url": VIDEO, "text": "Hello there", "voice_id": "voice-1"}, id="text"),
        pytest.param(
            {"video_id": "video-1", "text": "Hi", "voice_id": "v", "voice_speed": 0.8}, id="slowest"
        ),
        pytest.param(
            {"video_id": "video-1", "text": "Hi", "voice_id": "v", "voice_speed": 2.0}, id="fastest"
        ),
        pytest.param(
            {"video_id": "video-1", "text": "你好", "voice_id": "v", "voice_language": "zh"}, id="zh"
        ),
    ],
)
def test_a_lip_sync_request_within_the_rules_is_accepted(fields: dict[str, Any]) -> None:
    LipSyncInput.model_validate(fields)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        pytest.param({"audio_url": AUDIO}, "video_id", id="no-video"),
        pytest.param(
            {"video_id": "video-1", "video_url": VIDEO, "audio_url": AUDIO}, "video_id", id="two-videos"
        ),
        pytest.param({"video_id": "video-1"}, "audio_url", id="nothing-to-say"),
        pytest.param(
            {"video_id": "video-1", "audio_url": AUDIO, "text": "Hi", "voice_id": "v"},
            "audio_url",
            id="audio-and-text",
        ),
        pytest.param({"video_id": "video-1", "text": "Hi"}, "voice_id", id="text-without-voice"),
        pytest.param(
            {"video_id": "video-1", "text": "Hi", "voice_id": ""}, "voice_id", id="text-empty-voice"
        ),
        *(
            pytest.param(
                {"video_id": "video-1", "text": "Hi", "voice_id": "v", "voice_speed": speed},
                "voice_speed",
                id=f"speed-{speed}",
            )
            for speed in (0.7, 2.1)
        ),
        pytest.param(
            {"video_id": "video-1", "text": "Hi", "voice_id": "v", "voice_language": "fr"},
            "voice_language",
            id="language",
        ),
    ],
)
def test_a_lip_sync_request_that_breaks_a_rule_is_rejected_naming_the_field(
    fields: dict[str, Any], named: str
) -> None:
    assert named in blamed(LipSyncInput, fields)


def test_a_lip_sync_request_with_an_empty_video_id_is_rejected() -> None:
    assert "video_id" in rejection(LipSyncInput, {"video_id": "", "audio_url": AUDIO})


@pytest.mark.parametrize("duration", [5, 10])
def test_a_talking_photo_lasts_5_or_10_seconds(duration: int) -> None:
    request = TalkingPhotoInput(image_url=IMAGE, audio_url=AUDIO, duration=duration)

    assert request.to_wire()["duration"] == duration


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        pytest.param({"duration": 7}, "duration", id="7s"),
        pytest.param({"duration": 15}, "duration", id="15s"),
        pytest.param({"mode": "4k"}, "mode", id="4k"),
    ],
)
def test_a_talking_photo_request_that_breaks_a_rule_is_rejected_naming_the_field(
    fields: dict[str, Any], named: str
) -> None:
    assert named in blamed(TalkingPhotoInput, {"image_url": IMAGE, "audio_url": AUDIO, **fields})


@pytest.mark.parametrize("count", [1, 100])
def test_a_batch_lookup_takes_1_to_100_task_ids(count: int) -> None:
    ids = [f"task-{n}" for n in range(count)]

    assert GetTasksBatchInput(task_ids=ids).task_ids == ids


@pytest.mark.parametrize(
    ("task_ids", "named"),
    [
        pytest.param([], "task_ids", id="none"),
        pytest.param([f"task-{n}" for n in range(101)], "task_ids", id="101"),
        pytest.param(["task-1", ""], "task_ids.1", id="empty-id"),
    ],
)
def test_a_batch_lookup_outside_1_to_100_ids_is_rejected(task_ids: list[str], named: str) -> None:
    assert f"{named}: " in rejection(GetTasksBatchInput, {"task_ids": task_ids})


# --- Unknown fields --------------------------------------------------------------------------

MINIMAL_REQUESTS = [
    pytest.param(TextToVideoInput, {"prompt": PROMPT}, id="text2video"),
    pytest.param(ImageToVideoInput, {"prompt": PROMPT, "start_image_url": IMAGE}, id="image2video"),
    pytest.param(ExtendVideoInput, {"prompt": PROMPT, "video_id": "video-1"}, id="extend"),
    pytest.param(MotionInput, {"image_url": IMAGE, "video_url": VIDEO}, id="motion"),
    pytest.param(LipSyncInput, {"video_id": "video-1", "audio_url": AUDIO}, id="lip-sync"),
    pytest.param(TalkingPhotoInput, {"image_url": IMAGE, "audio_url": AUDIO}, id="talking-photo"),
]


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        *MINIMAL_REQUESTS,
        pytest.param(GetTaskInput, {"task_id": "task-1"}, id="get-task"),
        pytest.param(GetTasksBatchInput, {"task_ids": ["task-1"]}, id="get-tasks"),
    ],
)
def test_an_unknown_field_is_rejected_by_name(model: type[BaseModel], fields: dict[str, Any]) -> None:
    assert "seed: Extra inputs are not permitted" in rejection(model, {**fields, "seed": 42})


def test_an_unknown_field_inside_a_reference_is_rejected_by_name() -> None:
    fields = text2video(model="kling-o1", image_list=[{"image_url": IMAGE, "weight": 0.5}])

    assert "image_list.0.weight: Extra inputs are not permitted" in rejection(TextToVideoInput, fields)


# --- Request bodies --------------------------------------------------------------------------


def test_a_text_to_video_body_is_an_async_text2video_action_with_the_defaults_spelled_out() -> None:
    request = TextToVideoInput(prompt=PROMPT)

    assert request.endpoint == "/kling/videos"
    assert request.to_wire() == {
        "action": "text2video",
        "prompt": PROMPT,
        "model": "kling-v2-master",
        "mode": "std",
        "aspect_ratio": "16:9",
        "duration": 5,
        "async": True,
    }


def test_an_image_to_video_body_carries_both_frames() -> None:
    request = ImageToVideoInput(
        prompt=PROMPT, start_image_url=IMAGE, end_image_url=END_IMAGE, model="kling-v3"
    )

    assert request.endpoint == "/kling/videos"
    assert request.to_wire() == {
        "action": "image2video",
        "prompt": PROMPT,
        "start_image_url": IMAGE,
        "end_image_url": END_IMAGE,
        "model": "kling-v3",
        "mode": "std",
        "aspect_ratio": "16:9",
        "duration": 5,
        "async": True,
    }


def test_an_extend_body_sends_only_what_was_given() -> None:
    request = ExtendVideoInput(video_id="video-1", prompt=PROMPT)

    assert request.endpoint == "/kling/videos"
    assert request.to_wire() == {"action": "extend", "video_id": "video-1", "prompt": PROMPT, "async": True}


def test_camera_control_given_as_a_json_string_is_sent_as_an_object() -> None:
    request = TextToVideoInput(prompt=PROMPT, camera_control='{"type": "simple", "config": {"zoom": 0.5}}')

    assert request.to_wire()["camera_control"] == {"type": "simple", "config": {"zoom": 0.5}}


def test_omni_references_are_sent_as_given() -> None:
    request = TextToVideoInput(
        prompt=PROMPT,
        model="kling-v3-omni",
        image_list=[image("first_frame")],
        video_list=[{"video_url": VIDEO, "refer_type": "feature", "keep_original_sound": "yes"}],
        element_list=elements(1),
    )

    body = request.to_wire()

    assert body["image_list"] == [{"image_url": IMAGE, "type": "first_frame"}]
    assert body["video_list"] == [{"video_url": VIDEO, "refer_type": "feature", "keep_original_sound": "yes"}]
    assert body["element_list"] == [{"element_id": "subject-0"}]


@pytest.mark.parametrize(
    ("model", "fields", "endpoint"),
    [
        pytest.param(MotionInput, {"image_url": IMAGE, "video_url": VIDEO}, "/kling/motion", id="motion"),
        pytest.param(
            TalkingPhotoInput,
            {"image_url": IMAGE, "audio_url": AUDIO},
            "/kling/talking-photo",
            id="talking-photo",
        ),
        pytest.param(
            LipSyncInput, {"video_id": "video-1", "audio_url": AUDIO}, "/kling/lip-sync", id="lip-sync"
        ),
    ],
)
def test_each_tool_posts_to_its_endpoint(model: type[Any], fields: dict[str, Any], endpoint: str) -> None:
    assert model.model_validate(fields).endpoint == endpoint


def test_a_motion_body_spells_out_the_required_mode_and_orientation() -> None:
    request = MotionInput(image_url=IMAGE, video_url=VIDEO)

    assert request.to_wire() == {
        "image_url": IMAGE,
        "video_url": VIDEO,
        "character_orientation": "image",
        "mode": "std",
        "async": True,
    }


def test_a_lip_sync_with_audio_is_sent_in_audio2video_mode_without_voice_fields() -> None:
    request = LipSyncInput(video_id="video-1", audio_url=AUDIO)

    assert request.to_wire() == {
        "mode": "audio2video",
        "video_id": "video-1",
        "audio_url": AUDIO,
        "async": True,
    }


def test_a_lip_sync_with_text_is_sent_in_text2video_mode_with_the_voice() -> None:
    request = LipSyncInput(video_url=VIDEO, text="Hello there", voice_id="voice-1", voice_speed=1.5)

    assert request.to_wire() == {
        "mode": "text2video",
        "video_url": VIDEO,
        "text": "Hello there",
        "voice_id": "voice-1",
        "voice_language": "en",
        "voice_speed": 1.5,
        "async": True,
    }


@pytest.mark.parametrize(("model", "fields"), MINIMAL_REQUESTS)
def test_every_body_is_async_and_never_carries_the_wait_timeout_or_empty_values(
    model: type[Any], fields: dict[str, Any]
) -> None:
    body = model.model_validate({**fields, "timeout": 30}).to_wire()

    assert body["async"] is True
    assert "timeout" not in body
    assert not contains_none(body)


@pytest.mark.parametrize(("model", "fields"), MINIMAL_REQUESTS)
def test_every_body_passes_the_callback_url_through(model: type[Any], fields: dict[str, Any]) -> None:
    body = model.model_validate({**fields, "callback_url": WEBHOOK}).to_wire()

    assert body["callback_url"] == WEBHOOK
    assert body["async"] is True


def test_a_body_without_a_callback_url_does_not_mention_one() -> None:
    assert "callback_url" not in TextToVideoInput(prompt=PROMPT).to_wire()


@pytest.mark.parametrize("timeout", [-1, 3601])
def test_a_wait_outside_0_to_3600_seconds_is_rejected(timeout: float) -> None:
    assert "timeout: " in rejection(TextToVideoInput, text2video(timeout=timeout))
