"""Which HTTP stack the API client should run on: httpx (today's) or httpx2 (which the MCP SDK brings).

Run from the repository root with the development virtualenv (not part of the test suite):

    .venv/bin/python benchmarks/http_stack.py               # about 1 minute
    .venv/bin/python benchmarks/http_stack.py --rounds 3    # a quick look

The API emulator runs as its own process (`kling-mcp emulator`) on loopback. Each round starts one
client process per stack, in turn; each first imports what a running kling-mcp server has already
imported (the MCP SDK, which loads most of httpx2), then measures our own client, `KlingClient`, as
the server uses it. On httpx2 it runs unchanged through `httpx2.alias_httpx()` (`import httpx`
resolves to httpx2), so both stacks run exactly the same code. Measured, medians over the rounds:

1. First use: from nothing loaded to a client ready to send (`HttpPool.client()`: the import and
   the connection pool with its TLS context), wall and CPU time, and the resident memory it adds.
2. A `kling_get_task` round trip (`KlingClient.retrieve` of a running task) on a warm connection,
   median of `--samples` in each process.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TOKEN = "benchmark-token"
STACKS = ("httpx", "httpx2")
EMULATOR_READY_TIMEOUT = 30.0
BYTECODE_DIR = Path(__file__).resolve().parent / "__pycache__" / "bytecode"


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def child(stack: str, base_url: str, samples: int) -> dict[str, float]:
    """One client process: first use of the stack, then `samples` round trips; the figures as a dict."""
    import mcp.server.mcpserver
    import mcp.server.stdio  # noqa: F401  (what a running server has imported)

    if stack == "httpx2":
        import httpx2

        httpx2.alias_httpx()
    rss_before, cpu_before, started = rss_kib(), time.process_time(), time.perf_counter()
    from kling_mcp.api.client import HttpPool, KlingClient

    pool = HttpPool()
    pool.client()
    first_use_ms = (time.perf_counter() - started) * 1000
    first_use_cpu_ms = (time.process_time() - cpu_before) * 1000
    first_use_kib = rss_kib() - rss_before
    if stack == "httpx2":
        import httpx

        assert httpx.__name__ == "httpx2", "the alias did not take"

    import anyio

    from kling_mcp.settings import Settings

    async def round_trips() -> list[float]:
        client = KlingClient(Settings(api_token=TOKEN, api_base_url=base_url), pool)
        deadline = anyio.current_time() + 60
        task = await client.submit(
            "/kling/videos", {"action": "text2video", "prompt": "a cat", "async": True}, deadline=deadline
        )
        times = []
        for _ in range(samples + 1):
            begun = time.perf_counter()
            await client.retrieve(task.task_id, deadline=deadline)
            times.append((time.perf_counter() - begun) * 1000)
        await pool.aclose()
        return times[1:]  # the first opens the connection

    times = anyio.run(round_trips)
    return {
        "first_use_ms": first_use_ms,
        "first_use_cpu_ms": first_use_cpu_ms,
        "first_use_kib": first_use_kib,
        "get_task_ms": statistics.median(times),
    }


@contextmanager
def emulator() -> Iterator[str]:
    """`kling-mcp emulator` on a free loopback port, until the block ends; yields its base URL."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kling_mcp",
            "emulator",
            "--port",
            "0",
            "--token",
            TOKEN,
            "--task-seconds",
            "600",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + EMULATOR_READY_TIMEOUT
        while time.monotonic() < deadline:
            found = re.search(r"emulator on (http://\S+):", process.stderr.readline())
            if found:
                yield found.group(1)
                return
        raise RuntimeError("the emulator did not start")
    finally:
        process.terminate()
        process.wait(timeout=10)


def run_child(stack: str, base_url: str, samples: int) -> dict[str, float]:
    """A client process; its bytecode is kept (as an installed package's is) where run.py keeps it."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(BYTECODE_DIR)
    argv = [sys.executable, __file__, "--child", stack, "--base-url", base_url, "--samples", str(samples)]
    answer = subprocess.run(argv, env=env, capture_output=True, text=True, check=True, timeout=120)
    result: dict[str, float] = json.loads(answer.stdout)
    return result


def report(results: dict[str, list[dict[str, float]]]) -> str:
    def middle(stack: str, measure: str) -> float:
        return statistics.median(sample[measure] for sample in results[stack])

    rows = [
        ("First use: import and pool, wall", "first_use_ms", "ms", 0),
        ("First use: import and pool, CPU", "first_use_cpu_ms", "ms", 0),
        ("First use: resident memory added", "first_use_kib", "MiB", 1),
        ("`kling_get_task` round trip (KlingClient.retrieve)", "get_task_ms", "ms", 2),
    ]
    lines = ["| Measure | httpx | httpx2 | httpx2 / httpx |", "|---|---|---|---|"]
    for label, measure, unit, digits in rows:
        old, new = middle("httpx", measure), middle("httpx2", measure)
        scale = 1024 if unit == "MiB" else 1
        cells = [
            label,
            f"{old / scale:.{digits}f} {unit}",
            f"{new / scale:.{digits}f} {unit}",
            f"x{new / old:.2f}",
        ]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    cli.add_argument("--rounds", type=int, default=11, help="client processes per stack (default 11)")
    cli.add_argument("--samples", type=int, default=200, help="round trips per process (default 200)")
    cli.add_argument("--child", choices=STACKS, help=argparse.SUPPRESS)
    cli.add_argument("--base-url", help=argparse.SUPPRESS)
    args = cli.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.base_url, args.samples)))
        return
    load_before = os.getloadavg()[0]
    results: dict[str, list[dict[str, Any]]] = {stack: [] for stack in STACKS}
    with emulator() as base_url:
        for stack in STACKS:  # warm-up: bytecode
            run_child(stack, base_url, 1)
        for index in range(args.rounds):
            for stack in STACKS if index % 2 == 0 else reversed(STACKS):
                results[stack].append(run_child(stack, base_url, args.samples))
            print(f"round {index + 1}/{args.rounds}", file=sys.stderr, flush=True)
    print(report(results))
    print(
        f"\n{args.rounds} rounds of {args.samples} round trips (load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after, {os.cpu_count()} CPUs)"
    )


if __name__ == "__main__":
    main()
