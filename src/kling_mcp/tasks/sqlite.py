"""The task journal in one SQLite file, `<data dir>/journal.sqlite3`, shared by every server
process of the user (Claude Desktop and Cursor at once).

WAL mode lets them read while one writes, a busy timeout makes writers queue instead of failing,
and every write is one short `BEGIN IMMEDIATE` transaction (a poll tick is one, however many
tasks it saw; a reservation is one, so two processes cannot both pass a limit). The blocking
sqlite calls run one at a time in a worker thread, so a lock held by another process never
stalls the event loop.

Opening never fails: a damaged journal is moved aside and a fresh one started, and when the data
directory cannot be written the journal lives in memory, with a warning.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from kling_mcp.logs import logger
from kling_mcp.tasks.journal import (
    MIGRATIONS,
    SCHEMA,
    SCHEMA_VERSION,
    Clock,
    Decide,
    JournalUnavailableError,
    Statement,
    T,
    TaskJournal,
    claim_sql,
    expected_columns,
    record_status_sql,
)

JOURNAL_FILE = "journal.sqlite3"
BUSY_TIMEOUT_SECONDS = 5.0


class _Unusable(Exception):
    """The journal file cannot be used; the message says why."""


class _Damaged(_Unusable):
    """The file is not a journal this version can read and must be moved aside."""


def _open(data_dir: Path) -> tuple[sqlite3.Connection, Path | None]:
    """The journal in `data_dir`, a fresh one if it was damaged, or one in memory if it cannot be written."""
    path = data_dir / JOURNAL_FILE
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        return _open_or_replace(path), path
    except (OSError, sqlite3.Error, _Unusable) as error:
        logger.warning(
            "Cannot keep the task journal in %s (%s). Tasks are kept in memory only and are lost when "
            "this server stops: make that directory writable, or set KLING_DATA_DIR to one this server "
            "can write.",
            data_dir,
            error,
        )
        return _set_up(_connect(":memory:")), None


def _open_or_replace(path: Path) -> sqlite3.Connection:
    db = _connect(str(path))
    try:
        _check(db)
    except sqlite3.OperationalError:
        db.close()
        raise  # locked, unwritable, out of space: the file itself may be fine, so it stays
    except (sqlite3.DatabaseError, _Damaged) as error:
        try:
            aside = _move_aside(path)  # while still open: closing would delete a -wal that does not fit
        finally:
            db.close()
        logger.warning(
            "The task journal %s is damaged or not a kling-mcp journal (%s): moved it to %s and started a "
            "fresh one. Tasks recorded only there are not resumed.",
            path,
            error,
            aside,
        )
        db = _connect(str(path))
    except BaseException:
        db.close()
        raise
    return _set_up(db)


def _connect(target: str) -> sqlite3.Connection:
    db = sqlite3.connect(target, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    return db


def _check(db: sqlite3.Connection) -> None:
    """Raise unless the file is new or holds a sound journal that this version reads; writes nothing.

    One read transaction: another process setting the file up meanwhile is seen whole or not at all
    (its tables without its version yet would look like another program's database)."""
    db.execute("BEGIN")
    with db:
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise _Damaged(f"quick_check: {check}")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise _Unusable(
                f"it was written by a newer kling-mcp (schema {version}; this one reads {SCHEMA_VERSION}): "
                "upgrade kling-mcp to share it"
            )
        if version == 0 and db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
            return
        if version < 1:  # tables, but no schema version of ours
            raise _Damaged(f"schema version {version}, expected {SCHEMA_VERSION}")
        for table, expected in expected_columns(version).items():
            columns = {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}
            if not expected <= columns:
                raise _Damaged(f"table {table} lacks {', '.join(sorted(expected - columns))}")


def _set_up(db: sqlite3.Connection) -> sqlite3.Connection:
    """Switch `db` to WAL and give it the current schema; `db` is closed if that fails."""
    try:
        _switch_to_wal(db)
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("BEGIN IMMEDIATE")  # two processes setting up a file at once: one creates or migrates
        with db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            steps = [SCHEMA] if version == 0 else [MIGRATIONS[old] for old in range(version, SCHEMA_VERSION)]
            for statement in (statement for step in steps for statement in step):
                db.execute(statement)
            if steps:
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.close()
        raise
    return db


def _switch_to_wal(db: sqlite3.Connection) -> None:
    """Put the file in WAL mode, waiting while another process does the same.

    Two processes switching a new file both read it, then both want its write lock. SQLite tells
    one "database is locked" at once, without the busy timeout, because waiting could deadlock.
    The other's switch is over in milliseconds, and after it this one has nothing left to do."""
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if str(error) != "database is locked" or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


def _move_aside(path: Path) -> Path:
    """Rename the journal (and its -wal and -shm files) to `<name>.corrupt-<timestamp>`."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    number = 1
    while aside.exists():
        number += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{number}")
    for suffix in ("", "-wal", "-shm"):
        companion = Path(f"{path}{suffix}")
        if companion.exists():
            companion.rename(f"{aside}{suffix}")
    return aside


class SqliteJournal(TaskJournal):
    """The SQLite journal; `await SqliteJournal.open(settings.data_dir)` at start, `aclose()` at the end."""

    _RECORD_STATUS = record_status_sql("IS NOT")
    _CLAIM = claim_sql("")  # BEGIN IMMEDIATE already keeps every other writer out

    def __init__(self, db: sqlite3.Connection, path: Path | None, clock: Clock) -> None:
        super().__init__(clock)
        self._db = db
        self.path = path
        self._limiter = anyio.CapacityLimiter(1)

    @classmethod
    async def open(cls, data_dir: Path, *, clock: Clock = time.time) -> SqliteJournal:
        db, path = await anyio.to_thread.run_sync(_open, data_dir)
        return cls(db, path, clock)

    async def aclose(self) -> None:
        await self._run(self._db.close)

    async def ping(self) -> None:
        try:
            await self._query("SELECT 1", {})
        except sqlite3.Error as error:
            raise JournalUnavailableError(
                f"The task journal {self.path or '(in memory)'} fails: {error}"
            ) from error

    # --- Running sqlite in the worker thread ---

    async def _run(self, work: Callable[[], T]) -> T:
        # One call at a time on the one connection; a cancelled caller still lets its write finish.
        return await anyio.to_thread.run_sync(work, limiter=self._limiter)

    async def _write(self, sql: str, *rows: Mapping[str, Any]) -> None:
        def write() -> None:
            self._db.execute("BEGIN IMMEDIATE")  # take the write lock first: no upgrade deadlock
            with self._db:
                self._db.executemany(sql, rows)

        await self._run(write)

    async def _write_returning(self, sql: str, params: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        def write() -> list[sqlite3.Row]:
            self._db.execute("BEGIN IMMEDIATE")
            with self._db:
                return self._db.execute(sql, params).fetchall()

        return [dict(row) for row in await self._run(write)]

    async def _query(self, sql: str, params: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        rows = await self._run(lambda: self._db.execute(sql, params).fetchall())
        return [dict(row) for row in rows]

    async def _reserve_atomically(
        self, owner: str, reads: Sequence[Statement], decide: Decide[T], write: Statement
    ) -> T | None:
        def reserve() -> T | None:
            self._db.execute("BEGIN IMMEDIATE")  # one writer at a time across every process on the file
            with self._db:
                found = [[dict(row) for row in self._db.execute(sql, params)] for sql, params in reads]
                refusal = decide(found)
                if refusal is None:
                    self._db.execute(*write)
                return refusal

        return await self._run(reserve)
