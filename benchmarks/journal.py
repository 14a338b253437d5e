"""Benchmark of the task journal: what recording submissions and poll ticks costs.

Run from the repository root with the development virtualenv (not part of the test suite):

    .venv/bin/python benchmarks/journal.py              # 500 rounds of each
    .venv/bin/python benchmarks/journal.py --rounds 2000

The journal is a real SQLite file in a temporary directory (WAL, synchronous=NORMAL, as the
server opens it), driven from an asyncio event loop as the server does: each call includes
the hop to the journal's worker thread and back. What is measured, medians over `--rounds`:

1. One submission: `begin` (before sending) and `submitted` (the API's answer), two commits.
2. One poll tick while 50 tasks wait and none changed: `record_statuses` with 50 updates
   that match what is stored, so no row is rewritten (the common tick).
3. One poll tick where all 50 changed (each tick alternates their upstream state).

Target: the journal adds at most 1 ms to a tick with 50 waiting tasks, changed or not.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from kling_mcp.journal import Journal, StatusUpdate

WAITING = 50
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


async def measure(data_dir: Path, rounds: int) -> list[Figure]:
    journal = await Journal.open(data_dir)
    try:

        async def submit(index: int) -> None:
            record = await journal.begin(
                "kling_generate_video", "/kling/videos", {"prompt": f"benchmark {index}", "duration": 5}
            )
            await journal.submitted(record.entry_id, f"submitted-{index}", f"trace-{index}")

        waiting = [f"waiting-{number}" for number in range(WAITING)]
        for task_id in waiting:
            record = await journal.begin("kling_generate_video", "/kling/videos", {"prompt": task_id})
            await journal.submitted(record.entry_id, task_id, None)

        def tick(upstream_state: str) -> list[StatusUpdate]:
            return [StatusUpdate(task_id, "running", upstream_state) for task_id in waiting]

        unchanged = tick("processing")
        await journal.record_statuses(unchanged)
        alternating = (tick("queued"), tick("processing"))

        submission = await timed(submit, rounds)
        quiet = await timed(lambda _: journal.record_statuses(unchanged), rounds)
        busy = await timed(lambda index: journal.record_statuses(alternating[index % 2]), rounds)
    finally:
        await journal.aclose()
    return [
        Figure("One submission (begin + submitted)", *submission),
        Figure(f"Poll tick, {WAITING} waiting, none changed", *quiet, TARGET_TICK_MS),
        Figure(f"Poll tick, {WAITING} waiting, all changed", *busy, TARGET_TICK_MS),
    ]


def markdown_table(figures: Sequence[Figure]) -> str:
    lines = [figure.cells() for figure in figures]
    widths = [max(len(cells[i]) for cells in [HEADER, *lines]) for i in range(len(HEADER))]

    def render(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) + " |"

    separator = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([render(HEADER), separator, *(render(cells) for cells in lines)])


def main(argv: Sequence[str] | None = None) -> None:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    cli.add_argument("--rounds", type=int, default=500, help="measured calls of each kind (default 500)")
    args = cli.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kling-mcp-journal-bench-") as data_dir:
        figures = anyio.run(measure, Path(data_dir), max(10, args.rounds))
    failed = [figure.metric for figure in figures if figure.passed is False]
    print(markdown_table(figures))
    print(f"\n{len(failed)} target(s) missed{': ' + '; '.join(failed) if failed else ''}")


if __name__ == "__main__":
    main()
