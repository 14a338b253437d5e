"""Local files as media, through the tools: checked, uploaded to the emulator's file hosting once,
and swapped for their hosted URLs in the submission; a refused file sends nothing at all.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning

from kling_mcp.emulator import Emulator
from kling_mcp.settings import Settings
from tests import media
from tests.emulated import Progress, call, connect, emulated, structured, text_of
from tests.test_local_files import RootsClient

pytestmark = pytest.mark.anyio

FROM_IMAGE = "kling_generate_video_from_image"
ERAS = ["legacy", "auto"]


@dataclass
class Setup:
    emulator: Emulator
    settings: Settings
    allowed: Path
    outside: Path

    @property
    def uploads(self) -> list[bytes]:
        return [stored.content for stored in self.emulator.uploads.files.values()]

    def hosted_urls(self) -> set[str]:
        return {f"{self.settings.platform_base_url}/files/{name}" for name in self.emulator.uploads.files}


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    emulator = Emulator(task_seconds=0.1)
    async with emulated(emulator, tmp_path, input_dirs=(allowed,), auto_download=False) as settings:
        yield Setup(emulator, settings, allowed, outside)


@pytest.fixture(autouse=True)
def _roots_are_deprecated_but_current() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        yield


def write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


async def animate(client: Client, image: str | Path, prompt: str = "the cat blinks", **extra: Any) -> Any:
    arguments = {"prompt": prompt, "start_image_url": str(image), "timeout": 10, **extra}
    return await call(client, FROM_IMAGE, arguments)


async def test_a_png_in_an_allowed_directory_is_uploaded_and_animated(setup: Setup) -> None:
    cat = write(setup.allowed / "cat.png", media.png())
    async with connect(setup.settings) as client:
        result = await animate(client, cat)
    assert not result.is_error, text_of(result)
    assert structured(result)["state"] == "succeeded"
    assert setup.uploads == [cat.read_bytes()]
    (submission,) = setup.emulator.submissions
    assert submission["start_image_url"] in setup.hosted_urls()
    assert str(cat) not in str(submission)


# --- Refusals: nothing uploaded, nothing submitted -------------------------------------------


def outside_file(setup: Setup) -> str:
    return str(write(setup.outside / "cat.png", media.png()))


def dotdot_escape(setup: Setup) -> str:
    write(setup.outside / "cat.png", media.png())
    return f"{setup.allowed}/../outside/cat.png"


def symlink_out(setup: Setup) -> str:
    link = setup.allowed / "cat.png"
    link.symlink_to(write(setup.outside / "secret.png", media.png()))
    return str(link)


def dotfile(setup: Setup) -> str:
    return str(write(setup.allowed / ".cat.png", media.png()))


def text_named_png(setup: Setup) -> str:
    return str(write(setup.allowed / "cat.png", b"just some words, not an image\n"))


def sparse_200_mb(setup: Setup) -> str:
    path = write(setup.allowed / "huge.png", media.png())
    os.truncate(path, 200 * 1024 * 1024)
    return str(path)


def directory(setup: Setup) -> str:
    path = setup.allowed / "album.png"
    path.mkdir()
    return str(path)


def missing(setup: Setup) -> str:
    return str(setup.allowed / "nowhere.png")


REFUSALS: dict[str, tuple[Callable[[Setup], str], str]] = {
    "outside": (outside_file, "outside the allowed directories"),
    "dotdot": (dotdot_escape, "outside the allowed directories"),
    "symlink-out": (symlink_out, "outside the allowed directories"),
    "dotfile": (dotfile, "hidden"),
    "text-named-png": (text_named_png, "not a recognised media format"),
    "200-mb": (sparse_200_mb, "over the 10 MB limit"),
    "directory": (directory, "is a directory"),
    "missing": (missing, "does not exist"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_a_file_that_may_not_be_used_is_refused_before_anything_is_sent(
    setup: Setup, case: str
) -> None:
    make, rule = REFUSALS[case]
    given = make(setup)
    async with connect(setup.settings) as client:
        result = await animate(client, given)
    assert result.is_error
    text = text_of(result)
    assert f"start_image_url: the local file {given!r}" in text
    assert rule in text
    assert f"Allowed directories: {setup.allowed}, {setup.settings.output_dir}." in text
    assert "KLING_INPUT_DIRS" in text
    assert "Nothing was sent, nothing was charged." in text
    assert setup.emulator.uploads.received_count == 0
    assert setup.emulator.submissions == []
    async with connect(setup.settings) as client:
        listing = structured(await call(client, "kling_list_tasks", {}))
    assert listing["tasks"] == [], "a refusal leaves no task in the journal"


async def test_every_refused_file_is_named_and_none_is_uploaded(setup: Setup) -> None:
    good = write(setup.allowed / "cat.png", media.png())
    bad = write(setup.outside / "dog.png", media.png())
    images = [{"image_url": str(good)}, {"image_url": str(bad)}]
    async with connect(setup.settings) as client:
        result = await call(
            client,
            "kling_generate_video",
            {"prompt": "two pets", "model": "kling-v3-omni", "image_list": images, "timeout": 10},
        )
    assert result.is_error
    assert f"image_list.1.image_url: the local file {str(bad)!r}" in text_of(result)
    assert "image_list.0" not in text_of(result)
    assert setup.emulator.uploads.received_count == 0
    assert setup.emulator.submissions == []


# --- The client's roots -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ERAS)
async def test_the_clients_roots_are_honoured(setup: Setup, mode: Any) -> None:
    shared = setup.outside
    in_root = write(shared / "cat.png", media.png())
    elsewhere = write(setup.allowed.parent / "elsewhere" / "dog.png", media.png())
    roots = RootsClient(shared)
    async with connect(setup.settings, mode=mode, list_roots_callback=roots.list_roots) as client:
        accepted = await animate(client, in_root)
        assert not accepted.is_error, text_of(accepted)
        refused = await animate(client, elsewhere)
        assert refused.is_error
        allowed = f"{shared}, {setup.allowed}, {setup.settings.output_dir}"
        assert f"Allowed directories: {allowed}." in text_of(refused)
    assert roots.asked >= 1
    assert setup.uploads == [in_root.read_bytes()]
    assert len(setup.emulator.submissions) == 1


@pytest.mark.parametrize("mode", ERAS)
async def test_a_change_of_roots_takes_effect(tmp_path: Path, mode: Any) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    cat = write(first / "cat.png", media.png())
    dog = write(second / "dog.png", media.jpeg())
    roots = RootsClient(first)
    async with (
        emulated(Emulator(task_seconds=0.1), tmp_path, auto_download=False) as settings,
        connect(settings, mode=mode, list_roots_callback=roots.list_roots) as client,
    ):
        assert not (await animate(client, cat)).is_error
        assert (await animate(client, dog)).is_error
        roots.directories = [second]
        if mode == "legacy":  # asked once per connection, and again once the client says they changed
            assert (await animate(client, dog)).is_error
            await client.send_roots_list_changed()
        result = await animate(client, dog)
        assert not result.is_error, text_of(result)
        assert (await animate(client, cat, prompt="the cat blinks again")).is_error


# --- Uploaded once ----------------------------------------------------------------------------


async def test_the_same_file_is_uploaded_once_even_across_a_restart(setup: Setup) -> None:
    cat = write(setup.allowed / "cat.png", media.png())
    async with connect(setup.settings) as client:
        first = await animate(client, cat, prompt="the cat blinks")
        second = await animate(client, cat, prompt="the cat yawns")
    async with connect(setup.settings) as client:
        third = await animate(client, cat, prompt="the cat stretches")
    for result in (first, second, third):
        assert not result.is_error, text_of(result)
    assert setup.emulator.uploads.received_count == 1
    urls = {submission["start_image_url"] for submission in setup.emulator.submissions}
    assert len(setup.emulator.submissions) == 3
    assert urls == setup.hosted_urls()


async def test_progress_covers_the_upload(setup: Setup) -> None:
    padding = b"\x00" * 2_000_000  # after IEND: still a PNG, big enough to show its megabytes
    cat = write(setup.allowed / "cat.png", media.png() + padding)
    progress = Progress()
    async with connect(setup.settings) as client:
        result = await call(
            client, FROM_IMAGE, {"prompt": "it blinks", "start_image_url": str(cat), "timeout": 10}, progress
        )
    assert not result.is_error, text_of(result)
    uploading = [message for message in progress.messages if "uploading cat.png" in message]
    assert uploading, progress.messages
    size = cat.stat().st_size / 1024 / 1024  # in MB as the size limits count them
    assert any(f"of {size:.1f} MB" in message for message in uploading)
    first_submitted = next(n for n, message in enumerate(progress.messages) if "submitted" in message)
    assert progress.messages.index(uploading[-1]) < first_submitted


# --- Other media fields -----------------------------------------------------------------------


async def test_an_image_list_item_from_a_local_file_is_uploaded(setup: Setup) -> None:
    cat = write(setup.allowed / "cat.webp", media.webp())
    images = [{"image_url": str(cat)}, {"image_url": "https://images.test/dog.png"}]
    async with connect(setup.settings) as client:
        result = await call(
            client,
            "kling_generate_video",
            {"prompt": "two pets", "model": "kling-v3-omni", "image_list": images, "timeout": 10},
        )
    assert not result.is_error, text_of(result)
    assert setup.uploads == [media.webp()]
    (submission,) = setup.emulator.submissions
    hosted, linked = (item["image_url"] for item in submission["image_list"])
    assert hosted in setup.hosted_urls()
    assert linked == "https://images.test/dog.png"


async def test_lip_sync_audio_from_a_local_file_is_uploaded(setup: Setup) -> None:
    speech = write(setup.allowed / "speech.wav", media.wav())
    async with connect(setup.settings) as client:
        result = await call(
            client, "kling_lip_sync", {"video_id": "video-123", "audio_url": str(speech), "timeout": 10}
        )
    assert not result.is_error, text_of(result)
    assert setup.uploads == [media.wav()]
    (submission,) = setup.emulator.submissions
    assert submission["mode"] == "audio2video"
    assert submission["audio_url"] in setup.hosted_urls()
    (stored,) = setup.emulator.uploads.files.values()
    assert stored.mime == "audio/wav"
