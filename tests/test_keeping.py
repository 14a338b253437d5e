"""Nothing paid for is lost, through the tools: every task is journalled, followed after its call
ended (or its server died) and its video saved to disk, with kling_list_tasks, kling_download_video
and the task resources reading what the journal kept.

The server runs in memory against the emulator over real loopback HTTP; where a server process must
die, it is a real `python -m kling_mcp` subprocess over stdio, killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import TextResourceContents

from kling_mcp.emulator import Emulator, Fault
from kling_mcp.tasks.journal import Limits
from kling_mcp.tasks.sqlite import SqliteJournal
from tests.emulated import (
    TOKEN,
    Progress,
    call,
    connect,
    contents,
    emulated,
    eventually,
    structured,
    text_of,
    video_link,
    videos_in,
)
from tests.test_e2e import api_env, kling_mcp

pytestmark = pytest.mark.anyio

PROMPT = "a red fox in the snow"
GENERATE = "kling_generate_video"


async def generate(client: Client, prompt: str = PROMPT, **arguments: Any) -> dict[str, Any]:
    result = await call(client, GENERATE, {"prompt": prompt, **arguments})
    assert not result.is_error, text_of(result)
    return structured(result)


async def listed(client: Client, **arguments: Any) -> dict[str, Any]:
    result = await call(client, "kling_list_tasks", arguments)
    assert not result.is_error, text_of(result)
    return structured(result)


# --- A server killed while a call waits -------------------------------------------------------


def server_pid(workdir: Path) -> int:
    """The pid of the `python -m kling_mcp` child of this test running in `workdir`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cwd = os.readlink(entry / "cwd")
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if parent == os.getpid() and Path(cwd) == workdir and b"kling_mcp" in command:
            return int(entry.name)
    raise AssertionError(f"no kling_mcp server process runs in {workdir}")


async def test_a_video_paid_for_by_a_killed_server_is_saved_by_the_next_one_with_no_call(
    tmp_path: Path,
) -> None:
    emulator = Emulator(task_seconds=2.0)
    async with emulated(emulator, tmp_path) as settings:
        env = api_env(settings.api_base_url, token=TOKEN)
        videos = tmp_path / "videos"

        async with kling_mcp(env, tmp_path) as first:

            async def wait_for_the_video() -> None:
                with pytest.raises(MCPError):  # the connection dies with the server
                    await first.client.call_tool(GENERATE, {"prompt": PROMPT, "timeout": 60})

            async with anyio.create_task_group() as calls:
                calls.start_soon(wait_for_the_video)
                # Polled: the task id is journalled, and the call waits.
                await eventually(lambda: emulator.queried_ids, "the first status query")
                os.kill(server_pid(tmp_path), signal.SIGKILL)
        assert len(emulator.submissions) == 1
        (task_id,) = emulator.tasks
        assert videos_in(videos) == []

        async with kling_mcp(env, tmp_path) as second:
            (saved,) = await eventually(lambda: videos_in(videos), "the video saved by the restarted server")
            assert await contents(saved) == emulator.video
            assert task_id[:8] in saved.name
            result = await call(second.client, "kling_list_tasks", {})
        (task,) = structured(result)["tasks"]
        assert (task["task_id"], task["state"], task["file_path"]) == (task_id, "succeeded", str(saved))
        assert len(emulator.submissions) == 1, "nothing was paid for twice"


async def test_a_video_finished_but_not_yet_saved_when_its_server_was_killed_is_saved_by_the_next_start(
    tmp_path: Path,
) -> None:
    emulator = Emulator(task_seconds=0.2)
    emulator.inject("/media", Fault.delay(60))  # the first download is held until long after the kill
    async with emulated(emulator, tmp_path) as settings:
        env = api_env(settings.api_base_url, token=TOKEN)

        async with kling_mcp(env, tmp_path) as first:

            async def wait_for_the_video() -> None:
                with pytest.raises(MCPError):  # the connection dies with the server
                    await first.client.call_tool(GENERATE, {"prompt": PROMPT, "timeout": 60})

            async with anyio.create_task_group() as calls:
                calls.start_soon(wait_for_the_video)
                # Its download has begun: the task's success is journalled, and its video not saved.
                await eventually(lambda: media_requests(emulator), "the first download request")
                os.kill(server_pid(tmp_path), signal.SIGKILL)
        (task_id,) = emulator.tasks
        assert videos_in(settings.output_dir) == []

        async with connect(settings) as client:
            (saved,) = await eventually(lambda: videos_in(settings.output_dir), "the video saved on restart")
            (task,) = (await listed(client))["tasks"]
        assert await contents(saved) == emulator.video
        assert (task["task_id"], task["state"], task["file_path"]) == (task_id, "succeeded", str(saved))
        assert len(emulator.submissions) == 1, "nothing was paid for twice"


def media_requests(emulator: Emulator) -> int:
    """Requests that reached the emulator's CDN (the video downloads)."""
    return sum(count for path, count in emulator.counts.items() if path.startswith("/media/"))


# --- A call whose wait ends first -------------------------------------------------------------


async def test_a_task_whose_wait_ended_is_followed_and_its_video_saved_with_no_further_call(
    tmp_path: Path,
) -> None:
    emulator = Emulator(task_seconds=1.0)
    async with emulated(emulator, tmp_path) as settings, connect(settings) as client:
        task = await generate(client, timeout=0.2)
        assert task["state"] == "running"
        assert "kling_get_task" in task["next_step"]

        (saved,) = await eventually(lambda: videos_in(settings.output_dir), "the video saved")
        assert await contents(saved) == emulator.video

        downloaded = await call(client, "kling_download_video", {"task_id": task["task_id"]})
        assert not downloaded.is_error, text_of(downloaded)
        assert structured(downloaded)["file_path"] == str(saved)
        assert str(saved) in text_of(downloaded)
        link = video_link(downloaded)
        assert (link.uri, link.mime_type) == (saved.as_uri(), "video/mp4")

        saved.unlink()
        again = await call(client, "kling_download_video", {"task_id": task["task_id"]})
        assert not again.is_error, text_of(again)
        assert await contents(structured(again)["file_path"]) == emulator.video
        assert len(emulator.submissions) == 1


async def test_a_generation_that_waits_answers_with_a_link_to_the_saved_file(tmp_path: Path) -> None:
    emulator = Emulator(task_seconds=0.3)
    async with emulated(emulator, tmp_path) as settings, connect(settings) as client:
        result = await call(client, GENERATE, {"prompt": PROMPT, "timeout": 15})
        task = structured(result)
        saved = Path(task["file_path"])
        assert saved.parent == settings.output_dir.resolve()
        assert await contents(saved) == emulator.video
        link = video_link(result)
        assert (link.uri, link.mime_type, link.name) == (saved.as_uri(), "video/mp4", saved.name)
        assert f"Saved to: {saved}" in text_of(result)


# --- Downloads that go wrong on the way -------------------------------------------------------


async def test_an_expired_link_is_refreshed_and_the_video_saved(tmp_path: Path) -> None:
    emulator = Emulator(task_seconds=0.2, link_seconds=0.5)
    async with emulated(emulator, tmp_path, auto_download=False) as settings, connect(settings) as client:
        task = await generate(client, timeout=15)
        assert task["state"] == "succeeded"
        await anyio.sleep(0.7)  # the link the journal kept has expired

        result = await call(client, "kling_download_video", {"task_id": task["task_id"]})
        assert not result.is_error, text_of(result)
        assert await contents(structured(result)["file_path"]) == emulator.video
        assert emulator.counts[f"/media/{task['task_id']}.mp4"] == 2, "refused once, then the fresh link"


async def test_a_connection_cut_mid_download_is_resumed_where_it_stopped(tmp_path: Path) -> None:
    emulator = Emulator(task_seconds=0.2, video_bytes=2_000_000)
    emulator.inject("/media", Fault.cut_after(700_000))
    async with emulated(emulator, tmp_path) as settings, connect(settings) as client:
        task = await generate(client, timeout=15)
        assert await contents(task["file_path"]) == emulator.video
        assert emulator.media_ranges[0] is None
        assert emulator.media_ranges[1] is not None
        assert emulator.media_ranges[1].startswith("bytes=")
        assert emulator.media_ranges[1] != "bytes=0-"


async def test_a_20_mb_video_is_saved_whole_with_progress(tmp_path: Path) -> None:
    emulator = Emulator(task_seconds=0.2, video_bytes=20_000_000)
    progress = Progress()
    async with emulated(emulator, tmp_path) as settings, connect(settings) as client:
        result = await call(client, GENERATE, {"prompt": PROMPT, "timeout": 15}, progress)
        saved = Path(structured(result)["file_path"])
        assert await contents(saved) == emulator.video
        assert len(emulator.video) == 20_000_000
    assert any("saving the video" in message and "of 20.0 MB" in message for message in progress.messages)


async def test_with_auto_download_off_nothing_is_saved_until_asked(tmp_path: Path) -> None:
    emulator = Emulator(task_seconds=0.2)
    async with emulated(emulator, tmp_path, auto_download=False) as settings, connect(settings) as client:
        task = await generate(client, timeout=15)
        assert task["state"] == "succeeded"
        assert task.get("file_path") is None
        assert task["video_url"]
        # A save of the first video would have started when its success was seen, before this one's.
        later = await generate(client, "a later fox", timeout=15)
        assert later["state"] == "succeeded"
        assert not any(path.startswith("/media") for path in emulator.counts)
        assert videos_in(settings.output_dir) == []

        result = await call(client, "kling_download_video", {"task_id": task["task_id"]})
        (saved,) = videos_in(settings.output_dir)
        assert structured(result)["file_path"] == str(saved)
        assert await contents(saved) == emulator.video


async def test_an_unwritable_output_directory_keeps_the_link_and_saves_later(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the output directory's parent should be")
    output_dir = blocker / "videos"
    emulator = Emulator(task_seconds=0.2)
    async with (
        emulated(emulator, tmp_path, output_dir=output_dir) as settings,
        connect(settings) as client,
    ):
        result = await call(client, GENERATE, {"prompt": PROMPT, "timeout": 15})
        task = structured(result)
        assert not result.is_error
        assert task["state"] == "succeeded"
        assert task["video_url"]
        assert task.get("file_path") is None
        assert f"Not saved: Could not save the video in {output_dir}" in task["next_step"]
        assert "KLING_OUTPUT_DIR" in task["next_step"]
        assert task["video_url"] in text_of(result)

        (entry,) = (await listed(client))["tasks"]
        assert entry["video_url"] == task["video_url"]
        assert entry.get("file_path") is None
        assert str(output_dir) in entry["error"]

        blocker.unlink()
        saved = await call(client, "kling_download_video", {"task_id": task["task_id"]})
        assert not saved.is_error, text_of(saved)
        assert await contents(structured(saved)["file_path"]) == emulator.video
        (entry,) = (await listed(client))["tasks"]
        assert entry["file_path"] == structured(saved)["file_path"]
        assert entry.get("error") is None


# --- The journal, as the tools and resources show it ------------------------------------------


async def test_list_tasks_filters_and_pages_through_the_journal(tmp_path: Path) -> None:
    emulator = Emulator(task_seconds=0.1)
    async with emulated(emulator, tmp_path) as settings:
        old = await SqliteJournal.open(settings.data_dir, clock=lambda: time.time() - 3 * 3600)
        unlimited = Limits(daily=100, concurrent=100, duplicate_window=None)
        await old.reserve(
            GENERATE, "/kling/videos", {"action": "text2video", "prompt": "an old one"}, unlimited
        )
        await old.aclose()
        async with connect(settings) as client:
            made = [await generate(client, f"clip number {n}", timeout=15) for n in range(3)]
            failed = await call(client, GENERATE, {"prompt": "a cat [fail]", "timeout": 15})
            assert failed.is_error
            image = await generate_from_image(client)

            everything = (await listed(client, limit=100))["tasks"]
            assert len(everything) == 6
            assert [entry["task_id"] for entry in everything[:5]] == [
                image["task_id"],
                structured(failed)["task_id"],
                *(task["task_id"] for task in reversed(made)),
            ]

            (failure,) = (await listed(client, state="failed"))["tasks"]
            assert failure["task_id"] == structured(failed)["task_id"]
            assert failure["error"]
            succeeded = (await listed(client, state="succeeded"))["tasks"]
            assert {entry["task_id"] for entry in succeeded} == {
                image["task_id"],
                *(task["task_id"] for task in made),
            }
            assert all(entry["file_path"] for entry in succeeded)
            (from_image,) = (await listed(client, tool="kling_generate_video_from_image"))["tasks"]
            assert from_image["task_id"] == image["task_id"]
            assert len((await listed(client, since_hours=1))["tasks"]) == 5
            assert len((await listed(client, since_hours=4))["tasks"]) == 6

            pages, cursor = [], None
            while True:
                page = await listed(client, limit=2, **({"cursor": cursor} if cursor else {}))
                pages.append(page["tasks"])
                cursor = page.get("next_cursor")
                if cursor is None:
                    break
            assert [len(page) for page in pages] == [2, 2, 2]
            assert [entry for page in pages for entry in page] == everything

            bad = await call(client, "kling_list_tasks", {"cursor": "not-a-cursor"})
            assert bad.is_error
            assert "cursor" in text_of(bad)


async def generate_from_image(client: Client) -> dict[str, Any]:
    arguments = {"prompt": "it blinks", "start_image_url": "https://images.test/cat.png", "timeout": 15}
    result = await call(client, "kling_generate_video_from_image", arguments)
    assert not result.is_error, text_of(result)
    return structured(result)


async def test_the_task_resources_read_the_journal(tmp_path: Path) -> None:
    emulator = Emulator(task_seconds=0.1)
    async with emulated(emulator, tmp_path) as settings, connect(settings) as client:
        task = await generate(client, timeout=15)
        recent = json.loads(resource_text(await client.read_resource("kling://tasks")))
        (entry,) = recent["tasks"]
        assert (entry["task_id"], entry["state"], entry["file_path"]) == (
            task["task_id"],
            "succeeded",
            task["file_path"],
        )
        one = json.loads(resource_text(await client.read_resource(f"kling://tasks/{task['task_id']}")))
        assert (one["state"], one["file_path"], one["prompt"]) == ("succeeded", task["file_path"], PROMPT)


def resource_text(result: Any) -> str:
    (contents,) = result.contents
    assert isinstance(contents, TextResourceContents)
    return contents.text


async def test_a_submission_that_may_have_started_is_listed_with_what_to_check(tmp_path: Path) -> None:
    emulator = Emulator(task_seconds=0.1)
    emulator.inject("/kling/videos", Fault.drop())
    async with emulated(emulator, tmp_path) as settings, connect(settings) as client:
        result = await call(client, GENERATE, {"prompt": PROMPT, "timeout": 5})
        assert result.is_error
        assert "may or may not have started" in text_of(result)

        (entry,) = (await listed(client, state="maybe_started"))["tasks"]
        assert entry.get("task_id") is None
        assert entry["prompt"] == PROMPT
        assert "https://platform.acedata.cloud" in entry["note"]
        assert "before generating it again" in entry["note"]
        listing = await call(client, "kling_list_tasks", {})
        assert "maybe_started" in text_of(listing)
        assert "platform.acedata.cloud" in text_of(listing)
