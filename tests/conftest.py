"""Shared fixtures: a server wired to a scripted fake of the Kling API (respx), and its client."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from hypothesis import settings as hypothesis_settings
from mcp import Client

from kling_mcp.logs import logger
from kling_mcp.server.app import create_server
from kling_mcp.settings import Settings

API = "https://api.test"
TOKEN = "sk-test-4f9c2a7e-secret"
GENERATION_PATHS = (
    "/kling/videos",
    "/kling/motion",
    "/kling/lip-sync",
    "/kling/talking-photo",
    "/kling/goods-studio",
    "/kling/video-commerce",
)


# Property tests try the same inputs on every run, so a red run means the code changed, not the dice;
# `pytest --hypothesis-profile explore` searches new ones (and keeps any failure it finds to replay).
hypothesis_settings.register_profile("fixed", derandomize=True)
hypothesis_settings.register_profile("explore", max_examples=1000)
hypothesis_settings.load_profile("fixed")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True, scope="session")
def private_data_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Servers on default settings, and the processes tests start, keep their journal and cached tool
    definitions in a directory of this run: never in the user's own, nor shared with another run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("data-home")))
        yield


@pytest.fixture
def kling_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> Iterator[pytest.LogCaptureFixture]:
    """Every record of the kling_mcp logger from DEBUG up, captured on the logger itself: a server
    started earlier in the same process turns its propagation to the root logger off."""
    monkeypatch.setattr(logger, "propagate", False)
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.DEBUG, logger="kling_mcp"):
            yield caplog
    finally:
        logger.removeHandler(caplog.handler)


class FakeKling:
    """A scripted Kling API: tasks run for `polls_until_done` status checks, then end as `outcome`."""

    def __init__(self, router: respx.MockRouter, base_url: str = "") -> None:
        """Its routes on `router`, under `base_url` when the router has none of its own."""
        self.polls_until_done = 2
        self.outcome: dict[str, Any] = {"state": "succeed"}
        self.submissions: list[tuple[str, dict[str, Any]]] = []
        self.queries: list[dict[str, Any]] = []
        self.polls: Counter[str] = Counter()
        for path in GENERATION_PATHS:
            router.post(f"{base_url}{path}").mock(side_effect=self._submit)
        router.post(f"{base_url}/kling/tasks").mock(side_effect=self._tasks)

    def _submit(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.submissions.append((request.url.path, body))
        task_id = f"task-{len(self.submissions)}"
        return httpx.Response(200, json={"success": True, "task_id": task_id, "trace_id": f"trace-{task_id}"})

    def _tasks(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.queries.append(body)
        if body["action"] == "retrieve":
            task = self._task(body["id"])
            return (
                httpx.Response(200, json=task) if task else httpx.Response(404, json=_not_found(body["id"]))
            )
        items = [task for task in map(self._task, body["ids"]) if task]
        return httpx.Response(200, json={"items": items, "count": len(items)})

    def _task(self, task_id: str) -> dict[str, Any] | None:
        if not any(f"task-{n}" == task_id for n in range(1, len(self.submissions) + 1)):
            return None
        self.polls[task_id] += 1
        task: dict[str, Any] = {"id": task_id, "created_at": 1.0, "request": {}}
        if self.polls[task_id] < self.polls_until_done:
            task["response"] = {"task_id": task_id, "state": "processing"}
            return task
        if self.outcome.get("state") == "failed":
            task["response"] = {
                "success": False,
                "task_id": task_id,
                "trace_id": f"trace-{task_id}",
                **self.outcome,
            }
        else:
            task["response"] = {
                "success": True,
                "task_id": task_id,
                "video_id": f"video-{task_id}",
                "video_url": f"https://cdn.test/{task_id}.mp4",
                "duration": "5.066",
                "trace_id": f"trace-{task_id}",
                **self.outcome,
            }
        return task


def _not_found(task_id: str) -> dict[str, Any]:
    return {"error": {"code": "not_found", "message": f"task {task_id} not found"}, "trace_id": "trace-404"}


def scripted_settings(directory: Path, poll_interval: float = 0.05) -> Settings:
    """A server on the scripted API, its journal and videos under `directory`.

    Videos are not saved: the scripted API serves no media (tests that save use the emulator).
    """
    return Settings(
        api_token=TOKEN,
        api_base_url=API,
        poll_interval=poll_interval,
        data_dir=directory / "data",
        output_dir=directory / "videos",
        auto_download=False,
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A server of its own for each test."""
    return scripted_settings(tmp_path)


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=API, assert_all_called=False) as mock:
        yield mock


@pytest.fixture
def kling(router: respx.MockRouter) -> FakeKling:
    return FakeKling(router)


@pytest.fixture
async def client(settings: Settings, kling: FakeKling) -> AsyncIterator[Client]:
    async with Client(create_server(settings), raise_exceptions=True) as connected:
        yield connected
