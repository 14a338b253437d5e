"""Local files: what is accepted, from where, and every way a hostile path is refused.

The roots tests run a tiny MCPServer against the SDK's in-memory Client, in both protocol eras.
"""

from __future__ import annotations

import hashlib
import os
import socket
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import platformdirs
import pytest
from mcp import Client
from mcp.client.context import ClientRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.types import ErrorData, ListRootsResult, Root, TextContent

from kling_mcp.domain.local_files import (
    LocalFileError,
    MediaKind,
    allowed_directories,
    check_local_file,
    default_directories,
    is_local_reference,
)
from kling_mcp.server.roots import ClientRoots, RootsRequired
from tests import media

FIELD = "image_url"


@pytest.fixture
def allowed(tmp_path: Path) -> Path:
    directory = tmp_path / "Pictures"
    directory.mkdir()
    return directory


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    directory = tmp_path / "elsewhere"
    directory.mkdir()
    return directory


def write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def refusal(given: str, allowed: list[Path], kind: MediaKind = "image") -> str:
    with pytest.raises(LocalFileError) as raised:
        check_local_file(FIELD, given, kind, allowed)
    message = str(raised.value)
    assert message.startswith(f"{FIELD}: the local file ")
    assert "KLING_INPUT_DIRS" in message
    assert "as a root" in message
    assert "Nothing was uploaded and nothing was charged." in message
    for directory in allowed:
        assert str(directory) in message
    return message


def test_a_png_inside_an_allowed_directory_is_accepted(allowed: Path) -> None:
    content = media.png()
    path = write(allowed / "holiday 1.PNG", content)
    file = check_local_file(FIELD, str(path), "image", [allowed])
    assert (file.path, file.name, file.kind, file.mime, file.extension) == (
        path.resolve(),
        "holiday 1.PNG",
        "image",
        "image/png",
        "png",
    )
    assert file.size == len(content)
    assert file.sha256 == hashlib.sha256(content).hexdigest()
    assert file.upload_name == "holiday_1.png"
    with file.open() as stream:
        assert stream.read() == content


@pytest.mark.parametrize(
    ("kind", "make", "mime", "extension"),
    [
        ("image", media.jpeg, "image/jpeg", "jpg"),
        ("image", media.png, "image/png", "png"),
        ("image", media.webp, "image/webp", "webp"),
        ("video", media.mp4, "video/mp4", "mp4"),
        ("video", media.mov, "video/quicktime", "mov"),
        ("video", media.old_mov, "video/quicktime", "mov"),
        ("audio", media.mp3, "audio/mpeg", "mp3"),
        ("audio", lambda: media.mp3(id3=False), "audio/mpeg", "mp3"),
        ("audio", media.wav, "audio/wav", "wav"),
        ("audio", media.m4a, "audio/mp4", "m4a"),
        ("audio", media.aac, "audio/aac", "aac"),
    ],
)
def test_content_decides_the_type_not_the_name(
    allowed: Path, kind: MediaKind, make: Callable[[], bytes], mime: str, extension: str
) -> None:
    path = write(allowed / "no-extension", make())
    file = check_local_file(FIELD, str(path), kind, [allowed])
    assert (file.mime, file.extension, file.upload_name) == (mime, extension, f"no-extension.{extension}")


@pytest.mark.parametrize(
    ("kind", "make", "found"),
    [
        ("image", media.mp4, "is a MP4 video, not an image (JPEG, PNG or WebP)"),
        ("video", media.png, "is a PNG image, not a video (MP4 or MOV)"),
        ("audio", media.mov, "is a MOV video, not an audio (MP3, WAV, M4A or AAC)"),
        ("image", lambda: b"hello, this is text\n", "is not a recognised media format, not an image"),
    ],
)
def test_the_wrong_kind_of_content_is_refused(
    allowed: Path, kind: MediaKind, make: Callable[[], bytes], found: str
) -> None:
    path = write(allowed / "cat.png", make())
    assert found in refusal(str(path), [allowed], kind)


def test_a_text_file_named_png_is_refused(allowed: Path) -> None:
    path = write(allowed / "notes.png", b"ssh-rsa AAAAB3NzaC1yc2E...\n")
    assert "is not a recognised media format" in refusal(str(path), [allowed])


def test_a_path_outside_the_allowed_directories_is_refused(allowed: Path, outside: Path) -> None:
    path = write(outside / "cat.png", media.png())
    assert f"is outside the allowed directories (it resolves to {path})" in refusal(str(path), [allowed])


def test_a_dotdot_escape_is_refused(allowed: Path, outside: Path) -> None:
    write(outside / "cat.png", media.png())
    given = f"{allowed}/../elsewhere/cat.png"
    assert "is outside the allowed directories" in refusal(given, [allowed])


def test_a_symlink_inside_pointing_outside_is_refused(allowed: Path, outside: Path) -> None:
    target = write(outside / "secret.png", media.png())
    (allowed / "innocent.png").symlink_to(target)
    (allowed / "album").symlink_to(outside, target_is_directory=True)
    assert "is outside the allowed directories" in refusal(str(allowed / "innocent.png"), [allowed])
    assert "is outside the allowed directories" in refusal(str(allowed / "album" / "secret.png"), [allowed])


def test_a_symlink_inside_pointing_inside_is_followed(allowed: Path) -> None:
    target = write(allowed / "2024" / "cat.png", media.png())
    (allowed / "latest.png").symlink_to(target)
    assert check_local_file(FIELD, str(allowed / "latest.png"), "image", [allowed]).path == target.resolve()


def test_a_symlinked_allowed_directory_is_compared_resolved(tmp_path: Path, allowed: Path) -> None:
    path = write(allowed / "cat.png", media.png())
    (tmp_path / "link-to-pictures").symlink_to(allowed, target_is_directory=True)
    link = tmp_path / "link-to-pictures"
    assert check_local_file(FIELD, str(path), "image", [link]).path == path.resolve()


def test_containment_is_by_path_components_not_by_prefix(tmp_path: Path) -> None:
    pic = tmp_path / "Pic"
    pic.mkdir()
    path = write(tmp_path / "Pictures2" / "cat.png", media.png())
    assert "is outside the allowed directories" in refusal(str(path), [pic])


@pytest.mark.parametrize("relative", [".env.png", ".ssh/id_rsa.png", "album/.private/cat.png"])
def test_hidden_files_and_files_in_hidden_directories_are_refused(allowed: Path, relative: str) -> None:
    path = write(allowed / relative, media.png())
    assert "is hidden or inside a hidden directory" in refusal(str(path), [allowed])


def test_a_symlink_to_a_hidden_file_is_refused(allowed: Path) -> None:
    target = write(allowed / ".cache" / "cat.png", media.png())
    (allowed / "cat.png").symlink_to(target)
    assert "'.cache'" in refusal(str(allowed / "cat.png"), [allowed])


def test_an_allowed_directory_may_itself_sit_under_a_hidden_one(tmp_path: Path) -> None:
    directory = tmp_path / ".config" / "kling-inputs"
    path = write(directory / "cat.png", media.png())
    assert check_local_file(FIELD, str(path), "image", [directory]).size == len(media.png())


def test_a_huge_sparse_file_is_refused_by_its_size_without_reading_it(allowed: Path) -> None:
    path = write(allowed / "huge.mp4", media.mp4())
    with path.open("r+b") as handle:
        handle.truncate(200 * 1024 * 1024)
    assert "is 200.0 MB, over the 100 MB limit for a video" in refusal(str(path), [allowed], "video")


def test_each_kind_has_its_own_size_limit(allowed: Path) -> None:
    path = write(allowed / "big.png", media.png())
    with path.open("r+b") as handle:
        handle.truncate(11 * 1024 * 1024)
    assert "over the 10 MB limit for an image" in refusal(str(path), [allowed])
    audio = write(allowed / "big.wav", media.wav())
    with audio.open("r+b") as handle:
        handle.truncate(21 * 1024 * 1024)
    assert "over the 20 MB limit for an audio" in refusal(str(audio), [allowed], "audio")


def test_an_empty_file_is_refused(allowed: Path) -> None:
    path = write(allowed / "empty.png", b"")
    assert "is empty" in refusal(str(path), [allowed])


def test_a_directory_is_refused(allowed: Path) -> None:
    (allowed / "album.png").mkdir()
    assert "is a directory, not a regular file" in refusal(str(allowed / "album.png"), [allowed])


def test_a_fifo_is_refused_without_blocking_on_it(allowed: Path) -> None:
    os.mkfifo(allowed / "pipe.png")
    assert "is a FIFO (named pipe), not a regular file" in refusal(str(allowed / "pipe.png"), [allowed])


def test_a_socket_is_refused(tmp_path: Path) -> None:
    # AF_UNIX paths are short (108 bytes): bind in a short directory of our own.
    directory = Path(os.path.realpath("/tmp")) / f"kling-sock-{os.getpid()}"
    directory.mkdir(exist_ok=True)
    listener = socket.socket(socket.AF_UNIX)
    try:
        listener.bind(str(directory / "s.png"))
        assert "is a socket" in refusal(str(directory / "s.png"), [directory])
    finally:
        listener.close()
        (directory / "s.png").unlink()
        directory.rmdir()


def test_dev_zero_is_refused(allowed: Path) -> None:
    assert "is outside the allowed directories" in refusal("/dev/zero", [allowed])
    assert "is a device, not a regular file" in refusal("/dev/zero", [Path("/dev")])


def test_a_missing_file_is_refused(allowed: Path) -> None:
    assert "does not exist" in refusal(str(allowed / "nope.png"), [allowed])


def test_file_uris_are_percent_decoded_and_only_local(allowed: Path) -> None:
    path = write(allowed / "my cat.png", media.png())
    uri = "file://" + str(path).replace(" ", "%20")
    assert check_local_file(FIELD, uri, "image", [allowed]).path == path.resolve()
    localhost = "FILE://localhost" + str(path).replace(" ", "%20")
    assert check_local_file(FIELD, localhost, "image", [allowed]).path == path.resolve()
    assert "names another machine ('otherhost')" in refusal("file://otherhost/x.png", [allowed])


def test_home_paths_expand(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, allowed: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    path = write(allowed / "cat.png", media.png())
    assert check_local_file(FIELD, "~/Pictures/cat.png", "image", [allowed]).path == path.resolve()
    assert check_local_file(FIELD, "~//Pictures/cat.png", "image", [allowed]).path == path.resolve()


def test_a_long_path_is_shown_cut_with_its_length(allowed: Path) -> None:
    given = "/" + "a" * 300 + ".png"
    message = refusal(given, [allowed])
    assert "... (305 characters)" in message
    assert "a" * 150 not in message


def test_a_nul_character_is_refused(allowed: Path) -> None:
    assert "contains a NUL character" in refusal(f"{allowed}/cat.png\x00.jpg", [allowed])


@pytest.mark.parametrize(
    ("value", "local"),
    [
        ("/home/a/cat.png", True),
        ("~/Pictures/cat.png", True),
        ("file:///home/a/cat.png", True),
        ("File://localhost/home/a/cat.png", True),
        ("file://otherhost/x.png", True),
        ("https://example.com/cat.png", False),
        ("http://example.com/cat.png", False),
        ("cat.png", False),
        ("~alice/cat.png", False),
        ("", False),
        ("C:\\Users\\a\\cat.png", False),  # on Windows only
    ],
)
def test_is_local_reference(value: str, local: bool) -> None:
    assert is_local_reference(value) is local


def test_a_file_swapped_after_the_check_is_not_opened(allowed: Path) -> None:
    path = write(allowed / "cat.png", media.png())
    file = check_local_file(FIELD, str(path), "image", [allowed])
    replacement = write(allowed / "other.png", media.png() + b"more")
    os.replace(replacement, path)
    with pytest.raises(LocalFileError, match="changed after it was checked"):
        file.open()


def test_a_file_modified_after_the_check_is_not_opened(allowed: Path) -> None:
    path = write(allowed / "cat.png", media.png())
    file = check_local_file(FIELD, str(path), "image", [allowed])
    with path.open("ab") as handle:
        handle.write(b"appended")
    os.utime(path, ns=(1, 1))
    with pytest.raises(LocalFileError, match="modified after it was checked"):
        file.open()


def test_a_symlink_swapped_in_after_the_check_is_not_followed(allowed: Path, outside: Path) -> None:
    path = write(allowed / "cat.png", media.png())
    file = check_local_file(FIELD, str(path), "image", [allowed])
    path.unlink()
    path.symlink_to(write(outside / "secret.png", media.png()))
    with pytest.raises(LocalFileError, match="changed after it was checked"):
        file.open()


def test_allowed_directories_are_roots_and_configured_ones(tmp_path: Path) -> None:
    roots, configured = [tmp_path / "a", tmp_path / "b"], [tmp_path / "b", tmp_path / "c"]
    assert allowed_directories(roots, configured) == [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    assert allowed_directories(None, configured) == configured
    assert allowed_directories(roots, ()) == roots


@pytest.fixture
def user_dirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    dirs = {name: home / name.title() for name in ("pictures", "videos", "music", "downloads", "desktop")}
    for name, path in dirs.items():
        if name != "music":
            path.mkdir(parents=True)
        monkeypatch.setattr(platformdirs, f"user_{name}_dir", lambda path=path: str(path))
    # A platform without a documents folder answers the home directory: never a default.
    monkeypatch.setattr(platformdirs, "user_documents_dir", lambda: str(home))
    return dirs


def test_without_roots_or_configured_ones_the_user_media_directories_that_exist_apply(
    user_dirs: dict[str, Path],
) -> None:
    expected = [user_dirs[name] for name in ("pictures", "videos", "downloads", "desktop")]
    assert default_directories() == expected
    assert allowed_directories(None, ()) == expected
    assert allowed_directories([], ()) == expected


# The client's roots, through the SDK's in-memory client, in both protocol eras.

ERAS = ["legacy", "auto"]


class RootsClient:
    """The client side: the roots it lists, and how often it was asked."""

    def __init__(self, *directories: Path) -> None:
        self.directories = list(directories)
        self.asked = 0

    async def list_roots(self, context: ClientRequestContext) -> ListRootsResult:
        self.asked += 1
        return ListRootsResult(roots=[Root(uri=directory.as_uri()) for directory in self.directories])


def roots_server(configured: list[Path]) -> MCPServer:
    """A server with one tool that checks a local image against the roots and `configured`."""
    roots = ClientRoots()
    server = MCPServer("roots-test")
    server.middleware.append(roots.watch)

    @server.tool(structured_output=False)
    async def check(ctx: Context, path: str) -> Any:
        try:
            client_roots = await roots.get(ctx)
        except RootsRequired as needed:
            return needed.result
        allowed = allowed_directories(client_roots, configured)
        try:
            return str(check_local_file("image_url", path, "image", allowed).path)
        except LocalFileError as exc:
            return f"refused: {exc}"

    return server


async def check_through(client: Client, path: Path) -> str:
    result = await client.call_tool("check", {"path": str(path)})
    content = result.content[0]
    assert isinstance(content, TextContent)
    return content.text


@pytest.fixture(autouse=True)
def _roots_are_deprecated_but_current() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        yield


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ERAS)
async def test_the_clients_roots_are_honoured(mode: Any, tmp_path: Path) -> None:
    shared, configured, other = (tmp_path / name for name in ("shared", "configured", "other"))
    in_root = write(shared / "cat.png", media.png())
    in_configured = write(configured / "dog.png", media.png())
    in_neither = write(other / "fox.png", media.png())
    client_side = RootsClient(shared)
    async with Client(
        roots_server([configured]), mode=mode, list_roots_callback=client_side.list_roots
    ) as client:
        assert await check_through(client, in_root) == str(in_root.resolve())
        assert await check_through(client, in_configured) == str(in_configured.resolve())
        assert (await check_through(client, in_neither)).startswith("refused: image_url: the local file")
    assert client_side.asked >= 1


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ERAS)
async def test_a_change_of_roots_takes_effect_on_the_next_call(mode: Any, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    cat, dog = write(first / "cat.png", media.png()), write(second / "dog.png", media.png())
    client_side = RootsClient(first)
    async with Client(roots_server([]), mode=mode, list_roots_callback=client_side.list_roots) as client:
        assert await check_through(client, cat) == str(cat.resolve())
        assert (await check_through(client, dog)).startswith("refused:")
        client_side.directories = [second]
        if mode == "legacy":  # the server asks once per session, again after the client says so
            assert (await check_through(client, dog)).startswith("refused:")
            assert client_side.asked == 1
            await client.send_roots_list_changed()
        assert await check_through(client, dog) == str(dog.resolve())
        assert (await check_through(client, cat)).startswith("refused:")
    # Legacy: once per connection and once after the change; 2026-07-28: on every call.
    assert client_side.asked == (2 if mode == "legacy" else 4)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ERAS)
async def test_a_client_without_roots_gets_the_configured_directories(mode: Any, tmp_path: Path) -> None:
    configured = tmp_path / "configured"
    dog = write(configured / "dog.png", media.png())
    cat = write(tmp_path / "shared" / "cat.png", media.png())
    async with Client(roots_server([configured]), mode=mode) as client:
        assert await check_through(client, dog) == str(dog.resolve())
        assert "is outside the allowed directories" in await check_through(client, cat)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ERAS)
async def test_roots_that_are_not_local_directories_are_ignored(mode: Any, tmp_path: Path) -> None:
    configured = tmp_path / "configured"
    dog = write(configured / "dog.png", media.png())

    async def remote_roots(context: ClientRequestContext) -> ListRootsResult:
        return ListRootsResult(roots=[Root(uri="file://otherhost/share")])

    async with Client(roots_server([configured]), mode=mode, list_roots_callback=remote_roots) as client:
        assert await check_through(client, dog) == str(dog.resolve())


@pytest.mark.anyio
async def test_a_failed_roots_request_falls_back_and_is_asked_again(tmp_path: Path) -> None:
    configured, shared = tmp_path / "configured", tmp_path / "shared"
    dog, cat = write(configured / "dog.png", media.png()), write(shared / "cat.png", media.png())
    answers: list[ListRootsResult | ErrorData] = [
        ErrorData(code=-32603, message="roots are not ready yet"),
        ListRootsResult(roots=[Root(uri=shared.as_uri())]),
    ]

    async def flaky_roots(context: ClientRequestContext) -> ListRootsResult | ErrorData:
        return answers.pop(0)

    server = roots_server([configured])
    async with Client(server, mode="legacy", list_roots_callback=flaky_roots) as client:
        assert "is outside the allowed directories" in await check_through(client, cat)
        assert await check_through(client, cat) == str(cat.resolve())
        assert await check_through(client, dog) == str(dog.resolve())
    assert answers == []
