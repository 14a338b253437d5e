"""The task journal in PostgreSQL, for server replicas that share one database (`KLING_DATABASE_URL`).

The tables, their columns and every query are the ones journal.py gives both databases: only the
column types are translated, `:name` parameters become psycopg's, and a claim locks the rows
it takes with `FOR UPDATE SKIP LOCKED`, so replicas claiming at once get disjoint tasks.
Statements run on a psycopg 3 `AsyncConnectionPool`, each call in one transaction.

The schema is created on open when missing, under an advisory lock so that replicas
starting together do not race, and a `journal_schema` row says its version. A database that
cannot be reached, or that holds tables of another program, is an error naming the URL with
its password masked: the password appears in no message and no log line.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from kling_mcp.logs import logger
from kling_mcp.tasks.journal import (
    MIGRATIONS,
    SCHEMA,
    SCHEMA_VERSION,
    TABLE_COLUMNS,
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

CONNECT_TIMEOUT_SECONDS = 10
PING_TIMEOUT_SECONDS = 5.0
POOL_SIZE = 5
_SCHEMA_LOCK = 0x6B6C696E67  # the advisory lock taken while setting the schema up ("kling")
_RESERVATION_LOCK = 0x6B6C72  # with the owner's hash: the lock one owner's reservations take in turn ("klr")
_OWNER_LOCK = "SELECT pg_advisory_xact_lock(%s, hashtext(%s))"
_TYPES = {"REAL": "DOUBLE PRECISION", "BLOB": "BYTEA", "INTEGER": "BIGINT"}
_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS journal_schema (version INTEGER NOT NULL)"
_MASK = "***"

Connection = psycopg.AsyncConnection[DictRow]


class PostgresJournal(TaskJournal):
    """The journal in a PostgreSQL database; `await PostgresJournal.open(url)`, `aclose()` at the end."""

    _RECORD_STATUS = record_status_sql("IS DISTINCT FROM")
    _CLAIM = claim_sql("FOR UPDATE SKIP LOCKED")

    def __init__(self, pool: AsyncConnectionPool[Connection], url: str, clock: Clock) -> None:
        super().__init__(clock)
        self._pool = pool
        self._url = url
        self.path = None

    @classmethod
    async def open(cls, url: str, *, clock: Clock = time.time, pool_size: int = POOL_SIZE) -> PostgresJournal:
        """Connect, create the schema if it is missing, open the pool; else `JournalUnavailableError`."""
        try:
            async with await Connection.connect(
                url, connect_timeout=CONNECT_TIMEOUT_SECONDS, row_factory=dict_row
            ) as connection:
                await _set_up(connection, url)
            pool = AsyncConnectionPool(
                url,
                connection_class=Connection,
                kwargs={"row_factory": dict_row},
                min_size=1,
                max_size=pool_size,
                open=False,
                name="kling-mcp-journal",
            )
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT_SECONDS)
        except psycopg.Error as error:
            raise JournalUnavailableError(
                f"Cannot open the task journal in the PostgreSQL database {redact(url)}: "
                f"{scrub(str(error), url)}. Check that the server runs and that KLING_DATABASE_URL names "
                "it, with a user that may create tables there."
            ) from None
        logger.info("Task journal: PostgreSQL database %s", redact(url))
        return cls(pool, url, clock)

    async def aclose(self) -> None:
        await self._pool.close()

    async def ping(self) -> None:
        try:
            async with self._pool.connection(timeout=PING_TIMEOUT_SECONDS) as connection:
                await connection.execute("SELECT 1")
        except psycopg.Error as error:
            raise JournalUnavailableError(
                f"The task journal database {redact(self._url)} does not answer: "
                f"{scrub(str(error), self._url)}"
            ) from None

    async def _write(self, sql: str, *rows: Mapping[str, Any]) -> None:
        async with self._pool.connection() as connection:  # commits when the block ends
            if len(rows) == 1:
                await connection.execute(_psycopg_sql(sql), rows[0])
            else:
                async with connection.cursor() as cursor:
                    await cursor.executemany(_psycopg_sql(sql), rows)  # pipelined: one round trip

    async def _write_returning(self, sql: str, params: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        return await self._query(sql, params)

    async def _query(self, sql: str, params: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        async with self._pool.connection() as connection:
            cursor = await connection.execute(_psycopg_sql(sql), params)
            return list(await cursor.fetchall())

    async def _reserve_atomically(
        self, owner: str, reads: Sequence[Statement], decide: Decide[T], write: Statement
    ) -> T | None:
        async with self._pool.connection() as connection:  # one transaction, committed at the end
            # Reservations of one owner queue here, on every replica, until this one commits.
            await connection.execute(_OWNER_LOCK, (_RESERVATION_LOCK, owner))
            found = []
            for sql, params in reads:
                cursor = await connection.execute(_psycopg_sql(sql), params)
                found.append(await cursor.fetchall())
            refusal = decide(found)
            if refusal is None:
                await connection.execute(_psycopg_sql(write[0]), write[1])
            return refusal


async def _set_up(connection: Connection, url: str) -> None:
    """Create what is missing of the schema, unless the database holds a newer one or another program's."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        await connection.execute(_VERSION_TABLE)
        cursor = await connection.execute("SELECT max(version) AS version FROM journal_schema")
        version = (await cursor.fetchone() or {}).get("version")
        if version is not None and version > SCHEMA_VERSION:
            raise JournalUnavailableError(
                f"The task journal in {redact(url)} was written by a newer kling-mcp (schema {version}; this "
                f"one reads {SCHEMA_VERSION}): upgrade kling-mcp on every replica that shares it."
            )
        await _refuse_foreign_tables(connection, url, version or SCHEMA_VERSION)
        for old in range(version or SCHEMA_VERSION, SCHEMA_VERSION):
            for statement in MIGRATIONS[old]:
                await connection.execute(_postgres_ddl(statement))
        for statement in SCHEMA:
            await connection.execute(_postgres_ddl(statement))
        if version is None:
            await connection.execute("INSERT INTO journal_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
        elif version < SCHEMA_VERSION:
            await connection.execute("UPDATE journal_schema SET version = %s", (SCHEMA_VERSION,))


async def _refuse_foreign_tables(connection: Connection, url: str, version: int) -> None:
    """Raise if a table of the journal's name exists without the columns of a journal of `version`."""
    cursor = await connection.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = ANY(%s)",
        (list(TABLE_COLUMNS),),
    )
    found: dict[str, set[str]] = {}
    for row in await cursor.fetchall():
        found.setdefault(row["table_name"], set()).add(row["column_name"])
    for table, columns in found.items():
        if missing := expected_columns(version).get(table, set()) - columns:
            raise JournalUnavailableError(
                f"The table {table} in {redact(url)} lacks the columns {', '.join(sorted(missing))}: it "
                "belongs to another program. Give kling-mcp a database of its own, or a schema of its own "
                "(CREATE SCHEMA kling_mcp, then add ?options=-csearch_path%3Dkling_mcp to "
                "KLING_DATABASE_URL)."
            )


def _postgres_ddl(statement: str) -> str:
    """A statement of the journal's schema or migrations with PostgreSQL's types, doing nothing when
    its object exists."""
    statement = re.sub(r"\b(REAL|BLOB|INTEGER)\b", lambda match: _TYPES[match[1]], statement)
    statement = re.sub(r" ADD COLUMN ", " ADD COLUMN IF NOT EXISTS ", statement)
    return re.sub(r"^CREATE (TABLE|INDEX) ", r"CREATE \1 IF NOT EXISTS ", statement)


@lru_cache(maxsize=256)
def _psycopg_sql(sql: str) -> str:
    """`sql` with its `:name` parameters written `%(name)s`."""
    return re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql)


def redact(url: str) -> str:
    """`url` (a postgresql:// URL or a key=value string) with its password masked."""
    if "://" not in url:
        return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", rf"\g<1>{_MASK}", url)
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user_info, _, host = netloc.rpartition("@")
        netloc = f"{user_info.split(':', 1)[0]}:{_MASK}@{host}"
    query = [
        (key, _MASK if key == "password" else value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="*")))


def scrub(message: str, url: str) -> str:
    """`message` with any password of `url` masked, should a driver message ever quote it."""
    for password in _passwords(url):
        message = message.replace(password, _MASK)
    return message


def _passwords(url: str) -> set[str]:
    if "://" not in url:
        found = re.findall(r"password\s*=\s*'?((?:[^'\\\s]|\\.)+)", url)
    else:
        parts = urlsplit(url)
        found = [parts.password or ""] + [value for key, value in parse_qsl(parts.query) if key == "password"]
    return {form for password in found if password for form in (password, unquote(password))}
