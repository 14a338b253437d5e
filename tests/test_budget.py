"""The budget and duplicates, through the tools: a generation over the daily or the concurrent limit
is refused before anything is sent, an identical request while the first runs is answered with the
running task, and every answer says what drives the price.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from kling_mcp.emulator import Emulator
from tests import media
from tests.emulated import Progress, call, connect, emulated, structured, text_of

pytestmark = pytest.mark.anyio

GENERATE = "kling_generate_video"
NOTHING_SENT = "nothing was sent, nothing was charged"


async def start(client: Client, prompt: str, **arguments: Any) -> Any:
    """Start a generation without waiting for it."""
    return await call(client, GENERATE, {"prompt": prompt, "timeout": 0, **arguments})


async def started(client: Client, prompt: str, **arguments: Any) -> dict[str, Any]:
    result = await start(client, prompt, **arguments)
    assert not result.is_error, text_of(result)
    return structured(result)


# --- KLING_DAILY_TASK_LIMIT -------------------------------------------------------------------


async def test_over_the_daily_limit_a_generation_is_refused_before_sending(tmp_path: Path) -> None:
    emulator = Emulator(task_seconds=0.1)
    async with emulated(emulator, tmp_path, daily_task_limit=2) as settings, connect(settings) as client:
        await started(client, "one")
        await started(client, "two")
        refused = await start(client, "three")
    assert refused.is_error
    text = text_of(refused)
    assert "2 paid tasks in the last 24 hours" in text
    assert "KLING_DAILY_TASK_LIMIT=2" in text
    assert NOTHING_SENT in text
    frees = re.search(r"The next one frees up in (\d+) h (\d+) min \(at \d\d:\d\d\)", text)
    assert frees is not None, text
    hours, minutes = int(frees[1]), int(frees[2])
    assert minutes < 60, text
    assert 23 * 60 <= hours * 60 + minutes <= 24 * 60, text
    assert "raise KLING_DAILY_TASK_LIMIT" in text
    assert [submission["prompt"] for submission in emulator.submissions] == ["one", "two"]


async def test_the_daily_limit_counts_every_server_on_one_journal(tmp_path: Path) -> None:
    emulator = Emulator(task_seconds=0.1)
    async with (
        emulated(emulator, tmp_path, daily_task_limit=2) as settings,
        connect(settings) as desktop,
        connect(settings) as cursor,
    ):
        await started(desktop, "from the desktop")
        await started(cursor, "from the editor")
        for client in (desktop, cursor):
            refused = await start(client, "one more")
            assert refused.is_error
            assert "2 paid tasks in the last 24 hours" in text_of(refused)
    assert len(emulator.submissions) == 2


async def test_a_daily_limit_of_zero_refuses_every_generation(tmp_path: Path) -> None:
    emulator = Emulator(task_seconds=0.1)
    async with emulated(emulator, tmp_path, daily_task_limit=0) as settings, connect(settings) as client:
        refused = await start(client, "anything")
        free = await call(client, "kling_list_tasks", {})
    assert refused.is_error
    assert "KLING_DAILY_TASK_LIMIT=0" in text_of(refused)
    assert NOTHING_SENT in text_of(refused)
    assert "Set KLING_DAILY_TASK_LIMIT" in text_of(refused)
    assert emulator.submissions == []
    assert not free.is_error, "the free tools still answer"


async def test_over_the_daily_limit_a_local_file_is_not_uploaded(tmp_path: Path) -> None:
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    cat = pictures / "cat.png"
    cat.write_bytes(media.png())
    emulator = Emulator(task_seconds=0.1)
    async with (
        emulated(emulator, tmp_path, daily_task_limit=0, input_dirs=(pictures,)) as settings,
        connect(settings) as client,
    ):
        arguments = {"prompt": "it blinks", "start_image_url": str(cat), "timeout": 0}
        refused = await call(client, "kling_generate_video_from_image", arguments)
    assert refused.is_error
    assert NOTHING_SENT in text_of(refused)
    assert emulator.uploads.received_count == 0, "the file left the machine for a task that was refused"
    assert emulator.submissions == []


# --- KLING_MAX_CONCURRENT_TASKS ---------------------------------------------------------------


async def test_a_generation_waits_its_turn_while_the_concurrent_limit_is_reached(tmp_path: Path) -> None:
    emulator = Emulator(task_seconds=0.5)
    async with (
        emulated(emulator, tmp_path, max_concurrent_tasks=1) as settings,
        connect(settings) as client,
    ):
        first = await started(client, "the first")
        refused = await start(client, "the second")
        assert refused.is_error
        text = text_of(refused)
        assert "1 paid tasks are running at once" in text
        assert "KLING_MAX_CONCURRENT_TASKS=1" in text
        assert NOTHING_SENT in text
        assert "kling_list_tasks" in text
        assert len(emulator.submissions) == 1

        done = await call(client, "kling_get_task", {"task_id": first["task_id"], "timeout": 10})
        assert structured(done)["state"] == "succeeded"
        accepted = await start(client, "the second")
    assert not accepted.is_error, text_of(accepted)
    assert [submission["prompt"] for submission in emulator.submissions] == ["the first", "the second"]


# --- Duplicates -------------------------------------------------------------------------------


async def test_the_same_generation_while_the_first_runs_answers_with_the_running_task(tmp_path: Path) -> None:
    emulator = Emulator(task_seconds=5)
    async with emulated(emulator, tmp_path) as settings, connect(settings) as client:
        first = await started(client, "a fox", duration=10)
        again = await start(client, "a fox", duration=10)
        assert not again.is_error, text_of(again)
        assert structured(again)["task_id"] == first["task_id"]
        assert "An identical request started" in text_of(again)
        assert "allow_duplicate" in text_of(again)
        assert len(emulator.submissions) == 1

        paid_again = await started(client, "a fox", duration=10, allow_duplicate=True)
        assert paid_again["task_id"] != first["task_id"]
        assert len(emulator.submissions) == 2

        other = await started(client, "a fox in the rain", duration=10)
        assert other["task_id"] not in (first["task_id"], paid_again["task_id"])
        assert "An identical request" not in other["next_step"]
        different_duration = await started(client, "a fox", duration=5)
        assert different_duration["task_id"] not in (first["task_id"], paid_again["task_id"])
    assert len(emulator.submissions) == 4


async def test_a_duplicate_with_a_local_file_is_answered_even_at_the_concurrent_limit(tmp_path: Path) -> None:
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    cat = pictures / "cat.png"
    cat.write_bytes(media.png())
    emulator = Emulator(task_seconds=5)
    arguments = {"prompt": "it blinks", "start_image_url": str(cat), "timeout": 0}
    async with (
        emulated(emulator, tmp_path, max_concurrent_tasks=1, input_dirs=(pictures,)) as settings,
        connect(settings) as client,
    ):
        first = await call(client, "kling_generate_video_from_image", arguments)
        again = await call(client, "kling_generate_video_from_image", arguments)
    assert not again.is_error, text_of(again)
    assert structured(again)["task_id"] == structured(first)["task_id"]
    assert "An identical request started" in text_of(again)
    assert (len(emulator.submissions), emulator.uploads.received_count) == (1, 1)


async def test_a_finished_task_is_no_duplicate(tmp_path: Path) -> None:
    emulator = Emulator(task_seconds=0.1)
    async with emulated(emulator, tmp_path) as settings, connect(settings) as client:
        first = await call(client, GENERATE, {"prompt": "a fox", "timeout": 10})
        assert structured(first)["state"] == "succeeded"
        second = await call(client, GENERATE, {"prompt": "a fox", "timeout": 10})
    assert structured(second)["task_id"] != structured(first)["task_id"]
    assert len(emulator.submissions) == 2


# --- What drives the price --------------------------------------------------------------------


async def test_the_result_and_the_progress_say_the_model_mode_and_duration(tmp_path: Path) -> None:
    emulator = Emulator(task_seconds=0.2)
    progress = Progress()
    arguments = {"prompt": "a fox", "model": "kling-v2-1-master", "mode": "pro", "duration": 10}
    async with emulated(emulator, tmp_path) as settings, connect(settings) as client:
        result = await call(client, GENERATE, {**arguments, "timeout": 10}, progress)
    assert not result.is_error, text_of(result)
    task = structured(result)
    assert (task["model"], task["mode"]) == ("kling-v2-1-master", "pro")
    assert task["duration"] == pytest.approx(10, abs=0.1)
    assert any("submitted (kling-v2-1-master, pro, 10 s)" in message for message in progress.messages)


async def test_a_task_still_running_says_the_duration_it_is_priced_for(tmp_path: Path) -> None:
    emulator = Emulator(task_seconds=5)
    async with emulated(emulator, tmp_path) as settings, connect(settings) as client:
        task = await started(client, "a fox", model="kling-v2-1-master", mode="pro", duration=10)
        listed = structured(await call(client, "kling_list_tasks", {}))["tasks"]
    assert task["state"] == "running"
    assert (task["model"], task["mode"], task.get("duration")) == ("kling-v2-1-master", "pro", 10)
    assert (listed[0]["model"], listed[0]["mode"]) == ("kling-v2-1-master", "pro")
