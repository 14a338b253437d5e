"""End to end: `kling-mcp` as a subprocess over stdio, against the API emulator over real HTTP.

Each test sees what a user of an MCP host would see: tool results, progress, log messages,
the server's stderr, and the video file itself. The emulator runs in the test's event loop
and records what reached the "API" (submissions, requests per path, ids each status query
asked for).

Most tests share one server process and one emulator (a module fixture: starting a server
costs ~1.4 s, mostly importing the MCP SDK); each of them checks only what changed during
the test (`Baseline`) and leaves no planned fault behind. Tests that need their own
settings, an exact view of the traffic, or may leave a server in a bad state (cancellation,
a wrong token, raw stdio, demo mode) start their own.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import (
    CallToolResult,
    LoggingMessageNotificationParams,
    ResourceLink,
    jsonrpc_message_adapter,
)

from kling_mcp.emulator import Emulator, Fault, serve_emulator
from tests.emulated import Progress, call, eventually, structured, text_of

pytestmark = pytest.mark.anyio

TOKEN = "sk-e2e-emulator-5d1b8e"
WRONG_TOKEN = "sk-e2e-WRONG-7f3a9c"
TASK_SECONDS = 0.3
POLL_INTERVAL = "0.1"
READ_TIMEOUT = 0.5
"""KLING_READ_TIMEOUT of the `slow_api` server: a submission held longer than this times out."""
CALL_LIMIT = 15.0
"""No single step of a test may hang longer than this."""
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
MEDIA = "https://media.e2e.test"
MAYBE_STARTED = "may have reached AceDataCloud and started a paid task"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Module scope, so that the shared servers below live in the tests' event loop."""
    return "asyncio"


# --- Running the server ---------------------------------------------------------------------


def server_env(**env: str) -> dict[str, str]:
    """The environment of a server process: ours without any kling-mcp setting, plus `env`."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ACEDATACLOUD_", "KLING_")) and key != "LOG_LEVEL"
    }
    return {**inherited, **env}


def api_env(base_url: str, token: str = TOKEN, **env: str) -> dict[str, str]:
    return server_env(
        ACEDATACLOUD_API_BASE_URL=base_url,
        ACEDATACLOUD_API_TOKEN=token,
        KLING_POLL_INTERVAL=POLL_INTERVAL,
        **env,
    )


class HeardLogs:
    """The MCP log messages a client received, in order; a test can wait for one."""

    def __init__(self) -> None:
        self.messages: list[LoggingMessageNotificationParams] = []
        self._arrived = anyio.Event()

    async def __call__(self, params: LoggingMessageNotificationParams) -> None:
        self.messages.append(params)
        arrived, self._arrived = self._arrived, anyio.Event()
        arrived.set()

    async def first_mentioning(self, words: str, *, since: int = 0) -> LoggingMessageNotificationParams:
        while True:
            for message in self.messages[since:]:
                if words in str(message.data):
                    return message
            await self._arrived.wait()


@dataclass
class Server:
    """A running `kling-mcp` process, the client session to it and what it let out."""

    client: Client
    stderr_path: Path
    logs: HeardLogs
    not_json_rpc: list[Exception]
    """What the client could not read on the server's stdout (the SDK reports it, and carries on)."""
    emulator: Emulator | None = None
    base_url: str | None = None

    def stderr(self) -> str:
        return self.stderr_path.read_text()


@asynccontextmanager
async def kling_mcp(env: dict[str, str], workdir: Path, *args: str) -> AsyncIterator[Server]:
    """Start `python -m kling_mcp *args` with exactly `env`, in `workdir` (so no .env file is read).

    On a clean exit, checks that everything the server wrote to stdout was JSON-RPC: the SDK's
    client only hands anything else to its message handler and goes on, so a stray print or a log
    line on stdout would otherwise pass unnoticed here (and break a strict host).
    """
    logs = HeardLogs()
    not_json_rpc: list[Exception] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, Exception):
            not_json_rpc.append(message)

    # Its own journal and video folder, and limits no test reaches unless it sets them.
    env = {
        "KLING_DATA_DIR": str(workdir / "data"),
        "KLING_OUTPUT_DIR": str(workdir / "videos"),
        "KLING_DAILY_TASK_LIMIT": "100000",
        "KLING_MAX_CONCURRENT_TASKS": "1000",
        **env,
    }
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "kling_mcp", *args], env=env, cwd=workdir
    )
    stderr_path = workdir / "stderr.log"
    with stderr_path.open("w") as stderr:
        transport = stdio_client(params, errlog=stderr)
        async with Client(
            transport, mode="legacy", logging_callback=logs, message_handler=on_message
        ) as client:
            yield Server(client, stderr_path, logs, not_json_rpc)
    assert not not_json_rpc, f"the server wrote something other than JSON-RPC to stdout: {not_json_rpc}"


@asynccontextmanager
async def kling_mcp_on_emulator(emulator: Emulator, workdir: Path, **env: str) -> AsyncIterator[Server]:
    """Serve `emulator` on a free loopback port and start a server pointed at it."""
    async with (
        serve_emulator(emulator, port=0) as base_url,
        kling_mcp(api_env(base_url, **env), workdir) as server,
    ):
        server.emulator, server.base_url = emulator, base_url
        yield server


@pytest.fixture(scope="module")
async def shared_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    emulator = Emulator(token=TOKEN, task_seconds=TASK_SECONDS)
    async with kling_mcp_on_emulator(emulator, tmp_path_factory.mktemp("shared")) as server:
        yield server


@pytest.fixture(scope="module")
async def slow_api_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    emulator = Emulator(token=TOKEN, task_seconds=TASK_SECONDS)
    workdir = tmp_path_factory.mktemp("slow-api")
    async with kling_mcp_on_emulator(emulator, workdir, KLING_READ_TIMEOUT=str(READ_TIMEOUT)) as server:
        yield server


@dataclass
class Baseline:
    """What a shared server and emulator had seen when a test began; the test checks only the news."""

    server: Server
    emulator: Emulator
    submissions: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    queries: int = 0
    logs: int = 0

    @classmethod
    def of(cls, server: Server) -> Baseline:
        assert server.emulator is not None
        emulator = server.emulator
        return cls(
            server=server,
            emulator=emulator,
            submissions=len(emulator.submissions),
            counts=Counter(emulator.counts),
            queries=len(emulator.queried_ids),
            logs=len(server.logs.messages),
        )

    @property
    def client(self) -> Client:
        return self.server.client

    def new_submissions(self) -> list[dict[str, Any]]:
        return self.emulator.submissions[self.submissions :]

    def new_requests(self, path: str) -> int:
        return self.emulator.counts[path] - self.counts[path]

    def new_queries(self) -> list[list[str]]:
        return self.emulator.queried_ids[self.queries :]

    async def first_new_log_mentioning(self, words: str) -> LoggingMessageNotificationParams:
        return await self.server.logs.first_mentioning(words, since=self.logs)


async def leave_no_fault_behind(server: Server) -> None:
    """Let any fault a test planned but did not use answer a throwaway request, so the next test is clean."""
    assert server.base_url is not None
    async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as http:
        pending: dict[str, int] = (await http.get("/_emulator/stats")).json()["pending_faults"]
        for path, times in pending.items():
            for _ in range(times):
                with suppress(httpx.HTTPError):
                    await http.post(path, json={})
    assert not pending, f"the test left planned faults unused: {pending}"


async def leave_no_task_running(server: Server) -> None:
    """Wait until the server's journal says every task it started has ended and its video is saved (or
    could not be): a task whose call ended first is followed in the background, and its status checks
    or its download would meet the next test's planned faults."""

    async def all_settled() -> bool:
        listing = structured(await call(server.client, "kling_list_tasks", {"limit": 100}))
        return not any(map(still_followed, listing["tasks"]))

    await eventually(all_settled, "the end of every task the test started", limit=CALL_LIMIT)


def still_followed(task: dict[str, Any]) -> bool:
    """Whether the server still works on a listed task: it runs, or its video is not saved yet."""
    unsaved = task["state"] == "succeeded" and not (task.get("file_path") or task.get("error"))
    return task["state"] == "running" or unsaved


async def a_later_lookup(baseline: Baseline) -> list[str]:
    """Look up an unknown task through the server, and answer the status queries the emulator saw
    since `baseline`: by the time this lookup is answered, any retry the server sent before it has
    been answered too."""
    marker = "a-later-lookup"
    await call(baseline.client, "kling_get_task", {"task_id": marker})
    assert baseline.new_queries()[-1:] == [[marker]]
    return [task_id for ids in baseline.new_queries() for task_id in ids]


@pytest.fixture
async def kling(shared_server: Server) -> AsyncIterator[Baseline]:
    yield Baseline.of(shared_server)
    await leave_no_fault_behind(shared_server)
    await leave_no_task_running(shared_server)


@pytest.fixture
async def kling_slow_api(slow_api_server: Server) -> AsyncIterator[Baseline]:
    yield Baseline.of(slow_api_server)
    await leave_no_fault_behind(slow_api_server)
    await leave_no_task_running(slow_api_server)


@contextmanager
def tasks_take(emulator: Emulator, seconds: float) -> Iterator[None]:
    """Tasks submitted within this block run `seconds`."""
    before = emulator.task_seconds
    emulator.task_seconds = seconds
    try:
        yield
    finally:
        emulator.task_seconds = before


# --- What a user sees -----------------------------------------------------------------------


async def download(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as http:
        return await http.get(url)


async def assert_video_ready(result: CallToolResult, emulator: Emulator) -> dict[str, Any]:
    """The call succeeded with a video of the emulator's that really downloads as an MP4."""
    assert not result.is_error, text_of(result)
    video = structured(result)
    assert video["state"] == "succeeded"
    task = emulator.tasks[video["task_id"]]
    assert video["video_id"] == task.video_id
    assert video["trace_id"] == task.trace_id
    assert video["demo"] is False
    assert video["video_url"] in text_of(result)
    file = await download(video["video_url"])
    assert file.status_code == 200
    assert file.headers["content-type"] == "video/mp4"
    assert file.content[4:8] == b"ftyp"
    saved = Path(video["file_path"])
    assert await anyio.Path(saved).read_bytes() == file.content
    link = result.content[-1]
    assert isinstance(link, ResourceLink)
    assert (link.uri, link.mime_type) == (saved.as_uri(), "video/mp4")
    return video


def assert_strictly_increasing(values: list[float]) -> None:
    assert values, "no progress notification arrived"
    assert all(later > earlier for earlier, later in pairwise(values)), values


# --- 1. Every generation tool, start to finish ----------------------------------------------

GENERATIONS = [
    pytest.param(
        "kling_generate_video",
        {"prompt": "a red fox trotting through fresh snow, tracking shot"},
        "/kling/videos",
        {"action": "text2video", "model": "kling-v2-master", "mode": "std", "aspect_ratio": "16:9"},
        id="text-to-video",
    ),
    pytest.param(
        "kling_generate_video_from_image",
        {"prompt": "the fox turns its head and blinks", "start_image_url": f"{MEDIA}/fox.png"},
        "/kling/videos",
        {"action": "image2video", "start_image_url": f"{MEDIA}/fox.png"},
        id="image-to-video",
    ),
    pytest.param(
        "kling_extend_video",
        {"video_id": "0b9c3f64-video-of-an-earlier-clip", "prompt": "the fox leaps into the drift"},
        "/kling/videos",
        {"action": "extend", "video_id": "0b9c3f64-video-of-an-earlier-clip"},
        id="extend",
    ),
    pytest.param(
        "kling_generate_motion",
        {"image_url": f"{MEDIA}/dancer.png", "video_url": f"{MEDIA}/moves.mp4"},
        "/kling/motion",
        {"image_url": f"{MEDIA}/dancer.png", "mode": "std", "character_orientation": "image"},
        id="motion",
    ),
    pytest.param(
        "kling_lip_sync",
        {"video_url": f"{MEDIA}/talk.mp4", "audio_url": f"{MEDIA}/speech.mp3"},
        "/kling/lip-sync",
        {"mode": "audio2video", "audio_url": f"{MEDIA}/speech.mp3"},
        id="lip-sync",
    ),
    pytest.param(
        "kling_talking_photo",
        {"image_url": f"{MEDIA}/portrait.jpg", "audio_url": f"{MEDIA}/speech.mp3"},
        "/kling/talking-photo",
        {"image_url": f"{MEDIA}/portrait.jpg", "audio_url": f"{MEDIA}/speech.mp3"},
        id="talking-photo",
    ),
]


@pytest.mark.parametrize(("tool", "arguments", "endpoint", "sent"), GENERATIONS)
async def test_each_generation_tool_delivers_a_video_that_downloads(
    kling: Baseline, tool: str, arguments: dict[str, Any], endpoint: str, sent: dict[str, Any]
) -> None:
    progress = Progress()

    result = await call(kling.client, tool, arguments, progress)

    video = await assert_video_ready(result, kling.emulator)
    assert video["task_id"] in text_of(result)
    submissions = kling.new_submissions()
    assert len(submissions) == 1
    assert kling.new_requests(endpoint) == 1
    # Always asynchronous: a held synchronous call would lose the task id if the connection dropped.
    assert submissions[0]["async"] is True
    assert submissions[0].items() >= sent.items()
    assert_strictly_increasing(progress.values)
    assert len(progress.values) >= 2, "no progress while the task ran"
    assert all(video["task_id"] in message for message in progress.messages)


async def test_a_task_that_fails_is_an_error_with_the_apis_reason(kling: Baseline) -> None:
    result = await call(kling.client, "kling_generate_video", {"prompt": "a fox [fail]"})

    assert result.is_error
    failed = structured(result)
    assert failed["state"] == "failed"
    assert failed.get("video_url") is None
    assert failed["error"]["code"] == "task_failed"
    assert failed["trace_id"] == kling.emulator.tasks[failed["task_id"]].trace_id
    text = text_of(result)
    assert "The task failed (task_failed)" in text
    assert f"trace_id: {failed['trace_id']}" in text
    assert len(kling.new_submissions()) == 1


async def test_a_call_that_stops_waiting_can_be_resumed_without_paying_twice(kling: Baseline) -> None:
    with tasks_take(kling.emulator, 1.0):
        first = await call(kling.client, "kling_generate_video", {"prompt": "a slow fox", "timeout": 0.3})

    running = structured(first)
    assert not first.is_error
    assert running["state"] == "running"
    assert "kling_get_task" in running["next_step"]
    resumed = await call(kling.client, "kling_get_task", {"task_id": running["task_id"]})

    video = await assert_video_ready(resumed, kling.emulator)
    assert video["task_id"] == running["task_id"]
    assert len(kling.new_submissions()) == 1


async def test_a_running_answer_keeps_the_trace_id_of_its_submission(kling: Baseline) -> None:
    with tasks_take(kling.emulator, 2.0):
        result = await call(kling.client, "kling_generate_video", {"prompt": "a slow fox", "timeout": 0.5})

    running = structured(result)
    assert running["state"] == "running"
    assert kling.new_requests("/kling/tasks") >= 1, "the wait ended before any status check"
    assert running["trace_id"] == kling.emulator.tasks[running["task_id"]].trace_id


# --- 2. Faults while polling: the video still arrives, paid for once -----------------------

POLLING_FAULTS = [
    pytest.param([Fault.status(503), Fault.status(503)], "(server)", id="503-twice"),
    pytest.param([Fault.drop()], "(unreachable)", id="dropped-connection"),
    pytest.param([Fault.html(502)], "(server)", id="html-502"),
    pytest.param([Fault.not_json()], "(bad_response)", id="not-json"),
]


@pytest.mark.parametrize(("faults", "kind"), POLLING_FAULTS)
async def test_a_failing_status_check_is_retried_until_the_video_arrives(
    kling: Baseline, faults: list[Fault], kind: str
) -> None:
    for fault in faults:
        kling.emulator.inject("/kling/tasks", fault)
    progress = Progress()

    result = await call(kling.client, "kling_generate_video", {"prompt": "a fox in a storm"}, progress)

    await assert_video_ready(result, kling.emulator)
    assert len(kling.new_submissions()) == 1
    assert kling.new_requests("/kling/tasks") >= len(faults) + 1
    assert_strictly_increasing(progress.values)
    assert any(f"status check failed {kind}, retrying" in message for message in progress.messages)


async def test_a_rate_limited_status_check_waits_as_long_as_retry_after_says(kling: Baseline) -> None:
    retry_after = 1.0
    kling.emulator.inject(
        "/kling/tasks", Fault.status(429, error_code="too_many_requests", retry_after=retry_after)
    )
    progress = Progress()

    result = await call(kling.client, "kling_generate_video", {"prompt": "a patient fox"}, progress)

    video = await assert_video_ready(result, kling.emulator)
    assert len(kling.new_submissions()) == 1
    # One refused check, then nothing until Retry-After passed (the task was done long before).
    assert kling.new_requests("/kling/tasks") == 2
    assert video["waited_seconds"] >= retry_after
    assert any("status check failed (rate_limited)" in message for message in progress.messages)


# --- 3. Faults on submission: a clear error, and never a second paid submission -------------


async def test_a_500_on_submission_is_a_clear_error_and_is_not_resent(kling: Baseline) -> None:
    kling.emulator.inject("/kling/videos", Fault.status(500))

    result = await call(kling.client, "kling_generate_video", {"prompt": "an unlucky fox"})
    queried = await a_later_lookup(kling)

    assert result.is_error
    text = text_of(result)
    assert MAYBE_STARTED in text
    assert "was not started" not in text
    assert "(500)" in text
    assert re.search(rf"trace_id: {UUID}", text)
    assert kling.new_requests("/kling/videos") == 1
    assert queried == ["a-later-lookup"], "a status check of a task the API never answered for"


async def test_a_submission_that_times_out_is_a_clear_error_and_is_not_resent(
    kling_slow_api: Baseline,
) -> None:
    held = READ_TIMEOUT * 2
    kling_slow_api.emulator.inject("/kling/videos", Fault.delay(held))

    with anyio.fail_after(READ_TIMEOUT + 5):
        result = await kling_slow_api.client.call_tool("kling_generate_video", {"prompt": "a late fox"})
    queried = await a_later_lookup(kling_slow_api)

    assert result.is_error
    assert MAYBE_STARTED in text_of(result)
    assert "was not started" not in text_of(result)
    assert kling_slow_api.new_requests("/kling/videos") == 1
    assert queried == ["a-later-lookup"], "a status check of a task the API never answered for"


async def test_a_submission_timeout_does_not_claim_the_api_was_unreachable(kling_slow_api: Baseline) -> None:
    kling_slow_api.emulator.inject("/kling/videos", Fault.delay(READ_TIMEOUT * 2))

    # Not the previous test's request: an identical one that may have started is not sent again.
    with anyio.fail_after(READ_TIMEOUT + 5):
        result = await kling_slow_api.client.call_tool("kling_generate_video", {"prompt": "a late hare"})

    text = text_of(result)
    assert MAYBE_STARTED in text
    assert "Could not reach" not in text
    assert "no detail" not in text


# --- 4. Cancelling a call stops its polling -------------------------------------------------


async def test_a_cancelled_call_stops_polling_and_its_task_stays_listed(tmp_path: Path) -> None:
    emulator = Emulator(token=TOKEN, task_seconds=60)
    async with kling_mcp_on_emulator(emulator, tmp_path) as server:
        async with anyio.create_task_group() as waiting:
            arguments = {"prompt": "a fox that takes a minute"}
            waiting.start_soon(server.client.call_tool, "kling_generate_video", arguments)
            await eventually(lambda: len(emulator.queried_ids) >= 2, "two status checks of the task")
            waiting.cancel_scope.cancel()
        [cancelled] = emulator.tasks

        # A later generation: every status check made while it waits comes after the cancel.
        with tasks_take(emulator, TASK_SECONDS):
            later = await call(server.client, "kling_generate_video", {"prompt": "a fox that is quick"})
        polled = list(emulator.queried_ids)
        # The session still works, and the paid task the cancelled call started is not lost.
        recovered = await call(server.client, "kling_get_tasks_batch", {})

    assert structured(later)["state"] == "succeeded", text_of(later)
    checks_since = [ids for ids in polled if structured(later)["task_id"] in ids]
    assert len(checks_since) >= 2
    assert all(cancelled not in ids for ids in checks_since), checks_since
    assert emulator.counts["/kling/videos"] == 2
    assert not recovered.is_error, text_of(recovered)
    assert [(task["task_id"], task["state"]) for task in structured(recovered)["tasks"]] == [
        (cancelled, "running"),
        (structured(later)["task_id"], "succeeded"),
    ]


# --- 5. Concurrent calls share one poller ---------------------------------------------------


async def test_ten_concurrent_generations_finish_with_batched_status_checks(kling: Baseline) -> None:
    results: dict[int, CallToolResult] = {}

    async def generate(number: int) -> None:
        results[number] = await kling.client.call_tool(
            "kling_generate_video", {"prompt": f"fox no. {number}"}
        )

    started = anyio.current_time()
    with anyio.fail_after(CALL_LIMIT):
        async with anyio.create_task_group() as calls:
            for number in range(10):
                calls.start_soon(generate, number)
    elapsed = anyio.current_time() - started

    videos = [await assert_video_ready(results[number], kling.emulator) for number in range(10)]
    assert len({video["task_id"] for video in videos}) == 10
    assert len(kling.new_submissions()) == 10
    assert sorted(submission["prompt"] for submission in kling.new_submissions()) == sorted(
        f"fox no. {number}" for number in range(10)
    )
    queries = kling.new_queries()
    requests = kling.new_requests("/kling/tasks")
    lookups = sum(len(ids) for ids in queries)
    assert max(len(ids) for ids in queries) >= 5, queries
    assert requests * 3 <= lookups, f"{requests} status requests for {lookups} task lookups"
    # However many calls wait, status requests are at most one per poll interval.
    assert requests <= elapsed / float(POLL_INTERVAL) + 2


# --- 6. A wrong token: a clear error, and the token appears nowhere -------------------------


async def test_a_wrong_token_is_named_in_the_error_and_never_shown(tmp_path: Path) -> None:
    emulator = Emulator(token=TOKEN, task_seconds=TASK_SECONDS)
    async with serve_emulator(emulator, port=0) as base_url:
        env = api_env(base_url, token=WRONG_TOKEN, LOG_LEVEL="DEBUG")
        async with kling_mcp(env, tmp_path) as server:
            generation = await call(server.client, "kling_generate_video", {"prompt": "a fox"})
            lookup = await call(server.client, "kling_get_task", {"task_id": "5f0e8a57-no-such-task"})
            # A gateway that echoes the token back must not get it shown either.
            emulator.inject(
                "/kling/videos",
                Fault.status(401, error_code="invalid_token", message=f"Token {WRONG_TOKEN} is not valid."),
            )
            echoed = await call(server.client, "kling_generate_video", {"prompt": "a fox"})
            # The log messages of the calls above arrive before those of a later one.
            heard = len(server.logs.messages)
            await call(server.client, "kling_get_task", {"task_id": "a-later-lookup"})
            with anyio.fail_after(CALL_LIMIT):
                await server.logs.first_mentioning("a-later-lookup", since=heard)
        stderr = server.stderr()

    for result in (generation, lookup, echoed):
        assert result.is_error
        assert "ACEDATACLOUD_API_TOKEN" in text_of(result)
        assert "rejected the API token" in text_of(result)
    assert "The generation was not started." in text_of(generation)
    assert "Token *** is not valid." in text_of(echoed)
    assert emulator.submissions == []
    assert "DEBUG kling_mcp: POST /kling/videos -> 401" in stderr
    seen = [
        stderr,
        *(text_of(result) for result in (generation, lookup, echoed)),
        *(json.dumps(result.structured_content) for result in (generation, lookup, echoed)),
        *(json.dumps(log.model_dump(mode="json")) for log in server.logs.messages),
    ]
    assert not [place for place in seen if WRONG_TOKEN in place]


# --- 7. DEBUG logging leaves stdout to the protocol -----------------------------------------


class RawSession:
    """Legacy MCP over a raw pipe: every line the server writes to stdout is kept, to be checked."""

    def __init__(self, process: Process) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        self._stdin = process.stdin
        self._stdout = BufferedByteReceiveStream(process.stdout)
        self.lines: list[bytes] = []

    async def send(self, message: dict[str, Any]) -> None:
        await self._stdin.send(json.dumps({"jsonrpc": "2.0", **message}).encode() + b"\n")

    async def answer_to(self, request_id: int) -> dict[str, Any]:
        """Read stdout up to the answer to `request_id`."""
        while True:
            line = await self._stdout.receive_until(b"\n", 1 << 20)
            self.lines.append(line)
            try:
                message: dict[str, Any] = json.loads(line)
            except ValueError:
                pytest.fail(f"the server wrote a line to stdout that is not JSON-RPC: {line!r}")
            if message.get("id") == request_id and "method" not in message:
                return message

    async def close(self) -> bytes:
        """Close stdin (the server should exit) and keep what is left on stdout; return unterminated bytes."""
        await self._stdin.aclose()
        while True:
            try:
                self.lines.append(await self._stdout.receive_until(b"\n", 1 << 20))
            except (anyio.IncompleteRead, anyio.ClosedResourceError):
                return self._stdout.buffer


async def test_debug_logging_leaves_stdout_to_the_protocol(tmp_path: Path) -> None:
    emulator = Emulator(token=TOKEN, task_seconds=TASK_SECONDS)
    # A gateway error that echoes the request's authorization header: its DEBUG line must redact it.
    emulator.inject(
        "/kling/tasks", Fault.status(503, message=f"upstream saw 'authorization: Bearer {TOKEN}'")
    )
    stderr_path = tmp_path / "stderr.log"
    async with serve_emulator(emulator, port=0) as base_url:
        env = api_env(base_url, LOG_LEVEL="DEBUG")
        command = [sys.executable, "-m", "kling_mcp"]
        with stderr_path.open("w") as stderr, anyio.fail_after(CALL_LIMIT):
            process = await anyio.open_process(command, env=env, cwd=tmp_path, stderr=stderr)
            try:
                raw = RawSession(process)
                await raw.send(
                    {
                        "id": 1,
                        "method": "initialize",
                        "params": {
                            "protocolVersion": "2025-06-18",
                            "capabilities": {},
                            "clientInfo": {"name": "e2e-raw-client", "version": "1.0"},
                        },
                    }
                )
                initialized = await raw.answer_to(1)
                await raw.send({"method": "notifications/initialized"})
                await raw.send(
                    {
                        "id": 2,
                        "method": "tools/call",
                        "params": {
                            "name": "kling_generate_video",
                            "arguments": {"prompt": "a fox, logged in detail"},
                            "_meta": {"progressToken": "e2e-progress"},
                        },
                    }
                )
                called = await raw.answer_to(2)
                unterminated = await raw.close()
                exit_code = await process.wait()
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
    stderr_text = stderr_path.read_text()

    assert initialized["result"]["serverInfo"]["name"] == "kling-mcp"
    assert called["result"]["isError"] is False
    assert called["result"]["structuredContent"]["state"] == "succeeded"
    assert exit_code == 0
    assert unterminated == b""
    messages = [json.loads(line) for line in raw.lines]
    for line in raw.lines:
        jsonrpc_message_adapter.validate_json(line)
    assert all(message["jsonrpc"] == "2.0" for message in messages)
    methods = {message.get("method") for message in messages}
    assert {"notifications/progress", "notifications/message"} <= methods
    assert not [line for line in raw.lines if TOKEN.encode() in line]
    # stderr has the DEBUG lines, with the echoed token redacted.
    assert "DEBUG kling_mcp: POST /kling/videos {" in stderr_text
    assert re.search(r"DEBUG kling_mcp: POST /kling/videos -> 200 .*\"task_id\"", stderr_text)
    assert "POST /kling/tasks -> 503" in stderr_text
    assert "authorization: Bearer ***" in stderr_text
    assert TOKEN not in stderr_text
    assert len(emulator.submissions) == 1


# --- 8. MCP log messages reach the client during a call -------------------------------------


async def test_the_client_hears_which_task_was_submitted(kling: Baseline) -> None:
    result = await call(kling.client, "kling_generate_video", {"prompt": "a talkative fox"})
    task_id = structured(result)["task_id"]

    with anyio.fail_after(2):
        submitted = await kling.first_new_log_mentioning(task_id)

    assert submitted.level == "info"
    assert submitted.logger == "kling_mcp"
    assert f"Submitted task {task_id} to /kling/videos" in str(submitted.data)


# --- 9. Demo mode: no token, no cost ---------------------------------------------------------


async def test_demo_mode_needs_no_token_and_says_it_is_a_demo(tmp_path: Path) -> None:
    env = server_env(KLING_DEMO_TASK_SECONDS="0.5")
    async with kling_mcp(env, tmp_path, "--demo") as server:
        result = await call(server.client, "kling_generate_video", {"prompt": "a demo fox"})
        task = structured(result)
        video = await download(task["video_url"])
    stderr = server.stderr()

    assert not result.is_error, text_of(result)
    assert task["state"] == "succeeded"
    assert task["demo"] is True
    assert "DEMO" in text_of(result)
    assert video.content[4:8] == b"ftyp"
    assert "Demo mode" in stderr
    assert "ACEDATACLOUD_API_TOKEN is not set" not in stderr
