"""What a client asks besides tools, in both protocol eras: prompts, completion and the log level."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.types import (
    INVALID_PARAMS,
    LoggingMessageNotificationParams,
    PromptReference,
    ResourceTemplateReference,
)

from kling_mcp.emulator import Emulator, serve_emulator
from kling_mcp.server.app import create_server
from kling_mcp.settings import Settings
from tests.conftest import FakeKling
from tests.hosted import call, hosted_env, replica, session, structured

pytestmark = pytest.mark.anyio

ERAS = ("legacy", "modern")
TASK = ResourceTemplateReference(type="ref/resource", uri="kling://tasks/{task_id}")


def prompt_ref(name: str) -> PromptReference:
    return PromptReference(type="ref/prompt", name=name)


@pytest.fixture(params=ERAS)
async def client(
    request: pytest.FixtureRequest, settings: Settings, kling: FakeKling
) -> AsyncIterator[Client]:
    """A client of each protocol era (the SDK's "auto" mode speaks 2026-07-28 to this server)."""
    mode = "legacy" if request.param == "legacy" else "auto"
    async with Client(create_server(settings), mode=mode) as connected:
        yield connected


# --- Prompts --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "arguments", "told"),
    [
        ("kling_make_me_a_film", {}, "Unknown prompt 'kling_make_me_a_film': call prompts/list"),
        ("kling_long_video", {"target_seconds": "30"}, "'kling_long_video': missing story."),
        ("kling_prompt_advice", {"idea": "a fox", "mood": "calm"}, "no argument 'mood'. It takes idea."),
    ],
)
async def test_a_bad_prompt_request_is_invalid_params_naming_the_fix(
    client: Client, name: str, arguments: dict[str, str], told: str
) -> None:
    with pytest.raises(MCPError) as refused:
        await client.get_prompt(name, arguments)

    assert refused.value.code == INVALID_PARAMS
    assert told in refused.value.message


# --- Completion -----------------------------------------------------------------------------------


async def test_completion_offers_a_prompt_arguments_suggestions_that_match_what_is_typed(
    client: Client,
) -> None:
    moves = await client.complete(prompt_ref("kling_image_to_video"), {"name": "motion", "value": "ORB"})
    lengths = await client.complete(prompt_ref("kling_long_video"), {"name": "target_seconds", "value": "4"})
    story = await client.complete(prompt_ref("kling_long_video"), {"name": "story", "value": "a fox"})

    assert moves.completion.values == ["orbit left", "orbit right"]
    assert (moves.completion.total, moves.completion.has_more) == (2, False)
    assert lengths.completion.values == ["45"]
    assert story.completion.values == []


async def test_completion_offers_the_task_ids_of_the_callers_tasks_newest_first(client: Client) -> None:
    for n in range(3):
        await client.call_tool("kling_generate_video", {"prompt": f"a cat, take {n}", "timeout": 0})

    every = await client.complete(TASK, {"name": "task_id", "value": ""})
    third = await client.complete(TASK, {"name": "task_id", "value": "task-3"})

    assert every.completion.values == ["task-3", "task-2", "task-1"]
    assert third.completion.values == ["task-3"]


@pytest.mark.parametrize(
    ("ref", "argument", "told"),
    [
        (prompt_ref("kling_nothing"), "goal", "Unknown prompt 'kling_nothing'"),
        (
            prompt_ref("kling_choose_tool"),
            "mood",
            "prompt 'kling_choose_tool' has no argument 'mood': it takes goal",
        ),
        (
            ResourceTemplateReference(type="ref/resource", uri="kling://videos/{id}"),
            "id",
            "Unknown resource template 'kling://videos/{id}'",
        ),
        (TASK, "video_id", "has no argument 'video_id': it takes task_id"),
    ],
)
async def test_completing_what_the_server_does_not_have_is_invalid_params(
    client: Client, ref: PromptReference | ResourceTemplateReference, argument: str, told: str
) -> None:
    with pytest.raises(MCPError) as refused:
        await client.complete(ref, {"name": argument, "value": ""})

    assert refused.value.code == INVALID_PARAMS
    assert told in refused.value.message


async def test_a_hosted_user_is_offered_only_their_own_task_ids(tmp_path: Path) -> None:
    api = Emulator(token=None, task_seconds=60)
    async with serve_emulator(api) as base_url, replica(hosted_env(base_url, tmp_path), tmp_path) as running:
        started: dict[str, str] = {}
        for user in ("alice-token", "bob-token"):
            async with session(running, user) as client:
                made = await call(client, "kling_generate_video", {"prompt": f"{user}'s cat", "timeout": 0})
                started[user] = structured(made)["task_id"]

        for user, task_id in started.items():
            async with session(running, user) as client:
                offered = await client.complete(TASK, {"name": "task_id", "value": ""})
            assert offered.completion.values == [task_id], user


# --- The log level (handshake era) ----------------------------------------------------------------


async def logs_of_a_call(settings: Settings, level: str) -> list[str]:
    """The levels of the log messages a handshake-era client gets during a call, having asked for `level`."""
    levels: list[str] = []

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        levels.append(params.level)

    async with Client(create_server(settings), mode="legacy", logging_callback=on_log) as client:
        assert client.server_capabilities is not None
        assert client.server_capabilities.logging is not None, "logging is not declared"
        with warnings.catch_warnings():  # the method is gone from 2026-07-28 on, current before
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.set_logging_level(level)  # type: ignore[arg-type]
        await client.call_tool("kling_generate_video", {"prompt": "a cat", "timeout": 0})
    return levels


async def test_a_handshake_era_client_gets_the_log_levels_it_asks_for(
    settings: Settings, kling: FakeKling
) -> None:
    assert "info" in await logs_of_a_call(settings, "info")
    assert await logs_of_a_call(settings, "warning") == []


async def test_a_modern_client_is_not_offered_the_removed_log_level_method(settings: Settings) -> None:
    async with Client(create_server(settings)) as client:
        assert client.server_capabilities is not None
        assert client.server_capabilities.logging is None
