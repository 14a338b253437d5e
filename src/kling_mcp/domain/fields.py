"""The field types of the tools' inputs: what a model may send, checked before anything is paid for.

A model writes every argument, and models make things up: links without a host, prompts of
megabytes, NULs, ids that are SQL. Each type here refuses such a value with a message that
names the rule and the fix, and quotes the value only through `quote`, so an error never
echoes more than about 100 characters of it. Limits show in the JSON schema only where they
cost a few bytes (every byte of tools/list is paid in every conversation); the checks
themselves are in code.

Carriage returns are allowed in free text: text pasted from Windows has CRLF line ends, and
a CR is as harmless to the API as the newline next to it.
"""

from __future__ import annotations

import json
import re
import reprlib
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar
from urllib.parse import unquote, urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from kling_mcp.domain.local_files import MediaKind, is_local_reference

MAX_URL_LENGTH = 2048
MAX_PATH_LENGTH = 4096
MAX_PROMPT_LENGTH = 2500
MAX_ID_LENGTH = 128
MAX_JSON_TEXT_LENGTH = 65_536
MAX_JSON_DEPTH = 16
QUOTE_LIMIT = 100

T = TypeVar("T")

_short_repr = reprlib.Repr()
_short_repr.maxstring = _short_repr.maxother = QUOTE_LIMIT


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """`value` for an error or a result: at most `limit` characters of it, control characters escaped.

    A longer string is cut, with an ellipsis and its length: `'9999'… (100,000 characters)`; the
    escaped text stays under 2 * `limit` characters, so a message quoting it stays short.
    """
    if not isinstance(value, str):
        text = _short_repr.repr(value)
        return text if len(text) <= limit else f"{text[:limit]}…"
    head = value[:limit]
    while len(repr(head)) > 2 * limit:  # escapes such as \x00 or \U0001342f take up to 10 characters
        head = head[: len(head) // 2]
    return repr(head) if head == value else f"{head!r}… ({len(value):,} characters)"


def _check_length(value: str, limit: int, fix: str) -> None:
    if len(value) > limit:
        raise ValueError(f"must be at most {limit:,} characters (got {len(value):,}): {fix}")


def _refuse_match(pattern: re.Pattern[str], value: str, rule: str, fix: str) -> None:
    found = pattern.search(value)
    if found:
        raise ValueError(f"{rule} (found {quote(found.group())} at character {found.start() + 1:,}): {fix}")


# --- Free text ------------------------------------------------------------------------------

# Control characters but tab, newline and CR; and unpaired surrogates, which cannot be sent as UTF-8.
_TEXT_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(frozen=True)
class Text:
    """Free text of at most `max_length` characters: `Annotated[str, Text(1000)]`.

    Not blank, and no control characters but newline, tab and CR. The JSON schema says
    `maxLength`, so a model knows the limit before it writes.
    """

    max_length: int

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {**handler(schema), "maxLength": self.max_length}

    def check(self, value: str) -> str:
        _check_length(value, self.max_length, "shorten it")
        if not value.strip():
            raise ValueError(
                "must not be empty or only whitespace: write the text (optional ones may be left out)"
            )
        _refuse_match(
            _TEXT_CONTROL,
            value,
            "must not contain control characters",
            "remove them (newlines and tabs are fine)",
        )
        return value


Prompt = Annotated[str, Text(MAX_PROMPT_LENGTH)]
"""A prompt (or negative prompt): not blank, at most 2,500 characters."""

OptionalPrompt = Prompt | None
"""An optional prompt: left out, or a valid `Prompt` (a blank one is refused, not dropped)."""


# --- Ids ------------------------------------------------------------------------------------

_ID = re.compile(r"[A-Za-z0-9._-]+")


def check_identifier(value: str) -> str:
    fix = "pass the id exactly as a Kling result gave it"
    if not value:
        raise ValueError(f"must not be empty: {fix}")
    _check_length(value, MAX_ID_LENGTH, fix)
    if not _ID.fullmatch(value):
        raise ValueError(f"must be only letters, digits, '-', '_' and '.' (got {quote(value)}): {fix}")
    return value


Identifier = Annotated[
    str, AfterValidator(check_identifier), Field(json_schema_extra={"maxLength": MAX_ID_LENGTH})
]
"""An id the API gave out: task_id, video_id, element_id, voice_id, avatar_id."""


# --- Links and files ------------------------------------------------------------------------

_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")


def check_web_url(value: str) -> str:
    """`value` if it is an http(s) link a server could fetch; parsed, not prefix-matched."""
    _check_length(value, MAX_URL_LENGTH, "use a shorter link (tracking parameters can usually go)")
    _check_visible(value)
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises unless the port is a number from 0 to 65535
    except ValueError:
        raise ValueError(
            f"is not a valid URL: its host or port is malformed (got {quote(value)}): check the link"
        ) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"must be an http(s) URL (got {quote(value)}): give a link starting with https://")
    if "@" in parts.netloc:
        raise ValueError(
            f"must not have a user name or password before the host (got {quote(value)}): give the plain link"
        )
    if not parts.hostname or not _is_host(parts.hostname):
        raise ValueError(
            f"must name a valid host (got {quote(value)}): give a full link such as "
            "https://example.com/image.png"
        )
    if any(unquote(segment) == ".." for segment in parts.path.split("/")):
        raise ValueError(
            f"must not contain '..' in its path (got {quote(value)}): give the file's direct link"
        )
    return value


def _check_visible(value: str) -> None:
    for position, char in enumerate(value, start=1):
        if unicodedata.category(char)[0] in "CZ":
            raise ValueError(
                f"must not contain spaces, invisible or control characters (found {quote(char)} at "
                f"character {position:,}): write spaces as %20 and remove the rest"
            )


def _is_host(host: str) -> bool:
    """A DNS name (international ones too) or an IP literal; `host` is as urlsplit lowercased it."""
    if ":" in host:  # only an IPv6 literal has colons here: urlsplit took off the brackets and port
        return bool(re.fullmatch(r"[0-9a-f:.]+(%[\w.~-]+)?", host))
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return all(_LABEL.fullmatch(label) for label in ascii_host.removesuffix(".").split("."))


WebUrl = Annotated[str, AfterValidator(check_web_url), Field(json_schema_extra={"format": "uri"})]
"""An http(s) link with a host: no whitespace or control characters, no `..`, at most 2,048 characters."""


_HTTP_SCHEME = re.compile("https?:", re.IGNORECASE)
_PATH_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(frozen=True)
class MediaSource:
    """A media input: an http(s) link, or a local file reference: `Annotated[str, MediaSource("an image")]`.

    A local reference is only checked for shape here; the file itself is found and checked
    when the call runs.
    """

    kind: str
    """The media in words, for messages: "an image"."""
    media: MediaKind
    """Which checks and limits a local file of this field gets."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def check(self, value: str) -> str:
        expected = f"must be {self.kind}: an http(s) URL, or the absolute path of a file on this computer"
        if not value.strip():
            raise ValueError(f"{expected} (got an empty value)")
        if is_local_reference(value):
            _check_length(value, MAX_PATH_LENGTH, "give a shorter path")
            _refuse_match(_PATH_CONTROL, value, "must not contain control characters", "check the path")
            return value
        if not _HTTP_SCHEME.match(value.lstrip()):
            raise ValueError(f"{expected} (got {quote(value)})")
        return check_web_url(value)


ImageSource = Annotated[str, MediaSource("an image", "image")]
VideoSource = Annotated[str, MediaSource("a video", "video")]
AudioSource = Annotated[str, MediaSource("an audio file", "audio")]


# --- Structured arguments sent as JSON text -------------------------------------------------

_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_TOO_DEEP = f"is nested more than {MAX_JSON_DEPTH} levels deep: pass a flatter value"


def _parse_json_text(value: Any) -> Any:
    """Objects and lists may come as JSON text: the seed passes camera_control that way, and
    some hosts send every structured argument so. Both forms are bounded in size and depth
    before anything recursive (json.loads, validation) sees them."""
    if not isinstance(value, str):
        if _nesting_depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
            raise ValueError(_TOO_DEEP)
        return value
    if len(value) > MAX_JSON_TEXT_LENGTH:
        raise ValueError(
            f"is JSON text of {len(value):,} characters; at most {MAX_JSON_TEXT_LENGTH:,} are accepted: "
            "pass a smaller value"
        )
    if _text_nesting_depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise ValueError(_TOO_DEEP)
    try:
        return json.loads(value)
    except ValueError as exc:
        raise ValueError(
            f"is text but not JSON ({exc}): pass an object or a list, or its JSON text"
        ) from None


def _text_nesting_depth(text: str, limit: int) -> int:
    """How deep brackets and braces nest in `text`, outside its JSON strings; stops past `limit`."""
    depth = deepest = 0
    for token in _JSON_TOKEN.finditer(text):
        bracket = token.group()
        if bracket in ("[", "{"):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                break
        elif bracket in ("]", "}"):
            depth -= 1
    return deepest


def _nesting_depth(value: Any, limit: int) -> int:
    """How deep lists and dicts nest in `value`, counted without recursion; stops past `limit`."""
    deepest = 0
    pending = [(value, 1)]
    while pending and deepest <= limit:
        node, depth = pending.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, depth)
            children = node.values() if isinstance(node, dict) else node
            pending.extend((child, depth + 1) for child in children)
    return deepest


JsonText = Annotated[T, BeforeValidator(_parse_json_text)]
"""A structured argument, also accepted as JSON text: at most 64 KB and 16 levels deep."""
