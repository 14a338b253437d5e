"""The model sees the video, and clips become a film: through the tools, against the emulator's real
clips, every picture decoded.

A finished result carries the contact sheet of the saved video; kling_extract_frame saves a frame
as a PNG that goes straight back into a generation as its start image; kling_join_videos makes one
MP4 of several clips. Bad sources are refused naming the field, and nothing half-written is left.
"""

from __future__ import annotations

import base64
import dataclasses
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import av
import pytest
from mcp import Client
from mcp.types import CallToolResult, ImageContent, ResourceLink, TextContent

from kling_mcp.emulator import Emulator
from kling_mcp.settings import Settings
from tests import media
from tests.emulated import call, connect, contents, emulated, eventually, structured, text_of

# The player's browser host, as its own tests load it (fixtures: `host` needs `host_url`).
from tests.test_player_browser import Host, host, host_url, served_player  # noqa: F401
from tests.test_tasks_extension import call_as_task, finished, tasks_client

pytestmark = pytest.mark.anyio

FROM_IMAGE = "kling_generate_video_from_image"


@dataclass
class Setup:
    emulator: Emulator
    settings: Settings
    allowed: Path

    @property
    def output(self) -> Path:
        return self.settings.output_dir


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    emulator = Emulator(task_seconds=0.1, clips=True)
    async with emulated(emulator, tmp_path, input_dirs=(allowed,)) as settings:
        yield Setup(emulator, settings, allowed)


async def generate(client: Client, prompt: str = "a cat surfs at sunset", **arguments: Any) -> dict[str, Any]:
    result = await call(client, "kling_generate_video", {"prompt": prompt, "timeout": 15, **arguments})
    assert not result.is_error, text_of(result)
    return structured(result)


def undecodable_mp4() -> bytes:
    """An MP4 by its first bytes (an `ftyp` box), with nothing a decoder can read after them."""
    return b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x01" * 4000


def said(result: CallToolResult) -> str:
    """The first text of a frame tool's answer (after it: the picture, and a link to a joined video)."""
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


def images(result: CallToolResult) -> list[ImageContent]:
    return [block for block in result.content if isinstance(block, ImageContent)]


def decoded(data: bytes) -> av.VideoFrame:
    """The one picture in `data` (a JPEG or PNG), as RGB."""
    with av.open(io.BytesIO(data)) as container:
        return next(container.decode(video=0)).reformat(format="rgb24")


def frames_of(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        return [frame.reformat(format="rgb24") for frame in container.decode(video=0)]


def pixels(frame: av.VideoFrame) -> bytes:
    plane, row = frame.planes[0], frame.width * 3
    data = bytes(plane)
    return b"".join(data[y * plane.line_size : y * plane.line_size + row] for y in range(frame.height))


def sheet_of(result: CallToolResult) -> bytes:
    (image,) = images(result)
    assert image.mime_type == "image/jpeg"
    return base64.b64decode(image.data)


# --- The contact sheet in every finished result ---------------------------------------------


async def test_a_finished_generation_shows_the_model_a_contact_sheet_of_its_video(setup: Setup) -> None:
    async with connect(setup.settings) as client:
        result = await call(client, "kling_generate_video", {"prompt": "a cat surfs", "timeout": 15})
    video = Path(structured(result)["file_path"])
    data = sheet_of(result)
    sheet = decoded(data)
    assert sheet.width >= 512
    assert len(data) <= 1_000_000
    assert (video.parent / f"{video.stem}.sheet.jpg").read_bytes() == data
    note = next(block for block in result.content[1:] if isinstance(block, TextContent))
    assert "9 frames from the first to the last" in note.text
    assert isinstance(result.content[-1], ResourceLink)
    tiles = [_tile(sheet, index) for index in range(9)]
    assert len(set(tiles)) == 9, "the frames taken across the clip are all alike"


def _tile(sheet: av.VideoFrame, index: int) -> bytes:
    width, height = sheet.width // 3, sheet.height // 3
    data, row = pixels(sheet), sheet.width * 3
    top, left = (index // 3) * height, (index % 3) * width * 3
    return b"".join(data[(top + y) * row + left : (top + y) * row + left + width * 3] for y in range(height))


async def test_get_task_shows_the_sheet_kept_beside_the_video_without_decoding_again(setup: Setup) -> None:
    async with connect(setup.settings) as client:
        first = await call(client, "kling_generate_video", {"prompt": "a cat surfs", "timeout": 15})
        video = Path(structured(first)["file_path"])
        kept = video.parent / f"{video.stem}.sheet.jpg"
        made = kept.stat().st_mtime_ns
        again = await call(client, "kling_get_task", {"task_id": structured(first)["task_id"]})
    assert sheet_of(again) == sheet_of(first)
    assert kept.stat().st_mtime_ns == made


async def test_a_generation_run_as_an_mcp_task_carries_the_sheet_in_its_result(setup: Setup) -> None:
    async with tasks_client(setup.settings) as client:
        created = await call_as_task(client, "kling_generate_video", {"prompt": "a fox in the snow"})
        done = await finished(client, created["taskId"])
    result = CallToolResult.model_validate(done["result"])
    video = Path(structured(result)["file_path"])
    assert sheet_of(result) == (video.parent / f"{video.stem}.sheet.jpg").read_bytes()


async def test_a_video_that_cannot_be_decoded_is_still_answered_with_its_file(setup: Setup) -> None:
    setup.emulator.clips = False
    setup.emulator.video = undecodable_mp4()
    async with connect(setup.settings) as client:
        result = await call(client, "kling_generate_video", {"prompt": "a cat surfs", "timeout": 15})
    assert not result.is_error
    assert await contents(structured(result)["file_path"]) == setup.emulator.video
    assert images(result) == []
    assert "Saved to" in text_of(result)


async def test_a_portrait_video_has_a_portrait_sheet(setup: Setup) -> None:
    async with connect(setup.settings) as client:
        result = await call(
            client, "kling_generate_video", {"prompt": "a cat", "aspect_ratio": "9:16", "timeout": 15}
        )
    (frame, *_) = frames_of(Path(structured(result)["file_path"]))
    assert (frame.width, frame.height) == (320, 568)
    sheet = decoded(sheet_of(result))
    assert (sheet.width, sheet.height) == (576, 1026)  # 3 x 3 tiles of 192 x 342: tall, yet not huge


async def test_the_player_shows_the_contact_sheet_as_the_videos_poster(setup: Setup, host: Host) -> None:  # noqa: F811
    async with connect(setup.settings) as client:
        result = await call(client, "kling_generate_video", {"prompt": "a cat surfs", "timeout": 15})
    card = await host.load(await served_player(dataclasses.replace(setup.settings, demo=True)))
    await card.send_result(result.model_dump(mode="json", by_alias=True, exclude_none=True))
    await card.frame.wait_for_function("() => document.getElementById('video').poster !== ''")
    poster = await card.frame.evaluate("document.getElementById('video').poster")
    assert poster == f"data:image/jpeg;base64,{images(result)[0].data}"
    loaded = (
        "(src) => { const shown = new Image(); shown.src = src; "
        "return shown.decode().then(() => shown.width) }"
    )
    assert await card.frame.evaluate(loaded, poster) == 768, "the host's CSP let the poster load"


# --- Continuity: the next shot starts on the last frame, and the shots become one film --------


async def test_the_last_frame_starts_the_next_shot_and_both_shots_join_into_one_film(setup: Setup) -> None:
    async with connect(setup.settings) as client:
        shot_one = await generate(client, "a cat paddles out")
        frame = await call(client, "kling_extract_frame", {"source": shot_one["task_id"], "at": "last"})
        assert not frame.is_error, said(frame)
        png = Path(structured(frame)["file_path"])
        result = await call(client, FROM_IMAGE, {"prompt": "the cat stands up", "start_image_url": str(png)})
        assert not result.is_error, text_of(result)
        shot_two = structured(result)
        joined = await call(
            client, "kling_join_videos", {"sources": [shot_one["task_id"], shot_two["task_id"]]}
        )
    assert not joined.is_error, said(joined)

    first_video = Path(shot_one["file_path"])
    assert png == first_video.with_name(f"{first_video.stem}.last.png")
    assert pixels(decoded(await contents(png))) == pixels(frames_of(first_video)[-1])
    assert "start_image_url" in said(frame)
    preview = decoded(base64.b64decode(images(frame)[0].data))
    assert preview.width <= 768

    (upload,) = [stored.content for stored in setup.emulator.uploads.files.values()]
    assert upload == await contents(png)
    assert setup.emulator.submissions[-1]["start_image_url"].startswith(setup.settings.platform_base_url)

    film = structured(joined)
    assert film["re_encoded"] is False
    clips = [frames_of(Path(shot["file_path"])) for shot in (shot_one, shot_two)]
    played = frames_of(Path(film["file_path"]))
    assert [pixels(frame) for frame in played] == [pixels(frame) for clip in clips for frame in clip]
    assert film["duration"] == pytest.approx(2 * 5.042, abs=0.05)
    assert decoded(sheet_of(joined)).width >= 512


async def test_a_frame_at_a_time_is_the_one_shown_then(setup: Setup) -> None:
    async with connect(setup.settings) as client:
        video = await generate(client)
        frame = await call(client, "kling_extract_frame", {"source": video["file_path"], "at": 2.5})
    png = Path(structured(frame)["file_path"])
    assert png.name.endswith(".at-2.5s.png")
    shown = frames_of(Path(video["file_path"]))[60]  # 24 frames a second: 2.5 s is frame 60
    assert pixels(decoded(await contents(png))) == pixels(shown)


async def test_clips_of_different_shapes_are_re_encoded_into_the_first_ones_size(setup: Setup) -> None:
    async with connect(setup.settings) as client:
        wide = await generate(client, "a wide shot", duration=5)
        tall = await generate(client, "a tall shot", aspect_ratio="9:16")
        joined = await call(
            client,
            "kling_join_videos",
            {"sources": [wide["file_path"], tall["task_id"]], "output": "my film"},
        )
    film = structured(joined)
    assert film["re_encoded"] is True
    assert Path(film["file_path"]) == setup.output / "my film.mp4"
    played = frames_of(Path(film["file_path"]))
    assert {(frame.width, frame.height) for frame in played} == {(512, 288)}
    assert len(played) == pytest.approx(2 * 121, abs=2)
    assert not [path for path in setup.output.iterdir() if path.name.endswith(".part")]


# --- Bad sources, refused naming the field --------------------------------------------------


async def refusal(client: Client, tool: str, arguments: dict[str, Any]) -> str:
    result = await call(client, tool, arguments)
    assert result.is_error, result
    return said(result).removeprefix(f"Error executing tool {tool}: ")


async def test_bad_sources_are_refused_naming_the_field_and_the_fix(setup: Setup, tmp_path: Path) -> None:
    outside = tmp_path / "outside.mp4"
    async with connect(setup.settings) as client:
        video = Path((await generate(client))["file_path"])
        await anyio.Path(outside).write_bytes(await contents(video))
        (setup.allowed / "cat.mp4").write_bytes(media.png())
        (setup.allowed / "broken.mp4").write_bytes(undecodable_mp4())
        unknown = await refusal(client, "kling_extract_frame", {"source": "no-such-task"})
        elsewhere = await refusal(client, "kling_extract_frame", {"source": str(outside)})
        not_video = await refusal(client, "kling_extract_frame", {"source": str(setup.allowed / "cat.mp4")})
        missing = await refusal(client, "kling_extract_frame", {"source": str(setup.allowed / "gone.mp4")})
        broken = await refusal(client, "kling_extract_frame", {"source": str(setup.allowed / "broken.mp4")})
        late = await refusal(client, "kling_extract_frame", {"source": str(video), "at": 60})
        joined = await refusal(
            client, "kling_join_videos", {"sources": [str(video), "no-such-task", str(outside)]}
        )
        taken = await refusal(
            client, "kling_join_videos", {"sources": [str(video), str(video)], "output": video.name}
        )
    assert unknown.startswith("source: kling-mcp did not start task 'no-such-task'")
    assert elsewhere.startswith("source: the local file")
    assert "outside the allowed directories" in elsewhere
    assert not_video.startswith("source: the local file")
    assert "is a PNG image, not a video" in not_video
    assert missing.startswith("source: the local file")
    assert "does not exist" in missing
    assert broken.startswith("source: ")
    assert "cannot be read as a video" in broken
    assert late.startswith("at: 60 s is past the end of the video (5.042 s long)")
    assert joined.splitlines()[0].startswith("sources.1: kling-mcp did not start task")
    assert any(line.startswith("sources.2: the local file") for line in joined.splitlines())
    assert taken.startswith(f"output: {video} exists already")
    assert sorted(path.name for path in setup.output.iterdir()) == sorted(
        [video.name, f"{video.stem}.sheet.jpg"]
    )


async def test_a_hosted_server_refuses_the_local_tools(setup: Setup) -> None:
    hosted = dataclasses.replace(setup.settings, hosted=True)
    async with connect(hosted) as client:
        for tool, arguments in (
            ("kling_extract_frame", {"source": "some-task"}),
            ("kling_join_videos", {"sources": ["some-task", "other-task"]}),
        ):
            assert (await refusal(client, tool, arguments)).startswith(
                "This is a hosted kling-mcp, which keeps no video files, so it takes no frames from videos"
            )


async def test_a_video_saved_with_no_call_waiting_has_its_contact_sheet_made_beside_it(setup: Setup) -> None:
    setup.emulator.task_seconds = 0.5
    async with connect(setup.settings) as client:
        started = await call(client, "kling_generate_video", {"prompt": "left to itself", "timeout": 0})
        assert structured(started)["state"] == "running"
        sheets = await eventually(lambda: sorted(setup.output.glob("*.sheet.jpg")), "a contact sheet on disk")
    (video,) = sorted(setup.output.glob("*.mp4"))
    assert sheets == [video.with_name(f"{video.stem}.sheet.jpg")]  # made when saved, before anyone asked
    assert decoded(sheets[0].read_bytes()).width >= 512
