"""Opening the task journal that the settings name: PostgreSQL for replicas, else the user's SQLite file."""

from __future__ import annotations

import time
from pathlib import Path

from kling_mcp.tasks.journal import Clock, JournalUnavailableError, TaskJournal
from kling_mcp.tasks.sqlite import SqliteJournal


async def open_journal(
    data_dir: Path, database_url: str | None = None, *, clock: Clock = time.time
) -> TaskJournal:
    """The journal in PostgreSQL at `database_url` when there is one, else the SQLite one in `data_dir`.

    Raises `JournalUnavailableError` when the database cannot be used: a server sharing one must not
    pretend to keep tasks it cannot.
    """
    if not database_url:
        return await SqliteJournal.open(data_dir, clock=clock)
    try:
        from kling_mcp.tasks.postgres import PostgresJournal
    except ModuleNotFoundError as error:
        if error.name not in ("psycopg", "psycopg_pool"):
            raise
        raise JournalUnavailableError(
            "KLING_DATABASE_URL is set, but psycopg is not installed: install kling-mcp[postgres] "
            '(pip install "kling-mcp[postgres]"), or unset KLING_DATABASE_URL to keep the journal in '
            f"{data_dir}."
        ) from None
    return await PostgresJournal.open(database_url, clock=clock)
