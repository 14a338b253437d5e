"""Local files: what is accepted, from where, and every way a hostile path is refused.

The roots tests run a tiny MCPServer against the SDK's in-memory Client, in both protocol eras.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import socket
import stat
import sys
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

from kling_mcp.domain import local_files
from kling_mcp.domain.local_files import (
    MB,
    LocalFileError,
    MediaKind,
    Refused,
    allowed_directories,
    check_local_file,
    default_directories,
    is_local_reference,
    sniff,
)
from kling_mcp.server.roots import ClientRoots, RootsRequired
from tests import media

FIELD = "image_url"
MOVED = "was moved, or swapped for a symbolic link, while being checked"
NOTHING_DONE = "Nothing was sent, nothing was charged."


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
    assert "Nothing was sent, nothing was charged." in message
    for directory in allowed:
        assert str(directory) in message
    return message


def refused_because(given: str, allowed: list[Path], kind: MediaKind = "image") -> str:
    """The rule a refusal names, from its first line: "<field>: the local file '<given>' <rule>."."""
    first = refusal(given, allowed, kind).splitlines()[0]
    start = f"{FIELD}: the local file {given!r} "
    assert first.startswith(start), first
    assert first.endswith("."), first
    return first[len(start) : -1]


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


@pytest.mark.parametrize(
    ("head", "label"),
    [
        (b"\xff\xfb\x90\x64", "MP3"),  # MPEG-1 Layer III, 128 kb/s, 44.1 kHz
        (b"\xff\xfa\x90\x64", "MP3"),  # the same with a CRC
        (b"\xff\xf3\x90\x64", "MP3"),  # MPEG-2
        (b"\xff\xe3\x90\x64", "MP3"),  # MPEG-2.5
        (b"\xff\xfd\x90\x64", "MP3"),  # Layer II
        (b"\xff\xff\x90\x64", "MP3"),  # Layer I
        (b"\xff\xfb\x00\x64", "MP3"),  # free-format bit rate
        (b"\xff\xfb\x94\x64", "MP3"),  # 48 kHz
        (b"\xff\xfb\x98\x64", "MP3"),  # 32 kHz
        (b"\xff\xfb\x90\xf0", "MP3"),  # whatever the fourth byte
        (b"\xff\xeb\x90\x64", None),  # reserved MPEG version
        (b"\xff\xe1\x90\x64", None),  # reserved layer
        (b"\xff\xfb\xf0\x64", None),  # bad bit rate
        (b"\xff\xfb\x9c\x64", None),  # reserved sample rate
        (b"\xff\xdb\x90\x64", None),  # 11 sync bits, not 12
        (b"\x7f\xfb\x90\x64", None),  # no sync byte
        (b"\xff\xfb\x90", None),  # too short for a frame header
        (b"\xff\xf1\x50\x80", "AAC"),  # ADTS, AAC-LC, 44.1 kHz
        (b"\xff\xf9\x50\x80", "AAC"),  # ADTS, MPEG-2
        (b"\xff\xf1\x40\x80", "AAC"),  # 96 kHz, the first sampling index
        (b"\xff\xf1\x70\x80", "AAC"),  # 7.35 kHz, the last
        (b"\xff\xf1\x74\x80", None),  # reserved sampling index 13
        (b"\xff\xf1\x7c\x80", None),  # 15: explicit rate, not in ADTS
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", None),  # a HEIC photo
        (b"RIFX\x24\x00\x00\x00WAVE", None),  # big-endian WAV
    ],
)
def test_audio_frames_and_containers_are_recognised_by_their_header_bits(
    head: bytes, label: str | None
) -> None:
    media_type = sniff(head)
    assert (media_type.label if media_type else None) == label


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
    assert refused_because(str(path), [allowed]) == "is empty"


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
    assert refused_because(str(allowed / "nope.png"), [allowed]) == "does not exist"


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
    assert refused_because(f"{allowed}/cat.png\x00.jpg", [allowed]) == "contains a NUL character"


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


WINDOWS_REFERENCES = {
    "C:\\Users\\a\\cat.png": True,
    "c:/Users/a/cat.png": True,
    "D:\\": True,
    "~\\Pictures\\cat.png": True,
    "/home/a/cat.png": True,
    "C:cat.png": False,  # relative to the drive's current folder
    "C:": False,
    "1:\\cat.png": False,
    "\u00e9:\\cat.png": False,
    "cat.png": False,
    "https://example.com/cat.png": False,
}


def test_on_windows_drive_paths_and_backslash_home_paths_are_local(monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as windows:
        windows.setattr(sys, "platform", "win32")
        answers = {value: is_local_reference(value) for value in WINDOWS_REFERENCES}
    assert answers == WINDOWS_REFERENCES


def test_a_file_swapped_after_the_check_is_not_opened(allowed: Path) -> None:
    path = write(allowed / "cat.png", media.png())
    file = check_local_file(FIELD, str(path), "image", [allowed])
    replacement = write(allowed / "other.png", media.png() + b"more")
    os.replace(replacement, path)
    with pytest.raises(LocalFileError) as refused:
        file.open()
    assert str(refused.value) == (
        f"{file.path} changed after it was checked (was replaced by another file); "
        "Nothing was sent, nothing was charged."
    )


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
    with pytest.raises(LocalFileError) as refused:
        file.open()
    assert str(refused.value) == f"{file.path} changed after it was checked ({MOVED}); {NOTHING_DONE}"


# Every rule, worded exactly: what a refusal says is what the user acts on.


def test_a_refusal_names_the_rule_every_allowed_directory_and_the_way_to_widen_them(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    given = str(first / "cat.png")
    assert refusal(given, [first, second]) == "\n".join(
        (
            f"{FIELD}: the local file {given!r} does not exist.",
            f"Allowed directories: {first}, {second}.",
            "To use a file from another folder, share that folder with your MCP client as a root, "
            f"or add it to KLING_INPUT_DIRS (separate several with '{os.pathsep}').",
            NOTHING_DONE,
        )
    )
    assert "\nAllowed directories: none (no root, no KLING_INPUT_DIRS, no default).\n" in refusal(given, [])


def test_a_path_of_a_hundred_characters_is_shown_whole(allowed: Path) -> None:
    given = "/" + "a" * 95 + ".png"
    assert refused_because(given, [allowed]) == "does not exist"


@pytest.mark.parametrize(
    ("given", "rule"),
    [
        ("cat.png", "is not an absolute path (start it with / or ~/, or give an http(s) URL)"),
        (
            "file:///tmp/cat.png?v=2",
            "has a query or fragment (?/#): percent-encode those characters in a file name",
        ),
        (
            "file:///tmp/cat.png#top",
            "has a query or fragment (?/#): percent-encode those characters in a file name",
        ),
        ("file:///tmp/cat%00.png", "is not a file:///absolute/path URI"),
        ("file://", "is not a file:///absolute/path URI"),
    ],
)
def test_a_malformed_reference_is_refused_for_what_is_wrong(allowed: Path, given: str, rule: str) -> None:
    assert refused_because(given, [allowed]) == rule


def test_a_home_path_may_use_either_slash(monkeypatch: pytest.MonkeyPatch, allowed: Path) -> None:
    monkeypatch.setenv("HOME", str(allowed))
    path = write(allowed / "Xmas.png", media.png())
    assert check_local_file(FIELD, "~/Xmas.png", "image", [allowed]).path == path.resolve()
    assert check_local_file(FIELD, "~\\Xmas.png", "image", [allowed]).path == path.resolve()


def test_a_path_through_a_file_is_refused_as_unresolvable(allowed: Path) -> None:
    path = write(allowed / "cat.png", media.png())
    assert refused_because(f"{path}/x.png", [allowed]) == "cannot be resolved (Not a directory)"


def test_a_path_the_server_may_not_look_into_is_refused_as_unreadable(
    monkeypatch: pytest.MonkeyPatch, allowed: Path
) -> None:
    real_realpath = os.path.realpath

    def forbidden(path: str, *, strict: bool = False) -> str:
        if strict:  # root runs these tests: a mode of 000 would stop nobody
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_realpath(path)

    monkeypatch.setattr(os.path, "realpath", forbidden)
    assert refused_because(str(allowed / "cat.png"), [allowed]) == "cannot be read (permission denied)"


def test_a_file_the_server_may_not_open_is_refused_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, allowed: Path
) -> None:
    path = write(allowed / "cat.png", media.png())
    real_open = os.open

    def unreadable(name: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if name == "cat.png":  # root runs these tests: a mode of 000 would stop nobody
            raise PermissionError(errno.EACCES, "Permission denied", name)
        return real_open(name, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", unreadable)
    assert refused_because(str(path), [allowed]) == "cannot be read (Permission denied)"


@pytest.mark.parametrize(("mode", "what"), [(stat.S_IFBLK, "a device"), (0, "not a regular file")])
def test_every_file_that_is_not_a_regular_one_is_refused_for_what_it_is(mode: int, what: str) -> None:
    status = os.stat_result((mode | 0o644, 0, 0, 1, 0, 0, 4096, 0, 0, 0))
    with pytest.raises(Refused) as refused:
        local_files._check_type_and_size(status, "image")
    assert str(refused.value) == f"is {what}, not a regular file"


# Sizes: up to the limit, and a file that grows while it is checked.


def test_a_file_of_exactly_the_size_limit_is_accepted(allowed: Path) -> None:
    path = write(allowed / "big.png", media.png())
    with path.open("r+b") as handle:
        handle.truncate(10 * MB)
    assert check_local_file(FIELD, str(path), "image", [allowed]).size == 10 * MB


def while_checked(monkeypatch: pytest.MonkeyPatch, attack: Callable[[], None]) -> None:
    """Run `attack` once the file's status was judged, before it is opened and read."""
    judge = local_files._check_size

    def judged_then_attacked(size: int, kind: MediaKind) -> None:
        judge(size, kind)
        attack()

    monkeypatch.setattr(local_files, "_check_size", judged_then_attacked)


def test_a_file_growing_past_the_limit_while_read_is_refused(
    monkeypatch: pytest.MonkeyPatch, allowed: Path
) -> None:
    path = write(allowed / "cat.png", media.png())
    while_checked(monkeypatch, lambda: os.truncate(path, 10 * MB + 1))
    assert refused_because(str(path), [allowed]) == "grew past the 10 MB limit while being read"


def test_reading_stops_soon_after_the_limit_is_passed() -> None:
    endless = io.BytesIO(bytes(8 * MB))
    with pytest.raises(Refused):
        local_files._hash_rest(endless, b"", 2 * MB)
    assert endless.tell() <= 3 * MB


def test_a_file_replaced_between_its_check_and_its_opening_is_refused(
    monkeypatch: pytest.MonkeyPatch, allowed: Path, outside: Path
) -> None:
    path = write(allowed / "cat.png", media.png())
    secret = write(outside / "secret.png", media.png() + b"secret")
    while_checked(monkeypatch, lambda: os.replace(secret, path))
    assert refused_because(str(path), [allowed]) == "was replaced by another file while being checked"


# The walk beneath the allowed directory, both ways: openat2, and one folder at a time.

INSIDE = media.png() + b"inside: the picture the user meant"
SECRET = media.png() + b"outside: the secret"


@pytest.fixture(params=["openat2", "walk"])
def opener(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """openat2 (Linux 5.6), or the walk one folder at a time that macOS and older kernels get."""
    if request.param == "walk":
        monkeypatch.setattr(local_files, "_has_openat2", lambda: False)
    elif not local_files._has_openat2():
        pytest.skip("this kernel has no openat2 (Linux 5.6 and later)")
    return str(request.param)


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd" if sys.platform == "linux" else "/dev/fd"))


@pytest.fixture
def pictures(allowed: Path, outside: Path) -> Path:
    """INSIDE at `clip.png`, `sub/clip.png` and `sub/album/clip.png` in `allowed`, SECRET at the same
    places in `outside`."""
    for folders in ("", "sub", "sub/album"):
        write(allowed / folders / "clip.png", INSIDE)
        write(outside / folders / "clip.png", SECRET)
    return allowed


def swap_for_symlink(allowed: Path, outside: Path, name: str) -> None:
    """What an attacker does: `allowed/name` becomes a symlink to the same place in `outside`."""
    os.rename(allowed / name, allowed / "parked")
    (allowed / name).symlink_to(outside / name)


@pytest.mark.parametrize("folders", ["", "sub", "sub/album"])
def test_a_file_is_read_from_its_folder_at_any_depth(pictures: Path, opener: str, folders: str) -> None:
    path = pictures / folders / "clip.png"
    before = open_descriptors()
    file = check_local_file(FIELD, str(path), "image", [pictures])
    assert file.sha256 == hashlib.sha256(INSIDE).hexdigest()
    with file.open() as stream:
        assert stream.read() == INSIDE
    assert open_descriptors() == before


SWAPS = [("", "clip.png"), ("sub", "sub"), ("sub/album", "sub"), ("sub/album", "sub/album")]
"""Where the file is, and what is swapped: the file itself, its folder, or a folder further up."""


@pytest.mark.parametrize(("folders", "swapped"), SWAPS)
def test_a_folder_swapped_for_a_symlink_after_the_check_is_not_opened(
    pictures: Path, outside: Path, opener: str, folders: str, swapped: str
) -> None:
    file = check_local_file(FIELD, str(pictures / folders / "clip.png"), "image", [pictures])
    before = open_descriptors()
    swap_for_symlink(pictures, outside, swapped)
    with pytest.raises(LocalFileError) as refused:
        file.open()
    assert str(refused.value) == f"{file.path} changed after it was checked ({MOVED}); {NOTHING_DONE}"
    assert open_descriptors() == before


@pytest.mark.parametrize(("folders", "swapped"), SWAPS)
def test_a_folder_swapped_for_a_symlink_right_after_it_was_resolved_is_refused(
    monkeypatch: pytest.MonkeyPatch, pictures: Path, outside: Path, opener: str, folders: str, swapped: str
) -> None:
    path = pictures / folders / "clip.png"
    real_realpath = os.path.realpath

    def realpath_then_swap(name: str, *, strict: bool = False) -> str:
        resolved = real_realpath(name, strict=strict)
        if strict:  # the path of the file was resolved: the attacker strikes
            swap_for_symlink(pictures, outside, swapped)
        return resolved

    monkeypatch.setattr(os.path, "realpath", realpath_then_swap)
    before = open_descriptors()
    assert refused_because(str(path), [pictures]) == MOVED
    assert open_descriptors() == before


def test_openat2_fails_as_os_open_does(tmp_path: Path) -> None:
    if not local_files._has_openat2():
        pytest.skip("this kernel has no openat2 (Linux 5.6 and later)")
    folder = os.open(tmp_path, os.O_RDONLY)
    try:
        with pytest.raises(FileNotFoundError) as expected:
            os.open("missing/cat.png", os.O_RDONLY, dir_fd=folder)
        with pytest.raises(FileNotFoundError) as got:
            local_files._openat2_beneath(folder, "missing/cat.png", os.O_RDONLY)
    finally:
        os.close(folder)
    assert (got.value.errno, got.value.strerror, got.value.filename) == (
        expected.value.errno,
        expected.value.strerror,
        expected.value.filename,
    )


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
