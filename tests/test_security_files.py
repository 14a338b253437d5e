"""Attacks on local files, as issue 22 ran them: a folder swapped for a symlink while a file in it
is checked and opened, a symlink target whose name forges log lines, and an upload cut off midway.

Each test plays the attacker against the real code (real files, real symlinks, real sockets) and
asserts what a user would check: the outside file never comes out, the log has only real lines,
and the error says what was sent.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest

from kling_mcp.api.uploads import UploadError, upload
from kling_mcp.domain import local_files
from kling_mcp.domain.local_files import MB, LocalFile, LocalFileError, check_local_file
from kling_mcp.emulator import Emulator, serve_emulator
from tests import media
from tests.emulated import connect, emulated, text_of
from tests.test_e2e import TOKEN, api_env, kling_mcp

FIELD = "image_url"
INSIDE = media.png() + b"inside: the picture the user meant"
SECRET = media.png() + b"outside: the secret"
RACED_CALLS = 2000
"""Checks made while a racer swaps the folder: the issue's attack won within 20 to 520."""


@dataclass(frozen=True)
class Swappable:
    """Pictures at `allowed/sub/clip.png` and `allowed/sub/album/clip.png`, and `allowed/swap`, a
    symlink to a folder outside holding secrets at the same places: exchanging `sub` and `swap`
    points either picture's path at a secret (through the folder its file is in, as the issue's
    attack did, or through one further up, which only the walk as a whole can guard)."""

    allowed: Path
    sub: Path
    swap: Path

    def clip(self, folders: str = "") -> str:
        return str(self.sub / folders / "clip.png")

    def exchange(self) -> None:
        """Swap `sub` and `swap` (one rename each way: not atomic, which a single thread does not mind)."""
        parked = self.allowed / "parked"
        os.rename(self.sub, parked)
        os.rename(self.swap, self.sub)
        os.rename(parked, self.swap)

    def is_symlinked(self) -> bool:
        return self.sub.is_symlink()


@pytest.fixture(params=["openat2", "walk"])
def walk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each way a file is opened beneath its folder: openat2 (Linux 5.6), and the walk one folder at
    a time that older kernels and macOS get."""
    if request.param == "walk":
        monkeypatch.setattr(local_files, "_has_openat2", lambda: False)
    elif not local_files._has_openat2():
        pytest.skip("this kernel has no openat2 (Linux 5.6 and later)")
    return str(request.param)


@pytest.fixture
def swappable(tmp_path: Path, walk: str) -> Swappable:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    for folders in ("", "album"):
        (allowed / "sub" / folders).mkdir(parents=True, exist_ok=True)
        (outside / folders).mkdir(parents=True, exist_ok=True)
        (allowed / "sub" / folders / "clip.png").write_bytes(INSIDE)
        (outside / folders / "clip.png").write_bytes(SECRET)
    (allowed / "swap").symlink_to(outside, target_is_directory=True)
    return Swappable(allowed, allowed / "sub", allowed / "swap")


def read_all(file: LocalFile) -> bytes:
    with file.open() as stream:
        return stream.read()


@contextmanager
def honest_only_when_resolved(monkeypatch: pytest.MonkeyPatch, folder: Swappable) -> Iterator[None]:
    """The attacker's best schedule: `sub` is the real folder whenever a path is resolved, and the
    symlink to the outside folder at every other moment (between resolving and opening, say)."""
    real_realpath = os.path.realpath

    def realpath(path: str | os.PathLike[str], *, strict: bool = False) -> str:
        if folder.is_symlinked():
            folder.exchange()
        try:
            return real_realpath(path, strict=strict)
        finally:
            folder.exchange()

    folder.exchange()
    monkeypatch.setattr(os.path, "realpath", realpath)
    try:
        yield
    finally:
        monkeypatch.setattr(os.path, "realpath", real_realpath)


FOLDERS = ["", "album"]
"""Where the file is below the swapped folder: right in it, or in a folder of its own."""


@pytest.mark.parametrize("folders", FOLDERS)
def test_a_folder_that_is_a_symlink_only_while_not_resolved_never_yields_the_outside_file(
    monkeypatch: pytest.MonkeyPatch, swappable: Swappable, folders: str
) -> None:
    with honest_only_when_resolved(monkeypatch, swappable):
        try:
            file = check_local_file(FIELD, swappable.clip(folders), "image", [swappable.allowed])
        except LocalFileError as refused:
            outcome = str(refused)
        else:
            outcome = f"accepted {file.sha256}"
    assert hashlib.sha256(SECRET).hexdigest() not in outcome, "the outside file was taken"
    assert "symbolic link" in outcome, outcome


@pytest.mark.parametrize("folders", FOLDERS)
def test_a_folder_swapped_after_the_check_does_not_open_the_outside_file(
    monkeypatch: pytest.MonkeyPatch, swappable: Swappable, folders: str
) -> None:
    file = check_local_file(FIELD, swappable.clip(folders), "image", [swappable.allowed])
    with honest_only_when_resolved(monkeypatch, swappable), pytest.raises(LocalFileError) as refused:
        read_all(file)
    assert "changed after it was checked" in str(refused.value)


RACER = textwrap.dedent(
    """
    import ctypes, os, signal, sys, time
    libc = ctypes.CDLL(None, use_errno=True)
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    a, b = (os.fsencode(path) for path in sys.argv[1:3])
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    swaps = 0
    while not stop:
        if libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) != 0:
            sys.exit(f"renameat2: {os.strerror(ctypes.get_errno())}")
        swaps += 1
        time.sleep(0.00002)  # each state held a few system calls long: what a check-then-open loses to
        if swaps == 1:
            print("racing", flush=True)
    print(swaps, flush=True)
    """
)


def renameat2_available() -> bool:
    return sys.platform == "linux" and hasattr(ctypes.CDLL(None), "renameat2")


@contextmanager
def racing(folder: Swappable) -> Iterator[Callable[[], int]]:
    """A process exchanging `sub` and `swap` with renameat2(RENAME_EXCHANGE) as fast as it can;
    yields a function that stops it and answers how many exchanges it made."""
    racer = subprocess.Popen(
        [sys.executable, "-c", RACER, str(folder.sub), str(folder.swap)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert racer.stdout is not None
    try:
        assert racer.stdout.readline().strip() == "racing"

        def stop() -> int:
            racer.terminate()
            out, _ = racer.communicate(timeout=10)
            assert racer.returncode == 0, out
            return int(out.split()[-1])

        yield stop
    finally:
        if racer.poll() is None:
            racer.kill()
            racer.wait()


@pytest.mark.skipif(not renameat2_available(), reason="renameat2(RENAME_EXCHANGE) is Linux's")
def test_a_racer_exchanging_the_folder_with_a_symlink_never_gets_the_outside_file_uploaded(
    swappable: Swappable,
) -> None:
    inside, secret = hashlib.sha256(INSIDE).hexdigest(), hashlib.sha256(SECRET).hexdigest()
    taken: list[bytes] = []
    refusals = 0
    with racing(swappable) as stop:
        for _ in range(RACED_CALLS):
            try:
                file = check_local_file(FIELD, swappable.clip(), "image", [swappable.allowed])
                taken.append(read_all(file))
                assert file.sha256 in (inside, secret)
            except LocalFileError:
                refusals += 1
        swaps = stop()
    assert SECRET not in taken, f"the outside file came out after {taken.index(SECRET) + 1} checks"
    assert swaps >= RACED_CALLS // 10, "the racer hardly raced: the test proves little"
    assert refusals > 0, "no check met the swapped folder: the test proves nothing"


# --- Log injection: a symlink target whose name holds a newline --------------------------------

FORGED = "2026-01-01 00:00:00,000 ERROR kling_mcp: FORGED LINE"


@pytest.mark.anyio
async def test_a_file_name_with_a_newline_cannot_forge_a_log_line(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    target = allowed / f"cat\n{FORGED}\n.png"
    target.write_bytes(media.png())
    (allowed / "cat.png").symlink_to(target)
    emulator = Emulator(token=TOKEN, task_seconds=0.1)
    async with serve_emulator(emulator, port=0) as base_url:
        env = api_env(
            base_url,
            ACEDATACLOUD_PLATFORM_BASE_URL=base_url,
            KLING_INPUT_DIRS=str(allowed),
            LOG_LEVEL="DEBUG",
        )
        async with kling_mcp(env, tmp_path) as server:
            arguments = {
                "prompt": "the cat blinks",
                "start_image_url": str(allowed / "cat.png"),
                "timeout": 10,
            }
            with anyio.fail_after(30):
                result = await server.client.call_tool("kling_generate_video_from_image", arguments)
        stderr = server.stderr()
    assert not result.is_error, text_of(result)
    assert emulator.uploads.received_count == 1, "the file was not uploaded: the log was never at risk"
    assert "FORGED LINE" in stderr, "the file's name is not in the log at all"
    for line in stderr.splitlines():
        assert not line.startswith(FORGED), f"a forged log line: {line!r}"
    assert re.search(r"Uploading cat\\n2026-01-01 .*FORGED LINE\\n\.png", stderr), stderr


# --- An upload cut off midway ----------------------------------------------------------------

CUT_AFTER_BYTES = 3 * 1024 * 1024
VIDEO_BYTES = 40 * 1024 * 1024
"""More than the sockets' buffers hold, so that the cut comes while the file is still being sent."""


@asynccontextmanager
async def host_that_cuts_uploads(after_bytes: int) -> AsyncIterator[str]:
    """A file host that reads a request's headers and `after_bytes` of its body, then hangs up."""

    async def cut(stream: anyio.abc.SocketStream) -> None:
        received = b""
        async with stream:
            while b"\r\n\r\n" not in received:
                received += await stream.receive()
            body = len(received.partition(b"\r\n\r\n")[2])
            while body < after_bytes:
                body += len(await stream.receive())

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, cut)
        yield f"http://127.0.0.1:{port}"
        group.cancel_scope.cancel()


def big_video(directory: Path) -> LocalFile:
    path = directory / "clip.mp4"
    path.write_bytes(media.mp4() + bytes(VIDEO_BYTES))
    return check_local_file("video_url", str(path), "video", [directory])


@pytest.mark.anyio
async def test_an_upload_cut_off_midway_says_how_much_was_sent_and_never_that_nothing_was(
    tmp_path: Path,
) -> None:
    file = big_video(tmp_path)
    async with host_that_cuts_uploads(CUT_AFTER_BYTES) as host, httpx.AsyncClient() as http:
        with pytest.raises(UploadError) as raised:
            await upload(http, host, "platform-token", file)
    message = str(raised.value)
    assert "nothing was sent" not in message.lower()
    assert "may or may not" not in message
    sent = re.search(rf"cut off after ([0-9.]+) of {file.size / MB:.1f} MB had been sent", message)
    assert sent, message
    assert CUT_AFTER_BYTES <= float(sent[1]) * MB < file.size
    assert "did not get the whole file" in message
    assert "No video task was started and nothing was charged." in message


@pytest.mark.anyio
async def test_a_tool_whose_upload_is_cut_off_does_not_say_nothing_was_sent(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    video = allowed / "clip.mp4"
    video.write_bytes(media.mp4() + bytes(VIDEO_BYTES))
    async with (
        host_that_cuts_uploads(CUT_AFTER_BYTES) as host,
        emulated(Emulator(), tmp_path, input_dirs=(allowed,), platform_base_url=host) as settings,
        connect(settings) as client,
    ):
        with anyio.fail_after(30):
            result = await client.call_tool(
                "kling_generate_motion",
                {"image_url": "https://example.com/cat.png", "video_url": str(video), "timeout": 10},
            )
    text = text_of(result)
    assert result.is_error
    assert "nothing was sent" not in text.lower(), text
    assert "cut off after" in text, text
    assert "had been sent" in text, text
    assert "No video task was started and nothing was charged" in text
