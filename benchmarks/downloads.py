"""Benchmark of saving finished videos: from "task done" to "file complete" for a 20 MB video.

Run from the repository root with the development virtualenv (not part of the test suite):

    .venv/bin/python benchmarks/downloads.py            # 9 runs of each
    .venv/bin/python benchmarks/downloads.py --runs 25

The CDN is the in-process emulator (`kling_mcp.emulator`, `video_bytes=20_000_000`) on a
loopback port; the videos go to a temporary directory, emptied after each run. The clock
starts when the task query that says "succeed" has answered (the moment the server learns
the video is ready) and stops when `Downloader.save` returns: the file is complete, synced
to disk (fsync) and renamed into place. What is measured, medians over `--runs`:

1. A plain save.
2. A save whose connection the CDN cuts halfway (`Fault.cut_after`): resumed with `Range`.
3. The floor: the same video fetched with a bare `httpx` GET into memory, no file at all.

The difference between 1 and 3 is what writing the file safely costs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import anyio
import httpx
from run import Row, markdown_table, median

from kling_mcp.api.downloads import Downloader
from kling_mcp.emulator import Emulator, Fault, serve_emulator

VIDEO_BYTES = 20_000_000
TOKEN = "benchmark-token"


class Cdn:
    """The emulator's API and CDN, and the pooled client a server would download with."""

    def __init__(self, emulator: Emulator, api: httpx.AsyncClient, pooled: httpx.AsyncClient) -> None:
        self.emulator = emulator
        self.api = api
        self.pooled = pooled

    async def finished_task(self) -> tuple[str, str, float]:
        """A new task, once done: its id, video link and creation time."""
        body = {"action": "text2video", "prompt": "benchmark video", "async": True}
        task_id: str = (await self.api.post("/kling/videos", json=body)).json()["task_id"]
        task = (await self.api.post("/kling/tasks", json={"action": "retrieve", "id": task_id})).json()
        return task_id, task["response"]["video_url"], task["created_at"]

    async def save_seconds(self, directory: Path, cut: bool) -> float:
        task_id, url, created_at = await self.finished_task()
        if cut:
            self.emulator.inject(f"/media/{task_id}.mp4", Fault.cut_after(VIDEO_BYTES // 2))
        started = time.perf_counter()
        path = await Downloader(self.pooled, directory).save(
            task_id, url, prompt="benchmark video", created_at=created_at
        )
        elapsed = time.perf_counter() - started
        if path.stat().st_size != VIDEO_BYTES:
            raise RuntimeError(f"{path} has {path.stat().st_size} bytes, not {VIDEO_BYTES}")
        path.unlink()
        return elapsed

    async def fetch_seconds(self) -> float:
        _, url, _ = await self.finished_task()
        started = time.perf_counter()
        response = await self.pooled.get(url)
        elapsed = time.perf_counter() - started
        if len(response.content) != VIDEO_BYTES:
            raise RuntimeError(f"the bare GET brought {len(response.content)} bytes, not {VIDEO_BYTES}")
        return elapsed


async def measure(runs: int) -> dict[str, list[float]]:
    emulator = Emulator(token=TOKEN, task_seconds=0, video_bytes=VIDEO_BYTES)
    seconds: dict[str, list[float]] = {"plain": [], "cut": [], "floor": []}
    with tempfile.TemporaryDirectory(prefix="kling-mcp-bench-downloads-") as directory:
        async with (
            serve_emulator(emulator) as base_url,
            httpx.AsyncClient(base_url=base_url, headers={"authorization": f"Bearer {TOKEN}"}) as api,
            httpx.AsyncClient() as pooled,
        ):
            cdn = Cdn(emulator, api, pooled)
            await cdn.save_seconds(Path(directory), cut=False)  # warm-up: connections, page cache
            for _ in range(runs):
                seconds["plain"].append(await cdn.save_seconds(Path(directory), cut=False))
                seconds["cut"].append(await cdn.save_seconds(Path(directory), cut=True))
                seconds["floor"].append(await cdn.fetch_seconds())
    return seconds


def rows(seconds: dict[str, list[float]], runs: int) -> list[Row]:
    floor_ms = median(seconds["floor"]) * 1000
    megabytes = VIDEO_BYTES / 1e6

    def row(metric: str, samples: list[float]) -> Row:
        ms = median(samples) * 1000
        return Row(
            f"{metric} (median of {runs})",
            f"{ms:.0f} ms ({megabytes / (ms / 1000):.0f} MB/s)",
            f"{floor_ms:.0f} ms bare GET into memory",
            f"{ms - floor_ms:+.0f} ms",
        )

    return [
        row("20 MB video, task done to file complete", seconds["plain"]),
        row("Same, connection cut at 10 MB and resumed", seconds["cut"]),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    cli.add_argument("--runs", type=int, default=9, help="saves of each kind (default 9)")
    runs = max(1, cli.parse_args(argv).runs)
    load_before, started = os.getloadavg()[0], time.perf_counter()
    print(markdown_table(rows(anyio.run(measure, runs), runs)))
    print(
        f"\n{runs} runs of each in {time.perf_counter() - started:.0f} s (load average {load_before:.2f} "
        f"before, {os.getloadavg()[0]:.2f} after, {os.cpu_count()} CPUs)"
    )


if __name__ == "__main__":
    main()
