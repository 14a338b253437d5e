"""Benchmark of the local video work (kling_mcp.clips) and of what PyAV costs the server.

Run from the repository root with the development virtualenv (not part of the test suite):

    .venv/bin/python benchmarks/clips.py            # 5 runs of each, 10 cold starts of each server
    .venv/bin/python benchmarks/clips.py --runs 9 --starts 15

What is measured, medians over `--runs` (each run a fresh Python process, so its peak memory is
its own; the clips are made first by this script with PyAV, H.264, a keyframe every 2 s):

1. The contact sheet of a 10 s 1080p clip (24 fps), made; and found again beside the video.
2. A join of 10 clips of 5 s 1080p of one format (copied), and of 10 clips of 2 s 720p of two
   shapes (re-encoded).
3. The peak memory (VmHWM) of the process doing 1 or 2, against one that only imports PyAV.
4. Cold start: spawn to the `initialize` answer and to the first `tools/list` answer, of this
   tree's server with and without the frame tools (their module stubbed out: no tools, no contact
   sheet), interleaved; and whether the server had imported PyAV by then (it must not: it is
   loaded on first use).
5. What PyAV costs to have: its installed size, and its import time in a fresh process.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from run import RawServer, Row, markdown_table, rss_mib

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL_VERSION = "2025-11-25"
KEYFRAME_SECONDS = 2


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- The clips -------------------------------------------------------------------------------


def make_clip(path: Path, width: int, height: int, seconds: float) -> Path:
    """A real H.264 clip: a moving test pattern over a turning gradient, as a camera-like load."""
    import av

    graph = av.filter.Graph()
    timing = f"rate=24:duration={seconds}"
    background = graph.add("gradients", f"size={width}x{height}:{timing}:seed=1:speed=0.02")
    pattern = graph.add("testsrc2", f"size={width // 2}x{height // 2}:{timing}")
    overlay = graph.add("overlay", "x=(W-w)/2:y=(H-h)/2")
    noise = graph.add("noise", "alls=6:allf=t")  # grain: about 4 Mbit/s, where a clean pattern takes 1
    pixels, sink = graph.add("format", "yuv420p"), graph.add("buffersink")
    background.link_to(overlay, 0, 0)
    pattern.link_to(overlay, 0, 1)
    overlay.link_to(noise)
    noise.link_to(pixels)
    pixels.link_to(sink)
    graph.configure()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24, options={"preset": "veryfast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = 24 * KEYFRAME_SECONDS
        while True:
            try:
                frame = graph.vpull()
            except (av.EOFError, av.BlockingIOError):
                break
            frame.pts, frame.pict_type = None, av.video.frame.PictureType.NONE
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@dataclass(frozen=True)
class Clips:
    long: Path
    """10 s, 1080p."""
    same: list[Path]
    """10 x 5 s, 1080p, one format."""
    mixed: list[Path]
    """10 x 2 s, 720p, landscape and portrait in turn."""


def make_clips(directory: Path) -> Clips:
    log("making the clips (about a minute)")
    long = make_clip(directory / "long.mp4", 1920, 1080, 10)
    shot = make_clip(directory / "shot.mp4", 1920, 1080, 5)
    same = []
    for index in range(10):
        copy = directory / f"same-{index}.mp4"
        copy.write_bytes(shot.read_bytes())
        same.append(copy)
    wide = make_clip(directory / "wide.mp4", 1280, 720, 2)
    tall = make_clip(directory / "tall.mp4", 720, 1280, 2)
    return Clips(long, same, [wide if index % 2 == 0 else tall for index in range(10)])


# --- One measured operation, in a process of its own -----------------------------------------


def child(operation: str, arguments: list[str]) -> None:
    """Run `operation` once and print what it took: seconds, and this process's peak memory."""
    import av  # loaded before the clock starts: the import is measured on its own (5.)

    from kling_mcp import clips

    del av
    paths = [Path(argument) for argument in arguments]
    started = time.perf_counter()
    if operation == "sheet":
        clips.contact_sheet(paths[0])
    elif operation == "join":
        clips.join_videos(paths[1:], paths[0])
    seconds = time.perf_counter() - started
    peak_mib = peak_rss_mib()
    print(json.dumps({"seconds": seconds, "peak_mib": peak_mib}))


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM): getrusage's would count the parent's, which the
    process was forked from before it ran Python."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measured(operation: str, arguments: Sequence[Path]) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", operation, *map(str, arguments)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(output)
    return result


@dataclass(frozen=True)
class Runs:
    seconds: list[float]
    peaks: list[float]

    @property
    def median_ms(self) -> float:
        return median(self.seconds) * 1000

    @property
    def peak(self) -> float:
        return median(self.peaks)


def runs(count: int, operation: str, arguments: Sequence[Path], before_each: Path | None = None) -> Runs:
    seconds, peaks = [], []
    for _ in range(count):
        if before_each is not None:
            before_each.unlink(missing_ok=True)
        result = measured(operation, arguments)
        seconds.append(result["seconds"])
        peaks.append(result["peak_mib"])
    return Runs(seconds, peaks)


# --- Cold start, with and without the frame tools ---------------------------------------------

WITHOUT_FRAME_TOOLS = """
import importlib.abc, importlib.util, sys
class WithoutFrameTools(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name == "kling_mcp.server.tools.clips":
            return importlib.util.spec_from_loader(name, self)
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        module.TOOLS, module.sheet_content = (), lambda video_path: []
sys.meta_path.insert(0, WithoutFrameTools())
"""
"""The server as it was before the frame tools: their module (and with it kling_mcp.clips) replaced
by one with no tools and no contact sheet, imported at the moment the real one would be."""


def launcher(marker: Path, without_frame_tools: bool) -> tuple[str, ...]:
    """This tree's server, noting at exit whether it had imported PyAV."""
    code = (
        (WITHOUT_FRAME_TOOLS if without_frame_tools else "")
        + f"import atexit, runpy, sys; sys.path.insert(0, {str(ROOT / 'src')!r})\n"
        + f"atexit.register(lambda: open({str(marker)!r}, 'w').write(str('av' in sys.modules)))\n"
        + "runpy.run_module('kling_mcp', run_name='__main__', alter_sys=True)\n"
    )
    return (sys.executable, "-c", code)


@dataclass(frozen=True)
class Start:
    initialize_ms: float
    tools_ms: float
    rss_mib: float
    imported_av: bool


def cold_start(argv: Sequence[str], cwd: str, marker: Path) -> Start:
    initialize = {
        "protocolVersion": PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "kling-mcp-clips-benchmark", "version": "0"},
    }
    marker.unlink(missing_ok=True)
    started = time.perf_counter()
    server = RawServer(argv, cwd)
    try:
        server.request(1, "initialize", initialize)
        initialize_ms = (time.perf_counter() - started) * 1000
        server.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        server.request(2, "tools/list", {})
        tools_ms = (time.perf_counter() - started) * 1000
        rss = rss_mib(server.process.pid)
    finally:
        server.close()
    return Start(initialize_ms, tools_ms, rss, marker.read_text() == "True")


def cold_starts(count: int, work: Path) -> dict[str, list[Start]]:
    marker = work / "imported-av"
    servers = {"after": launcher(marker, False), "before": launcher(marker, True)}
    starts: dict[str, list[Start]] = {name: [] for name in servers}
    for index in range(count + 1):  # the first of each compiles bytecode: not counted
        order = list(servers.items()) if index % 2 == 0 else list(reversed(servers.items()))
        for name, argv in order:
            start = cold_start(argv, str(work), marker)
            if index:
                starts[name].append(start)
        log(f"cold start {index}/{count}")
    return starts


# --- PyAV itself ------------------------------------------------------------------------------


def installed_mib(distribution: str) -> float:
    files = importlib.metadata.distribution(distribution).files or []
    return sum(os.path.getsize(str(file.locate())) for file in files) / 2**20


def import_ms(count: int) -> float:
    code = "import time; started = time.perf_counter(); import av; print(time.perf_counter() - started)"
    return median(
        [
            float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True).stdout) * 1000
            for _ in range(count)
        ]
    )


# --- The table --------------------------------------------------------------------------------


def rows(clips: Clips, count: int, starts_count: int, work: Path) -> list[Row]:
    idle = runs(count, "idle", [])
    log("contact sheets")
    sheet = clips.long.with_name(f"{clips.long.stem}.sheet.jpg")
    made = runs(count, "sheet", [clips.long], before_each=sheet)
    kept = runs(count, "sheet", [clips.long])
    log("joins")
    film = work / "film.mp4"
    copied = runs(count, "join", [film, *clips.same], before_each=film)
    re_encoded = runs(max(count // 2, 1), "join", [film, *clips.mixed], before_each=film)
    log("cold starts")
    starts = cold_starts(starts_count, work)
    after = median([start.initialize_ms for start in starts["after"]])
    before = median([start.initialize_ms for start in starts["before"]])
    after_tools = median([start.tools_ms for start in starts["after"]])
    before_tools = median([start.tools_ms for start in starts["before"]])
    after_rss = median([start.rss_mib for start in starts["after"]])
    before_rss = median([start.rss_mib for start in starts["before"]])
    imported = any(start.imported_av for start in starts["after"])
    av_ms = import_ms(count)

    def memory(metric: str, of: Runs) -> Row:
        return Row(
            metric,
            f"{of.peak:.0f} MiB",
            f"{idle.peak:.0f} MiB importing PyAV only",
            f"+{of.peak - idle.peak:.0f} MiB",
        )

    sheet_size = sheet.stat().st_size / 1000
    return [
        Row(f"Contact sheet of a 10 s 1080p clip, made (median of {count})", f"{made.median_ms:.0f} ms"),
        Row(
            "Same, found beside the video",
            f"{kept.median_ms:.2f} ms",
            f"{made.median_ms:.0f} ms made",
            f"x{made.median_ms / kept.median_ms:,.0f} faster",
        ),
        Row(
            "Contact sheet size (3 x 3 JPEG, 768 x 432)",
            f"{sheet_size:.0f} KB",
            "-",
            "-",
            "<= 1000 KB",
            sheet_size <= 1000,
        ),
        memory("Peak memory, making the sheet", made),
        Row(f"Join of 10 x 5 s 1080p clips, copied (median of {count})", f"{copied.median_ms:.0f} ms"),
        memory("Peak memory, copied join", copied),
        Row(
            f"Join of 10 x 2 s 720p clips of two shapes, re-encoded (median of {len(re_encoded.seconds)})",
            f"{re_encoded.median_ms / 1000:.1f} s",
            "20 s of video",
            f"x{20 / (re_encoded.median_ms / 1000):.1f} real time",
        ),
        memory("Peak memory, re-encoded join", re_encoded),
        Row(
            f"Cold start to `initialize` answer (median of {starts_count})",
            f"{after:.0f} ms",
            f"{before:.0f} ms without the frame tools",
            f"{after - before:+.0f} ms (x{after / before:.2f})",
        ),
        Row(
            "Spawn to first `tools/list` answer",
            f"{after_tools:.0f} ms",
            f"{before_tools:.0f} ms without the frame tools",
            f"{after_tools - before_tools:+.0f} ms (x{after_tools / before_tools:.2f})",
        ),
        Row(
            "RSS after `tools/list`",
            f"{after_rss:.1f} MiB",
            f"{before_rss:.1f} MiB without the frame tools",
            f"{after_rss - before_rss:+.1f} MiB",
        ),
        Row("PyAV imported by then", "yes" if imported else "no", "-", "-", "no", not imported),
        Row(f"PyAV import in a fresh process (median of {count})", f"{av_ms:.0f} ms"),
        Row("PyAV installed (FFmpeg included)", f"{installed_mib('av'):.0f} MiB"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        child(options.child[0], options.child[1:])
        return
    with tempfile.TemporaryDirectory(prefix="kling-clips-bench-") as temporary:
        work = Path(temporary)
        table = rows(make_clips(work), options.runs, options.starts, work)
    print(markdown_table(table))
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"\nPython {sys.version.split()[0]}, PyAV {importlib.metadata.version('av')}, load average {load}")


if __name__ == "__main__":
    main()
