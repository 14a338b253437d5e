"""The shared poller: one status request per tick for every waiting call, paced and cancellable."""

from __future__ import annotations

from itertools import pairwise
from typing import Any, cast

import anyio
import pytest

from kling_mcp.api.client import KlingClient, TaskStatus
from kling_mcp.api.errors import ErrorKind, KlingError
from kling_mcp.tasks.poller import TaskPoller, interval_for

pytestmark = pytest.mark.anyio

MIN_INTERVAL = 0.05


class ScriptedClient:
    """Answers retrieve_batch from a dict of states; records when each request was made."""

    token = None
    """As the server's own client: one token for every task."""

    def __init__(self) -> None:
        self.states: dict[str, str] = {}
        self.requests: list[tuple[float, list[str]]] = []
        self.failures: list[KlingError] = []

    async def retrieve_batch(
        self, task_ids: list[str], *, deadline: float, retry: bool = True
    ) -> dict[str, Any]:
        self.requests.append((anyio.current_time(), list(task_ids)))
        if self.failures:
            raise self.failures.pop(0)
        return {
            task_id: TaskStatus.from_result(task_id, {"state": self.states[task_id]})
            for task_id in task_ids
            if task_id in self.states
        }


async def ignore(status: TaskStatus | None, error: KlingError | None) -> None:
    pass


@pytest.fixture
async def scripted() -> Any:
    client = ScriptedClient()
    poller = TaskPoller(cast(KlingClient, client), min_interval=MIN_INTERVAL)
    async with anyio.create_task_group() as group:
        group.start_soon(poller.run)
        yield client, poller
        group.cancel_scope.cancel()


def test_older_tasks_are_checked_less_often() -> None:
    assert interval_for(5, 1.0) == 1.0
    assert interval_for(60, 1.0) == 2.0
    assert interval_for(600, 1.0) == 4.0
    assert interval_for(5, 0.5) == 0.5


async def test_many_waiting_calls_share_each_request(scripted: Any) -> None:
    client, poller = scripted
    client.states = {f"t{n}": "processing" for n in range(20)}

    async def finish_soon() -> None:
        await anyio.sleep(0.3)
        client.states = dict.fromkeys(client.states, "succeed")

    results: list[TaskStatus | None] = []

    async def wait(task_id: str) -> None:
        results.append(await poller.wait(task_id, deadline=anyio.current_time() + 5, on_tick=ignore))

    async with anyio.create_task_group() as group:
        group.start_soon(finish_soon)
        for task_id in client.states:
            group.start_soon(wait, task_id)

    assert [status.state for status in results if status] == ["succeeded"] * 20
    assert max(len(ids) for _, ids in client.requests) == 20
    gaps = [later - earlier for (earlier, _), (later, _) in pairwise(client.requests)]
    assert min(gaps) >= MIN_INTERVAL * 0.9, "never faster than the minimum interval"
    assert not any(poller.watching(task_id) for task_id in client.states)


async def test_the_wait_ends_at_the_deadline_with_the_last_state_seen(scripted: Any) -> None:
    client, poller = scripted
    client.states = {"slow": "queued"}
    started = anyio.current_time()

    status = await poller.wait("slow", deadline=started + 0.3, on_tick=ignore)

    assert 0.3 <= anyio.current_time() - started < 0.5
    assert status is not None
    assert (status.state, status.upstream_state) == ("running", "queued")


async def test_cancelling_one_call_removes_only_its_task(scripted: Any) -> None:
    client, poller = scripted
    client.states = {"keep": "processing", "drop": "processing"}
    keep_ticks = TickCounter()

    async with anyio.create_task_group() as group:
        group.start_soon(lambda: poller.wait("keep", deadline=anyio.current_time() + 5, on_tick=keep_ticks))
        with anyio.CancelScope() as dropping:

            async def cancel_at_the_first_tick(status: TaskStatus | None, error: KlingError | None) -> None:
                dropping.cancel()

            await poller.wait("drop", deadline=anyio.current_time() + 5, on_tick=cancel_at_the_first_tick)
        assert poller.watching("keep")
        client.requests.clear()
        await keep_ticks.more(2)
        group.cancel_scope.cancel()

    checked = [ids for _, ids in client.requests]
    assert len(checked) >= 2
    assert all(ids == ["keep"] for ids in checked), checked


class TickCounter:
    """An `on_tick` listener that counts the ticks a call hears; `more(n)` waits for n more."""

    def __init__(self) -> None:
        self.heard = 0
        self._heard_one = anyio.Event()

    async def __call__(self, status: TaskStatus | None, error: KlingError | None) -> None:
        self.heard += 1
        heard_one, self._heard_one = self._heard_one, anyio.Event()
        heard_one.set()

    async def more(self, ticks: int) -> None:
        target = self.heard + ticks
        while self.heard < target:
            await self._heard_one.wait()


async def test_transient_failures_back_off_and_the_wait_goes_on(scripted: Any) -> None:
    client, poller = scripted
    client.states = {"t": "processing"}
    client.failures = [KlingError(ErrorKind.SERVER, "busy", status=503)] * 2
    errors: list[KlingError] = []

    async def on_tick(status: TaskStatus | None, error: KlingError | None) -> None:
        if error:
            errors.append(error)
            if len(errors) == 2:
                client.states["t"] = "succeed"

    status = await poller.wait("t", deadline=anyio.current_time() + 5, on_tick=on_tick)

    assert status is not None
    assert status.state == "succeeded"
    assert [error.status for error in errors] == [503, 503]


async def test_a_revoked_token_ends_the_wait_with_the_error(scripted: Any) -> None:
    client, poller = scripted
    client.states = {"t": "processing"}
    client.failures = [KlingError(ErrorKind.AUTH, "token expired", status=401)]

    with pytest.raises(KlingError) as raised:
        await poller.wait("t", deadline=anyio.current_time() + 5, on_tick=ignore)

    assert raised.value.kind is ErrorKind.AUTH
    assert not poller.watching("t")
