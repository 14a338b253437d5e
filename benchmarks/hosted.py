"""Benchmarks for hosted kling-mcp: request throughput over HTTP, and memory per waiting call.

Run from the repository root with the development virtualenv (not part of the test suite):

    .venv/bin/python benchmarks/hosted.py            # full run, about a minute
    .venv/bin/python benchmarks/hosted.py --quick    # smoke run

One replica (`python -m kling_mcp --transport http`, SQLite journal, default settings apart
from the API's address and limits no run reaches) against the in-process emulator on
loopback; the users are MCP sessions over the SDK's streamable HTTP client, each request with
its own `Authorization: Bearer` header, as tests/hosted.py starts them. What is measured:

1. Requests per second: `kling_get_task` with `timeout: 0` for a finished task (one API
   lookup and one journal read each, through the token gate), by N concurrent clients, each
   a session of its own calling back to back for a fixed window; the median of a few windows.
2. Memory: VmRSS of the replica once idle (after a warm-up call), and while 100 generation
   calls wait at once (long tasks; measured once every one holds its task's lease); the
   difference is the cost of 100 waiting calls. The replica is then stopped with SIGTERM,
   which answers every waiting call with its task id.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import anyio
from mcp import Client
from run import Row, markdown_table, median, rss_mib

from kling_mcp.emulator import Emulator, serve_emulator
from kling_mcp.tasks.sqlite import JOURNAL_FILE

sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # the repository root, for tests.hosted
from tests.hosted import Replica, call, hosted_env, replica, session, structured

TOKEN = "benchmark-token"
WAITING_CALLS = 100
WAIT_LIMIT = 60.0
"""Seconds the waiting calls may take to be submitted and lease their tasks."""


@dataclass(frozen=True)
class Plan:
    clients: tuple[int, ...]
    window: float
    windows: int


FULL = Plan(clients=(1, 10, 50), window=3.0, windows=5)
QUICK = Plan(clients=(1, 10), window=1.0, windows=3)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def calls_per_second(running: Replica, task_id: str, clients: int, window: float) -> float:
    """How many `kling_get_task` calls `clients` concurrent sessions complete per second."""
    done = 0
    ready = anyio.Event()

    async def client_loop(client: Client) -> None:
        nonlocal done
        await ready.wait()
        end = anyio.current_time() + window
        while anyio.current_time() < end:
            await call(client, "kling_get_task", {"task_id": task_id, "timeout": 0})
            done += 1

    async with anyio.create_task_group() as group:
        sessions = []
        for _ in range(clients):
            sessions.append(await group_session(group, running))
        started = time.perf_counter()
        async with anyio.create_task_group() as loops:
            for client in sessions:
                loops.start_soon(client_loop, client)
            ready.set()
        elapsed = time.perf_counter() - started
        group.cancel_scope.cancel()
    return done / elapsed


async def group_session(group: anyio.abc.TaskGroup, running: Replica) -> Client:
    """A session kept open in `group` until the group is cancelled."""
    opened: list[Client] = []
    is_open = anyio.Event()

    async def hold() -> None:
        async with session(running, TOKEN) as client:
            opened.append(client)
            is_open.set()
            await anyio.sleep_forever()

    group.start_soon(hold)
    await is_open.wait()
    return opened[0]


def held_leases(journal: Path) -> int:
    with closing(sqlite3.connect(journal)) as db:
        return int(db.execute("SELECT count(*) FROM tasks WHERE holder IS NOT NULL").fetchone()[0])


async def waiting_memory(running: Replica, emulator: Emulator, journal: Path) -> tuple[float, float]:
    """The replica's RSS idle and with WAITING_CALLS calls waiting, in MiB; then SIGTERM answers them."""
    idle = rss_mib(running.pid)
    emulator.task_seconds = 600
    answered: list[str] = []
    async with session(running, TOKEN) as client:

        async def generate(number: int) -> None:
            arguments = {"prompt": f"benchmark river {number}", "timeout": 300}
            answered.append(structured(await call(client, "kling_generate_video", arguments))["state"])

        async with anyio.create_task_group() as group:
            for number in range(WAITING_CALLS):
                group.start_soon(generate, number)
            with anyio.fail_after(WAIT_LIMIT):
                while held_leases(journal) < WAITING_CALLS:  # noqa: ASYNC110 (another process writes it)
                    await anyio.sleep(0.1)
            waiting = rss_mib(running.pid)
            await running.stop()
    if answered != ["running"] * WAITING_CALLS:
        raise RuntimeError(f"SIGTERM answered {len(answered)} of {WAITING_CALLS} waiting calls: {answered}")
    return idle, waiting


async def measure(plan: Plan, workdir: Path) -> list[Row]:
    emulator = Emulator(token=None, task_seconds=0.2)
    async with serve_emulator(emulator) as base_url:
        env = hosted_env(base_url, workdir)
        async with replica(env, workdir) as running:
            async with session(running, TOKEN) as client:
                made = await call(
                    client, "kling_generate_video", {"prompt": "benchmark video", "timeout": 15}
                )
            task_id = structured(made)["task_id"]
            rows = []
            for clients in plan.clients:
                rates = [
                    await calls_per_second(running, task_id, clients, plan.window)
                    for _ in range(plan.windows)
                ]
                log(f"{clients} client(s): {', '.join(f'{rate:.0f}' for rate in rates)} calls/s")
                rows.append(
                    Row(f"kling_get_task (timeout 0) calls/s, {clients} client(s)", f"{median(rates):.0f}")
                )
            idle, waiting = await waiting_memory(running, emulator, workdir / "data" / JOURNAL_FILE)
    rows += [
        Row("Replica RSS, idle", f"{idle:.1f} MiB"),
        Row(f"Replica RSS, {WAITING_CALLS} calls waiting", f"{waiting:.1f} MiB"),
        Row(f"RSS per {WAITING_CALLS} waiting calls", f"{waiting - idle:.1f} MiB"),
    ]
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--quick", action="store_true", help="fewer and shorter windows")
    plan = QUICK if cli.parse_args(argv).quick else FULL
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kling-mcp-hosted-bench-") as workdir:
        rows = anyio.run(measure, plan, Path(workdir))
    print(markdown_table(rows))
    print(f"\nrun in {time.perf_counter() - started:.0f} s on {len(plan.clients)} client counts")


if __name__ == "__main__":
    main()
