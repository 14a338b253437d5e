"""Bad input never costs money, never floods the conversation, never ends in an opaque error.

For every tool and every field of its published input schema (read from `tools/list` through
the in-memory client), invalid values are refused with an error that names the field, says
nothing was sent or charged, and stays under 4 KB, while no HTTP request leaves the server (the
mock below answers every host: the API, the upload host, any CDN). Valid calls, built from valid
base calls by valid changes, reach the API exactly once, with a body the emulated API accepts.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, CallToolResult, TextContent

from kling_mcp.emulator.validation import problem_with
from kling_mcp.server.app import create_server
from kling_mcp.settings import Settings
from tests.conftest import API, FakeKling, scripted_settings

pytestmark = pytest.mark.anyio

NOTHING_SENT = "nothing was sent, nothing was charged"
ANSWER_LIMIT = 4096
DROP_TABLE = "'; DROP TABLE tasks; --"
IMAGE = "https://cdn.example.com/cat.png"
VIDEO = "https://cdn.example.com/moves.mp4"
AUDIO = "https://cdn.example.com/speech.mp3"
EXAMPLES = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Valid calls of every tool; together they hold every nested field of the published schemas.
BASE_CALLS: dict[str, list[dict[str, Any]]] = {
    "kling_generate_video": [
        {"prompt": "a red fox in the snow"},
        {
            "prompt": "a red fox in the snow",
            "model": "kling-v2-master",
            "negative_prompt": "blur",
            "cfg_scale": 0.5,
            "camera_control": {"type": "simple", "config": {"zoom": 0.5}},
            "callback_url": "https://hooks.example.com/kling",
        },
        {
            "prompt": "a red fox in the snow",
            "model": "kling-v3-omni",
            "image_list": [{"image_url": IMAGE, "type": "first_frame"}],
            "element_list": [{"element_id": "123456"}],
        },
        {
            "prompt": "a red fox in the snow",
            "model": "kling-v3-omni",
            "video_list": [{"video_url": VIDEO, "refer_type": "feature", "keep_original_sound": "yes"}],
        },
        {"prompt": "a red fox", "model": "kling-v3", "mode": "pro", "duration": 12, "generate_audio": True},
    ],
    "kling_generate_video_from_image": [
        {"prompt": "the cat blinks", "start_image_url": IMAGE, "end_image_url": IMAGE, "aspect_ratio": "1:1"},
        {
            "prompt": "the cat blinks",
            "start_image_url": IMAGE,
            "negative_prompt": "blur",
            "cfg_scale": 0.2,
            "camera_control": {"type": "simple", "config": {"pan": -0.5}},
        },
        {
            "prompt": "the cat blinks",
            "start_image_url": IMAGE,
            "model": "kling-v3-omni",
            "image_list": [{"image_url": IMAGE}],
            "element_list": [{"element_id": "123456"}],
        },
        {
            "prompt": "the cat blinks",
            "start_image_url": IMAGE,
            "model": "kling-v3-omni",
            "video_list": [{"video_url": VIDEO, "refer_type": "feature"}],
        },
    ],
    "kling_extend_video": [{"prompt": "it keeps running", "video_id": "0b9c3f64-1d2e.v2_final"}],
    "kling_generate_turbo_video": [{"prompt": "a quick draft", "start_image_url": IMAGE, "mode": "pro"}],
    "kling_generate_storyboard": [
        {"prompt": "a fox's day"},
        {
            "prompt": "a fox's day",
            "shot_type": "customize",
            "duration": 7,
            "multi_prompt": [
                {"index": 1, "prompt": "it wakes", "duration": 3},
                {"prompt": "runs", "duration": 4},
            ],
        },
    ],
    "kling_generate_with_assets": [
        {"prompt": "the hero walks in", "element_list": [{"element_id": "hero-1"}]},
        {
            "prompt": "<<<voice_1>>> says hello",
            "voice_list": [{"voice_id": "voice-1"}],
            "model": "kling-v2-6",
            "mode": "pro",
            "generate_audio": True,
        },
    ],
    "kling_generate_motion": [
        {"image_url": IMAGE, "video_url": VIDEO, "prompt": "on a stage", "model_name": "motion-1"},
    ],
    "kling_lip_sync": [
        {"video_id": "video-1", "text": "hello there", "voice_id": "oversea_male1", "voice_speed": 1.5},
        {"video_url": VIDEO, "audio_url": AUDIO},
    ],
    "kling_talking_photo": [
        {"image_url": IMAGE, "audio_url": AUDIO, "prompt": "smiles", "model": "kling-v2-6"},
    ],
    "kling_goods_studio": [
        {
            "product_images": [IMAGE],
            "title": "Blue mug",
            "description": "Stoneware",
            "price": "$29.99",
            "selling_points": ["Keeps tea hot"],
        },
    ],
    "kling_video_commerce": [
        {
            "speech_script": "Buy this mug.",
            "avatar_image": IMAGE,
            "product_images": [IMAGE],
            "voice_id": "v-1",
        },
        {"speech_script": "Buy this mug.", "avatar_id": "avatar-7", "action_prompt": "waves"},
    ],
    "kling_get_task": [{"task_id": "task-1", "timeout": 0}],
    "kling_get_tasks_batch": [{"task_ids": ["task-1", "task-2"]}],
    "kling_list_tasks": [{"state": "running", "tool": "kling_generate_video", "since_hours": 1}],
    "kling_download_video": [{"task_id": "task-1"}],
    "kling_list_models": [{}],
    "kling_extract_frame": [{"source": "task-1", "at": 2.5}, {"source": "task-1", "at": "last"}],
    "kling_join_videos": [{"sources": ["task-1", "task-2"], "output": "film.mp4"}],
}
FREE_TOOLS = {
    "kling_list_tasks",
    "kling_download_video",
    "kling_list_models",
    "kling_extract_frame",
    "kling_join_videos",
}
"""Answered without the API (from the journal), so they have no valid call that reaches it."""
LOOKUP_TOOLS = {"kling_get_task", "kling_get_tasks_batch"}


# --- The server, and an API that sees every request ----------------------------------------


class FakeApi(FakeKling):
    """The scripted API, refusing (as the emulated API would) a body the emulator refuses, with every
    task done at its first check; any other request, to any host, is answered 599."""

    def __init__(self, router: respx.MockRouter) -> None:
        super().__init__(router, base_url=API)
        self.polls_until_done = 1
        router.route().respond(599)

    @property
    def requests(self) -> int:
        return len(self.submissions) + len(self.queries)

    def _submit(self, request: httpx.Request) -> httpx.Response:
        problem = problem_with(request.url.path, json.loads(request.content))
        answer = super()._submit(request)
        if problem is not None:
            return httpx.Response(400, json={"error": {"code": "bad_request", "message": problem}})
        return answer


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    """Every HTTP request the server makes, to any host."""
    with respx.mock(assert_all_called=False) as mock:
        yield mock


@pytest.fixture
def api(router: respx.MockRouter) -> FakeApi:
    return FakeApi(router)


def server_settings(directory: Path) -> Settings:
    return scripted_settings(directory, poll_interval=0.01)


@pytest.fixture
async def client(tmp_path: Path, api: FakeApi) -> AsyncIterator[Client]:
    async with Client(create_server(server_settings(tmp_path))) as connected:
        yield connected


@pytest.fixture
async def schemas(client: Client) -> dict[str, dict[str, Any]]:
    return {tool.name: tool.input_schema for tool in (await client.list_tools()).tools}


def answer_text(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


async def assert_refused(
    client: Client, router: respx.MockRouter, tool: str, arguments: dict[str, Any], field: str
) -> str:
    """The call is refused naming `field`, saying nothing was sent, in under 4 KB; nothing was sent."""
    result = await client.call_tool(tool, arguments)
    text = answer_text(result)
    assert result.is_error, text[:500]
    assert field in text, text[:500]
    assert NOTHING_SENT in text.lower(), text[:500]
    assert len(text.encode()) < ANSWER_LIMIT, f"{len(text.encode()):,} bytes: {text[:300]}"
    assert router.calls.call_count == 0, [str(call.request.url) for call in router.calls]
    return text


# --- The fields of the published schemas, and invalid values for each ----------------------

Path_ = tuple[str | int, ...]


def leaves(schema: dict[str, Any], path: Path_ = ()) -> Iterator[tuple[Path_, dict[str, Any]]]:
    """Every field in `schema`: its path in a call (list items at index 0) and its own schema."""
    if path:
        yield path, schema
    if "properties" in schema:
        for name, field in schema["properties"].items():
            yield from leaves(field, (*path, name))
    if isinstance(schema.get("items"), dict):
        yield from leaves(schema["items"], (*path, 0))
    if isinstance(schema.get("additionalProperties"), dict):
        key = schema.get("propertyNames", {}).get("enum", ["key"])[0]
        yield from leaves(schema["additionalProperties"], (*path, key))


def kind_of(schema: dict[str, Any]) -> str:
    """What a field holds, from its published schema alone: the classes of invalid values it gets."""
    if "enum" in schema:
        return "enum"
    if "anyOf" in schema:  # a named choice or a number: kling_extract_frame's `at`
        return "choice_or_number"
    kind = schema.get("type")
    if kind == "string":
        if schema.get("format") == "uri":
            return "web_url"
        if schema.get("maxLength") == 128:
            return "id"
        return "text" if "maxLength" in schema else "media"
    assert kind in ("integer", "number", "boolean", "array", "object"), f"unclassified field: {schema}"
    return str(kind)


def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def deep_value(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


BAD_URLS = [
    "https://",
    "http:///x.png",
    "https://cdn.example.com/a cat.png",
    "https://cdn.example.com/../secret.png",
    "https://cdn.example.com/%2e%2e/secret.png",
    "https://cdn.example.com/a\x07.png",
    "https://cdn.example.com/a\x00.png",
    "https://cdn.example.com/a\u200b.png",
    "https://cdn.example.com/" + "a" * 2049,
    "https://user:secret@cdn.example.com/a.png",
    "https://cdn.example.com:99999/a.png",
    "ftp://cdn.example.com/a.png",
    "javascript:alert(1)",
    "",
    "   ",
]
BAD_IDS = ["", DROP_TABLE, "v" * 129, "9" * 100_000, "id with space", "id\x00", "../etc/passwd", "ID\n"]
WRONG_FOR_STRINGS = [42, 4.2, True, [], {}, ["a"]]
VALID_ID = re.compile(r"[A-Za-z0-9._-]+")


def invalid_values(schema: dict[str, Any], example: Any) -> list[Any]:
    """The canonical invalid values for a field; `example` is a valid value of it from a base call."""
    kind = kind_of(schema)
    if kind == "enum":
        choices = schema["enum"]
        return ["no-such-choice", str(choices[0]).upper() + "!", 7, -1.5, [], {}, [choices[0]]]
    if kind == "choice_or_number":
        return ["no-such-choice", "LAST", -1, -0.5, "x5", [], {}]
    if kind == "web_url":
        return [*BAD_URLS, "relative/cat.png", "/home/me/cat.png", *WRONG_FOR_STRINGS]
    if kind == "media":
        return [*BAD_URLS, "relative/cat.png", "cat.png", "~cat.png", "/" + "a" * 4097, *WRONG_FOR_STRINGS]
    if kind == "id":
        return [*BAD_IDS, *WRONG_FOR_STRINGS]
    if kind == "text":
        limit = schema["maxLength"]
        return [
            "",
            " \n\t ",
            "x" * (limit + 1),
            "a\x00b",
            "bell\x07",
            "x\ud800",
            "esc\x1b[31m",
            *WRONG_FOR_STRINGS,
        ]
    if kind in ("integer", "number"):
        # No NaN or infinity: the client sends them as JSON null, which leaves the field out.
        values: list[Any] = ["x5", [], {}, [1], 2.5 if kind == "integer" else "fast"]
        if "minimum" in schema:
            values += [schema["minimum"] - 1, schema["minimum"] - 0.001]
        if "exclusiveMinimum" in schema:
            values += [schema["exclusiveMinimum"], -0.5]
        if "maximum" in schema:
            values += [schema["maximum"] + 1, 1e300]
        return values
    if kind == "boolean":
        return ["maybe", 2, -1, [], {}, [True]]
    if kind == "array":
        values = [42, True, "x not json", json.dumps(example)[:-1], "[" + " " * 70_000 + "]"]
        values += [deep_json(17), deep_value(17), deep_json(100_000), {"a": example}]
        if "minItems" in schema:
            values.append([])
        if "maxItems" in schema:
            values.append([example[0]] * (schema["maxItems"] + 1))
        return values
    assert kind == "object"
    return [
        42,
        "x not json",
        [example],
        deep_json(17),
        {**example, "no_such_key": 1},
        "{" + " " * 70_000 + "}",
    ]


def base_with(tool: str, path: Path_) -> dict[str, Any]:
    """A valid base call of `tool` that holds the container of `path` (any base for a top-level field)."""
    for base in BASE_CALLS[tool]:
        try:
            value_at(base, path[:-1])
        except (KeyError, IndexError, TypeError):
            continue
        return base
    raise AssertionError(f"no base call of {tool} holds {'.'.join(map(str, path[:-1]))}: add one")


def value_at(call: Any, path: Path_) -> Any:
    for step in path:
        call = call[step]
    return call


def with_value(call: dict[str, Any], path: Path_, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(call)
    value_at(changed, path[:-1])[path[-1]] = value
    return changed


def field_cases(schemas: dict[str, dict[str, Any]]) -> list[tuple[str, Path_, dict[str, Any]]]:
    cases = [(tool, path, field) for tool, schema in schemas.items() for path, field in leaves(schema)]
    assert len(cases) > 100
    return cases


def example_of(tool: str, path: Path_) -> Any:
    base = base_with(tool, path)
    try:
        return value_at(base, path)
    except (KeyError, IndexError):
        return {"type": "simple"} if path[-1] == "camera_control" else ["a"]


# --- Every field of every tool refuses every kind of invalid value ------------------------


async def test_every_field_of_every_tool_refuses_invalid_values_before_sending(
    client: Client, router: respx.MockRouter, schemas: dict[str, dict[str, Any]]
) -> None:
    unrefused = []
    for tool, path, field in field_cases(schemas):
        base = base_with(tool, path)
        for value in invalid_values(field, example_of(tool, path)):
            result = await client.call_tool(tool, with_value(base, path, value))
            text = answer_text(result)
            named = ".".join(map(str, path))
            container = str(path[0])
            fine = (
                result.is_error
                and (named in text or container in text)
                and NOTHING_SENT in text.lower()
                and len(text.encode()) < ANSWER_LIMIT
            )
            if not fine:
                unrefused.append(f"{tool} {named}={value!r:.60}: {text[:160]!r}")
    assert not unrefused, "\n".join(unrefused)
    assert router.calls.call_count == 0, [str(call.request.url) for call in router.calls]


async def test_every_tool_refuses_unknown_parameters(
    client: Client, router: respx.MockRouter, schemas: dict[str, dict[str, Any]]
) -> None:
    for tool in schemas:
        base = BASE_CALLS[tool][0]
        await assert_refused(client, router, tool, {**base, "no_such_parameter": 1}, "no_such_parameter")
        text = await assert_refused(client, router, tool, {**base, "p" * 100_000: 1}, "ppp")
        assert "p" * 101 not in text


# --- Properties ---------------------------------------------------------------------------

CONTROL = st.sampled_from(["\x00", "\x01", "\x07", "\x0b", "\x1b", "\x7f", "\x85", "\ud800"])


@st.composite
def with_bad_character(draw: st.DrawFn, text: str, bad: st.SearchStrategy[str]) -> str:
    position = draw(st.integers(0, len(text)))
    return text[:position] + draw(bad) + text[position:]


def wrong_types(allowed: tuple[type, ...]) -> st.SearchStrategy[Any]:
    """Values pydantic cannot coerce to `allowed` (bools pass as 0/1 for numbers, so none here)."""
    values = st.one_of(
        st.integers(min_value=2),
        st.floats(allow_nan=False, allow_infinity=False).filter(lambda number: not number.is_integer()),
        st.text(max_size=20).map(lambda text: f"x{text}"),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    )
    return values.filter(lambda value: not isinstance(value, allowed))


def generated_invalid(schema: dict[str, Any], example: Any) -> st.SearchStrategy[Any]:
    kind = kind_of(schema)
    canonical = st.sampled_from(invalid_values(schema, example))
    if kind in ("web_url", "media"):
        url = st.from_regex(r"https://[a-z]{1,12}\.example\.com/[a-z0-9/]{0,30}\.png", fullmatch=True)
        broken = st.one_of(
            url.flatmap(
                lambda link: with_bad_character(link, st.sampled_from([" ", "\t", "\n", "\x00", "\u3000"]))
            ),
            url.map(lambda link: link.replace(".example.com/", ".example.com/../")),
            st.integers(2049, 5000).map(lambda size: "https://cdn.example.com/" + "a" * size),
            st.from_regex(r"(ftp|file|data|mailto|ws)s?://?[a-z]{0,9}", fullmatch=True),
        )
        return st.one_of(canonical, broken)
    if kind == "id":
        return st.one_of(
            canonical,
            st.text(min_size=1, max_size=40).filter(lambda text: not VALID_ID.fullmatch(text)),
            st.integers(129, 2000).map(lambda size: "a" * size),
            wrong_types((str,)),
        )
    if kind == "text":
        limit = schema["maxLength"]
        return st.one_of(
            canonical,
            st.text(min_size=1, max_size=40).flatmap(lambda text: with_bad_character(text, CONTROL)),
            st.integers(limit + 1, limit + 3000).map(lambda size: "ä" * size),
            st.text(alphabet=" \t\n\r\u3000", max_size=10),
            wrong_types((str,)),
        )
    if kind == "array":
        return st.one_of(canonical, st.integers(17, 300).map(deep_json), wrong_types((list, str)))
    if kind in ("integer", "number"):
        return st.one_of(canonical, wrong_types((int, float)))
    if kind == "boolean":
        return st.one_of(canonical, wrong_types((bool, int)), st.integers(min_value=2))
    return canonical


@functools.cache
def published_schemas() -> dict[str, dict[str, Any]]:
    """The input schemas `tools/list` publishes, read once for the properties' strategies."""

    async def read() -> dict[str, dict[str, Any]]:
        with tempfile.TemporaryDirectory() as directory:
            async with Client(create_server(server_settings(Path(directory)))) as fresh:
                return {tool.name: tool.input_schema for tool in (await fresh.list_tools()).tools}

    return anyio.run(read)


async def call_fresh_server(tool: str, arguments: dict[str, Any]) -> CallToolResult:
    """`tool` called on a server of its own: no duplicate to answer with, no budget used up."""
    with tempfile.TemporaryDirectory() as directory:
        async with Client(create_server(server_settings(Path(directory)))) as fresh:
            return await fresh.call_tool(tool, arguments)


@EXAMPLES
@given(data=st.data())
def test_generated_invalid_values_are_refused_before_sending(
    router: respx.MockRouter, api: FakeApi, data: st.DataObject
) -> None:
    tool, path, field = data.draw(st.sampled_from(field_cases(published_schemas())), label="field")
    value = data.draw(generated_invalid(field, example_of(tool, path)), label="value")
    result = anyio.run(call_fresh_server, tool, with_value(base_with(tool, path), path, value))
    text = answer_text(result)

    assert result.is_error, text[:300]
    assert str(path[0]) in text, text[:300]
    assert NOTHING_SENT in text.lower(), text[:300]
    assert len(text.encode()) < ANSWER_LIMIT
    assert router.calls.call_count == 0


# Fields whose value the rules between fields tie to others: a valid call keeps them as its base has them.
TIED = {
    "model",
    "mode",
    "duration",
    "shot_type",
    "refer_type",
    "type",
    "generate_audio",
    "index",
    "cfg_scale",
}
TIED_BY_TOOL = {"kling_generate_with_assets": {"prompt"}}
VALID_URL = st.builds(
    "{}://{}{}/{}".format,
    st.sampled_from(["https", "http", "HTTPS"]),
    st.sampled_from(
        ["cdn.example.com", "d1q70pf5vjeyhc.cloudfront.net", "127.0.0.1:8765", "[::1]:8080", "bücher.example"]
    ),
    st.sampled_from(["", "/media", "/a..b/c"]),
    st.from_regex(r"[A-Za-z0-9_~%-]{1,40}\.(png|mp4|mp3)(\?X-Amz-Signature=[a-f0-9]{1,16})?", fullmatch=True),
)
VALID_TEXT_CHARS = st.characters(exclude_categories=("Cc", "Cs"), include_characters="\n\t")


def valid_values(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    kind = kind_of(schema)
    if kind == "enum":
        return st.sampled_from(schema["enum"])
    if kind in ("web_url", "media"):
        return VALID_URL
    if kind == "id":
        return st.from_regex(r"[A-Za-z0-9._-]{1,128}", fullmatch=True)
    if kind == "text":
        text = st.text(VALID_TEXT_CHARS, min_size=1, max_size=min(schema["maxLength"], 300))
        return text.filter(lambda value: value.strip() != "")
    if kind == "boolean":
        return st.booleans()
    low, high = schema.get("minimum", schema.get("exclusiveMinimum", 0)), schema.get("maximum", 100)
    if kind == "integer":
        return st.integers(low, high)
    return st.floats(low, high, exclude_min="exclusiveMinimum" in schema)


@st.composite
def valid_call(draw: st.DrawFn, schemas: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """A base call with some of its untied leaves (and the webhook, wait and duplicate fields) changed."""
    tool = draw(st.sampled_from(sorted(set(BASE_CALLS) - FREE_TOOLS - LOOKUP_TOOLS)))
    call = copy.deepcopy(draw(st.sampled_from(BASE_CALLS[tool])))
    tied = TIED | TIED_BY_TOOL.get(tool, set())
    for path, field in leaves(schemas[tool]):
        if kind_of(field) in ("array", "object") or set(map(str, path)) & tied:
            continue
        addable = len(path) == 1 and path[0] in ("callback_url", "timeout", "allow_duplicate")
        try:
            value_at(call, path)
        except (KeyError, IndexError, TypeError):
            if not addable:
                continue
        if draw(st.booleans()):
            value_at(call, path[:-1])[path[-1]] = draw(valid_values(field))
    if "timeout" in call:
        call["timeout"] = min(call["timeout"], 5)
    return tool, call


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_generated_valid_calls_reach_the_api_exactly_once(api: FakeApi, data: st.DataObject) -> None:
    tool, call = data.draw(valid_call(published_schemas()), label="call")
    submitted = len(api.submissions)
    result = anyio.run(call_fresh_server, tool, call)
    text = answer_text(result)

    assert "Invalid arguments" not in text, text[:500]
    assert "Local files refused" not in text, text[:500]
    assert not result.is_error, text[:500]
    assert len(api.submissions) == submitted + 1
    path, body = api.submissions[-1]
    assert problem_with(path, body) is None


@pytest.mark.parametrize(
    ("tool", "call"),
    [(tool, call) for tool, calls in BASE_CALLS.items() if tool not in FREE_TOOLS for call in calls],
)
async def test_every_base_call_is_valid_and_sent_once(
    client: Client, api: FakeApi, tool: str, call: dict[str, Any]
) -> None:
    result = await client.call_tool(tool, call)
    text = answer_text(result)

    if tool in LOOKUP_TOOLS:
        assert (api.submissions, len(api.queries)) == ([], 1)
        assert "Invalid arguments" not in text
    else:
        assert not result.is_error, text
        [(path, body)] = api.submissions
        assert problem_with(path, body) is None


# --- The literal cases of the issue ---------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "arguments", "field"),
    [
        (
            "kling_generate_video_from_image",
            {"prompt": "p", "start_image_url": "https://"},
            "start_image_url",
        ),
        ("kling_generate_video", {"prompt": "x" * 100_000}, "prompt"),
        ("kling_generate_video", {"prompt": "x" * 2_000_000}, "prompt"),
        ("kling_generate_video", {"prompt": ""}, "prompt"),
        (
            "kling_generate_video",
            {"prompt": "p", "callback_url": "https://hooks.example.com/\x00"},
            "callback_url",
        ),
        ("kling_extend_video", {"prompt": "p", "video_id": DROP_TABLE}, "video_id"),
        ("kling_get_task", {"task_id": "9" * 100_000}, "task_id"),
        ("kling_get_tasks_batch", {"task_ids": ["9" * 100_000]}, "task_ids.0"),
        ("kling_get_tasks_batch", {"task_ids": deep_json(100_000)}, "task_ids"),
        ("kling_get_tasks_batch", {"task_ids": deep_json(17)}, "task_ids"),
    ],
)
async def test_the_issues_cases_are_refused_before_sending(
    client: Client, router: respx.MockRouter, tool: str, arguments: dict[str, Any], field: str
) -> None:
    text = await assert_refused(client, router, tool, arguments, f"- {field}:")
    assert "9" * 101 not in text
    assert "recursion" not in text


async def test_a_huge_tool_name_is_quoted_short(client: Client, router: respx.MockRouter) -> None:
    with pytest.raises(MCPError) as refused:
        await client.call_tool("k" * 10_000, {})
    text = refused.value.message

    assert refused.value.code == INVALID_PARAMS
    assert "Unknown tool" in text
    assert "k" * 101 not in text
    assert len(text) < 300
    assert router.calls.call_count == 0


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("kling_generate_video", {"prompt": "p", **{f"bogus_{n}": 1 for n in range(1000)}}),
        ("kling_get_tasks_batch", {"task_ids": ["bad id"] * 100}),
        (
            "kling_generate_video",
            {"prompt": "p", "model": "kling-v3-omni", "image_list": [{"image_url": "x"}] * 500},
        ),
    ],
)
async def test_many_problems_do_not_flood_the_conversation(
    client: Client, router: respx.MockRouter, tool: str, arguments: dict[str, Any]
) -> None:
    """Each problem of a call is listed, but not thousands of them: the answer stays under 4 KB."""
    await assert_refused(client, router, tool, arguments, "Invalid arguments")


async def test_a_well_formed_id_the_api_does_not_know(client: Client, api: FakeApi) -> None:
    single = await client.call_tool("kling_get_task", {"task_id": "f" * 128, "timeout": 0})
    batch = await client.call_tool("kling_get_tasks_batch", {"task_ids": ["no-such-task"]})

    assert single.is_error
    assert "f" * 128 in answer_text(single) or "not found" in answer_text(single).lower()
    assert not batch.is_error
    assert batch.structured_content == {"tasks": [], "missing": ["no-such-task"]}
    assert [query.get("id") or query.get("ids") for query in api.queries] == ["f" * 128, ["no-such-task"]]
