"""The tools' field types: each bad value refused with a short message naming the rule and the fix."""

from __future__ import annotations

import json
import re
import string
from typing import Annotated, Any
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from kling_mcp.domain.fields import (
    AudioSource,
    Identifier,
    ImageSource,
    JsonText,
    OptionalPrompt,
    Prompt,
    Text,
    VideoSource,
    WebUrl,
    quote,
)

EXAMPLES = settings(max_examples=60, deadline=None)
MAX_ECHO = 100


def refusal(field_type: Any, value: object) -> str:
    """The message a model would read for `value` (registration strips pydantic's prefix)."""
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(field_type).validate_python(value)
    [error] = caught.value.errors(include_url=False)
    return str(error["msg"]).removeprefix("Value error, ")


def accepts(field_type: Any, value: object) -> bool:
    return bool(TypeAdapter(field_type).validate_python(value) == value)


def assert_short_echo(message: str, value: str) -> None:
    """The message is under 1 KB and holds no run of more than MAX_ECHO characters of `value`."""
    assert len(message.encode()) < 1024, message
    window = MAX_ECHO + 1
    assert not any(value[start : start + window] in message for start in range(len(value) - MAX_ECHO))


# --- WebUrl ---------------------------------------------------------------------------------

REAL_URLS = [
    "https://cdn.acedata.cloud/0f3a9c2e.png",
    "https://d1q70pf5vjeyhc.cloudfront.net/predictions/9a1f/output.png?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIA%2F20240101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=deadbeef",
    "https://p16-sign-va.tiktokcdn.com/obj/tos-maliva-p-0068/o0A~tplv-photomode:720:720.jpeg?x-expires=1&x=a%3D",
    "https://upload.wikimedia.org/wikipedia/commons/thumb/a/a7/Camponotus_flavomarginatus_ant.jpg/320px-Ant.jpg",
    "https://storage.googleapis.com/my-bucket/folder%20name/clip.mp4#t=2",
    "HTTPS://Example.COM/Photo.PNG",
    "http://127.0.0.1:8765/media/clip.mp4",
    "http://[::1]:8080/speech.mp3",
    "https://example.com./trailing-dot-host.png",
    "https://bücher.example/straße.jpg",
    "https://example.com/a..b/..c/file..png",
    "http://i",
]


@pytest.mark.parametrize("url", REAL_URLS)
def test_web_url_accepts_real_links(url: str) -> None:
    assert accepts(WebUrl, url)


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("https://", "must name a valid host"),
        ("http:///x", "must name a valid host"),
        ("https://a..b/", "must name a valid host"),
        ("https://-cdn.com/x", "must name a valid host"),
        ("https://cdn\\evil.com/x", "must name a valid host"),
        ("https://@", "user name or password"),
        ("https://user:secret@cdn.com/x", "user name or password"),
        ("https://a b/", "spaces, invisible or control characters (found ' ' at character 10)"),
        ("https://x/\x00", "(found '\\x00' at character 11)"),
        ("https://x/\u200b.png", "invisible"),
        (" https://x.com/a.png", "found ' ' at character 1"),
        ("javascript:alert(1)", "must be an http(s) URL (got 'javascript:alert(1)')"),
        ("ftp://files.example.com/a.png", "must be an http(s) URL"),
        ("cdn.example.com/a.png", "must be an http(s) URL"),
        ("https://cdn/../x", "'..'"),
        ("https://cdn/a/%2E%2e/x", "'..'"),
        ("http://[::1/x", "is not a valid URL"),
        ("http://x.com:99999/", "is not a valid URL"),
    ],
)
def test_web_url_refuses_with_the_rule_and_the_fix(url: str, rule: str) -> None:
    message = refusal(WebUrl, url)
    assert rule in message
    assert "): " in message  # the rule, what was given, then the fix


def test_web_url_length_limit() -> None:
    base = "https://cdn.example.com/"
    assert accepts(WebUrl, base + "a" * (2048 - len(base)))
    message = refusal(WebUrl, base + "a" * (2049 - len(base)))
    assert message.startswith("must be at most 2,048 characters (got 2,049): use a shorter link")


_HOST_LABELS = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=12)
_PATH_SEGMENTS = st.text(string.ascii_letters + string.digits + "-._~%!$&'()*+,;=:@", max_size=12).filter(
    lambda segment: unquote(segment) != ".."
)


@st.composite
def web_urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https", "HTTPS"]))
    host = ".".join(draw(st.lists(_HOST_LABELS, min_size=1, max_size=4)))
    port = draw(st.none() | st.integers(1, 65535))
    path = "/".join(draw(st.lists(_PATH_SEGMENTS, max_size=6)))
    query = draw(st.none() | st.text(string.ascii_letters + string.digits + "=&%-_", max_size=40))
    netloc = host if port is None else f"{host}:{port}"
    return f"{scheme}://{netloc}/{path}" + ("" if query is None else f"?{query}")


@st.composite
def broken_web_urls(draw: st.DrawFn) -> str:
    url = draw(web_urls())
    position = draw(st.integers(0, len(url)))
    breakage = draw(
        st.sampled_from(["space", "control", "scheme", "no host", "userinfo", "dots", "too long"])
    )
    if breakage in ("space", "control"):
        alphabet = " \t\n\u00a0\u3000" if breakage == "space" else "\x00\x01\x1b\x7f\x85\u200b\ud800"
        return url[:position] + draw(st.sampled_from(alphabet)) + url[position:]
    scheme, rest = url.split("://", 1)
    if breakage == "scheme":
        other = draw(st.sampled_from(["ftp", "file", "javascript", "data", "ws", "httpx", ""]))
        return f"{other}:{rest}" if other in ("javascript", "data") else f"{other}://{rest}"
    if breakage == "no host":
        return f"{scheme}:///{rest.partition('/')[2]}"
    if breakage == "userinfo":
        return f"{scheme}://{draw(st.sampled_from(['', 'user', 'u:p']))}@{rest}"
    if breakage == "dots":
        return f"{url.split('?')[0].rstrip('/')}/../secret"
    return url + "a" * draw(st.integers(2049, 5000))


@EXAMPLES
@given(web_urls())
def test_generated_web_urls_pass(url: str) -> None:
    assert accepts(WebUrl, url)


@EXAMPLES
@given(broken_web_urls())
def test_generated_broken_web_urls_fail_with_a_short_message(url: str) -> None:
    assert_short_echo(refusal(WebUrl, url), url)


# --- Media sources --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source", ["/home/me/cat.png", "~/Pictures/cat.png", "file:///Users/me/cat%20photo.png", "/tmp/a b/ü.png"]
)
def test_media_source_accepts_local_file_references(source: str) -> None:
    assert accepts(ImageSource, source)


def test_media_source_accepts_links_and_checks_them_as_links() -> None:
    assert accepts(VideoSource, REAL_URLS[1])
    assert "must name a valid host" in refusal(VideoSource, "https://")
    assert "found ' '" in refusal(AudioSource, "https://a b/speech.mp3")


@pytest.mark.parametrize(
    "source", ["cat.png", "./cat.png", "ftp://x/cat.png", "data:image/png;base64,AAAA", ""]
)
def test_media_source_refuses_what_is_neither_a_link_nor_a_file(source: str) -> None:
    message = refusal(ImageSource, source)
    assert message.startswith(
        "must be an image: an http(s) URL, or the absolute path of a file on this computer"
    )


def test_media_source_refuses_malformed_paths() -> None:
    assert refusal(ImageSource, "/tmp/cat\x00.png") == (
        "must not contain control characters (found '\\x00' at character 9): check the path"
    )
    message = refusal(ImageSource, "/" + "a" * 4096)
    assert message == "must be at most 4,096 characters (got 4,097): give a shorter path"


_PATH_TEXT = st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=200)


@EXAMPLES
@given(st.sampled_from(["/", "~/", "file:///"]), _PATH_TEXT)
def test_generated_local_paths_pass(prefix: str, rest: str) -> None:
    assert accepts(ImageSource, prefix + rest)


@EXAMPLES
@given(
    _PATH_TEXT.filter(lambda text: not text.lstrip().startswith(("/", "~", "file:", "http"))).map(
        lambda text: text * 30
    )
)
def test_generated_relative_names_fail_with_a_short_message(name: str) -> None:
    assert_short_echo(refusal(ImageSource, name), name)


# --- Prompts and text -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "prompt",
    [
        "A red fox\nturns its head,\tblinks,\r\nand runs into the snow.",
        "猫" * 2500,
        "🦊" * 2500,
        "a" * 2500,
        "Ünïcødé and emoji with a joiner: 👩\u200d🚀",
    ],
)
def test_prompt_accepts_text_up_to_2500_characters(prompt: str) -> None:
    assert accepts(Prompt, prompt)


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("x" * 100_000, "must be at most 2,500 characters (got 100,000): shorten it"),
        ("x" * 2_000_000, "must be at most 2,500 characters (got 2,000,000): shorten it"),
        ("猫" * 2501, "must be at most 2,500 characters (got 2,501): shorten it"),
        ("", "must not be empty or only whitespace: write the text (optional ones may be left out)"),
        (
            " \n\t ",
            "must not be empty or only whitespace: write the text (optional ones may be left out)",
        ),
        (
            "a fox\x00",
            "must not contain control characters (found '\\x00' at character 6): "
            "remove them (newlines and tabs are fine)",
        ),
        ("a fox \x1b[31m", "(found '\\x1b' at character 7)"),
        ("a fox \ud800", "(found '\\ud800' at character 7)"),
    ],
)
def test_prompt_refusals(prompt: str, message: str) -> None:
    assert message in refusal(Prompt, prompt)


def test_optional_prompt_may_be_left_out_but_not_blank() -> None:
    assert TypeAdapter(OptionalPrompt).validate_python(None) is None
    assert "must not be empty" in refusal(OptionalPrompt, "")


def test_text_takes_its_own_limit() -> None:
    speech = Annotated[str, Text(1000)]
    assert accepts(speech, "b" * 1000)
    assert refusal(speech, "b" * 1001) == "must be at most 1,000 characters (got 1,001): shorten it"


_PROMPT_CHARACTERS = st.characters(exclude_categories=("Cc", "Cs")) | st.sampled_from("\n\t\r")


@EXAMPLES
@given(st.text(_PROMPT_CHARACTERS, min_size=1, max_size=2500).filter(str.strip))
def test_generated_prompts_pass(prompt: str) -> None:
    assert accepts(Prompt, prompt)


@st.composite
def broken_prompts(draw: st.DrawFn) -> str:
    breakage = draw(st.sampled_from(["blank", "control", "too long"]))
    if breakage == "blank":
        return draw(st.text(" \t\n\r\u3000\u00a0", max_size=50))
    if breakage == "too long":
        return draw(st.text(_PROMPT_CHARACTERS, min_size=2501, max_size=5000))
    prompt = draw(st.text(_PROMPT_CHARACTERS, min_size=1, max_size=2000))
    position = draw(st.integers(0, len(prompt)))
    control = draw(st.characters(categories=("Cc", "Cs"), exclude_characters="\n\t\r"))
    return prompt[:position] + control + prompt[position:]


@EXAMPLES
@given(broken_prompts())
def test_generated_broken_prompts_fail_with_a_short_message(prompt: str) -> None:
    assert_short_echo(refusal(Prompt, prompt), prompt)


# --- Identifiers ----------------------------------------------------------------------------

WELL_FORMED_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


@pytest.mark.parametrize(
    "identifier", ["0b9c3f64-1d2e-4c5b-9a8f-7e6d5c4b3a21", "voice.en-US_male.1", "123456", "a" * 128]
)
def test_identifier_accepts_ids_the_api_gives_out(identifier: str) -> None:
    assert accepts(Identifier, identifier)


@pytest.mark.parametrize(
    ("identifier", "message"),
    [
        ("", "must not be empty: pass the id exactly as a Kling result gave it"),
        ("9" * 100_000, "must be at most 128 characters (got 100,000): pass the id exactly"),
        (
            "'; DROP TABLE tasks; --",
            "must be only letters, digits, '-', '_' and '.' (got \"'; DROP TABLE tasks; --\"): pass the id",
        ),
        ("task 1", "(got 'task 1')"),
        ("task/1", "(got 'task/1')"),
        ("tâche", "(got 'tâche')"),
    ],
)
def test_identifier_refusals(identifier: str, message: str) -> None:
    assert message in refusal(Identifier, identifier)


@EXAMPLES
@given(st.from_regex(WELL_FORMED_ID, fullmatch=True))
def test_generated_identifiers_pass(identifier: str) -> None:
    assert accepts(Identifier, identifier)


@EXAMPLES
@given(st.text(max_size=300).filter(lambda text: not WELL_FORMED_ID.fullmatch(text)))
def test_generated_malformed_identifiers_fail_with_a_short_message(identifier: str) -> None:
    assert_short_echo(refusal(Identifier, identifier), identifier)


# --- JSON text ------------------------------------------------------------------------------


class Move(BaseModel):
    type: str
    config: dict[str, float] | None = None


def test_json_text_accepts_an_object_or_its_json_text() -> None:
    adapter = TypeAdapter(JsonText[Move])
    move = {"type": "simple", "config": {"zoom": 0.5}}
    assert adapter.validate_python(json.dumps(move)) == adapter.validate_python(move) == Move(**move)


@pytest.mark.parametrize("nested", ["[" * 60_000, "[" * 17 + "]" * 17, '{"a":' * 17 + "1" + "}" * 17])
def test_json_text_nested_too_deep_is_refused_before_parsing(nested: str) -> None:
    assert refusal(JsonText[object], nested) == "is nested more than 16 levels deep: pass a flatter value"


def test_json_text_depth_counts_brackets_outside_strings_only() -> None:
    text = json.dumps({"type": "[" * 100 + "{" * 100})
    assert TypeAdapter(JsonText[Move]).validate_python(text).type.startswith("[[[")
    sixteen_deep = "[" * 16 + "]" * 16
    assert TypeAdapter(JsonText[object]).validate_python(sixteen_deep) == json.loads(sixteen_deep)


def test_structured_values_nested_too_deep_are_refused_without_recursion() -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    assert refusal(JsonText[object], deep) == "is nested more than 16 levels deep: pass a flatter value"


def test_json_text_size_limit_and_syntax_errors() -> None:
    big = json.dumps(["x" * 70_000])
    assert refusal(JsonText[object], big) == (
        "is JSON text of 70,004 characters; at most 65,536 are accepted: pass a smaller value"
    )
    message = refusal(JsonText[Move], "{oops")
    assert message.startswith("is text but not JSON (")
    assert message.endswith("): pass an object or a list, or its JSON text")


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        value = list(value.values())
    return 1 + max(map(depth_of, value), default=0) if isinstance(value, list) else 0


_JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)


@EXAMPLES
@given(
    st.recursive(
        _JSON_SCALARS,
        lambda children: (
            st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
        ),
        max_leaves=30,
    ).filter(lambda value: isinstance(value, (list, dict)) and depth_of(value) <= 16)
)
def test_generated_json_within_limits_passes_as_text_and_as_value(value: Any) -> None:
    adapter = TypeAdapter(JsonText[object])
    assert adapter.validate_python(json.dumps(value)) == adapter.validate_python(value) == value


@EXAMPLES
@given(st.integers(17, 20_000), st.lists(st.sampled_from(["[", '{"k":']), min_size=1, max_size=4))
def test_generated_deep_json_fails_with_a_short_message(depth: int, openers: list[str]) -> None:
    text = "".join(openers[level % len(openers)] for level in range(depth))
    assert_short_echo(refusal(JsonText[object], text), text)


# --- quote ----------------------------------------------------------------------------------


def test_quote_is_bounded_and_escaped() -> None:
    assert quote("fox") == "'fox'"
    assert quote("9" * 100_000) == "'" + "9" * 100 + "'… (100,000 characters)"
    assert quote("a\x00\x1b\ud800") == "'a\\x00\\x1b\\ud800'"
    assert quote(None) == "None"
    assert quote("x" * 20, limit=5) == "'xxxxx'… (20 characters)"


def test_quote_never_recurses_into_deep_values() -> None:
    deep: list[Any] = []
    for _ in range(10_000):
        deep = [deep]
    assert len(quote(deep)) <= 101


@EXAMPLES
@given(st.text(max_size=3000))
def test_quoted_text_is_printable_and_short(value: str) -> None:
    quoted = quote(value)
    assert quoted.isprintable()
    quoted.encode()  # no lone surrogate left to break a UTF-8 answer
    assert_short_echo(quoted, value)


# --- Schemas --------------------------------------------------------------------------------


def test_schemas_carry_only_cheap_limits() -> None:
    class Request(BaseModel):
        prompt: Prompt
        negative_prompt: OptionalPrompt = None
        video_id: Identifier
        image_url: WebUrl
        start_image_url: ImageSource
        moves: JsonText[list[int]]

    properties = Request.model_json_schema()["properties"]
    assert properties["prompt"] == {"maxLength": 2500, "title": "Prompt", "type": "string"}
    assert properties["negative_prompt"]["anyOf"][0] == {"maxLength": 2500, "type": "string"}
    assert properties["video_id"] == {"maxLength": 128, "title": "Video Id", "type": "string"}
    assert properties["image_url"] == {"format": "uri", "title": "Image Url", "type": "string"}
    assert properties["start_image_url"] == {"title": "Start Image Url", "type": "string"}
    assert properties["moves"] == {"items": {"type": "integer"}, "title": "Moves", "type": "array"}
