"""The checks the emulated API makes on a generation request before accepting it.

What the wire contract's table marks as required, the few value sets that table names
(modes, orientations), the shape of `duration`, and the limits the real API refuses:
prompts of at most 2,500 characters and not blank, media links and `callback_url` that
are http(s) URLs with a host, and well-formed ids. The finer rules between models and
parameters are left out on purpose: the contract says to let the API decide them, and
kling-mcp checks them before it ever calls.

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
MAX_URL_LENGTH = 2048
PROMPT_FIELDS = ("prompt", "negative_prompt")
URL_FIELDS = ("start_image_url", "end_image_url", "image_url", "video_url", "audio_url", "callback_url")
ID_FIELDS = ("video_id", "voice_id", "element_id", "avatar_id")
LIST_FIELDS = ("image_list", "video_list", "element_list", "voice_list")
_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
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


def _check_videos(body: Json) -> str | None:
    action = body.get("action")
    required = VIDEO_ACTIONS.get(action) if isinstance(action, str) else None
    if required is None:
        return f"action must be one of {', '.join(VIDEO_ACTIONS)} (got {_shown(action)})"
    return _require(body, *required)


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


_ENDPOINT_CHECKS: dict[str, Callable[[Json], str | None]] = {
    "/kling/videos": _check_videos,
    "/kling/motion": _check_motion,
    "/kling/lip-sync": _check_lip_sync,
    "/kling/talking-photo": _check_talking_photo,
}

GENERATION_PATHS = tuple(_ENDPOINT_CHECKS)


def _present(body: Json, name: str) -> bool:
    return body.get(name) not in (None, "")


def _require(body: Json, *names: str) -> str | None:
    missing = [name for name in names if not _present(body, name)]
    return f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required" if missing else None


def _require_any(body: Json, *names: str) -> str | None:
    return None if any(_present(body, name) for name in names) else f"{' or '.join(names)} is required"


def _require_choice(body: Json, name: str, choices: tuple[str, ...]) -> str | None:
    if body.get(name) in choices:
        return None
    return f"{name} must be one of {', '.join(choices)} (got {_shown(body.get(name))})"


def _check_duration(body: Json) -> str | None:
    duration = body.get("duration")
    if duration is None or _is_whole_number(duration):
        return None
    return f"duration must be a whole number of seconds (got {_shown(duration)})"


def _is_whole_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, str) and value.isdecimal()


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


_FIELD_CHECKS: dict[str, Callable[[str, object], str | None]] = {
    **dict.fromkeys(PROMPT_FIELDS, _prompt_problem),
    **dict.fromkeys(URL_FIELDS, _url_problem),
    **dict.fromkeys(ID_FIELDS, _id_problem),
    **dict.fromkeys(LIST_FIELDS, _list_problem),
}


def _shown(value: object) -> str:
    """`value` as an error message may echo it: a repr of at most about 80 characters."""
    return _short_repr.repr(value)
