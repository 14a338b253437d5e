"""The tools as a client sees them, through the SDK's in-memory Client and a scripted API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import respx
from mcp import Client
from mcp.types import CallToolResult, Implementation, LoggingMessageNotificationParams, TextContent

from kling_mcp.domain.capabilities import MODELS
from kling_mcp.server.app import create_server
from kling_mcp.server.tools import generation
from kling_mcp.settings import Settings
from tests.conftest import TOKEN, FakeKling, scripted_settings
from tests.emulated import eventually

pytestmark = pytest.mark.anyio

GENERATION_TOOLS = {
    "kling_generate_video",
    "kling_generate_video_from_image",
    "kling_extend_video",
    "kling_generate_motion",
    "kling_lip_sync",
    "kling_talking_photo",
    "kling_generate_turbo_video",
    "kling_generate_storyboard",
    "kling_generate_with_assets",
    "kling_goods_studio",
    "kling_video_commerce",
}
READ_ONLY_TOOLS = {"kling_get_task", "kling_get_tasks_batch", "kling_list_tasks", "kling_list_models"}
SAVING_TOOLS = {"kling_download_video", "kling_extract_frame", "kling_join_videos"}
"""Free and idempotent, but they write files into the output directory."""
SEED_PARAMETERS = {
    "prompt": None,
    "start_image_url": None,
    "end_image_url": None,
    "model": "kling-v2-master",
    "mode": "std",
    "aspect_ratio": "16:9",
    "duration": 5,
    "generate_audio": None,
    "negative_prompt": None,
    "cfg_scale": None,
    "camera_control": None,
    "element_list": None,
    "video_list": None,
    "timeout": 50.0,
    "callback_url": None,
}
IMAGE = "https://img.test/cat.png"


def text(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


async def tool_schemas(client: Client) -> dict[str, Any]:
    return {tool.name: tool for tool in (await client.list_tools()).tools}


# --- Discovery ------------------------------------------------------------------------------


async def test_lists_the_whole_family_with_truthful_annotations(client: Client) -> None:
    tools = await tool_schemas(client)

    assert set(tools) == GENERATION_TOOLS | READ_ONLY_TOOLS | SAVING_TOOLS
    for name, tool in tools.items():
        paid = name in GENERATION_TOOLS
        assert tool.title
        assert tool.annotations.read_only_hint is (not paid and name not in SAVING_TOOLS)
        assert tool.annotations.idempotent_hint is (not paid)
        assert tool.annotations.destructive_hint is False
        assert tool.output_schema is not None
        assert ("credits" in tool.description) is paid or name == "kling_get_task"


async def test_image_tool_keeps_the_seed_contract(client: Client) -> None:
    schema = (await tool_schemas(client))["kling_generate_video_from_image"].input_schema

    for name, default in SEED_PARAMETERS.items():
        assert name in schema["properties"], name
        assert schema["properties"][name].get("default") == default, name
    assert schema["required"] == ["prompt"]
    assert schema["properties"]["mode"]["enum"] == ["std", "pro", "4k"]
    assert schema["properties"]["cfg_scale"].items() >= {"type": "number", "minimum": 0, "maximum": 1}.items()


async def test_schema_defaults_follow_the_server_settings(kling: FakeKling) -> None:
    settings = Settings(
        api_token=TOKEN, default_model="kling-v3", default_mode="pro", default_wait_seconds=20
    )
    async with Client(create_server(settings)) as client:
        schema = (await tool_schemas(client))["kling_generate_video"].input_schema

    assert schema["properties"]["model"]["default"] == "kling-v3"
    assert schema["properties"]["mode"]["default"] == "pro"
    assert schema["properties"]["timeout"]["default"] == 20


async def test_server_reports_its_own_name_and_version(client: Client) -> None:
    from kling_mcp import __version__

    info = client.server_info
    assert info is not None
    assert (info.name, info.version) == ("kling-mcp", __version__)


# --- Generation -----------------------------------------------------------------------------


async def test_generates_a_video_and_reports_progress(client: Client, kling: FakeKling) -> None:
    progress: list[tuple[float, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message))

    result = await client.call_tool(
        "kling_generate_video", {"prompt": "a cat surfing"}, progress_callback=on_progress
    )

    assert not result.is_error
    video = result.structured_content
    assert video is not None
    assert video["state"] == "succeeded"
    assert video["video_url"] == "https://cdn.test/task-1.mp4"
    assert video["video_id"] == "video-task-1"
    assert video["duration"] == 5.066
    assert video["trace_id"] == "trace-task-1"
    assert "https://cdn.test/task-1.mp4" in text(result)
    assert kling.submissions == [
        (
            "/kling/videos",
            {
                "action": "text2video",
                "prompt": "a cat surfing",
                "model": "kling-v2-master",
                "mode": "std",
                "aspect_ratio": "16:9",
                "duration": 5,
                "async": True,
            },
        )
    ]
    values = [value for value, _ in progress]
    assert len(values) >= 2
    assert values == sorted(set(values)), "progress must strictly increase"
    assert all(message and "task-1" in message and " s elapsed" in message for _, message in progress)
    assert any("processing" in (message or "") for _, message in progress)


@pytest.mark.parametrize(
    ("tool", "arguments", "path", "expected"),
    [
        (
            "kling_generate_video_from_image",
            {
                "prompt": "wave",
                "start_image_url": IMAGE,
                "end_image_url": IMAGE,
                "camera_control": '{"type": "forward_up"}',
            },
            "/kling/videos",
            {"action": "image2video", "start_image_url": IMAGE, "camera_control": {"type": "forward_up"}},
        ),
        (
            "kling_extend_video",
            {"video_id": "video-9", "prompt": "and then it rains"},
            "/kling/videos",
            {"action": "extend", "video_id": "video-9", "prompt": "and then it rains"},
        ),
        (
            "kling_generate_motion",
            {"image_url": IMAGE, "video_url": "https://v.test/dance.mp4"},
            "/kling/motion",
            {"image_url": IMAGE, "mode": "std", "character_orientation": "image"},
        ),
        (
            "kling_lip_sync",
            {"video_id": "video-9", "text": "Hello there", "voice_id": "voice-1"},
            "/kling/lip-sync",
            {"mode": "text2video", "video_id": "video-9", "text": "Hello there", "voice_language": "en"},
        ),
        (
            "kling_talking_photo",
            {"image_url": IMAGE, "audio_url": "https://a.test/hi.mp3", "duration": 10},
            "/kling/talking-photo",
            {"image_url": IMAGE, "audio_url": "https://a.test/hi.mp3", "duration": 10},
        ),
    ],
)
async def test_each_generation_tool_submits_once_to_its_endpoint(
    client: Client,
    kling: FakeKling,
    tool: str,
    arguments: dict[str, Any],
    path: str,
    expected: dict[str, Any],
) -> None:
    result = await client.call_tool(tool, arguments)

    assert not result.is_error, text(result)
    assert result.structured_content
    assert result.structured_content["state"] == "succeeded"
    assert len(kling.submissions) == 1
    sent_path, body = kling.submissions[0]
    assert sent_path == path
    assert body["async"] is True
    assert expected.items() <= body.items()
    assert "timeout" not in body


async def test_invalid_arguments_are_rejected_before_anything_is_sent(
    client: Client, kling: FakeKling, router: respx.MockRouter
) -> None:
    result = await client.call_tool(
        "kling_generate_video", {"prompt": "a cat", "model": "kling-o1", "duration": 10, "cfg_scale": 0.5}
    )

    assert result.is_error
    message = text(result)
    assert "nothing was sent" in message
    assert "duration: kling-o1 makes videos of 5 seconds, not 10" in message
    assert "cfg_scale" in message
    assert router.calls.call_count == 0


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"prompt": "x", "mode": "ultra"}, "mode"),
        ({"prompt": "x", "duration": 30}, "duration"),
        ({"prompt": "x", "camera_control": "not json"}, "camera_control"),
        ({"prompt": "x", "start_image_url": "/home/me/cat.png"}, "start_image_url"),
        ({"start_image_url": IMAGE}, "prompt"),
        ({"prompt": "x"}, "start_image_url"),
        ({"prompt": "x", "start_image_url": IMAGE, "timeout": -1}, "timeout"),
    ],
)
async def test_each_rejection_names_the_field(
    client: Client, router: respx.MockRouter, arguments: dict[str, Any], field: str
) -> None:
    result = await client.call_tool("kling_generate_video_from_image", arguments)

    assert result.is_error
    assert f"- {field}" in text(result)
    assert router.calls.call_count == 0


async def test_a_task_still_running_when_the_wait_ends_is_returned_not_lost(
    client: Client, kling: FakeKling
) -> None:
    kling.polls_until_done = 10_000
    started = anyio.current_time()

    result = await client.call_tool("kling_generate_video", {"prompt": "a slow cat", "timeout": 0.4})

    assert anyio.current_time() - started < 1.4
    assert not result.is_error
    video = result.structured_content
    assert video is not None
    assert (video["task_id"], video["state"], video.get("video_url")) == ("task-1", "running", None)
    assert "kling_get_task" in video["next_step"]
    assert "task-1" in video["next_step"]
    assert "task-1" in text(result)
    assert len(kling.submissions) == 1


async def test_a_failed_task_is_an_error_with_the_api_words_and_ids(client: Client, kling: FakeKling) -> None:
    kling.outcome = {
        "state": "failed",
        "error": {"code": "task_failed", "message": "Image rejected by policy"},
    }

    result = await client.call_tool("kling_generate_video", {"prompt": "a cat"})

    assert result.is_error
    message = text(result)
    for expected in ("Image rejected by policy", "task_failed", "task-1", "trace-task-1"):
        assert expected in message
    assert result.structured_content
    assert result.structured_content["error"]["message"] == "Image rejected by policy"


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, {"error": {"code": "invalid_token", "message": "token is invalid"}}, "ACEDATACLOUD_API_TOKEN"),
        (403, {"error": {"code": "used_up", "message": "balance is not enough"}}, "top up"),
        (429, {"error": {"code": "too_many_requests", "message": "slow down"}}, "rate limiting"),
        (400, {"error": {"code": "bad_request", "message": "prompt too long"}}, "prompt too long"),
        (403, {"error": "forbidden"}, "moderation"),
    ],
)
async def test_submission_errors_say_what_to_do_and_keep_the_trace_id(
    client: Client, router: respx.MockRouter, status: int, body: dict[str, Any], expected: str
) -> None:
    route = router.post("/kling/videos").respond(status, json={**body, "trace_id": "trace-err"})

    result = await client.call_tool("kling_generate_video", {"prompt": "a cat"})

    assert result.is_error
    assert expected in text(result)
    assert "trace-err" in text(result)
    assert TOKEN not in text(result)
    assert route.call_count == 1


async def test_a_submission_that_may_have_reached_the_api_is_not_sent_again(
    client: Client, router: respx.MockRouter
) -> None:
    route = router.post("/kling/videos").mock(side_effect=httpx.ReadTimeout("read timed out"))

    result = await client.call_tool("kling_generate_video", {"prompt": "a cat"})

    assert result.is_error
    assert "may have reached AceDataCloud" in text(result)
    assert route.call_count == 1


async def test_without_a_token_the_server_starts_and_says_what_to_set(router: respx.MockRouter) -> None:
    async with Client(create_server(Settings(api_token=None, api_base_url="https://api.test"))) as client:
        assert len((await client.list_tools()).tools) == len(
            GENERATION_TOOLS | READ_ONLY_TOOLS | SAVING_TOOLS
        )
        result = await client.call_tool("kling_generate_video", {"prompt": "a cat"})

    assert result.is_error
    assert "ACEDATACLOUD_API_TOKEN" in text(result)
    assert "https://platform.acedata.cloud" in text(result)
    assert router.calls.call_count == 0


async def cut_off_while_polled(
    client: Client, kling: FakeKling, task_id: str, arguments: dict[str, Any]
) -> None:
    """Call kling_generate_video and cancel the call once its task `task_id` is being polled, as a host
    that cuts calls off does (the task is then journalled, and the call waits for it)."""
    async with anyio.create_task_group() as waiting:
        waiting.start_soon(client.call_tool, "kling_generate_video", arguments)
        await eventually(lambda: kling.polls[task_id], f"the first status check of {task_id}")
        waiting.cancel_scope.cancel()


async def test_cancelling_a_call_stops_polling_its_task(client: Client, kling: FakeKling) -> None:
    kling.polls_until_done = 10_000
    await cut_off_while_polled(client, kling, "task-1", {"prompt": "never mind"})
    kling.polls_until_done = 3

    # A later generation: every status check made while it waits comes after the cancel.
    later = await client.call_tool("kling_generate_video", {"prompt": "a later cat"})

    assert later.structured_content
    assert later.structured_content["state"] == "succeeded"
    checks_since = [query["ids"] for query in kling.queries if "task-2" in query.get("ids", ())]
    assert len(checks_since) >= 2
    assert all("task-1" not in ids for ids in checks_since), checks_since


async def test_concurrent_generations_share_one_status_request_per_tick(
    client: Client, kling: FakeKling
) -> None:
    kling.polls_until_done = 4
    results: list[CallToolResult] = []

    async def generate(n: int) -> None:
        results.append(await client.call_tool("kling_generate_video", {"prompt": f"cat {n}"}))

    async with anyio.create_task_group() as group:
        for n in range(10):
            group.start_soon(generate, n)

    assert [result.structured_content["state"] for result in results if result.structured_content] == [
        "succeeded"
    ] * 10
    assert len(kling.submissions) == 10
    assert all(query["action"] == "retrieve_batch" for query in kling.queries)
    assert max(len(query["ids"]) for query in kling.queries) == 10
    assert len(kling.queries) < 10 * kling.polls_until_done


# --- Tasks ----------------------------------------------------------------------------------


async def test_get_task_waits_for_a_running_task(client: Client, kling: FakeKling) -> None:
    kling.polls_until_done = 10_000
    first = await client.call_tool("kling_generate_video", {"prompt": "a cat", "timeout": 0})
    assert first.structured_content
    assert first.structured_content["state"] == "running"
    kling.polls_until_done = kling.polls["task-1"] + 3

    result = await client.call_tool("kling_get_task", {"task_id": "task-1"})

    assert result.structured_content
    assert result.structured_content["state"] == "succeeded"
    assert len(kling.submissions) == 1


@pytest.fixture
async def unhurried(tmp_path: Path, kling: FakeKling) -> AsyncIterator[Client]:
    """A client of a server whose background status checks are an hour apart: a task a call stopped
    waiting for is not checked during the test, so every status request is one the test's calls made."""
    settings = scripted_settings(tmp_path, poll_interval=3600)
    async with Client(create_server(settings), raise_exceptions=True) as connected:
        yield connected


async def test_get_task_with_no_wait_answers_at_once(unhurried: Client, kling: FakeKling) -> None:
    kling.polls_until_done = 10_000
    await unhurried.call_tool("kling_generate_video", {"prompt": "a cat", "timeout": 0})

    result = await unhurried.call_tool("kling_get_task", {"task_id": "task-1", "timeout": 0})

    assert result.structured_content
    assert result.structured_content["state"] == "running"
    assert kling.queries == [{"id": "task-1", "action": "retrieve"}]


async def test_get_task_with_an_unknown_id_is_a_clear_error(client: Client) -> None:
    result = await client.call_tool("kling_get_task", {"task_id": "no-such-task"})

    assert result.is_error
    assert "no-such-task" in text(result)
    assert "trace-404" in text(result)


async def test_batch_lookup_is_one_request_and_lists_unknown_ids(unhurried: Client, kling: FakeKling) -> None:
    kling.polls_until_done = 1
    for n in range(2):
        await unhurried.call_tool("kling_generate_video", {"prompt": f"cat {n}", "timeout": 0})

    result = await unhurried.call_tool("kling_get_tasks_batch", {"task_ids": ["task-1", "task-2", "ghost"]})

    assert kling.queries == [{"ids": ["task-1", "task-2", "ghost"], "action": "retrieve_batch"}]
    batch = result.structured_content
    assert batch is not None
    assert [task["task_id"] for task in batch["tasks"]] == ["task-1", "task-2"]
    assert batch["missing"] == ["ghost"]
    assert "ghost" in text(result)


async def test_list_models_is_the_capability_table(client: Client, router: respx.MockRouter) -> None:
    result = await client.call_tool("kling_list_models", {})

    catalog = result.structured_content
    assert catalog is not None
    assert catalog["default_model"] == "kling-v2-master"
    assert {model["name"]: model["durations"] for model in catalog["models"]} == {
        name: list(spec.durations) for name, spec in MODELS.items()
    }
    assert router.calls.call_count == 0


async def test_list_models_says_which_tool_takes_each_model_and_what_each_tool_does(client: Client) -> None:
    catalog = (await client.call_tool("kling_list_models", {})).structured_content
    assert catalog is not None
    tools_of = {model["name"]: model["tools"] for model in catalog["models"]}

    assert set(catalog["tools"]) == {tool.name for tool in (await client.list_tools()).tools}
    assert tools_of["kling-v3-turbo"] == ["kling_generate_turbo_video"]
    assert "kling_generate_storyboard" in tools_of["kling-v3"]
    assert "kling_generate_storyboard" not in tools_of["kling-v2-master"]
    assert "kling_generate_video" not in tools_of["kling-v3-turbo"]


# --- Resources and prompts ------------------------------------------------------------------


async def test_task_resource_reads_the_current_state(client: Client, kling: FakeKling) -> None:
    kling.polls_until_done = 1
    await client.call_tool("kling_generate_video", {"prompt": "a cat", "timeout": 0})

    contents = (await client.read_resource("kling://tasks/task-1")).contents

    task = json.loads(contents[0].text)  # type: ignore[union-attr]
    assert (task["task_id"], task["state"]) == ("task-1", "succeeded")


async def test_prompts_guide_the_workflows(client: Client) -> None:
    prompts = {prompt.name: prompt for prompt in (await client.list_prompts()).prompts}
    assert {"kling_choose_tool", "kling_image_to_video", "kling_long_video", "kling_talking_avatar"} <= set(
        prompts
    )
    arguments = {argument.name: argument for argument in prompts["kling_long_video"].arguments or []}
    assert arguments["story"].required is True
    assert arguments["target_seconds"].required is False
    assert all(argument.description for argument in arguments.values())

    rendered = await client.get_prompt("kling_long_video", {"story": "a fox crosses a frozen lake"})

    message = rendered.messages[0].content
    assert isinstance(message, TextContent)
    assert "kling_extend_video" in message.text
    assert "a fox crosses a frozen lake" in message.text


async def test_log_messages_reach_the_client_during_a_call(settings: Settings, kling: FakeKling) -> None:
    messages: list[str] = []

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        messages.append(str(params.data))

    async with Client(create_server(settings), mode="legacy", logging_callback=on_log) as client:
        await client.call_tool("kling_generate_video", {"prompt": "a cat"})

    assert any("Submitted task task-1" in message for message in messages)
    assert all(TOKEN not in message for message in messages)


async def test_a_host_that_cuts_calls_off_gets_its_answer_before_the_cutoff(
    settings: Settings, kling: FakeKling, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(generation.CALL_CUTOFFS, "claude-ai", 0.3)
    kling.polls_until_done = 10_000
    desktop = Implementation(name="claude-ai", version="1.0")

    async with Client(create_server(settings), client_info=desktop) as client:
        started = anyio.current_time()
        result = await client.call_tool("kling_generate_video", {"prompt": "a cat", "timeout": 600})

    assert anyio.current_time() - started < 1.3
    assert result.structured_content
    assert result.structured_content["state"] == "running"


async def test_batch_without_ids_recovers_every_task_this_server_started(
    client: Client, kling: FakeKling
) -> None:
    kling.polls_until_done = 10_000
    await client.list_tools()  # as hosts do before calling: the first listing builds the tools
    for n in range(1, 4):
        await cut_off_while_polled(client, kling, f"task-{n}", {"prompt": f"cat {n}"})

    result = await client.call_tool("kling_get_tasks_batch", {})

    batch = result.structured_content
    assert batch is not None
    assert [task["task_id"] for task in batch["tasks"]] == ["task-1", "task-2", "task-3"]
    assert len(kling.submissions) == 3


async def test_structured_arguments_may_come_as_json_text(client: Client, kling: FakeKling) -> None:
    result = await client.call_tool(
        "kling_generate_video",
        {
            "prompt": "a cat",
            "element_list": '[{"element_id": "cat-7"}]',
            "camera_control": '{"type": "down_back"}',
        },
    )

    assert not result.is_error, text(result)
    body = kling.submissions[0][1]
    assert body["element_list"] == [{"element_id": "cat-7"}]
    assert body["camera_control"] == {"type": "down_back"}


async def test_a_misspelled_parameter_is_rejected_not_ignored(
    client: Client, router: respx.MockRouter
) -> None:
    result = await client.call_tool("kling_generate_video", {"prompt": "a cat", "aspectRatio": "9:16"})

    assert result.is_error
    assert "- aspectRatio: unknown parameter" in text(result)
    assert router.calls.call_count == 0
