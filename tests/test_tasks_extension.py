"""MCP Tasks (io.modelcontextprotocol/tasks, 2026-07-28) as a host that speaks it sees them: a paid
generation answers a task handle at once and its video later through tasks/get; cancelling says
what it stopped and what runs on, and a cancelled task stays cancelled; ids are the owner's alone,
expire, and survive a killed replica; over HTTP a tasks request is routed by its Mcp-Name header;
a host without Tasks sees the waiting tool call it always had.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx
import pytest
from mcp import Client, types
from mcp.client.extension import advertise
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CLIENT_CAPABILITIES_META_KEY, PROTOCOL_VERSION_META_KEY
from pydantic import Field, TypeAdapter

from kling_mcp.emulator import Emulator, Fault, serve_emulator
from kling_mcp.settings import Settings
from tests import media
from tests.emulated import call, connect, contents, emulated, eventually, structured, videos_in
from tests.hosted import default_env, hosted_env, replica
from tests.postgres import postgres_cluster, postgres_url  # noqa: F401

pytestmark = pytest.mark.anyio

EXTENSION = "io.modelcontextprotocol/tasks"
GENERATE = "kling_generate_video"
FROM_IMAGE = "kling_generate_video_from_image"
POLL_LIMIT = 20.0
RAW = TypeAdapter(dict[str, Any])


class TaskParams(types.RequestParams):
    task_id: str = Field(alias="taskId")


class UpdateParams(TaskParams):
    input_responses: dict[str, Any] = Field(default_factory=dict, alias="inputResponses")


class GetTask(types.Request[TaskParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    params: TaskParams
    name_param = "taskId"


class CancelTask(types.Request[TaskParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: TaskParams
    name_param = "taskId"


class UpdateTask(types.Request[UpdateParams, Literal["tasks/update"]]):
    method: Literal["tasks/update"] = "tasks/update"
    params: UpdateParams
    name_param = "taskId"


def tasks_client(settings: Settings) -> Client:
    """An in-memory host that speaks Tasks."""
    return connect(settings, extensions=[advertise(EXTENSION)])


async def call_as_task(
    client: Client, tool: str, arguments: dict[str, Any], input_responses: dict[str, Any] | None = None
) -> dict[str, Any]:
    params = types.CallToolRequestParams(name=tool, arguments=arguments, input_responses=input_responses)
    request = types.CallToolRequest(params=params)
    with anyio.fail_after(POLL_LIMIT):
        return await client.session.send_request(request, RAW)


async def get_task(client: Client, task_id: str) -> dict[str, Any]:
    return await client.session.send_request(GetTask(params=TaskParams(taskId=task_id)), RAW)


async def finished(client: Client, task_id: str) -> dict[str, Any]:
    """tasks/get, at the poll interval the task asks for, until the task leaves `working`."""
    with anyio.fail_after(POLL_LIMIT):
        while True:
            task = await get_task(client, task_id)
            if task["status"] != "working":
                return task
            await anyio.sleep(min(task["pollIntervalMs"], 200) / 1000)


async def test_a_generation_called_as_a_task_answers_a_handle_at_once_and_its_video_later(
    tmp_path: Path,
) -> None:
    emulator = Emulator(task_seconds=1.0)
    async with emulated(emulator, tmp_path) as settings, tasks_client(settings) as client:
        created = await call_as_task(client, GENERATE, {"prompt": "a fox in the snow"})
        assert created["resultType"] == "task"
        assert created["status"] == "working"
        assert {"taskId", "createdAt", "lastUpdatedAt", "ttlMs", "pollIntervalMs"} <= set(created)
        first_look = await get_task(client, created["taskId"])  # the task exists as soon as its handle
        done = await finished(client, created["taskId"])
    assert first_look["taskId"] == created["taskId"]
    assert done["status"] == "completed"
    result = types.CallToolResult.model_validate(done["result"])
    assert not result.is_error
    video = structured(result)
    assert video["state"] == "succeeded"
    assert await contents(video["file_path"]) == emulator.video  # the same answer the tool gives
    assert [submission["prompt"] for submission in emulator.submissions] == ["a fox in the snow"]


async def test_a_host_without_tasks_gets_the_waiting_call_it_always_had(tmp_path: Path) -> None:
    emulator = Emulator(task_seconds=0.3)
    async with emulated(emulator, tmp_path) as settings, connect(settings) as client:
        result = await call(client, GENERATE, {"prompt": "a fox"})
        with pytest.raises(MCPError) as refused:
            await get_task(client, "anything")
    assert structured(result)["state"] == "succeeded"
    assert refused.value.code == -32021
    assert refused.value.data == {"requiredCapabilities": {"extensions": {EXTENSION: {}}}}


async def test_free_tools_and_refusals_answer_at_once_even_for_a_tasks_host(tmp_path: Path) -> None:
    emulator = Emulator(task_seconds=1.0)
    async with emulated(emulator, tmp_path, daily_task_limit=0) as settings, tasks_client(settings) as client:
        models = await call_as_task(client, "kling_list_models", {})
        refused = await call_as_task(client, GENERATE, {"prompt": "over the limit"})
    assert models["resultType"] == "complete"
    assert refused["resultType"] == "complete"
    assert refused["isError"] is True
    assert "KLING_DAILY_TASK_LIMIT=0" in refused["content"][0]["text"]
    assert emulator.submissions == []


async def test_a_generation_asks_for_the_clients_roots_before_it_becomes_a_task(tmp_path: Path) -> None:
    pictures = tmp_path / "pictures"  # a folder only the client's roots allow
    pictures.mkdir()
    (pictures / "cat.png").write_bytes(media.png())
    shared = types.ListRootsResult(roots=[types.Root(uri=pictures.as_uri())])

    async def list_roots(context: Any) -> types.ListRootsResult:
        return shared

    emulator = Emulator(task_seconds=0.3)
    arguments = {"prompt": "it blinks", "start_image_url": str(pictures / "cat.png")}
    extensions = [advertise(EXTENSION)]
    async with (
        emulated(emulator, tmp_path) as settings,
        connect(settings, extensions=extensions, list_roots_callback=list_roots) as client,
    ):
        asked = await call_as_task(client, FROM_IMAGE, arguments)
        sent_before_answer = list(emulator.submissions)
        # What the SDK's input loop would send back, from the client's roots (the loop stops at a task).
        answers = {key: shared.model_dump(mode="json", exclude_none=True) for key in asked["inputRequests"]}
        created = await call_as_task(client, FROM_IMAGE, arguments, input_responses=answers)
        done = await finished(client, created["taskId"])
    assert asked["resultType"] == "input_required"
    assert "taskId" not in asked  # no task before the input is in
    assert sent_before_answer == []
    assert created["resultType"] == "task"
    assert done["status"] == "completed"
    assert structured(types.CallToolResult.model_validate(done["result"]))["state"] == "succeeded"
    assert len(emulator.submissions) == 1


async def test_unknown_and_expired_task_ids_are_not_found(tmp_path: Path) -> None:
    emulator = Emulator(task_seconds=0.2)
    async with emulated(emulator, tmp_path) as settings, tasks_client(settings) as client:
        created = await call_as_task(client, GENERATE, {"prompt": "an old fox"})
        await finished(client, created["taskId"])
        with sqlite3.connect(settings.data_dir / "journal.sqlite3") as db:  # eight days later
            db.execute("UPDATE tasks SET created_at = created_at - 8 * 86400")
        db.close()
        for task_id in (created["taskId"], "no-such-task"):
            with pytest.raises(MCPError) as missing:
                await get_task(client, task_id)
            assert missing.value.code == -32602
        with pytest.raises(MCPError) as update_missing:
            await client.session.send_request(UpdateTask(params=UpdateParams(taskId="no-such-task")), RAW)
    assert update_missing.value.code == -32602


async def test_tasks_update_is_acknowledged_and_changes_nothing(tmp_path: Path) -> None:
    emulator = Emulator(task_seconds=0.5)
    async with emulated(emulator, tmp_path) as settings, tasks_client(settings) as client:
        created = await call_as_task(client, GENERATE, {"prompt": "a patient fox"})
        update = UpdateTask(
            params=UpdateParams(taskId=created["taskId"], inputResponses={"x": {"action": "accept"}})
        )
        acknowledged = await client.session.send_request(update, RAW)
        done = await finished(client, created["taskId"])
    assert acknowledged.get("resultType") == "complete"
    assert done["status"] == "completed"


async def test_cancelling_before_the_request_is_sent_charges_nothing(tmp_path: Path) -> None:
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    (pictures / "cat.png").write_bytes(media.png())
    emulator = Emulator(task_seconds=1.0)
    emulator.inject("/api/v1/files/", Fault.delay(3.0))  # the upload is slow: the request is not out yet
    arguments = {"prompt": "it blinks", "start_image_url": str(pictures / "cat.png")}
    async with (
        emulated(emulator, tmp_path, input_dirs=(pictures,)) as settings,
        tasks_client(settings) as client,
    ):
        created = await call_as_task(client, FROM_IMAGE, arguments)
        cancelled = await client.session.send_request(
            CancelTask(params=TaskParams(taskId=created["taskId"])), RAW
        )
        after = await get_task(client, created["taskId"])
        listed = await call(client, "kling_list_tasks", {})
    assert cancelled.get("resultType") == "complete"
    assert after["status"] == "cancelled"
    assert "nothing was charged" in after["statusMessage"]
    assert emulator.submissions == []
    (entry,) = structured(listed)["tasks"]
    assert entry["state"] == "not_started"  # released: it counts against no limit


async def test_cancelling_a_running_task_says_it_runs_on_and_its_video_is_still_saved(
    tmp_path: Path,
) -> None:
    emulator = Emulator(task_seconds=1.5)
    async with emulated(emulator, tmp_path) as settings, tasks_client(settings) as client:
        created = await call_as_task(client, GENERATE, {"prompt": "a fox that runs on"})
        await _until_submitted(client, created["taskId"])
        await client.session.send_request(CancelTask(params=TaskParams(taskId=created["taskId"])), RAW)
        after = await get_task(client, created["taskId"])
        saved = await _eventually_saved(settings.output_dir)
        later = await get_task(client, created["taskId"])  # its Kling task has succeeded since
    assert after["status"] == "cancelled"
    assert "runs on at AceDataCloud and is charged" in after["statusMessage"]
    assert await contents(saved) == emulator.video
    assert len(emulator.submissions) == 1
    assert later["status"] == "cancelled"  # a terminal status never changes
    assert "result" not in later
    assert "ran on at AceDataCloud and succeeded" in later["statusMessage"]


async def test_cancelling_while_the_request_is_being_sent_lets_it_finish_and_keeps_its_task(
    tmp_path: Path,
) -> None:
    emulator = Emulator(task_seconds=0.5)
    emulator.inject("/kling/videos", Fault.delay(1.5))  # the API has the request; its answer is late
    async with emulated(emulator, tmp_path) as settings, tasks_client(settings) as client:
        created = await call_as_task(client, GENERATE, {"prompt": "a fox sent off"})
        await eventually(lambda: emulator.submissions, "the request reaching the API")
        await client.session.send_request(CancelTask(params=TaskParams(taskId=created["taskId"])), RAW)
        during = await get_task(client, created["taskId"])
        after = await finished(client, created["taskId"])
        saved = await _eventually_saved(settings.output_dir)
    assert during["status"] == "working"  # cancelling: whether the request was sent, its answer tells
    assert after["status"] == "cancelled"
    (task_id,) = emulator.tasks
    assert f"Kling task {task_id}" in after["statusMessage"]  # known, not lost to the cancel
    assert await contents(saved) == emulator.video
    assert len(emulator.submissions) == 1


async def test_cancelling_a_finished_task_is_acknowledged_and_changes_nothing(tmp_path: Path) -> None:
    emulator = Emulator(task_seconds=0.2)
    async with emulated(emulator, tmp_path) as settings, tasks_client(settings) as client:
        created = await call_as_task(client, GENERATE, {"prompt": "a fox already done"})
        done = await finished(client, created["taskId"])
        acknowledged = await client.session.send_request(
            CancelTask(params=TaskParams(taskId=created["taskId"])), RAW
        )
        after = await get_task(client, created["taskId"])
    assert done["status"] == "completed"
    assert acknowledged.get("resultType") == "complete"
    assert after["status"] == "completed"
    assert after["result"] == done["result"]


async def _until_submitted(client: Client, task_id: str) -> None:
    """Until the task's journal entry has the API's task id."""
    with anyio.fail_after(POLL_LIMIT):
        while True:
            if "Kling task" in (await get_task(client, task_id))["statusMessage"]:
                return
            await anyio.sleep(0.05)


async def _eventually_saved(directory: Path) -> Path:
    found: list[Path] = await eventually(lambda: videos_in(directory), "the video saved")
    return found[0]


# --- Over streamable HTTP -----------------------------------------------------------------------


async def test_over_http_a_tasks_request_must_name_its_task_in_its_mcp_name_header(tmp_path: Path) -> None:
    async with replica(default_env(tmp_path), tmp_path, "--demo") as running, httpx.AsyncClient() as http:
        mismatched = await _raw_tasks_get(http, running.mcp_url, "no-such-task", mcp_name="another-task")
        missing = await _raw_tasks_get(http, running.mcp_url, "no-such-task", mcp_name=None)
        matched = await _raw_tasks_get(http, running.mcp_url, "no-such-task", mcp_name="no-such-task")
    assert (mismatched.status_code, mismatched.json()["error"]["code"]) == (400, -32020)
    assert "Mcp-Name" in mismatched.json()["error"]["message"]
    assert (missing.status_code, missing.json()["error"]["code"]) == (400, -32020)
    assert matched.json()["error"]["code"] == -32602  # let through, and then not found


async def _raw_tasks_get(
    http: httpx.AsyncClient, url: str, task_id: str, *, mcp_name: str | None
) -> httpx.Response:
    """tasks/get as a 2026-07-28 client that speaks Tasks sends it, with `mcp_name` as its Mcp-Name."""
    headers = {
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tasks/get",
    }
    if mcp_name is not None:
        headers["mcp-name"] = mcp_name
    meta = {
        PROTOCOL_VERSION_META_KEY: "2026-07-28",
        CLIENT_CAPABILITIES_META_KEY: {"extensions": {EXTENSION: {}}},
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"taskId": task_id, "_meta": meta}}
    with anyio.fail_after(POLL_LIMIT):
        return await http.post(url, json=body, headers=headers)


# --- Hosted replicas on one PostgreSQL ----------------------------------------------------------


@asynccontextmanager
async def hosted_tasks_client(url: str, token: str) -> AsyncIterator[Client]:
    """A host that speaks Tasks, over streamable HTTP, as the user of `token`."""
    http = create_mcp_http_client(headers={"authorization": f"Bearer {token}"})
    transport = streamable_http_client(url, http_client=http)
    async with http, Client(transport, extensions=[advertise(EXTENSION)]) as client:
        yield client


async def test_a_task_outlives_its_killed_replica_and_is_finished_by_another_but_only_for_its_owner(
    postgres_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    emulator = Emulator(token=None, task_seconds=1.0)
    async with serve_emulator(emulator) as api_url:
        homes = [tmp_path / "first", tmp_path / "second"]
        for home in homes:
            home.mkdir()
        env = [hosted_env(api_url, home, KLING_DATABASE_URL=postgres_url) for home in homes]
        async with replica(env[0], homes[0]) as doomed:
            async with hosted_tasks_client(doomed.mcp_url, "sk-owner-1") as owner:
                created = await call_as_task(owner, GENERATE, {"prompt": "a fox that outlives its server"})
                await _until_submitted(owner, created["taskId"])
            doomed.kill()
            await doomed.process.wait()
        async with replica(env[1], homes[1]) as survivor:
            async with hosted_tasks_client(survivor.mcp_url, "sk-someone-else") as stranger:
                with pytest.raises(MCPError) as foreign:
                    await get_task(stranger, created["taskId"])
            async with hosted_tasks_client(survivor.mcp_url, "sk-owner-1") as owner:
                done = await finished(owner, created["taskId"])
    assert foreign.value.code == -32602
    assert done["status"] == "completed", done
    assert structured(types.CallToolResult.model_validate(done["result"]))["state"] == "succeeded"
    assert len(emulator.submissions) == 1
