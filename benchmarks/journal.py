"""Benchmark of the task journal on SQLite and PostgreSQL: what recording submissions and poll ticks costs.

Run from the repository root with the development virtualenv (not part of the test suite):

    .venv/bin/python benchmarks/journal.py              # 500 rounds of each, on both backends
    .venv/bin/python benchmarks/journal.py --rounds 2000
    .venv/bin/python benchmarks/journal.py --database-url postgresql://user:password@host/db

The SQLite journal is a real file in a temporary directory (WAL, synchronous=NORMAL, as the
server opens it), driven from an asyncio event loop as the server does: each call includes
the hop to the journal's worker thread and back. The PostgreSQL journal is the database of
`--database-url` (it must be empty or a kling-mcp journal: the benchmark adds rows), else a
throwaway cluster on a loopback port (tests/postgres.py: Debian's postgresql package, fsync
and synchronous commits on), else skipped with a note. What is measured, medians over `--rounds`:

1. One submission: `reserve` (limits, twin and row, before sending) and `submitted` (the API's
   answer), two commits.
2. One poll tick while 50 tasks wait and none changed: `record_statuses` with 50 updates
   that match what is stored, so no row is rewritten (the common tick).
3. One poll tick where all 50 changed (each tick alternates their upstream state).

4. One claim of unfinished tasks (`claim_unfinished`, the 50 tasks above, leased in turn by
   two replicas).

Target: the journal adds at most 1 ms to a tick with 50 waiting tasks, changed or not, on
SQLite; PostgreSQL pays a loopback round trip or more per call, and is reported without target.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
from run import markdown_table

from kling_mcp.tasks.journal import Limits, Reserved, StatusUpdate, TaskJournal
from kling_mcp.tasks.store import open_journal

REPOSITORY = Path(__file__).resolve().parent.parent
LEASE_SECONDS = 30.0

WAITING = 50
UNLIMITED = Limits(daily=10**9, concurrent=10**9, duplicate_window=None)
TARGET_TICK_MS = 1.0
WARM_UP = 20


@dataclass(frozen=True)
class Figure:
    metric: str
    median_ms: float
    p90_ms: float
    target_ms: float | None = None

    @property
    def passed(self) -> bool | None:
        return None if self.target_ms is None else self.median_ms <= self.target_ms

    def cells(self) -> list[str]:
        target = "-" if self.target_ms is None else f"<= {self.target_ms:g} ms median"
        verdict = {True: "PASS", False: "FAIL", None: "-"}[self.passed]
        return [self.metric, f"{self.median_ms:.3f} ms", f"{self.p90_ms:.3f} ms", target, verdict]


HEADER = ["Metric", "Median", "90th percentile", "Target", "Result"]


async def timed(call: Callable[[int], Awaitable[object]], rounds: int) -> tuple[float, float]:
    """Median and 90th percentile milliseconds of `rounds` calls, after WARM_UP unmeasured ones."""
    samples = []
    for index in range(rounds + WARM_UP):
        started = time.perf_counter()
        await call(index)
        if index >= WARM_UP:
            samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), statistics.quantiles(samples, n=10)[-1]


async def measure(journal: TaskJournal, backend: str, rounds: int) -> list[Figure]:
    target = TARGET_TICK_MS if backend == "SQLite" else None

    async def submit(index: int) -> None:
        body = {"prompt": f"benchmark {index}", "duration": 5}
        reserved = await journal.reserve("kling_generate_video", "/kling/videos", body, UNLIMITED)
        assert isinstance(reserved, Reserved)
        await journal.submitted(reserved.record.entry_id, f"submitted-{index}", f"trace-{index}")

    waiting = [f"waiting-{number}" for number in range(WAITING)]
    for task_id in waiting:
        reserved = await journal.reserve(
            "kling_generate_video", "/kling/videos", {"prompt": task_id}, UNLIMITED
        )
        assert isinstance(reserved, Reserved)
        await journal.submitted(reserved.record.entry_id, task_id, None)

    def tick(upstream_state: str) -> list[StatusUpdate]:
        return [StatusUpdate(task_id, "running", upstream_state) for task_id in waiting]

    unchanged = tick("processing")
    await journal.record_statuses(unchanged)
    alternating = (tick("queued"), tick("processing"))

    async def claim(index: int) -> None:
        # Each claim finds the other replica's leases expired, as after that replica died.
        await journal.claim_unfinished(
            owner="", holder=f"replica-{index % 2}", lease_seconds=-1.0, limit=WAITING
        )

    submission = await timed(submit, rounds)
    quiet = await timed(lambda _: journal.record_statuses(unchanged), rounds)
    busy = await timed(lambda index: journal.record_statuses(alternating[index % 2]), rounds)
    claims = await timed(claim, rounds)
    return [
        Figure(f"{backend}: one submission (reserve + submitted)", *submission),
        Figure(f"{backend}: poll tick, {WAITING} waiting, none changed", *quiet, target),
        Figure(f"{backend}: poll tick, {WAITING} waiting, all changed", *busy, target),
        Figure(f"{backend}: claim of {WAITING} unfinished tasks", *claims),
    ]


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str | None]:
    """The URL of an empty database on a throwaway cluster, or None when PostgreSQL is not installed."""
    sys.path.insert(0, str(REPOSITORY))  # tests/postgres.py starts the cluster
    from tests.postgres import PostgresCluster, PostgresMissingError

    try:
        cluster = PostgresCluster.start(durable=True)
    except PostgresMissingError:
        yield None
        return
    try:
        yield cluster.create_database()
    finally:
        cluster.stop()


@contextlib.asynccontextmanager
async def opened(data_dir: Path, database_url: str | None) -> AsyncIterator[TaskJournal]:
    journal = await open_journal(data_dir, database_url)
    try:
        yield journal
    finally:
        await journal.aclose()


async def measure_all(data_dir: Path, database_url: str | None, rounds: int) -> list[Figure]:
    async with opened(data_dir, None) as journal:
        figures = await measure(journal, "SQLite", rounds)
    if database_url is not None:
        async with opened(data_dir, database_url) as journal:
            figures += await measure(journal, "PostgreSQL", rounds)
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    cli.add_argument("--rounds", type=int, default=500, help="measured calls of each kind (default 500)")
    cli.add_argument("--database-url", help="a PostgreSQL database to measure (default: a throwaway cluster)")
    args = cli.parse_args(argv)
    with contextlib.ExitStack() as stack:
        data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="kling-mcp-journal-bench-"))
        database_url = args.database_url or stack.enter_context(throwaway_postgres())
        figures = anyio.run(measure_all, Path(data_dir), database_url, max(10, args.rounds))
    failed = [figure.metric for figure in figures if figure.passed is False]
    print(markdown_table(figures, HEADER))
    if database_url is None:
        print("\nPostgreSQL not measured: install Debian's postgresql package, or pass --database-url.")
    print(f"\n{len(failed)} target(s) missed{': ' + '; '.join(failed) if failed else ''}")


if __name__ == "__main__":
    main()
