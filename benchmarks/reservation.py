"""Benchmark of the reservation that admits a paid task: what it costs, and how it behaves when 50
calls arrive at once, on SQLite and PostgreSQL.

Run from the repository root with the development virtualenv (not part of the test suite):

    .venv/bin/python benchmarks/reservation.py             # 300 rounds, 5 bursts, both backends
    .venv/bin/python benchmarks/reservation.py --rounds 1000 --bursts 10

A reservation is one transaction per owner (journal.py): the running identical task, the paid
tasks of the last day, the running tasks and, when all allow it, the new row. What is measured:

1. One reservation alone, medians over `--rounds`, with the owner's last day already holding
   100 paid tasks (the rows each reservation reads).
2. A burst: 50 reservations of distinct bodies sent at once through two journals on one
   database (two processes, or two replicas), with a daily limit of 25, so 25 are admitted and
   25 refused. Per burst: the time each call waited for its answer, admitted and refused
   apart (medians over the bursts of the per-burst median and maximum), and the whole burst.
   Every burst checks that exactly 25 were admitted, none twice.

The SQLite journal is a real file in a temporary directory; PostgreSQL a throwaway cluster on a
loopback port (tests/postgres.py, Debian's postgresql package), else skipped with a note.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
from journal import Figure, opened, throwaway_postgres
from run import markdown_table

from kling_mcp.tasks.journal import Limits, OverLimit, Reserved, TaskJournal

TOOL, ENDPOINT = "kling_generate_video", "/kling/videos"
BURST = 50
ADMITTED = 25
HISTORY = 100
HEADER = ["Metric", "Median", "Max / 90th percentile", "Target", "Result"]


async def one_reservation(journal: TaskJournal, label: str, rounds: int) -> Figure:
    history = Limits(daily=10**9, concurrent=10**9, duplicate_window=600)
    for number in range(HISTORY):
        await journal.reserve(TOOL, ENDPOINT, {"prompt": f"history {number}"}, history, owner="bench")
    samples = []
    for number in range(rounds):
        started = time.perf_counter()
        await journal.reserve(TOOL, ENDPOINT, {"prompt": f"one {number}"}, history, owner="bench")
        samples.append((time.perf_counter() - started) * 1000)
    return Figure(f"{label}: one reservation", statistics.median(samples), _p90(samples))


@dataclass(frozen=True)
class Burst:
    """How long each admitted and each refused call of one burst waited, and the whole burst (ms)."""

    admitted: list[float]
    refused: list[float]
    whole: float


async def burst(journals: Sequence[TaskJournal], owner: str) -> Burst:
    """50 reservations at once, through the journals in turn."""
    limits = Limits(daily=ADMITTED, concurrent=BURST, duplicate_window=600)
    admitted: list[float] = []
    refused: list[float] = []
    started = time.perf_counter()

    async def reserve(number: int) -> None:
        body = {"prompt": f"burst {number}"}
        outcome = await journals[number % len(journals)].reserve(TOOL, ENDPOINT, body, limits, owner=owner)
        waited = (time.perf_counter() - started) * 1000
        if isinstance(outcome, Reserved):
            admitted.append(waited)
        else:
            assert isinstance(outcome, OverLimit), outcome
            refused.append(waited)

    async with anyio.create_task_group() as group:
        for number in range(BURST):
            group.start_soon(reserve, number)
    assert len(admitted) == ADMITTED, f"{len(admitted)} admitted, the limit is {ADMITTED}"
    return Burst(admitted, refused, (time.perf_counter() - started) * 1000)


async def bursts(journals: Sequence[TaskJournal], label: str, count: int) -> list[Figure]:
    runs = [await burst(journals, owner=f"burst-{number}") for number in range(count)]

    def figure(what: str, waits: list[list[float]]) -> Figure:
        medians, worst = [statistics.median(each) for each in waits], [max(each) for each in waits]
        return Figure(
            f"{label}: burst of {BURST}, {what}", statistics.median(medians), statistics.median(worst)
        )

    whole = [run.whole for run in runs]
    return [
        figure(f"time to admit ({ADMITTED})", [run.admitted for run in runs]),
        figure(f"time to refuse ({BURST - ADMITTED})", [run.refused for run in runs]),
        Figure(f"{label}: burst of {BURST}, all answered", statistics.median(whole), max(whole)),
    ]


async def measure(
    data_dir: Path, database_url: str | None, label: str, rounds: int, count: int
) -> list[Figure]:
    async with opened(data_dir, database_url) as first, opened(data_dir, database_url) as second:
        return [await one_reservation(first, label, rounds), *await bursts((first, second), label, count)]


async def measure_all(data_dir: Path, database_url: str | None, rounds: int, count: int) -> list[Figure]:
    figures = await measure(data_dir / "sqlite", None, "SQLite", rounds, count)
    if database_url is not None:
        figures += await measure(data_dir / "pg", database_url, "PostgreSQL", rounds, count)
    return figures


def _p90(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=10)[-1]


def main(argv: Sequence[str] | None = None) -> None:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    cli.add_argument("--rounds", type=int, default=300, help="single reservations timed (default 300)")
    cli.add_argument("--bursts", type=int, default=5, help="bursts of 50 timed (default 5)")
    args = cli.parse_args(argv)
    with contextlib.ExitStack() as stack:
        data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="kling-mcp-reservation-bench-"))
        database_url = stack.enter_context(throwaway_postgres())
        figures = anyio.run(
            measure_all, Path(data_dir), database_url, max(10, args.rounds), max(1, args.bursts)
        )
    print(markdown_table(figures, HEADER))
    if database_url is None:
        print("\nPostgreSQL not measured: install Debian's postgresql package.", file=sys.stderr)


if __name__ == "__main__":
    main()
