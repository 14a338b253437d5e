"""The checks the emulated API makes on a generation request before accepting it.

What the wire contract's table marks as required, the few value sets that table names
(modes, orientations, commerce settings), the shape of `duration`, the shapes of the newer
requests (Turbo, storyboards, saved voices, the typed `contents` of the commerce endpoints),
and the limits the real API refuses: prompts of at most 2,500 characters and not blank,
media links and `callback_url` that are http(s) URLs with a host, well-formed ids, and
bodies nested at most `MAX_BODY_DEPTH` deep. The finer rules between models and parameters
are left out on purpose: the contract says to let the API decide them, and kling-mcp checks
them before it ever calls.

These checks are written apart from kling-mcp's own on purpose: the emulator plays the
API, and sharing the client's code would make it agree with a client bug by construction.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Callable
from urllib.parse import urlsplit

from .wire import Json

MAX_PROMPT_LENGTH = 2500
MAX_SHOT_PROMPT_LENGTH = 512
MAX_SHOTS = 6
MAX_VOICES = 2
MAX_URL_LENGTH = 2048
MAX_BODY_DEPTH = 32
TURBO_MODEL = "kling-v3-turbo"
TURBO_REFUSES = (
    "end_image_url",
    "image_list",
    "video_list",
    "negative_prompt",
    "cfg_scale",
    "camera_control",
)
PROMPT_FIELDS = ("prompt", "negative_prompt")
URL_FIELDS = ("start_image_url", "end_image_url", "image_url", "video_url", "audio_url", "callback_url")
ID_FIELDS = ("video_id", "voice_id", "element_id", "avatar_id")
LIST_FIELDS = ("image_list", "video_list", "element_list", "voice_list", "multi_prompt")
_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_HOST = re.compile(r"[\w.:%-]+")
_short_repr = reprlib.Repr()
_short_repr.maxstring = _short_repr.maxother = 80

VIDEO_ACTIONS: dict[str, tuple[str, ...]] = {
    "text2video": ("prompt",),
    "image2video": ("prompt", "start_image_url"),
    "extend": ("video_id", "prompt"),
}


def problem_with(path: str, body: Json) -> str | None:
    """What makes `body` an invalid request for the generation endpoint `path`, or None."""
    return _ENDPOINT_CHECKS[path](body) or _check_duration(body) or _check_fields(body)


def too_deep(raw: bytes) -> bool:
    """Whether the JSON text `raw` nests brackets more than `MAX_BODY_DEPTH` deep (outside its
    strings): checked before parsing, so no parser or check ever recurses that far."""
    depth = 0
    for token in _JSON_TOKEN.finditer(raw):
        bracket = token.group()
        if bracket in (b"[", b"{"):
            depth += 1
            if depth > MAX_BODY_DEPTH:
                return True
        elif bracket in (b"]", b"}"):
            depth -= 1
    return False


def _check_videos(body: Json) -> str | None:
    action = body.get("action")
    required = VIDEO_ACTIONS.get(action) if isinstance(action, str) else None
    if required is None:
        return f"action must be one of {', '.join(VIDEO_ACTIONS)} (got {_shown(action)})"
    return _require(body, *required) or _check_turbo(body) or _check_storyboard(body) or _check_voices(body)


def _check_turbo(body: Json) -> str | None:
    if body.get("model") != TURBO_MODEL:
        return None
    if body.get("generate_audio") is not True:
        return f"generate_audio must be true with {TURBO_MODEL} (its sound is always on)"
    refused = [name for name in TURBO_REFUSES if _present(body, name)]
    if refused:
        return f"{TURBO_MODEL} takes no {', '.join(refused)}"
    return _require_choice(body, "mode", ("std", "pro")) if "mode" in body else None


def _check_storyboard(body: Json) -> str | None:
    if not _present(body, "multi_shot"):
        return "multi_prompt needs multi_shot true" if _present(body, "multi_prompt") else None
    if body["multi_shot"] is not True:
        return f"multi_shot must be true or left out (got {_shown(body['multi_shot'])})"
    problem = _require_choice(body, "shot_type", ("intelligence", "customize"))
    if problem is not None:
        return problem
    if body["shot_type"] == "intelligence":
        return "multi_prompt is only for shot_type customize" if _present(body, "multi_prompt") else None
    required = _require(body, "multi_prompt", "duration")
    return required or _shots_problem(body["multi_prompt"], body["duration"])


def _shots_problem(shots: object, duration: object) -> str | None:
    if not isinstance(shots, list) or not 1 <= len(shots) <= MAX_SHOTS:
        return f"multi_prompt must be a list of 1-{MAX_SHOTS} shots"
    for position, shot in enumerate(shots, start=1):
        field = f"multi_prompt[{position - 1}]"
        if not isinstance(shot, dict):
            return f"{field} must be an object"
        if shot.get("index") != position:
            return f"{field}.index must be {position}: shots are numbered 1, 2, 3... in order"
        prompt = shot.get("prompt")
        if isinstance(prompt, str) and len(prompt) > MAX_SHOT_PROMPT_LENGTH:
            return f"{field}.prompt must be at most {MAX_SHOT_PROMPT_LENGTH} characters (got {len(prompt)})"
        seconds = _whole_number(shot.get("duration"))
        if seconds is None or seconds < 1:
            got = _shown(shot.get("duration"))
            return f"{field}.duration must be a whole number of seconds, at least 1 (got {got})"
    total = sum(int(shot["duration"]) for shot in shots)
    expected = _whole_number(duration)  # one that is not a whole number is _check_duration's to refuse
    if expected is not None and total != expected:
        return f"the shots' durations add up to {total} s, not duration ({_shown(duration)} s)"
    return None


def _check_voices(body: Json) -> str | None:
    if not _present(body, "voice_list"):
        return None
    if _present(body, "element_list"):
        return "voice_list and element_list cannot be combined: give one of them"
    voices = body["voice_list"]
    if not isinstance(voices, list) or not 1 <= len(voices) <= MAX_VOICES:
        return f"voice_list must be a list of 1-{MAX_VOICES} voices"
    if body.get("generate_audio") is not True:
        return "generate_audio must be true with voice_list (the voices are the audio)"
    return None


def _check_motion(body: Json) -> str | None:
    return (
        _require(body, "image_url", "video_url")
        or _require_choice(body, "mode", ("std", "pro"))
        or _require_choice(body, "character_orientation", ("image", "video"))
    )


def _check_lip_sync(body: Json) -> str | None:
    problem = _require_choice(body, "mode", ("audio2video", "text2video")) or _require_any(
        body, "video_url", "video_id"
    )
    if problem is not None:
        return problem
    if body["mode"] == "audio2video":
        return _require_any(body, "audio_url", "audio_file")
    return _require(body, "text", "voice_id")


def _check_talking_photo(body: Json) -> str | None:
    return _require(body, "image_url", "audio_url")


# --- The commerce endpoints: typed `contents` items and a `settings` object ---------------------

GOODS_CONTENTS = {
    "ref_image": "url",
    "goods_title": "text",
    "goods_description": "text",
    "goods_price": "text",
    "goods_selling_point": "text",
}
COMMERCE_CONTENTS = {
    "avatar_image": "url",
    "avatar_id": "id",
    "speech_script": "text",
    "product_image": "url",
}
GOODS_SETTINGS: dict[str, tuple[object, ...]] = {
    "resolution": ("720p", "1080p"),
    "aspect_ratio": ("9:16", "1:1", "16:9"),
    "duration": (15, 30, 60),
}
COMMERCE_SETTINGS: dict[str, tuple[object, ...]] = {
    "resolution": ("720p", "1080p"),
    "aspect_ratio": ("9:16", "16:9"),
    "speech_rate": (0.8, 1.0, 1.2),
}
COMMERCE_FLAGS = ("allow_polish", "bgm_enabled")


def _check_goods_studio(body: Json) -> str | None:
    return (
        _contents_problem(body.get("contents"), GOODS_CONTENTS, needed=(("ref_image",),))
        or _settings_problem(body.get("settings"), GOODS_SETTINGS, required=tuple(GOODS_SETTINGS))
        or _flag_problem(body, "watermark")
    )


def _check_video_commerce(body: Json) -> str | None:
    needed = (("speech_script",),)  # with no presenter (avatar_image, avatar_id) it is a voice-over
    return (
        _contents_problem(body.get("contents"), COMMERCE_CONTENTS, needed=needed)
        or _settings_problem(body.get("settings"), COMMERCE_SETTINGS, required=())
        or _commerce_settings_problem(body["settings"])
        or _flag_problem(body, "watermark")
    )


def _contents_problem(
    contents: object, kinds: dict[str, str], needed: tuple[tuple[str, ...], ...]
) -> str | None:
    """The first malformed item of `contents`, or the first kind of item `needed` that is missing."""
    if not isinstance(contents, list) or not contents:
        return "contents is required: a list of {type, text} or {type, url} items"
    for index, item in enumerate(contents):
        field = f"contents[{index}]"
        kind = kinds.get(str(item.get("type"))) if isinstance(item, dict) else None
        if kind is None:
            got = _shown(item.get("type") if isinstance(item, dict) else item)
            return f"{field} must be an object whose type is one of {', '.join(kinds)} (got {got})"
        key = "url" if kind == "url" else "text"
        problem = _CONTENT_CHECKS[kind](f"{field}.{key}", item.get(key))
        if problem is not None:
            return problem
    given = {item["type"] for item in contents}
    missing = next((kinds for kinds in needed if given.isdisjoint(kinds)), None)
    return None if missing is None else f"contents needs an item of type {' or '.join(missing)}"


def _settings_problem(
    settings: object, choices: dict[str, tuple[object, ...]], required: tuple[str, ...]
) -> str | None:
    if not isinstance(settings, dict):
        return f"settings is required: an object with {', '.join(choices)}"
    for name, allowed in choices.items():
        if name in settings or name in required:
            problem = _require_choice(settings, name, allowed, prefix="settings.")
            if problem is not None:
                return problem
    return None


def _commerce_settings_problem(settings: Json) -> str | None:
    for name, check in (("voice_id", _id_problem), ("action_prompt", _prompt_problem)):
        problem = None if settings.get(name) is None else check(f"settings.{name}", settings[name])
        if problem is not None:
            return problem
    return next((problem for name in COMMERCE_FLAGS if (problem := _flag_problem(settings, name))), None)


def _flag_problem(body: Json, name: str) -> str | None:
    value = body.get(name)
    return None if value is None or isinstance(value, bool) else f"{name} must be true or false"


_ENDPOINT_CHECKS: dict[str, Callable[[Json], str | None]] = {
    "/kling/videos": _check_videos,
    "/kling/motion": _check_motion,
    "/kling/lip-sync": _check_lip_sync,
    "/kling/talking-photo": _check_talking_photo,
    "/kling/goods-studio": _check_goods_studio,
    "/kling/video-commerce": _check_video_commerce,
}

GENERATION_PATHS = tuple(_ENDPOINT_CHECKS)


def _present(body: Json, name: str) -> bool:
    return body.get(name) not in (None, "")


def _require(body: Json, *names: str) -> str | None:
    missing = [name for name in names if not _present(body, name)]
    return f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required" if missing else None


def _require_any(body: Json, *names: str) -> str | None:
    return None if any(_present(body, name) for name in names) else f"{' or '.join(names)} is required"


def _require_choice(body: Json, name: str, choices: tuple[object, ...], prefix: str = "") -> str | None:
    value = body.get(name)
    if not isinstance(value, bool) and value in choices:
        return None
    return f"{prefix}{name} must be one of {', '.join(map(str, choices))} (got {_shown(value)})"


def _check_duration(body: Json) -> str | None:
    duration = body.get("duration")
    if duration is None or _whole_number(duration) is not None:
        return None
    return f"duration must be a whole number of seconds (got {_shown(duration)})"


def _whole_number(value: object) -> int | None:
    """`value` as a whole number of seconds (5, 5.0 and "5" alike), or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return int(value) if isinstance(value, str) and value.isdecimal() else None


def _check_fields(body: Json, prefix: str = "") -> str | None:
    """The first malformed prompt, link or id in `body`, or in the items of its reference lists."""
    for name, value in body.items():
        check = _FIELD_CHECKS.get(name)
        problem = None if check is None or value is None else check(f"{prefix}{name}", value)
        if problem is not None:
            return problem
    return None


def _prompt_problem(field: str, value: object) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return f"{field} must be non-blank text"
    if len(value) > MAX_PROMPT_LENGTH:
        return f"{field} must be at most {MAX_PROMPT_LENGTH} characters (got {len(value)})"
    return None


def _url_problem(field: str, value: object) -> str | None:
    invalid = f"{field} must be an http(s) URL with a host (got {_shown(value)})"
    if not isinstance(value, str) or len(value) > MAX_URL_LENGTH:
        return invalid
    if any(char.isspace() or not char.isprintable() for char in value):
        return f"{field} must not contain whitespace or control characters (got {_shown(value)})"
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return invalid
    if parts.scheme not in ("http", "https") or "@" in parts.netloc or not host or not _HOST.fullmatch(host):
        return invalid
    if ".." in parts.path.split("/"):
        return f"{field} must not contain '..' path segments (got {_shown(value)})"
    return None


def task_id_problem(field: str, value: object) -> str | None:
    """What is wrong with `value` as the task id `field` of a `/kling/tasks` query, or None."""
    return _id_problem(field, value)


def task_ids_problem(ids: object) -> str | None:
    """What is wrong with `ids`, the task ids of a `retrieve_batch` query, or None."""
    if not isinstance(ids, list):
        return "ids is required: a list of task ids"
    problems = (_id_problem(f"ids[{index}]", task_id) for index, task_id in enumerate(ids))
    return next((problem for problem in problems if problem is not None), None)


def _id_problem(field: str, value: object) -> str | None:
    if isinstance(value, str) and _ID.fullmatch(value):
        return None
    return f"{field} must be 1-128 letters, digits, '-', '_' or '.' (got {_shown(value)})"


def _list_problem(field: str, value: object) -> str | None:
    if not isinstance(value, list):
        return f"{field} must be a list"
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            return f"{field}[{index}] must be an object"
        problem = _check_fields(item, prefix=f"{field}[{index}].")
        if problem is not None:
            return problem
    return None


_CONTENT_CHECKS: dict[str, Callable[[str, object], str | None]] = {
    "url": _url_problem,
    "id": _id_problem,
    "text": _prompt_problem,
}

_FIELD_CHECKS: dict[str, Callable[[str, object], str | None]] = {
    **dict.fromkeys(PROMPT_FIELDS, _prompt_problem),
    **dict.fromkeys(URL_FIELDS, _url_problem),
    **dict.fromkeys(ID_FIELDS, _id_problem),
    **dict.fromkeys(LIST_FIELDS, _list_problem),
}


def _shown(value: object) -> str:
    """`value` as an error message may echo it: a repr of at most about 80 characters."""
    return _short_repr.repr(value)
