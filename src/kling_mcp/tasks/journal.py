"""The task journal: every paid task, from its reservation to its saved file, whichever database
holds it.

A task the API accepted costs money whether or not this process lives to see its video, so
each one is reserved (written down) before it is sent, and every state the poller sees after
that is recorded. Reserving is one atomic step per owner: the running identical task, the daily
and concurrent limits and the new row are read and written in one transaction that every other
reservation of that owner waits for, in any process or replica. Every row has an owner (`""`
for a local user; a keyed hash of the user's token when hosted), and no read or write crosses
owners. Leases let several processes share the work: a process `hold`s the tasks it polls,
`claim_unfinished` hands the tasks of a process that died (its leases expired) to one other
process, and a task's final state releases its lease.

This module is what both databases share: the records, the schema, every query, and
`TaskJournal`, which callers type against. `sqlite.SqliteJournal` (one file per user, the
default) and `postgres.PostgresJournal` (replicas sharing one database) run them, and
`store.open_journal` picks one.
"""

from __future__ import annotations

import abc
import base64
import hashlib
import json
import os
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from kling_mcp.errors import KlingMcpError

if TYPE_CHECKING:
    from kling_mcp.api.client import TaskStatus

SCHEMA_VERSION = 3
STALE_SUBMISSION_SECONDS = 60.0
"""A submission without the API's answer after this long: the process died while sending it."""
ACTIVE_SECONDS = 3600.0
"""How long an unfinished task counts towards the concurrency limit, so one the API never
resolves (or a submission whose fate is unknown) cannot block new tasks forever."""

JournalState = Literal["submitting", "maybe_started", "not_started", "running", "succeeded", "failed"]
PollState = Literal["running", "succeeded", "failed"]
ACTIVE_STATES = ("submitting", "maybe_started", "running")
TERMINAL_STATES = ("succeeded", "failed")
SECRET_BYTES = 32

# A key is secret when, lowercased and without separators, it contains one of these.
SECRET_KEY_PARTS = ("token", "authorization", "apikey", "secret", "password", "cookie", "credential")
_SEPARATORS = re.compile(r"[^a-z0-9]")

DAY_SECONDS = 86_400.0

T = TypeVar("T")
Clock = Callable[[], float]
Statement = tuple[str, Mapping[str, Any]]
Decide = Callable[[Sequence[Sequence[Mapping[str, Any]]]], T | None]


@dataclass(frozen=True)
class TaskRecord:
    """One journal entry: a submission and everything learned about it since."""

    entry_id: str
    """The journal's own id (uuid4 hex); it exists before the API gives a task id."""
    owner: str
    task_id: str | None
    """None until the API answered the submission."""
    tool: str
    endpoint: str
    body: dict[str, Any]
    """The request body as sent, without secrets."""
    body_hash: str
    state: JournalState
    upstream_state: str | None
    created_at: float
    updated_at: float
    trace_id: str | None
    video_url: str | None
    video_id: str | None
    duration: float | None
    error_code: str | None
    error_message: str | None
    file_path: str | None
    download_error: str | None
    prompt: str | None
    model: str | None
    mode: str | None
    holder: str | None = None
    """The process that polls this task while its lease lasts (None: nobody)."""
    lease_until: float | None = None
    cancelled_at: float | None = None
    """When the client cancelled the MCP task that follows it (the API's task may still run)."""


@dataclass(frozen=True)
class StatusUpdate:
    """What one poll said about one task; a final one carries the video or the error."""

    task_id: str
    state: PollState
    upstream_state: str | None = None
    video_url: str | None = None
    video_id: str | None = None
    duration: float | None = None
    trace_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None

    @classmethod
    def from_status(cls, status: TaskStatus) -> StatusUpdate:
        code, message = status.failure if status.state == "failed" else (None, None)
        return cls(
            task_id=status.task_id,
            state=status.state,
            upstream_state=status.upstream_state,
            video_url=status.value("video_url"),
            video_id=status.value("video_id"),
            duration=_seconds(status.value("duration")),
            trace_id=status.trace_id,
            error_code=code,
            error_message=message,
        )


@dataclass(frozen=True)
class Limits:
    """What one owner may have: paid tasks in any 24 hours, tasks running at once, and how long an
    identical running request is answered with the running task (None: each request is new)."""

    daily: int
    concurrent: int
    duplicate_window: float | None

    def refusal(self, paid_times: Sequence[float], running: int) -> OverLimit | None:
        """Why one more task is over a limit, given when the paid tasks of the last day were made."""
        if len(paid_times) >= self.daily:
            frees_at = paid_times[len(paid_times) - self.daily] + DAY_SECONDS if self.daily else None
            return OverLimit("daily", len(paid_times), self.daily, frees_at)
        if running >= self.concurrent:
            return OverLimit("concurrent", running, self.concurrent, None)
        return None


@dataclass(frozen=True)
class Reserved:
    """The task was admitted: its row is written, in state "submitting"."""

    record: TaskRecord


@dataclass(frozen=True)
class Twin:
    """An identical request of the same owner is still running (or still being sent): this one is it."""

    record: TaskRecord


@dataclass(frozen=True)
class OverLimit:
    """A limit is reached: `count` of `limit`; the daily one frees up at `frees_at` (epoch seconds)."""

    limit_name: Literal["daily", "concurrent"]
    count: int
    limit: int
    frees_at: float | None


class CursorError(KlingMcpError, ValueError):
    """A list cursor that this journal did not give out."""


class JournalUnavailableError(RuntimeError):
    """The journal's database cannot be used; the message names it (never its password) and the fix."""


def strip_secrets(value: Any) -> Any:
    """`value` without the mapping keys (at any depth) that look like credentials."""
    if isinstance(value, Mapping):
        return {
            key: strip_secrets(item)
            for key, item in value.items()
            if not any(part in _SEPARATORS.sub("", str(key).lower()) for part in SECRET_KEY_PARTS)
        }
    if isinstance(value, (list, tuple)):
        return [strip_secrets(item) for item in value]
    return value


def body_hash(body: Mapping[str, Any]) -> str:
    """The SHA-256 of a request body's canonical JSON, secrets stripped: what `begin` stores."""
    return hashlib.sha256(_canonical_json(strip_secrets(body)).encode()).hexdigest()


# --- Schema ------------------------------------------------------------------------------

SECRETS_TABLE = """CREATE TABLE secrets (
        name TEXT PRIMARY KEY,
        value BLOB NOT NULL,
        created_at REAL NOT NULL
    )"""
SCHEMA = (
    """CREATE TABLE tasks (
        entry_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL DEFAULT '',
        task_id TEXT,
        tool TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        body TEXT NOT NULL,
        body_hash TEXT NOT NULL,
        state TEXT NOT NULL,
        upstream_state TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        trace_id TEXT,
        video_url TEXT,
        video_id TEXT,
        duration REAL,
        link_fetched_at REAL,
        error_code TEXT,
        error_message TEXT,
        file_path TEXT,
        download_error TEXT,
        prompt TEXT,
        model TEXT,
        mode TEXT,
        holder TEXT,
        lease_until REAL,
        cancelled_at REAL
    )""",
    "CREATE INDEX tasks_by_owner_time ON tasks (owner, created_at, entry_id)",
    "CREATE INDEX tasks_by_task_id ON tasks (task_id)",
    "CREATE INDEX tasks_by_state ON tasks (state, owner)",
    """CREATE TABLE uploads (
        owner TEXT NOT NULL DEFAULT '',
        sha256 TEXT NOT NULL,
        url TEXT NOT NULL,
        size INTEGER NOT NULL,
        mime TEXT NOT NULL,
        uploaded_at REAL NOT NULL,
        PRIMARY KEY (owner, sha256)
    )""",
    SECRETS_TABLE,
)
"""The current schema in SQLite's words; postgres.py translates its types for PostgreSQL. The unused
column link_fetched_at stays, so that an older kling-mcp sharing the file still reads it as its own."""
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "ALTER TABLE tasks ADD COLUMN holder TEXT",
        "ALTER TABLE tasks ADD COLUMN lease_until REAL",
        SECRETS_TABLE,
    ),
    2: ("ALTER TABLE tasks ADD COLUMN cancelled_at REAL",),
}
"""The statements that bring a journal of schema version N to N + 1."""
TABLE_COLUMNS = {
    "tasks": {field.name for field in fields(TaskRecord)},
    "uploads": {"owner", "sha256", "url", "size", "mime", "uploaded_at"},
    "secrets": {"name", "value", "created_at"},
}
_ADDED = {2: ({"holder", "lease_until"}, "secrets"), 3: ({"cancelled_at"}, None)}
"""The task columns, and the table, each schema version added."""


def expected_columns(version: int) -> dict[str, set[str]]:
    """The tables and columns a journal of schema `version` has."""
    tables = {name: set(columns) for name, columns in TABLE_COLUMNS.items()}
    for added_in, (columns, table) in _ADDED.items():
        if added_in > version:
            tables["tasks"] -= columns
            if table is not None:
                del tables[table]
    return tables


# --- Queries, in the SQL that SQLite and PostgreSQL share ---------------------------------
# Parameters are `:name`. A parameter only tested for NULL is CAST, so that PostgreSQL knows its type.

_TERMINAL_SQL = ", ".join(repr(state) for state in TERMINAL_STATES)
_ACTIVE_SQL = f"state IN ({', '.join(repr(state) for state in ACTIVE_STATES)})"
_STATE_SQL = (
    "CASE WHEN state = 'submitting' AND created_at < :stale_before THEN 'maybe_started' ELSE state END"
)
"""The state as read: a submission still waiting for its answer after a minute may have started."""
_COLUMNS = ", ".join(field.name for field in fields(TaskRecord))
_SELECT_TASKS = "SELECT {columns}, {state} AS state FROM tasks".format(
    columns=", ".join(field.name for field in fields(TaskRecord) if field.name != "state"), state=_STATE_SQL
)
_OF_OWNER = "(CAST(:owner AS TEXT) IS NULL OR owner = :owner)"
"""The rows of `owner`, or every owner's when it is None."""
_UNFINISHED_SQL = f"state = 'running' AND task_id IS NOT NULL AND {_OF_OWNER}"
_LEASE_FREE_SQL = "(holder IS NULL OR lease_until <= :now)"


def record_status_sql(is_distinct_from: str) -> str:
    """Write only rows that changed; a late "running" (another process's tick) never undoes a result."""
    return f"""
    UPDATE tasks SET
        state = :state,
        upstream_state = :upstream_state,
        video_url = COALESCE(:video_url, video_url),
        video_id = COALESCE(:video_id, video_id),
        duration = COALESCE(:duration, duration),
        trace_id = COALESCE(:trace_id, trace_id),
        error_code = COALESCE(:error_code, error_code),
        error_message = COALESCE(:error_message, error_message),
        holder = CASE WHEN :state IN ({_TERMINAL_SQL}) THEN NULL ELSE holder END,
        lease_until = CASE WHEN :state IN ({_TERMINAL_SQL}) THEN NULL ELSE lease_until END,
        updated_at = :now
    WHERE task_id = :task_id
        AND (state {is_distinct_from} :state OR upstream_state {is_distinct_from} :upstream_state
             OR (CAST(:video_url AS TEXT) IS NOT NULL AND video_url {is_distinct_from} :video_url))
        AND NOT (:state = 'running' AND state IN ({_TERMINAL_SQL}))
    """


def claim_sql(lock_rows: str) -> str:
    """Lease the oldest unfinished tasks whose lease is free; `lock_rows` keeps concurrent claims apart."""
    return f"""
    UPDATE tasks SET holder = :holder, lease_until = :until
    WHERE entry_id IN (
        SELECT entry_id FROM tasks WHERE {_UNFINISHED_SQL} AND {_LEASE_FREE_SQL}
        ORDER BY created_at, entry_id LIMIT :limit {lock_rows}
    )
    RETURNING {_COLUMNS}
    """


_TWIN_SQL = (
    f"{_SELECT_TASKS} WHERE owner = :owner AND created_at >= :since AND tool = :tool AND body_hash = :hash "
    f"AND {_ACTIVE_SQL} ORDER BY created_at DESC LIMIT 1"
)
"""The newest unfinished task with the same tool and body, submitted since `since`."""
_PAID_SQL = (
    "SELECT created_at FROM tasks WHERE owner = :owner AND created_at >= :since "
    "AND state != 'not_started' ORDER BY created_at"
)
"""When each submission that may have cost money was made since `since`, oldest first."""
_RUNNING_SQL = f"SELECT entry_id FROM tasks WHERE owner = :owner AND created_at >= :since AND {_ACTIVE_SQL}"
"""The tasks submitted since `since` (ACTIVE_SECONDS ago) that have not finished or may have started."""


def _new_record(tool: str, endpoint: str, body: dict[str, Any], owner: str, now: float) -> TaskRecord:
    return TaskRecord(
        entry_id=uuid.uuid4().hex,
        owner=owner,
        task_id=None,
        tool=tool,
        endpoint=endpoint,
        body=body,
        body_hash=body_hash(body),
        state="submitting",
        upstream_state=None,
        created_at=now,
        updated_at=now,
        trace_id=None,
        video_url=None,
        video_id=None,
        duration=None,
        error_code=None,
        error_message=None,
        file_path=None,
        download_error=None,
        prompt=_text(body, "prompt"),
        model=_text(body, "model"),
        mode=_text(body, "mode"),
    )


def _insert(record: TaskRecord) -> Statement:
    row = {
        **{field.name: getattr(record, field.name) for field in fields(TaskRecord)},
        "body": _canonical_json(record.body),
    }
    columns, values = ", ".join(row), ", ".join(f":{name}" for name in row)
    return f"INSERT INTO tasks ({columns}) VALUES ({values})", row


class TaskJournal(abc.ABC):
    """The task journal, whichever database holds it: open it with `open_journal`, `aclose()` it at the end.

    Every row has an owner; no read or write crosses owners. Task ids are the API's, unique
    across owners, so the writes of the poller (statuses, leases) name none.
    """

    path: Path | None
    """The SQLite file, or None when the journal is in memory or in PostgreSQL."""
    _RECORD_STATUS: ClassVar[str]
    _CLAIM: ClassVar[str]

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._secrets: dict[str, bytes] = {}

    @abc.abstractmethod
    async def aclose(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise `JournalUnavailableError` unless the database answers."""

    # --- Submissions ---

    async def reserve(
        self, tool: str, endpoint: str, body: Mapping[str, Any], limits: Limits, *, owner: str = ""
    ) -> Reserved | Twin | OverLimit:
        """Admit a paid task and write its row, in one transaction that every other reservation of
        `owner` (in any process, on any replica) waits for: a running identical task is answered
        instead, and the daily and concurrent limits are checked against rows no one can add to
        meanwhile. Call it before uploading or sending anything."""
        clean: dict[str, Any] = strip_secrets(body)
        now = self._clock()
        record = _new_record(tool, endpoint, clean, owner, now)
        reads = (
            (
                _TWIN_SQL,
                {
                    "owner": owner,
                    "tool": tool,
                    "hash": record.body_hash,
                    "since": now - (limits.duplicate_window or 0.0),
                    "stale_before": now - STALE_SUBMISSION_SECONDS,
                },
            ),
            (_PAID_SQL, {"owner": owner, "since": now - DAY_SECONDS}),
            (_RUNNING_SQL, {"owner": owner, "since": now - ACTIVE_SECONDS}),
        )

        def decide(found: Sequence[Sequence[Mapping[str, Any]]]) -> Twin | OverLimit | None:
            twins, paid, running = found
            if twins and limits.duplicate_window is not None:
                return Twin(_record(twins[0]))
            return limits.refusal([float(row["created_at"]) for row in paid], len(running))

        outcome: Twin | OverLimit | None = await self._reserve_atomically(
            owner, reads, decide, _insert(record)
        )
        return Reserved(record) if outcome is None else outcome

    async def submitted(
        self,
        entry_id: str,
        task_id: str,
        trace_id: str | None,
        *,
        owner: str = "",
        body: Mapping[str, Any] | None = None,
        holder: str | None = None,
        lease_seconds: float = 0.0,
    ) -> None:
        """The API accepted the submission `entry_id` as `task_id`: it is running, and `holder`
        (the replica whose call waits for it) holds its lease from this moment, so no other
        replica takes it over in between. `body`: what was sent, when it differs from what was
        reserved (local files swapped for their uploaded URLs)."""
        now = self._clock()
        await self._write(
            "UPDATE tasks SET task_id = :task_id, trace_id = :trace_id, state = 'running', "
            "body = COALESCE(:body, body), updated_at = :now, holder = :holder, lease_until = :lease_until "
            "WHERE entry_id = :entry_id AND owner = :owner",
            {
                "task_id": task_id,
                "body": None if body is None else _canonical_json(strip_secrets(body)),
                "trace_id": trace_id,
                "now": now,
                "holder": holder,
                "lease_until": now + lease_seconds if holder else None,
                "entry_id": entry_id,
                "owner": owner,
            },
        )

    async def submission_failed(
        self, entry_id: str, *, maybe_started: bool, message: str, owner: str = ""
    ) -> None:
        """The submission got no task id: provably never sent (`maybe_started=False`), or unknown."""
        await self._write(
            "UPDATE tasks SET state = :state, error_message = :message, updated_at = :now "
            "WHERE entry_id = :entry_id AND owner = :owner",
            {
                "state": "maybe_started" if maybe_started else "not_started",
                "message": message,
                "now": self._clock(),
                "entry_id": entry_id,
                "owner": owner,
            },
        )

    # --- What the poller and the downloads learn ---

    async def record_statuses(self, updates: Sequence[StatusUpdate]) -> None:
        """Record one poll tick's news in one transaction; a final state releases the task's lease."""
        if not updates:
            return
        now = self._clock()
        # Rows locked in one order by every process: two ticks sharing tasks cannot deadlock.
        rows = [{**_as_row(update), "now": now} for update in sorted(updates, key=lambda u: u.task_id)]
        await self._write(self._RECORD_STATUS, *rows)

    async def record_file(self, task_id: str, path: Path, *, owner: str = "") -> None:
        await self._write(
            "UPDATE tasks SET file_path = :path, download_error = NULL, updated_at = :now "
            "WHERE task_id = :task_id AND owner = :owner",
            {"path": str(path), "now": self._clock(), "task_id": task_id, "owner": owner},
        )

    async def record_download_error(self, task_id: str, message: str, *, owner: str = "") -> None:
        await self._write(
            "UPDATE tasks SET download_error = :message, updated_at = :now "
            "WHERE task_id = :task_id AND owner = :owner",
            {"message": message, "now": self._clock(), "task_id": task_id, "owner": owner},
        )

    # --- Leases: which process polls which task ---

    async def hold(self, task_ids: Sequence[str], *, holder: str, lease_seconds: float) -> list[str]:
        """Take or renew `holder`'s lease on these unfinished tasks; the ids it now holds, in order.

        A task another holder has a live lease on is skipped, and so is a finished one.
        """
        if not task_ids:
            return []
        now = self._clock()
        ids = {f"task{index}": task_id for index, task_id in enumerate(dict.fromkeys(task_ids))}
        rows = await self._write_returning(
            "UPDATE tasks SET holder = :holder, lease_until = :until "
            f"WHERE task_id IN ({', '.join(':' + key for key in ids)}) AND state NOT IN ({_TERMINAL_SQL}) "
            "AND (holder IS NULL OR holder = :holder OR lease_until <= :now) RETURNING task_id",
            {**ids, "holder": holder, "until": now + lease_seconds, "now": now},
        )
        held = {row["task_id"] for row in rows}
        return [task_id for task_id in ids.values() if task_id in held]

    async def claim_unfinished(
        self, *, owner: str | None, holder: str, lease_seconds: float, limit: int = 100
    ) -> list[TaskRecord]:
        """Lease to `holder` the unfinished tasks (of `owner`, or every owner's) nobody holds, oldest first.

        Atomic: two processes claiming at once never get the same task.
        """
        now = self._clock()
        rows = await self._write_returning(
            self._CLAIM,
            {"owner": owner, "holder": holder, "until": now + lease_seconds, "now": now, "limit": limit},
        )
        return sorted(map(_record, rows), key=lambda record: (record.created_at, record.entry_id))

    async def release(self, task_ids: Sequence[str], *, holder: str) -> None:
        """Give up `holder`'s leases on these tasks (another holder's stay)."""
        if not task_ids:
            return
        ids = {f"task{index}": task_id for index, task_id in enumerate(task_ids)}
        await self._write(
            "UPDATE tasks SET holder = NULL, lease_until = NULL "
            f"WHERE task_id IN ({', '.join(':' + key for key in ids)}) AND holder = :holder",
            {**ids, "holder": holder},
        )

    # --- Reading tasks ---

    async def get(self, task_id: str, *, owner: str = "") -> TaskRecord | None:
        records = await self._tasks(
            "task_id = :task_id AND owner = :owner ORDER BY created_at DESC LIMIT 1",
            {"task_id": task_id, "owner": owner},
        )
        return records[0] if records else None

    async def with_video(self, video_id: str, *, owner: str) -> TaskRecord | None:
        """The owner's succeeded task whose video is `video_id` (the newest, should there be two)."""
        records = await self._tasks(
            "owner = :owner AND video_id = :video_id AND state = 'succeeded' "
            "ORDER BY created_at DESC LIMIT 1",
            {"owner": owner, "video_id": video_id},
        )
        return records[0] if records else None

    async def cancel(self, entry_id: str, *, owner: str) -> TaskRecord | None:
        """Note that the client cancelled the entry while it runs (the first time counts; a finished
        one stays as it finished); the entry, if any."""
        await self._write(
            "UPDATE tasks SET cancelled_at = COALESCE(cancelled_at, :now), updated_at = :now "
            "WHERE entry_id = :entry_id AND owner = :owner AND state IN ('submitting', 'running')",
            {"now": self._clock(), "entry_id": entry_id, "owner": owner},
        )
        return await self.entry(entry_id, owner=owner)

    async def entry(self, entry_id: str, *, owner: str) -> TaskRecord | None:
        """The journal entry `entry_id` (one made by `reserve`), whether or not it has a task id yet."""
        records = await self._tasks(
            "entry_id = :entry_id AND owner = :owner", {"entry_id": entry_id, "owner": owner}
        )
        return records[0] if records else None

    async def list_tasks(
        self,
        *,
        owner: str = "",
        states: Sequence[str] = (),
        tool: str | None = None,
        since: float | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> tuple[list[TaskRecord], str | None]:
        """Tasks newest first, and the cursor of the next page (None on the last one)."""
        if limit < 1:
            raise ValueError(f"limit is {limit}: ask for at least 1 task.")
        conditions = ["owner = :owner"]
        params: dict[str, Any] = {"owner": owner, "limit": limit + 1}
        if states:
            wanted = {f"state{index}": state for index, state in enumerate(states)}
            conditions.append(f"{_STATE_SQL} IN ({', '.join(':' + key for key in wanted)})")
            params.update(wanted)
        if tool is not None:
            conditions.append("tool = :tool")
            params["tool"] = tool
        if since is not None:
            conditions.append("created_at >= :since")
            params["since"] = since
        if cursor is not None:
            conditions.append("(created_at, entry_id) < (:after_time, :after_entry)")
            params["after_time"], params["after_entry"] = _decode_cursor(cursor)
        where = " AND ".join(conditions)
        records = await self._tasks(f"{where} ORDER BY created_at DESC, entry_id DESC LIMIT :limit", params)
        if len(records) <= limit:
            return records, None
        last = records[limit - 1]
        return records[:limit], _encode_cursor(last.created_at, last.entry_id)

    async def unfinished(self, *, owner: str | None = None) -> list[TaskRecord]:
        """Running tasks the API knows (they have a task id), oldest first; every owner's by default."""
        return await self._tasks(f"{_UNFINISHED_SQL} ORDER BY created_at", {"owner": owner})

    async def undownloaded(self, *, owner: str = "") -> list[TaskRecord]:
        """Succeeded tasks whose video was not saved yet, oldest first."""
        return await self._tasks(
            "state = 'succeeded' AND video_url IS NOT NULL AND file_path IS NULL AND owner = :owner "
            "ORDER BY created_at",
            {"owner": owner},
        )

    # --- Uploaded local files ---

    async def hosted_url(self, sha256: str, *, owner: str = "") -> str | None:
        """Where the file with this SHA-256 was uploaded before, if it was."""
        rows = await self._query(
            "SELECT url FROM uploads WHERE owner = :owner AND sha256 = :sha256",
            {"owner": owner, "sha256": sha256},
        )
        return str(rows[0]["url"]) if rows else None

    async def remember_upload(self, sha256: str, url: str, *, size: int, mime: str, owner: str = "") -> None:
        await self._write(
            "INSERT INTO uploads (owner, sha256, url, size, mime, uploaded_at) "
            "VALUES (:owner, :sha256, :url, :size, :mime, :now) ON CONFLICT (owner, sha256) DO UPDATE "
            "SET url = excluded.url, size = excluded.size, mime = excluded.mime, "
            "uploaded_at = excluded.uploaded_at",
            {"owner": owner, "sha256": sha256, "url": url, "size": size, "mime": mime, "now": self._clock()},
        )

    # --- Secrets shared by every process on the database ---

    async def shared_secret(self, name: str) -> bytes:
        """The random secret called `name`, made by whichever process asked first, the same for all.

        The key of the keyed hash that turns a user's token into an owner id.
        """
        if name not in self._secrets:
            await self._write(
                "INSERT INTO secrets (name, value, created_at) VALUES (:name, :value, :now) "
                "ON CONFLICT (name) DO NOTHING",
                {"name": name, "value": os.urandom(SECRET_BYTES), "now": self._clock()},
            )
            rows = await self._query("SELECT value FROM secrets WHERE name = :name", {"name": name})
            self._secrets[name] = bytes(rows[0]["value"])
        return self._secrets[name]

    # --- What each database does ---

    @abc.abstractmethod
    async def _write(self, sql: str, *rows: Mapping[str, Any]) -> None:
        """Run `sql` once per row, all in one write transaction."""

    @abc.abstractmethod
    async def _write_returning(self, sql: str, params: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """Run one writing statement with a RETURNING clause in its own transaction; the rows it returned."""

    @abc.abstractmethod
    async def _query(self, sql: str, params: Mapping[str, Any]) -> list[Mapping[str, Any]]: ...

    @abc.abstractmethod
    async def _reserve_atomically(
        self, owner: str, reads: Sequence[Statement], decide: Decide[T], write: Statement
    ) -> T | None:
        """Run `reads`, then `write` unless `decide` (given what they read) says no, in one
        transaction that excludes every other reservation of `owner`; what `decide` said."""

    async def _tasks(self, where: str, params: Mapping[str, Any]) -> list[TaskRecord]:
        stale_before = self._clock() - STALE_SUBMISSION_SECONDS
        rows = await self._query(f"{_SELECT_TASKS} WHERE {where}", {**params, "stale_before": stale_before})
        return [_record(row) for row in rows]


def _record(row: Mapping[str, Any]) -> TaskRecord:
    return TaskRecord(**{**row, "body": json.loads(row["body"])})


def _as_row(update: StatusUpdate) -> dict[str, Any]:
    return {field.name: getattr(update, field.name) for field in fields(StatusUpdate)}


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _text(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    return value if isinstance(value, str) else None


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _encode_cursor(created_at: float, entry_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([created_at, entry_id]).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        created_at, entry_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(created_at, (int, float)) and isinstance(entry_id, str):
            return float(created_at), entry_id
    except (ValueError, TypeError):  # binascii.Error and JSONDecodeError are ValueErrors
        pass
    raise CursorError(
        f"cursor {cursor!r} is not one this server gave out: pass the next_cursor of the previous page, "
        "or no cursor to start from the newest task."
    )
