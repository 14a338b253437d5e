"""KlingClient against a mocked AceDataCloud API (respx): what is sent, how answers and errors read.

The rules under test come from shared/kling-api.md: submissions cost money and are sent once
unless the connection provably never opened; task queries are free and retried until the
caller's deadline; every error keeps the API's words, the trace id and the task id, and never
shows the token.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest
import respx

import kling_mcp.api.client as client_module
from kling_mcp.api.client import SUBMIT_ATTEMPTS, KlingClient, Submitted, TaskStatus
from kling_mcp.api.errors import ADVICE, ErrorKind, KlingError
from kling_mcp.settings import Settings

pytestmark = pytest.mark.anyio

BASE_URL = "https://api.test"
TOKEN = "secret-token-123"
TRACE_ID = "trace-7f3a"
TASK_ID = "task-0001"
TEXT2VIDEO = {"action": "text2video", "prompt": "a red fox in the snow", "async": True}
ACCEPTED = {"success": True, "task_id": TASK_ID, "trace_id": TRACE_ID}
NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>"
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the jittered backoff tiny so that retry tests run in milliseconds."""
    monkeypatch.setattr(client_module, "BACKOFF_BASE", 0.005)


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE_URL, assert_all_called=False) as router:
        yield router


@pytest.fixture
async def client() -> AsyncIterator[KlingClient]:
    kling = KlingClient(Settings(api_token=TOKEN, api_base_url=BASE_URL))
    yield kling
    await kling.aclose()


def in_seconds(seconds: float) -> float:
    """A deadline `seconds` from now, on the clock the client reads."""
    return anyio.current_time() + seconds


def api_error(code: str | None, message: str, *, trace_id: str = TRACE_ID) -> dict[str, Any]:
    """An error body in the contract's shape; `code=None` leaves the code out."""
    error: dict[str, Any] = {"message": message}
    if code is not None:
        error["code"] = code
    return {"error": error, "trace_id": trace_id}


def task_object(task_id: str, response: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A `/kling/tasks` task object; `response=None` leaves the response out, as while queued."""
    task: dict[str, Any] = {"id": task_id, "created_at": 1732492800.0, "request": TEXT2VIDEO, **extra}
    if response is not None:
        task["response"] = response
    return task


def succeeded(task_id: str) -> dict[str, Any]:
    return {
        "success": True,
        "task_id": task_id,
        "video_id": f"video-of-{task_id}",
        "video_url": f"https://cdn.test/{task_id}.mp4",
        "duration": "5.066",
        "state": "succeed",
        "trace_id": TRACE_ID,
    }


Answer = Callable[[httpx.Request], httpx.Response]


def answering(status: int, body: dict[str, Any] | str, headers: dict[str, str] | None = None) -> Answer:
    """A fresh response for every request: JSON for a dict, raw text for a string."""

    def answer(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return answer


def raising(exception: type[httpx.TransportError]) -> Answer:
    def answer(request: httpx.Request) -> httpx.Response:
        raise exception("transport trouble", request=request)

    return answer


def first_then(first: Answer, then: Answer) -> Answer:
    """Answer the first request with `first`, every later one with `then`."""
    calls = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return first(request) if calls == 1 else then(request)

    return answer


def sent_json(route: respx.Route, index: int = -1) -> Any:
    return json.loads(route.calls[index].request.content)


async def submit(client: KlingClient) -> Submitted:
    return await client.submit("/kling/videos", TEXT2VIDEO, deadline=in_seconds(5))


# --- Submissions ----------------------------------------------------------------------------


async def test_submit_posts_the_body_with_the_bearer_token_and_returns_task_and_trace_ids(
    api: respx.MockRouter, client: KlingClient
) -> None:
    route = api.post("/kling/videos").respond(200, json=ACCEPTED)

    submitted = await submit(client)

    assert submitted == Submitted(task_id=TASK_ID, trace_id=TRACE_ID)
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["accept"] == "application/json"
    assert json.loads(request.content) == TEXT2VIDEO


async def test_a_token_pasted_with_its_bearer_prefix_is_sent_prefixed_once(api: respx.MockRouter) -> None:
    settings = Settings.from_env(
        {"ACEDATACLOUD_API_TOKEN": "Bearer xyz", "ACEDATACLOUD_API_BASE_URL": BASE_URL}
    )
    route = api.post("/kling/videos").respond(200, json=ACCEPTED)
    kling = KlingClient(settings)
    try:
        await submit(kling)
    finally:
        await kling.aclose()

    assert route.calls.last.request.headers["authorization"] == "Bearer xyz"


# --- Errors: every shape of the contract, classified and kept --------------------------------


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (401, "invalid_token", ErrorKind.AUTH),
        (401, "no_token", ErrorKind.AUTH),
        (401, "token_expired", ErrorKind.AUTH),
        (403, "token_mismatched", ErrorKind.ACCESS),
        (403, "disabled", ErrorKind.ACCESS),
        (403, "used_up", ErrorKind.BALANCE),
        (429, "too_many_requests", ErrorKind.RATE_LIMITED),
        (400, "bad_request", ErrorKind.INVALID_REQUEST),
        (403, None, ErrorKind.FORBIDDEN),
        (404, None, ErrorKind.NOT_FOUND),
        (404, "not_found", ErrorKind.NOT_FOUND),
        (500, None, ErrorKind.SERVER),
        (500, "internal_error", ErrorKind.SERVER),
        (502, None, ErrorKind.SERVER),
        (503, None, ErrorKind.SERVER),
        (408, None, ErrorKind.SERVER),
        (409, None, ErrorKind.SERVER),
    ],
)
async def test_an_error_answer_is_classified_and_keeps_the_apis_words_code_trace_id_and_status(
    api: respx.MockRouter, client: KlingClient, status: int, code: str | None, kind: ErrorKind
) -> None:
    words = f"the API explains what went wrong ({status})"
    api.post("/kling/videos").respond(status, json=api_error(code, words))

    with pytest.raises(KlingError) as caught:
        await submit(client)

    error = caught.value
    assert (error.kind, error.message, error.code, error.trace_id, error.status) == (
        kind,
        words,
        code,
        TRACE_ID,
        status,
    )


async def test_a_rate_limit_keeps_the_retry_after_header(api: respx.MockRouter, client: KlingClient) -> None:
    api.post("/kling/videos").respond(
        429, json=api_error("too_many_requests", "slow down"), headers={"Retry-After": "7"}
    )

    with pytest.raises(KlingError) as caught:
        await submit(client)

    assert caught.value.kind is ErrorKind.RATE_LIMITED
    assert caught.value.retry_after == 7.0


async def test_an_error_given_as_a_bare_string_is_relayed_word_for_word(
    api: respx.MockRouter, client: KlingClient
) -> None:
    api.post("/kling/videos").respond(400, json={"error": "prompt is required", "trace_id": TRACE_ID})

    with pytest.raises(KlingError) as caught:
        await submit(client)

    error = caught.value
    assert (error.kind, error.message, error.code, error.trace_id) == (
        ErrorKind.INVALID_REQUEST,
        "prompt is required",
        None,
        TRACE_ID,
    )


async def test_a_gateway_html_page_is_a_server_error_told_in_the_pages_words_without_tags(
    api: respx.MockRouter, client: KlingClient
) -> None:
    api.post("/kling/videos").respond(502, text=NGINX_502, headers={"content-type": "text/html"})

    with pytest.raises(KlingError) as caught:
        await submit(client)

    error = caught.value
    assert error.kind is ErrorKind.SERVER
    assert error.status == 502
    assert "502 Bad Gateway" in error.message
    assert "nginx" in error.message
    assert "<" not in error.message
    assert "\n" not in error.message


async def test_a_gateway_pages_style_and_script_are_not_read_as_its_words(
    api: respx.MockRouter, client: KlingClient
) -> None:
    page = (
        "<html><head><style>body{font-family:sans-serif;color:#333}</style>"
        "<script>window.cf=1;</script></head><body><h1>502 Bad Gateway</h1></body></html>"
    )
    api.post("/kling/videos").respond(502, text=page, headers={"content-type": "text/html"})

    with pytest.raises(KlingError) as caught:
        await submit(client)

    assert "502 Bad Gateway" in caught.value.message
    assert "font-family" not in caught.value.message
    assert "window.cf" not in caught.value.message


async def test_a_200_answer_that_is_not_json_is_a_bad_response(
    api: respx.MockRouter, client: KlingClient
) -> None:
    api.post("/kling/videos").respond(200, text="<html><body>Welcome to our portal</body></html>")

    with pytest.raises(KlingError) as caught:
        await submit(client)

    assert caught.value.kind is ErrorKind.BAD_RESPONSE
    assert "Welcome to our portal" in caught.value.message


async def test_a_200_answer_with_success_false_is_an_error_that_keeps_task_and_trace_ids(
    api: respx.MockRouter, client: KlingClient
) -> None:
    body = {
        "success": False,
        "task_id": TASK_ID,
        **api_error("bad_request", "prompt is longer than 2500 characters"),
    }
    api.post("/kling/videos").respond(200, json=body)

    with pytest.raises(KlingError) as caught:
        await submit(client)

    error = caught.value
    assert error.kind is ErrorKind.INVALID_REQUEST
    assert error.message == "prompt is longer than 2500 characters"
    assert (error.task_id, error.trace_id) == (TASK_ID, TRACE_ID)
    assert f"task_id: {TASK_ID}" in str(error)


async def test_a_submission_answered_without_a_task_id_warns_that_a_task_may_have_started(
    api: respx.MockRouter, client: KlingClient
) -> None:
    api.post("/kling/videos").respond(200, json={"success": True, "trace_id": TRACE_ID})

    with pytest.raises(KlingError) as caught:
        await submit(client)

    assert caught.value.kind is ErrorKind.BAD_RESPONSE
    assert "may have reached" in str(caught.value)
    assert TRACE_ID in str(caught.value)


async def test_an_errors_text_has_the_advice_the_apis_words_and_the_trace_id(
    api: respx.MockRouter, client: KlingClient
) -> None:
    api.post("/kling/videos").respond(403, json=api_error("used_up", "Your balance is insufficient"))

    with pytest.raises(KlingError) as caught:
        await submit(client)

    text = str(caught.value)
    assert text.splitlines()[0] == ADVICE[ErrorKind.BALANCE]
    assert "top up" in text
    assert "Your balance is insufficient" in text
    assert f"trace_id: {TRACE_ID}" in text
    assert TOKEN not in text


def echo_in_json(request: httpx.Request) -> httpx.Response:
    return httpx.Response(401, json=api_error("invalid_token", f"token {TOKEN} is not valid"))


def echo_in_html(request: httpx.Request) -> httpx.Response:
    return httpx.Response(502, text=f"<html><body>Bad gateway for Bearer {TOKEN}</body></html>")


def echo_in_transport_error(request: httpx.Request) -> httpx.Response:
    raise httpx.RemoteProtocolError(f"peer reset while sending Bearer {TOKEN}", request=request)


@pytest.mark.parametrize("answer", [echo_in_json, echo_in_html, echo_in_transport_error])
async def test_the_token_never_appears_in_an_error_even_when_the_upstream_echoes_it(
    api: respx.MockRouter, client: KlingClient, answer: Callable[[httpx.Request], httpx.Response]
) -> None:
    api.post("/kling/videos").mock(side_effect=answer)

    with pytest.raises(KlingError) as caught:
        await submit(client)

    error = caught.value
    assert "***" in error.message
    for shown in (str(error), error.message, repr(error), *map(str, error.args)):
        assert TOKEN not in shown


# --- Submissions are sent once unless nothing was sent -------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(answering(500, api_error(None, "internal error")), id="500"),
        pytest.param(raising(httpx.ReadTimeout), id="read-timeout"),
        pytest.param(raising(httpx.RemoteProtocolError), id="dropped-connection"),
    ],
)
async def test_a_submission_that_may_have_reached_the_api_is_never_sent_twice(
    api: respx.MockRouter, client: KlingClient, failure: Answer
) -> None:
    route = api.post("/kling/videos").mock(side_effect=first_then(failure, answering(200, ACCEPTED)))

    with pytest.raises(KlingError) as caught:
        await submit(client)

    assert route.call_count == 1
    assert caught.value.never_sent is False
    text = str(caught.value)
    assert "may have reached AceDataCloud" in text
    assert "so you do not pay twice" in text


async def test_a_submission_whose_connection_could_not_be_made_is_sent_again(
    api: respx.MockRouter, client: KlingClient
) -> None:
    route = api.post("/kling/videos").mock(
        side_effect=first_then(raising(httpx.ConnectError), answering(200, ACCEPTED))
    )

    submitted = await submit(client)

    assert submitted.task_id == TASK_ID
    assert route.call_count == 2
    assert sent_json(route, 0) == sent_json(route, 1) == TEXT2VIDEO


async def test_a_submission_that_never_connects_gives_up_after_the_allowed_attempts(
    api: respx.MockRouter, client: KlingClient
) -> None:
    route = api.post("/kling/videos").mock(side_effect=raising(httpx.ConnectError))

    with pytest.raises(KlingError) as caught:
        await submit(client)

    assert route.call_count == SUBMIT_ATTEMPTS
    error = caught.value
    assert error.kind is ErrorKind.UNREACHABLE
    assert error.never_sent is True
    assert "Nothing was sent" in str(error)
    assert "ConnectError: transport trouble" in str(error)


# --- Task queries are retried until the deadline ---------------------------------------------


async def retrieve_one(client: KlingClient, deadline: float) -> Any:
    return await client.retrieve(TASK_ID, deadline=deadline)


async def retrieve_many(client: KlingClient, deadline: float) -> Any:
    return await client.retrieve_batch([TASK_ID], deadline=deadline)


QUERIES = [pytest.param(retrieve_one, id="retrieve"), pytest.param(retrieve_many, id="retrieve_batch")]
Query = Callable[[KlingClient, float], Awaitable[Any]]


def query_answer(request: httpx.Request) -> httpx.Response:
    """The right success answer for either query shape."""
    task = task_object(TASK_ID, succeeded(TASK_ID))
    if json.loads(request.content)["action"] == "retrieve_batch":
        return httpx.Response(200, json={"items": [task], "count": 1})
    return httpx.Response(200, json=task)


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(answering(503, api_error(None, "overloaded")), id="503"),
        pytest.param(
            answering(429, api_error("too_many_requests", "slow"), headers={"Retry-After": "0.05"}), id="429"
        ),
        pytest.param(raising(httpx.ReadTimeout), id="read-timeout"),
        pytest.param(raising(httpx.RemoteProtocolError), id="dropped-connection"),
        pytest.param(answering(200, "<html>maintenance</html>"), id="non-json-200"),
    ],
)
async def test_a_task_query_is_retried_after_a_transient_failure_until_it_succeeds(
    api: respx.MockRouter,
    client: KlingClient,
    query: Query,
    failure: Answer,
) -> None:
    route = api.post("/kling/tasks").mock(side_effect=first_then(failure, query_answer))

    answer = await query(client, in_seconds(5))

    assert route.call_count == 2
    status = answer if isinstance(answer, TaskStatus) else answer[TASK_ID]
    assert status.state == "succeeded"


async def test_a_rate_limited_query_waits_the_retry_after_seconds(
    api: respx.MockRouter, client: KlingClient
) -> None:
    sent_at: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent_at.append(time.monotonic())
        if len(sent_at) == 1:
            return httpx.Response(
                429, json=api_error("too_many_requests", "slow"), headers={"Retry-After": "0.1"}
            )
        return query_answer(request)

    api.post("/kling/tasks").mock(side_effect=answer)

    await client.retrieve(TASK_ID, deadline=in_seconds(5))

    assert len(sent_at) == 2
    assert sent_at[1] - sent_at[0] >= 0.09  # the backoff alone would be ~0.005 s


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [(401, "invalid_token", ErrorKind.AUTH), (400, "bad_request", ErrorKind.INVALID_REQUEST)],
)
async def test_a_task_query_is_not_retried_when_retrying_cannot_help(
    api: respx.MockRouter, client: KlingClient, query: Query, status: int, code: str, kind: ErrorKind
) -> None:
    route = api.post("/kling/tasks").respond(status, json=api_error(code, "no"))

    with pytest.raises(KlingError) as caught:
        await query(client, in_seconds(5))

    assert route.call_count == 1
    assert caught.value.kind is kind


async def test_a_task_query_gives_up_at_once_when_retry_after_would_pass_the_deadline(
    api: respx.MockRouter, client: KlingClient
) -> None:
    route = api.post("/kling/tasks").respond(
        503, json=api_error(None, "overloaded"), headers={"Retry-After": "30"}
    )
    started = time.monotonic()

    with pytest.raises(KlingError) as caught:
        await client.retrieve(TASK_ID, deadline=in_seconds(2))

    assert time.monotonic() - started < 1
    assert route.call_count == 1
    assert caught.value.kind is ErrorKind.SERVER
    assert caught.value.trace_id == TRACE_ID


async def test_a_task_query_keeps_retrying_until_the_deadline_then_raises_the_last_error(
    api: respx.MockRouter, client: KlingClient
) -> None:
    route = api.post("/kling/tasks").respond(503, json=api_error(None, "overloaded"))
    started = time.monotonic()

    with pytest.raises(KlingError) as caught:
        await client.retrieve(TASK_ID, deadline=in_seconds(0.3))

    assert route.call_count >= 3
    assert time.monotonic() - started < 0.3 + 0.2
    assert caught.value.kind is ErrorKind.SERVER
    assert caught.value.message == "overloaded"


async def test_retrieve_batch_without_retry_makes_exactly_one_attempt(
    api: respx.MockRouter, client: KlingClient
) -> None:
    route = api.post("/kling/tasks").respond(503, json=api_error(None, "overloaded"))

    with pytest.raises(KlingError) as caught:
        await client.retrieve_batch([TASK_ID], deadline=in_seconds(5), retry=False)

    assert route.call_count == 1
    assert caught.value.kind is ErrorKind.SERVER


# --- Reading task states ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(None, id="missing"),
        pytest.param({}, id="empty"),
        *(
            pytest.param({"task_id": TASK_ID, "state": state}, id=state)
            for state in ("processing", "pending", "queued", "submitted", "running", "Processing", "dreaming")
        ),
    ],
)
def test_a_task_that_is_not_finished_in_any_spelling_reads_as_running(
    response: dict[str, Any] | None,
) -> None:
    status = TaskStatus.from_task(task_object(TASK_ID, response))

    assert (status.task_id, status.state, status.done) == (TASK_ID, "running", False)


@pytest.mark.parametrize("state", ["succeed", "succeeded", "success", "SUCCEED"])
def test_a_finished_task_reads_as_succeeded_with_its_video(state: str) -> None:
    result = {**succeeded(TASK_ID), "state": state}

    status = TaskStatus.from_task(task_object(TASK_ID, result))

    assert (status.state, status.done, status.upstream_state) == ("succeeded", True, state)
    assert status.value("video_url") == f"https://cdn.test/{TASK_ID}.mp4"
    assert status.value("video_id") == f"video-of-{TASK_ID}"


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        pytest.param(
            {"code": "content_blocked", "message": "The prompt was blocked by moderation"},
            ("content_blocked", "The prompt was blocked by moderation"),
            id="error-object",
        ),
        pytest.param(
            "The prompt was blocked by moderation",
            (None, "The prompt was blocked by moderation"),
            id="bare-string",
        ),
    ],
)
def test_a_failed_task_reads_as_failed_with_the_apis_code_and_words(
    error: Any, failure: tuple[str | None, str]
) -> None:
    result = {"success": False, "task_id": TASK_ID, "state": "failed", "error": error}

    status = TaskStatus.from_task(task_object(TASK_ID, result))

    assert (status.state, status.done) == ("failed", True)
    assert status.failure == failure


def test_a_finished_task_object_reads_with_its_final_result_and_trace_id() -> None:
    task = task_object(TASK_ID, succeeded(TASK_ID), finished_at=1732492865.2, elapsed=65.2)

    status = TaskStatus.from_task(task)

    assert status.state == "succeeded"
    assert status.value("duration") == "5.066"
    assert status.trace_id == TRACE_ID


async def test_retrieve_asks_for_one_task_and_reads_its_state(
    api: respx.MockRouter, client: KlingClient
) -> None:
    route = api.post("/kling/tasks").respond(200, json=task_object(TASK_ID, {"state": "processing"}))

    status = await client.retrieve(TASK_ID, deadline=in_seconds(5))

    assert sent_json(route) == {"id": TASK_ID, "action": "retrieve"}
    assert (status.task_id, status.state, status.upstream_state) == (TASK_ID, "running", "processing")


async def test_retrieve_batch_leaves_out_the_ids_the_api_does_not_know(
    api: respx.MockRouter, client: KlingClient
) -> None:
    items = [task_object("task-a", succeeded("task-a")), task_object("task-b", {"state": "queued"})]
    route = api.post("/kling/tasks").respond(200, json={"items": items, "count": 2})

    statuses = await client.retrieve_batch(["task-a", "task-b", "task-unknown"], deadline=in_seconds(5))

    assert sent_json(route) == {"ids": ["task-a", "task-b", "task-unknown"], "action": "retrieve_batch"}
    assert {task_id: status.state for task_id, status in statuses.items()} == {
        "task-a": "succeeded",
        "task-b": "running",
    }


# --- No token --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(submit, id="submit"),
        pytest.param(lambda client: retrieve_one(client, in_seconds(5)), id="retrieve"),
        pytest.param(lambda client: retrieve_many(client, in_seconds(5)), id="retrieve_batch"),
    ],
)
async def test_without_a_token_nothing_is_sent_and_the_error_names_the_variable(
    api: respx.MockRouter, call: Callable[[KlingClient], Awaitable[Any]]
) -> None:
    anything = api.route().respond(200, json=ACCEPTED)
    kling = KlingClient(Settings(api_token=None, api_base_url=BASE_URL))
    try:
        with pytest.raises(KlingError) as caught:
            await call(kling)
    finally:
        await kling.aclose()

    assert caught.value.kind is ErrorKind.NO_TOKEN
    assert "ACEDATACLOUD_API_TOKEN" in str(caught.value)
    assert not anything.called
