"""The checks the emulated API makes on a generation request before accepting it.

Only what the wire contract's table marks as required, plus the few value sets that table
names (modes, orientations) and the shape of `duration` and `callback_url`. The finer
rules between models and parameters are left out on purpose: the contract says to let
the API decide them, and kling-mcp checks them before it ever calls.
"""

from __future__ import annotations

from collections.abc import Callable

from .wire import Json

VIDEO_ACTIONS: dict[str, tuple[str, ...]] = {
    "text2video": ("prompt",),
    "image2video": ("prompt", "start_image_url"),
    "extend": ("video_id", "prompt"),
}


def problem_with(path: str, body: Json) -> str | None:
    """What makes `body` an invalid request for the generation endpoint `path`, or None."""
    return _ENDPOINT_CHECKS[path](body) or _check_duration(body) or _check_callback_url(body)


def _check_videos(body: Json) -> str | None:
    action = body.get("action")
    required = VIDEO_ACTIONS.get(action) if isinstance(action, str) else None
    if required is None:
        return f"action must be one of {', '.join(VIDEO_ACTIONS)} (got {action!r})"
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
    return f"{name} must be one of {', '.join(choices)} (got {body.get(name)!r})"


def _check_duration(body: Json) -> str | None:
    duration = body.get("duration")
    if duration is None or _is_whole_number(duration):
        return None
    return f"duration must be a whole number of seconds (got {duration!r})"


def _is_whole_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, str) and value.isdecimal()


def _check_callback_url(body: Json) -> str | None:
    url = body.get("callback_url")
    if url is None or (isinstance(url, str) and url.startswith(("http://", "https://"))):
        return None
    return f"callback_url must be an http(s) URL (got {url!r})"
