"""Benchmarks for kling-mcp: start-up, round trips, detection lag, API request rate and memory.

Run from the repository root with the development virtualenv (not part of the test suite):

    .venv/bin/python benchmarks/run.py              # full run, about 2-3 minutes
    .venv/bin/python benchmarks/run.py --quick      # smoke run, about 40 s
    .venv/bin/python benchmarks/run.py --repeats 25 # more cold starts
    .venv/bin/python benchmarks/run.py --cold-start # cold starts only (1), about 1 s a spawn

Nothing leaves the machine: the API is the in-process emulator (`kling_mcp.emulator`) on a
loopback port, and servers run in a temporary working directory so no `.env` is read.
Every server setting is its default (poll interval 1 s included) except the API token and
base URL. Servers keep their bytecode under benchmarks/__pycache__/bytecode
(PYTHONPYCACHEPREFIX; git-ignored, filled by a warm-up start, slow only on the first run),
so both start as an installed package does whatever PYTHONDONTWRITEBYTECODE says, and
nothing is written to the source tree. What is measured, and how:

1. Cold start: wall time from spawning the server to reading its answer to `initialize`
   and to its first `tools/list` answer (what a client waits for before it can offer a tool;
   kling-mcp builds its tools then), over raw pipes (one JSON line out, one in) so no client
   library adds to it; for `python -m kling_mcp` and for `benchmarks/bare_server.py` (an
   MCPServer with no tools on the same SDK), in rounds of one spawn of each (alternating
   which goes first), median (and minimum) of `--repeats` rounds. The difference is what our
   own code costs; it is also given as the median of each round's own difference, which
   load that comes and goes disturbs less. Other load on the machine inflates wall times:
   see the load average printed at the end. So the CPU time each server had used when it
   answered `tools/list` (/proc/<pid>/task/*/schedstat) is given too: the work itself.
2. Memory after start: VmRSS (/proc/<pid>/status) of the same processes once they have
   answered `initialize` and `tools/list`; and of a working server after 50 concurrent
   generations have completed.
3. Round trips on a warm session through the SDK client (`mcp.Client`, legacy handshake):
   `ping` (the transport's floor), `tools/list` and `kling_get_task` with `timeout: 0` for
   a finished task; medians.
4. Detection lag: from the moment the emulator finishes a task (`EmulatedTask.finishes_at`,
   wall clock) to the moment the generation tool's result reaches the client; for
   sequential generations and for batches of 10 and 50 concurrent ones; medians. Real
   tasks end at any point of the 1 s poll cycle, emulated ones after a fixed time: so that
   the fixed time does not lock every task to the same point of the cycle (back to back,
   always just after a poll: a 1.0 s lag each time), sequential tasks last
   `task seconds + (i + 0.5) / n` and a concurrent batch is submitted spread over 1 s.
5. API request rate: `/kling/tasks` requests per second seen by the emulator while 1, 10 and
   50 generations wait at once (long tasks; the window opens once all are submitted; the
   calls are then cancelled and the server must fall quiet).

Targets: our code adds at most 60 ms to cold start (to `initialize` and to the first
`tools/list`) and 15 MiB to memory over the bare SDK server; median detection lag under 1 s;
at most about one request per second (<= 1.2/s) however many generations wait.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.types import Tool

from kling_mcp.emulator import Emulator, serve_emulator

BARE_SERVER = Path(__file__).resolve().parent / "bare_server.py"
BYTECODE_DIR = Path(__file__).resolve().parent / "__pycache__" / "bytecode"
KLING_ARGV = (sys.executable, "-m", "kling_mcp")
BARE_ARGV = (sys.executable, str(BARE_SERVER))
TOKEN = "benchmark-token"
TASKS_PATH = "/kling/tasks"
PROTOCOL_VERSION = "2025-11-25"

RAW_READ_TIMEOUT = 30.0
"""Seconds a raw-pipe server may take to answer one request."""
CALL_TIMEOUT = 120.0
"""Seconds any single MCP request may take before the benchmark gives up."""
SUBMIT_TIMEOUT = 30.0
"""Seconds a batch of generations may take to reach the emulator."""
QUIET_SECONDS = 1.3
"""A gap without task queries this long means nothing waits any more (the poll interval is 1 s)."""
QUIET_LIMIT = 10.0

TARGET_START_MS = 60.0
TARGET_RSS_MIB = 15.0
TARGET_LAG_S = 1.0
TARGET_RATE = 1.2
TARGET_DEFINITION_KB = 2.5
TARGET_KB_PER_TOOL = 2.6
"""The budget of `tools/list` in all: this much per tool (issue 21), new tools included."""

_T0 = time.perf_counter()


class BenchmarkError(RuntimeError):
    """Something the benchmark needs did not happen; the message says what."""


@dataclass(frozen=True)
class Plan:
    cold_starts: int
    round_trips: int
    lag_task_seconds: float
    sequential: int
    small_batch: int
    memory_batch: int
    rate_levels: tuple[int, ...]
    rate_task_seconds: float
    rate_window: float


FULL = Plan(15, 50, 3.0, 8, 10, 50, (1, 10, 50), 20.0, 8.0)
QUICK = Plan(3, 20, 2.0, 3, 10, 50, (1, 10, 50), 20.0, 3.0)
POLL_CYCLE = 1.0
"""The server's default poll interval, over which task ends and batch submissions are spread."""


def log(message: str) -> None:
    print(f"[{time.perf_counter() - _T0:6.1f} s] {message}", file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def server_env(cwd: str, **extra: str) -> dict[str, str]:
    """This environment without any kling-mcp or AceDataCloud setting, bytecode kept, plus `extra`.

    The journal and the saved videos go under `cwd`, and the budget is out of the way of the
    50 concurrent generations measured here.
    """
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ACEDATACLOUD_", "KLING_"))
        and key not in ("LOG_LEVEL", "PYTHONDONTWRITEBYTECODE")
    }
    kling = {
        "KLING_DATA_DIR": os.path.join(cwd, "data"),
        "KLING_OUTPUT_DIR": os.path.join(cwd, "videos"),
        "KLING_DAILY_TASK_LIMIT": "100000",
        "KLING_MAX_CONCURRENT_TASKS": "1000",
    }
    return {**clean, **kling, "PYTHONPYCACHEPREFIX": str(BYTECODE_DIR), **extra}


def cpu_ms(pid: int) -> float:
    """CPU time `pid` has used so far (its threads' time on a CPU, /proc/<pid>/task/*/schedstat)."""
    return (
        sum(int((task / "schedstat").read_text().split()[0]) for task in Path(f"/proc/{pid}/task").iterdir())
        / 1e6
    )


def rss_mib(pid: int) -> float:
    """Resident memory of `pid` in MiB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchmarkError(f"no VmRSS for process {pid}")


def child_pids(marker: bytes) -> list[int]:
    """Our child processes whose command line contains `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if f"\nPPid:\t{os.getpid()}\n" in status and marker in cmdline:
            found.append(int(entry.name))
    return found


# --- 1 and 2: cold start and memory after start, over raw pipes ----------------------------


class RawServer:
    """A stdio MCP server spoken to in raw JSON-RPC lines; every read has a deadline."""

    def __init__(self, argv: Sequence[str], cwd: str) -> None:
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=server_env(cwd),
            cwd=cwd,
        )
        self._buffer = b""

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        self.process.stdin.flush()

    def request(self, request_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        deadline = time.monotonic() + RAW_READ_TIMEOUT
        while True:
            message: dict[str, Any] = json.loads(self._read_line(deadline))
            if message.get("id") == request_id:
                if "result" not in message:
                    raise BenchmarkError(f"{method} failed: {message}")
                return message

    def _read_line(self, deadline: float) -> bytes:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchmarkError("the server did not answer in time")
            if select.select([fd], [], [], remaining)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise BenchmarkError(f"the server exited (code {self.process.poll()})")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()


@dataclass(frozen=True)
class StartSample:
    start_ms: float
    tools_ms: float
    """From spawn to the first `tools/list` answer: kling-mcp builds its tools on first use."""
    tools_cpu_ms: float
    """The server's CPU time when it had answered `tools/list`."""
    rss_mib: float


def cold_start(argv: Sequence[str], cwd: str) -> StartSample:
    """Spawn, time the `initialize` answer, then list tools and read the resident memory."""
    initialize = {
        "protocolVersion": PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "kling-mcp-benchmark", "version": "0"},
    }
    started = time.perf_counter()
    server = RawServer(argv, cwd)
    try:
        server.request(1, "initialize", initialize)
        elapsed_ms = (time.perf_counter() - started) * 1000
        server.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        server.request(2, "tools/list", {})
        tools_ms = (time.perf_counter() - started) * 1000
        pid = server.process.pid
        return StartSample(elapsed_ms, tools_ms, cpu_ms(pid), rss_mib(pid))
    finally:
        server.close()


@dataclass
class ColdStarts:
    samples: dict[str, list[StartSample]] = field(default_factory=lambda: {"kling": [], "bare": []})
    """The i-th sample of each server comes from the same round."""

    def median_of(self, which: str, measure: Callable[[StartSample], float]) -> float:
        return median([measure(sample) for sample in self.samples[which]])

    def fastest_of(self, which: str, measure: Callable[[StartSample], float]) -> float:
        return min(measure(sample) for sample in self.samples[which])

    def round_difference(self, measure: Callable[[StartSample], float]) -> float:
        """The median over rounds of kling-mcp's `measure` minus the bare server's in that round."""
        pairs = zip(self.samples["kling"], self.samples["bare"], strict=True)
        return median([measure(kling) - measure(bare) for kling, bare in pairs])


def measure_cold_starts(repeats: int, cwd: str) -> ColdStarts:
    """Interleaved spawns of both servers (alternating which goes first), after one warm-up each."""
    log("warm-up starts (the first run compiles bytecode; kling-mcp keeps its tools' schemas)")
    cold_start(KLING_ARGV, cwd)
    cold_start(BARE_ARGV, cwd)
    results = ColdStarts()
    for index in range(repeats):
        order = [(KLING_ARGV, results.samples["kling"]), (BARE_ARGV, results.samples["bare"])]
        for argv, samples in order if index % 2 == 0 else reversed(order):
            samples.append(cold_start(argv, cwd))
        log(f"cold start {index + 1}/{repeats}")
    return results


# --- 3 to 5: a warm session through the SDK client ---------------------------------------


@dataclass
class Session:
    client: Client
    emulator: Emulator
    pid: int
    finished_task: str | None = None


@dataclass(frozen=True)
class Rate:
    per_second: float
    requests: int
    seconds: float
    all_waiting: bool
    quiet_after_cancel: bool


@dataclass
class SessionResults:
    rss_start: float = 0.0
    rss_after_batch: float = 0.0
    ping_ms: float = 0.0
    list_ms: float = 0.0
    get_task_ms: float = 0.0
    lags: dict[str, list[float]] = field(default_factory=dict)
    rates: dict[int, Rate] = field(default_factory=dict)
    definition_bytes: list[int] = field(default_factory=list)
    """The compact JSON size of each tool definition in `tools/list`."""


@asynccontextmanager
async def kling_session(cwd: str, errlog: TextIO) -> AsyncIterator[Session]:
    """The emulator on loopback and `kling-mcp` over stdio, pointed at it, with default settings."""
    emulator = Emulator(token=TOKEN)
    async with serve_emulator(emulator) as base_url:
        params = StdioServerParameters(
            command=KLING_ARGV[0],
            args=list(KLING_ARGV[1:]),
            env=server_env(cwd, ACEDATACLOUD_API_TOKEN=TOKEN, ACEDATACLOUD_API_BASE_URL=base_url),
            cwd=cwd,
        )
        transport = stdio_client(params, errlog=errlog)
        async with Client(transport, mode="legacy", cache=None, read_timeout_seconds=CALL_TIMEOUT) as client:
            pids = child_pids(b"kling_mcp")
            if len(pids) != 1:
                raise BenchmarkError(f"expected one kling-mcp child process, found {pids}")
            yield Session(client, emulator, pids[0])


async def generation_lag(session: Session, label: str, wait_seconds: float) -> tuple[str, float]:
    """Generate one video; return its task id and the seconds from its end to the result's arrival."""
    result = await session.client.call_tool(
        "kling_generate_video", {"prompt": f"benchmark {label}", "timeout": wait_seconds}
    )
    received = time.time()
    task = result.structured_content or {}
    if result.is_error or task.get("state") != "succeeded":
        raise BenchmarkError(f"generation {label} did not succeed: {result.content}")
    task_id = str(task["task_id"])
    return task_id, received - session.emulator.tasks[task_id].finishes_at


async def concurrent_lags(session: Session, count: int, task_seconds: float) -> list[float]:
    session.emulator.task_seconds = task_seconds
    lags: list[float] = []

    async def one(index: int) -> None:
        await anyio.sleep(POLL_CYCLE * index / count)
        task_id, lag = await generation_lag(session, f"batch-{count}-{index}", task_seconds + 30)
        session.finished_task = task_id
        lags.append(lag)

    with anyio.fail_after(task_seconds + POLL_CYCLE + 60):
        async with anyio.create_task_group() as group:
            for index in range(count):
                group.start_soon(one, index)
    log(f"{count} concurrent generations: median lag {median(lags):.2f} s")
    return lags


async def sequential_lags(session: Session, count: int, task_seconds: float) -> list[float]:
    lags = []
    for index in range(count):
        session.emulator.task_seconds = task_seconds + POLL_CYCLE * (index + 0.5) / count
        with anyio.fail_after(task_seconds + POLL_CYCLE + 60):
            lags.append((await generation_lag(session, f"sequential-{index}", task_seconds + 30))[1])
    log(f"{count} sequential generations: median lag {median(lags):.2f} s")
    return lags


async def round_trip_ms(call: Callable[[], Awaitable[object]], count: int) -> float:
    """Median milliseconds of `count` calls, after three unmeasured ones."""
    samples = []
    for index in range(count + 3):
        started = time.perf_counter()
        with anyio.fail_after(CALL_TIMEOUT):
            await call()
        if index >= 3:
            samples.append((time.perf_counter() - started) * 1000)
    return median(samples)


async def measure_round_trips(session: Session, count: int, results: SessionResults) -> None:
    client, task_id = session.client, session.finished_task

    async def ping() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.send_ping()

    async def get_task() -> None:
        result = await client.call_tool("kling_get_task", {"task_id": task_id, "timeout": 0})
        if result.is_error or (result.structured_content or {}).get("state") != "succeeded":
            raise BenchmarkError(f"kling_get_task did not answer a finished task: {result.content}")

    results.ping_ms = await round_trip_ms(ping, count)
    results.list_ms = await round_trip_ms(lambda: client.list_tools(cache_mode="bypass"), count)
    results.get_task_ms = await round_trip_ms(get_task, count)
    log(f"round trips: ping {results.ping_ms:.1f} ms, tools/list {results.list_ms:.1f} ms")


async def wait_until(condition: Callable[[], bool], limit: float, what: str) -> None:
    """Check `condition` every 10 ms for at most `limit` seconds."""
    for _ in range(int(limit / 0.01)):
        if condition():
            return
        await anyio.sleep(0.01)
    raise BenchmarkError(f"timed out waiting for {what}")


async def request_times(emulator: Emulator, seconds: float) -> list[float]:
    """When task queries reached the emulator during the next `seconds` (sampled every 5 ms)."""
    times: list[float] = []
    seen = emulator.counts[TASKS_PATH]
    end = time.perf_counter() + seconds
    while (now := time.perf_counter()) < end:
        count = emulator.counts[TASKS_PATH]
        times.extend([now] * (count - seen))
        seen = count
        await anyio.sleep(0.005)
    return times


async def falls_quiet(emulator: Emulator) -> bool:
    """Whether task queries stop (a QUIET_SECONDS gap) within QUIET_LIMIT seconds."""
    deadline = time.perf_counter() + QUIET_LIMIT
    while time.perf_counter() < deadline:
        if not await request_times(emulator, QUIET_SECONDS):
            return True
    return False


async def api_rate(session: Session, waiting: int, plan: Plan) -> Rate:
    """Task queries per second while `waiting` generations wait; then cancel them."""
    emulator = session.emulator
    emulator.task_seconds = plan.rate_task_seconds
    submitted_before = len(emulator.tasks)
    returned = 0

    async def wait_for_one(index: int) -> None:
        nonlocal returned
        arguments = {"prompt": f"rate-{waiting}-{index}", "timeout": plan.rate_task_seconds + 10}
        await session.client.call_tool("kling_generate_video", arguments)
        returned += 1

    async with anyio.create_task_group() as group:
        for index in range(waiting):
            group.start_soon(wait_for_one, index)
        await wait_until(
            lambda: len(emulator.tasks) >= submitted_before + waiting, SUBMIT_TIMEOUT, "submissions"
        )
        times = await request_times(emulator, plan.rate_window)
        all_waiting = returned == 0
        group.cancel_scope.cancel()
    quiet = await falls_quiet(emulator)
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    per_second = (len(times) - 1) / span if span > 0 else len(times) / plan.rate_window
    log(f"{waiting} waiting: {per_second:.2f} requests/s ({len(times)} in {plan.rate_window:g} s)")
    return Rate(per_second, len(times), plan.rate_window, all_waiting, quiet)


async def measure_session(plan: Plan, cwd: str, errlog: TextIO) -> SessionResults:
    results = SessionResults()
    async with kling_session(cwd, errlog) as session:
        tools = (await session.client.list_tools()).tools
        results.definition_bytes = [definition_bytes(tool) for tool in tools]
        results.rss_start = rss_mib(session.pid)
        batch = plan.memory_batch
        results.lags[f"{batch} concurrent"] = await concurrent_lags(session, batch, plan.lag_task_seconds)
        await anyio.sleep(0.5)
        results.rss_after_batch = rss_mib(session.pid)
        await measure_round_trips(session, plan.round_trips, results)
        results.lags[f"{plan.sequential} sequential"] = await sequential_lags(
            session, plan.sequential, plan.lag_task_seconds
        )
        results.lags[f"{plan.small_batch} concurrent"] = await concurrent_lags(
            session, plan.small_batch, plan.lag_task_seconds
        )
        for waiting in plan.rate_levels:
            results.rates[waiting] = await api_rate(session, waiting, plan)
    return results


def definition_bytes(tool: Tool) -> int:
    """What one tool definition costs a model's context: its compact JSON, as a client receives it."""
    wire = tool.model_dump(mode="json", by_alias=True, exclude_none=True)
    return len(json.dumps(wire, separators=(",", ":"), ensure_ascii=False).encode())


# --- Report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    metric: str
    value: str
    baseline: str = "-"
    difference: str = "-"
    target: str = "-"
    passed: bool | None = None

    def cells(self) -> list[str]:
        verdict = {True: "PASS", False: "FAIL", None: "-"}[self.passed]
        return [self.metric, self.value, self.baseline, self.difference, self.target, verdict]


HEADER = ["Metric", "kling-mcp", "Baseline", "Difference", "Target", "Result"]


class HasCells(Protocol):
    def cells(self) -> list[str]: ...


def markdown_table(rows: Sequence[HasCells], header: Sequence[str] = HEADER) -> str:
    lines = [row.cells() for row in rows]
    widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]

    def render(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) + " |"

    separator = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([render(header), separator, *(render(cells) for cells in lines)])


def start_row(cold: ColdStarts, metric: str, measure: Callable[[StartSample], float]) -> Row:
    """kling-mcp against the bare server on `measure`, a time in ms, within the start-up target."""
    kling, bare = cold.median_of("kling", measure), cold.median_of("bare", measure)
    return Row(
        metric,
        f"{kling:.0f} ms; {cold.fastest_of('kling', measure):.0f} ms",
        f"{bare:.0f} ms; {cold.fastest_of('bare', measure):.0f} ms bare SDK server",
        f"{kling - bare:+.0f} ms (x{kling / bare:.2f}); rounds {cold.round_difference(measure):+.0f} ms",
        f"<= +{TARGET_START_MS:.0f} ms",
        kling - bare <= TARGET_START_MS,
    )


def start_rows(cold: ColdStarts, repeats: int) -> list[Row]:
    kling_cpu, bare_cpu = (
        cold.median_of(which, lambda sample: sample.tools_cpu_ms) for which in ("kling", "bare")
    )
    kling_rss, bare_rss = (
        cold.median_of(which, lambda sample: sample.rss_mib) for which in ("kling", "bare")
    )
    return [
        start_row(
            cold, f"Spawn to `initialize` answer (median of {repeats}; min)", lambda sample: sample.start_ms
        ),
        start_row(
            cold,
            f"Spawn to first `tools/list` answer (median of {repeats}; min)",
            lambda sample: sample.tools_ms,
        ),
        Row(
            "CPU time used by the first `tools/list` answer",
            f"{kling_cpu:.0f} ms",
            f"{bare_cpu:.0f} ms bare SDK server",
            f"{kling_cpu - bare_cpu:+.0f} ms (x{kling_cpu / bare_cpu:.2f}); "
            f"rounds {cold.round_difference(lambda sample: sample.tools_cpu_ms):+.0f} ms",
        ),
        Row(
            "RSS after start (`initialize` + `tools/list`)",
            f"{kling_rss:.1f} MiB",
            f"{bare_rss:.1f} MiB bare SDK server",
            f"{kling_rss - bare_rss:+.1f} MiB (x{kling_rss / bare_rss:.2f})",
            f"<= +{TARGET_RSS_MIB:.0f} MiB",
            kling_rss - bare_rss <= TARGET_RSS_MIB,
        ),
    ]


def session_rows(results: SessionResults, plan: Plan) -> list[Row]:
    ping = results.ping_ms
    sizes = results.definition_bytes
    rows = [
        Row(
            f"Tool definition, compact JSON (median of {len(sizes)})",
            f"{median(sizes) / 1000:.2f} KB",
            f"max {max(sizes) / 1000:.2f} KB",
            target=f"<= {TARGET_DEFINITION_KB:g} KB",
            passed=median(sizes) <= TARGET_DEFINITION_KB * 1000,
        ),
        Row(
            f"`tools/list`, all {len(sizes)} tools",
            f"{sum(sizes) / 1000:.1f} KB",
            target=f"<= {TARGET_KB_PER_TOOL * len(sizes):g} KB",
            passed=sum(sizes) <= TARGET_KB_PER_TOOL * len(sizes) * 1000,
        ),
        Row(
            f"RSS after {plan.memory_batch} generations completed",
            f"{results.rss_after_batch:.1f} MiB",
            f"{results.rss_start:.1f} MiB same server after start",
            f"{results.rss_after_batch - results.rss_start:+.1f} MiB",
        ),
        Row(f"`ping` round trip (median of {plan.round_trips})", f"{ping:.2f} ms"),
        Row(
            f"`tools/list` round trip (median of {plan.round_trips})",
            f"{results.list_ms:.2f} ms",
            f"{ping:.2f} ms ping",
            f"x{results.list_ms / ping:.1f}",
        ),
        Row(
            f"`kling_get_task` round trip, timeout 0 (median of {plan.round_trips})",
            f"{results.get_task_ms:.2f} ms",
            f"{ping:.2f} ms ping",
            f"x{results.get_task_ms / ping:.1f}",
        ),
    ]
    for label, lags in results.lags.items():
        rows.append(
            Row(
                f"Detection lag, {label} ({plan.lag_task_seconds:g} s tasks)",
                f"{median(lags):.2f} s",
                f"max {max(lags):.2f} s",
                target=f"< {TARGET_LAG_S:g} s median",
                passed=median(lags) < TARGET_LAG_S,
            )
        )
    for waiting, rate in results.rates.items():
        notes = [] if rate.all_waiting else ["some calls ended early"]
        notes += [] if rate.quiet_after_cancel else ["polling went on after cancel"]
        rows.append(
            Row(
                f"API requests/s, {waiting} generation{'s' if waiting > 1 else ''} waiting",
                f"{rate.per_second:.2f}/s",
                f"{rate.requests} in {rate.seconds:g} s",
                "; ".join(notes) or "-",
                f"<= {TARGET_RATE:g}/s",
                rate.per_second <= TARGET_RATE and rate.all_waiting and rate.quiet_after_cancel,
            )
        )
    return rows


# --- Main -----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    cli.add_argument("--quick", action="store_true", help="a fast smoke run (about 40 s)")
    cli.add_argument("--repeats", type=int, default=None, help="cold starts per server (default 15, quick 3)")
    cli.add_argument("--cold-start", action="store_true", help="measure the cold starts (1) only")
    return cli.parse_args(argv)


@contextmanager
def server_log() -> Iterator[TextIO]:
    """A file for the session server's stderr; its tail is shown if the benchmark fails."""
    with tempfile.TemporaryFile("w+") as errlog:
        try:
            yield errlog
        except BaseException:
            errlog.seek(0)
            tail = errlog.read()[-3000:]
            print(f"--- kling-mcp stderr (tail) ---\n{tail}", file=sys.stderr)
            raise


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    repeats = max(1, args.repeats or plan.cold_starts)
    run = "cold-start" if args.cold_start else "quick" if args.quick else "full"
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="kling-mcp-bench-") as cwd, server_log() as errlog:
        rows = start_rows(measure_cold_starts(repeats, cwd), repeats)
        if not args.cold_start:
            rows += session_rows(anyio.run(measure_session, plan, cwd, errlog), plan)
    failed = [row.metric for row in rows if row.passed is False]
    print(markdown_table(rows))
    print(
        f"\n{run} run in {time.perf_counter() - _T0:.0f} s "
        f"(load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after, {os.cpu_count()} CPUs); "
        f"{len(failed)} target(s) missed{': ' + '; '.join(failed) if failed else ''}"
    )


if __name__ == "__main__":
    main()
