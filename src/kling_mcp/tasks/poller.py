"""One poller per server: every call that waits for a task shares it.

Each tick asks for all pending tasks in a single `retrieve_batch` request and wakes every
waiting call with what it learned, so twenty waiting videos cost one request per tick, not
twenty. The tick adapts: a new task is first checked quickly, young tasks about once a
second (a finished video reaches its caller within about a second), long-running ones less
often, and never faster than `min_interval` however many calls wait. A failed tick backs
off (honouring Retry-After); waiting calls keep their own deadlines and never overstay.

A task can also be followed with no call waiting (`follow`): one whose call ran out of time,
or one a stopped server left running. Every tick's statuses go to `on_statuses` (the journal
and the downloads listen there), so a followed task is recorded and saved when it finishes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio

from kling_mcp.api.client import QUERY_BUDGET, KlingClient, TaskStatus, retry_delay
from kling_mcp.api.errors import KlingError

logger = logging.getLogger("kling_mcp")

# (task age in seconds, multiple of min_interval between checks): older tasks are checked less often.
TICK_SCHEDULE = ((30.0, 1), (120.0, 2), (float("inf"), 4))

FOLLOW_LIMIT_SECONDS = 6 * 3600.0
"""How long a task with no call waiting is followed before it is left to the next lookup."""

OnTick = Callable[[TaskStatus | None, KlingError | None], Awaitable[None]]
OnStatuses = Callable[[dict[str, TaskStatus]], Awaitable[None]]


def interval_for(age: float, min_interval: float) -> float:
    for max_age, multiple in TICK_SCHEDULE:
        if age < max_age:
            return multiple * min_interval
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(eq=False)
class _Watch:
    task_id: str
    since: float
    client: KlingClient
    """Whose token checks this task (a hosted server polls each user's tasks with their own)."""
    polled: bool = False
    status: TaskStatus | None = None
    error: KlingError | None = None
    updated: anyio.Event = field(default_factory=anyio.Event)

    def update(self, status: TaskStatus | None, error: KlingError | None) -> None:
        self.polled = True
        self.status = status or self.status
        self.error = error
        self.updated.set()


class TaskPoller:
    def __init__(
        self, client: KlingClient, *, min_interval: float = 1.0, on_statuses: OnStatuses | None = None
    ) -> None:
        self._client = client
        self._min_interval = min_interval
        self.on_statuses = on_statuses
        self._watches: set[_Watch] = set()
        self._followed: dict[str, _Watch] = {}
        self._changed = anyio.Event()
        self._last_tick = float("-inf")
        self._failures = 0
        self._backoff_until = float("-inf")
        self._stopping = False

    def watching(self, task_id: str) -> bool:
        """Whether `task_id` is checked on every tick (a call waits for it, or it is followed)."""
        return any(watch.task_id == task_id for watch in self._watches)

    def follow(self, task_id: str, client: KlingClient | None = None) -> None:
        """Keep checking `task_id` until it is done, with no call waiting for it."""
        if task_id not in self._followed:
            watch = self._followed[task_id] = _Watch(task_id, anyio.current_time(), client or self._client)
            self._watches.add(watch)
            self._changed.set()

    def stop_waiting(self) -> None:
        """Answer every waiting call now with what it knows: the server is shutting down."""
        self._stopping = True
        for watch in self._watches:
            watch.updated.set()

    async def wait(
        self, task_id: str, *, deadline: float, on_tick: OnTick, client: KlingClient | None = None
    ) -> TaskStatus | None:
        """Wait until `task_id` is done or `deadline` passes; return the last status seen.

        `client` checks it (default: the server's own). `on_tick` hears every tick's news while
        the task runs. A non-transient query error (a revoked token, say) is raised; transient
        ones are retried by the next ticks. Cancelling the caller removes only this call's task
        from the poll; `stop_waiting` ends every wait at once.
        """
        watch = _Watch(task_id, anyio.current_time(), client or self._client)
        self._watches.add(watch)
        self._changed.set()
        try:
            while not self._stopping:
                with anyio.move_on_after(max(deadline - anyio.current_time(), 0)):
                    await watch.updated.wait()
                if not watch.updated.is_set() or self._stopping:
                    return watch.status
                watch.updated = anyio.Event()
                if watch.error is not None and not watch.error.transient:
                    raise watch.error
                if watch.status is not None and watch.status.done:
                    return watch.status
                await on_tick(watch.status, watch.error)
            return watch.status
        finally:
            self._watches.discard(watch)

    async def run(self) -> None:
        """The polling loop; runs for the server's lifetime in the lifespan's task group."""
        while True:
            if not self._watches:
                await self._changed.wait()
            self._changed = anyio.Event()
            with anyio.move_on_after(self._next_tick() - anyio.current_time()):
                # A new watch may be due sooner than the tick planned so far.
                await self._changed.wait()
            if self._watches and anyio.current_time() >= self._next_tick() - 1e-3:
                await self._tick()

    def _next_tick(self) -> float:
        now = anyio.current_time()
        due = min(
            (
                watch.since + self._min_interval / 2
                if not watch.polled
                else self._last_tick + interval_for(now - watch.since, self._min_interval)
                for watch in self._watches
            ),
            default=now + 3600,
        )
        return max(due, self._last_tick + self._min_interval, self._backoff_until)

    async def _tick(self) -> None:
        self._last_tick = anyio.current_time()
        by_token: dict[str | None, list[_Watch]] = {}
        for watch in self._watches:
            by_token.setdefault(watch.client.token, []).append(watch)
        seen: dict[str, TaskStatus] = {}
        for watches in by_token.values():
            seen |= await self._check(watches)
        await self._tell(seen)
        self._stop_following_finished()

    async def _check(self, watches: list[_Watch]) -> dict[str, TaskStatus]:
        """One status request for these watches (one token's), waking each with its news."""
        task_ids = sorted({watch.task_id for watch in watches})
        try:
            statuses = await watches[0].client.retrieve_batch(
                task_ids, deadline=self._last_tick + QUERY_BUDGET, retry=False
            )
        except KlingError as error:
            self._failures += 1
            delay = retry_delay(error, self._failures - 1) or 0.0
            self._backoff_until = anyio.current_time() + delay
            logger.warning("Status check failed (%s); next try in %.1f s", error.kind.value, delay)
            for watch in watches:
                watch.update(None, error)
            return {}
        self._failures = 0
        for watch in watches:
            watch.update(statuses.get(watch.task_id), None)
        return statuses

    async def _tell(self, statuses: dict[str, TaskStatus]) -> None:
        if self.on_statuses is not None and statuses:
            try:
                await self.on_statuses(statuses)
            except Exception:  # a listener's failure must never stop the polling of paid tasks
                logger.exception("Recording the task statuses failed")

    def _stop_following_finished(self) -> None:
        now = anyio.current_time()
        for task_id, watch in list(self._followed.items()):
            expired = now - watch.since > FOLLOW_LIMIT_SECONDS
            if (watch.status is not None and watch.status.done) or expired:
                if expired:
                    hours = FOLLOW_LIMIT_SECONDS / 3600
                    logger.warning(
                        "Task %s still not done after %g h; kling_get_task checks it", task_id, hours
                    )
                del self._followed[task_id]
                self._watches.discard(watch)
