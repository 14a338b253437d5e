"""Local work on saved videos (kling_mcp.clips), on real clips, every result decoded: contact sheets,
frames, joins; and the emulator's clips they are made from.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import av
import pytest

from kling_mcp import clips
from kling_mcp.clips.video import write_atomically
from kling_mcp.emulator.media import task_clip

FIVE_SECONDS = 5.033
"""What the emulator's 5 s clips last (Kling reports a few frames more than asked)."""


def clip(directory: Path, name: str, aspect_ratio: str = "16:9", seconds: float = 2.0) -> Path:
    """A real H.264 clip of the emulator's, its pictures drawn from `name`."""
    path = directory / f"{name}.mp4"
    path.write_bytes(task_clip(name, aspect_ratio, seconds))
    return path


def clip_with_sound(directory: Path, name: str, width: int = 320, height: int = 180, rate: int = 24) -> Path:
    """A 2 s clip with AAC sound (silent) and mpeg4 pictures (not the emulator's H.264) at `rate`."""
    path = directory / f"{name}.mp4"
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=rate)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=48_000, layout="stereo")
        for index in range(2 * rate):
            frame = av.VideoFrame(width, height, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([index * 5 % 256]) * plane.buffer_size)
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        for index in range(94):  # 94 frames of 1024 samples: 2 s
            tone = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
            tone.sample_rate, tone.pts = 48_000, index * 1024
            for plane in tone.planes:
                plane.update(bytes(plane.buffer_size))
            container.mux(audio.encode(tone))
        container.mux(audio.encode(None))
    return path


def frames_of(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def pixels(frame: av.VideoFrame) -> bytes:
    rgb = frame.reformat(format="rgb24")
    plane, row = rgb.planes[0], rgb.width * 3
    data = bytes(plane)
    return b"".join(data[y * plane.line_size : y * plane.line_size + row] for y in range(rgb.height))


def picture(path: Path) -> av.VideoFrame:
    (frame,) = frames_of(path)
    return frame


def audio_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        (stream,) = container.streams.audio
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples / stream.sample_rate


def leftovers(directory: Path) -> list[str]:
    return [path.name for path in directory.iterdir() if path.name.startswith(".")]


# --- The emulator's clips -------------------------------------------------------------------


def test_the_emulator_makes_each_task_a_real_clip_at_its_aspect_ratio(tmp_path: Path) -> None:
    sizes = {}
    for aspect_ratio in ("16:9", "9:16", "1:1"):
        frames = frames_of(
            clip(tmp_path, f"task-{aspect_ratio.replace(':', 'x')}", aspect_ratio, FIVE_SECONDS)
        )
        sizes[aspect_ratio] = {(frame.width, frame.height) for frame in frames}
        assert frames[-1].time >= 5.0
        assert len({pixels(frame) for frame in frames}) == len(frames), "a frame repeats the one before"
    assert sizes == {"16:9": {(512, 288)}, "9:16": {(320, 568)}, "1:1": {(384, 384)}}


def test_two_tasks_get_different_clips_each_made_once(tmp_path: Path) -> None:
    hits = task_clip.cache_info().hits
    one, other = clip(tmp_path, "task-one"), clip(tmp_path, "task-two")
    assert pixels(frames_of(one)[0]) != pixels(frames_of(other)[0])
    assert task_clip.__wrapped__("task-one", "16:9", 2.0) == one.read_bytes(), "a task's clip is its own"
    assert task_clip("task-one", "16:9", 2.0) == one.read_bytes()
    assert task_clip.cache_info().hits == hits + 1


# --- Contact sheets -------------------------------------------------------------------------


def test_a_contact_sheet_is_a_small_jpeg_grid_kept_beside_the_video(tmp_path: Path) -> None:
    video = clip(tmp_path, "surf", seconds=FIVE_SECONDS)
    sheet = clips.contact_sheet(video)
    assert sheet == tmp_path / "surf.sheet.jpg"
    assert sheet.read_bytes()[:3] == b"\xff\xd8\xff"
    assert len(sheet.read_bytes()) <= 1_000_000
    grid = picture(sheet)
    assert (grid.width, grid.height) == (768, 432)


def test_a_sheet_is_made_once_and_again_only_when_the_video_changes(tmp_path: Path) -> None:
    video = clip(tmp_path, "surf")
    sheet = clips.contact_sheet(video)
    made = sheet.stat().st_mtime_ns
    assert clips.contact_sheet(video).stat().st_mtime_ns == made
    video.write_bytes(task_clip("another", "9:16", 2.0))
    os.utime(video, ns=(made + 1_000_000_000, made + 1_000_000_000))
    grid = picture(clips.contact_sheet(video))
    assert grid.height > grid.width >= 512


def test_the_sheet_runs_from_the_first_frame_to_the_last(tmp_path: Path) -> None:
    video = clip(tmp_path, "surf")
    frames = frames_of(video)
    grid = picture(clips.contact_sheet(video))
    first, last = (
        frame.reformat(256, 144, "rgb24", interpolation="AREA") for frame in (frames[0], frames[-1])
    )
    assert _distance(_cell(grid, 0), pixels(first)) < _distance(_cell(grid, 0), pixels(last))
    assert _distance(_cell(grid, 8), pixels(last)) < _distance(_cell(grid, 8), pixels(first))


def _cell(grid: av.VideoFrame, index: int) -> bytes:
    width, height = grid.width // 3, grid.height // 3
    data, row = pixels(grid), grid.width * 3
    top, left = (index // 3) * height, (index % 3) * width * 3
    return b"".join(data[(top + y) * row + left : (top + y) * row + left + width * 3] for y in range(height))


def _distance(one: bytes, other: bytes) -> float:
    return sum(abs(a - b) for a, b in zip(one, other, strict=True)) / len(one)


def test_a_file_that_is_not_a_video_gets_no_sheet_and_leaves_nothing(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x01" * 4000)
    with pytest.raises(clips.ClipError, match=r"broken\.mp4 cannot be read as a video"):
        clips.contact_sheet(broken)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["broken.mp4"]


# --- Frames ---------------------------------------------------------------------------------


def test_the_first_and_last_frames_are_saved_losslessly_as_pngs_beside_the_video(tmp_path: Path) -> None:
    video = clip(tmp_path, "surf")
    frames = frames_of(video)
    first, last = clips.extract_frame(video, "first"), clips.extract_frame(video, "last")
    assert (first.name, last.name) == ("surf.first.png", "surf.last.png")
    assert first.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pixels(picture(first)) == pixels(frames[0])
    assert pixels(picture(last)) == pixels(frames[-1])


def test_a_frame_at_a_time_is_the_one_on_screen_then(tmp_path: Path) -> None:
    video = clip(tmp_path, "surf")
    frames = frames_of(video)
    for at in (1.25, 1.27):  # 24 frames a second: frame 30 is on screen from 1.25 s to 1.292 s
        png = clips.extract_frame(video, at)
        assert png.name == f"surf.at-{at:g}s.png"
        assert pixels(picture(png)) == pixels(frames[30])
    with pytest.raises(clips.BeyondTheEnd, match=r"3 s is past the end of the video \(2\.000 s long\)"):
        clips.extract_frame(video, 3.0)


def test_a_frame_preview_is_a_jpeg_at_most_768_px_wide(tmp_path: Path) -> None:
    video = clip(tmp_path, "tall", "9:16")
    preview = tmp_path / "preview.jpg"
    preview.write_bytes(clips.frame_preview(clips.extract_frame(video, "first")))
    assert (picture(preview).width, picture(preview).height) == (320, 568)


# --- Joins ----------------------------------------------------------------------------------


def test_clips_of_one_format_are_copied_frame_for_frame(tmp_path: Path) -> None:
    sources = [clip(tmp_path, name) for name in ("one", "two", "three")]
    joined = clips.join_videos(sources, tmp_path / "film.mp4")
    assert joined.copied
    assert joined.duration == pytest.approx(6.0, abs=0.01)
    played = [pixels(frame) for frame in frames_of(joined.path)]
    assert played == [pixels(frame) for source in sources for frame in frames_of(source)]
    assert clips.probe(joined.path).duration == pytest.approx(6.0, abs=0.01)
    assert leftovers(tmp_path) == []


def test_clips_with_sound_keep_it_in_step_when_copied(tmp_path: Path) -> None:
    sources = [clip_with_sound(tmp_path, name) for name in ("one", "two")]
    joined = clips.join_videos(sources, tmp_path / "film.mp4")
    assert joined.copied
    assert len(frames_of(joined.path)) == 96
    # Each later clip keeps its AAC encoder's priming (1024 samples, 21 ms), as any stream copy does.
    assert audio_seconds(joined.path) == pytest.approx(4.0, abs=0.1)


def test_clips_of_different_formats_are_re_encoded_at_the_first_ones_size(tmp_path: Path) -> None:
    wide, tall = clip(tmp_path, "wide"), clip(tmp_path, "tall", "9:16")
    joined = clips.join_videos([wide, tall], tmp_path / "film.mp4")
    assert not joined.copied
    frames = frames_of(joined.path)
    assert {(frame.width, frame.height) for frame in frames} == {(512, 288)}
    assert len(frames) == 96
    assert joined.duration == pytest.approx(4.0, abs=0.05)
    bars = pixels(frames[-1].reformat(512, 288))[: 3 * 100]  # the tall clip's left bar
    assert max(bars) < 32


def test_sound_is_kept_in_step_and_silent_where_a_clip_has_none(tmp_path: Path) -> None:
    sources = [
        clip_with_sound(tmp_path, "sound", 512, 288),
        clip(tmp_path, "silent"),
        clip_with_sound(tmp_path, "more"),
    ]
    joined = clips.join_videos(sources, tmp_path / "film.mp4")
    assert not joined.copied
    assert len(frames_of(joined.path)) == 144
    assert audio_seconds(joined.path) == pytest.approx(6.0, abs=0.05)


def test_a_faster_clip_is_re_encoded_at_the_first_ones_frame_rate(tmp_path: Path) -> None:
    joined = clips.join_videos(
        [clip(tmp_path, "cinema"), clip_with_sound(tmp_path, "fast", rate=48)], tmp_path / "film.mp4"
    )
    assert not joined.copied
    frames = frames_of(joined.path)
    assert len(frames) == 96
    assert all(later.time > earlier.time for earlier, later in itertools.pairwise(frames))


def test_a_join_that_fails_leaves_nothing_half_written(tmp_path: Path) -> None:
    good = clip(tmp_path, "good")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    target = tmp_path / "film.mp4"
    with pytest.raises(clips.ClipError):
        clips.join_videos([good, broken, good], target)
    assert not target.exists()
    assert leftovers(tmp_path) == []


def test_a_write_that_fails_halfway_leaves_neither_the_file_nor_its_temporary(tmp_path: Path) -> None:
    def half_then_fail(temporary: Path) -> None:
        temporary.write_bytes(b"the first half")
        raise clips.ClipError("the second clip broke")

    with pytest.raises(clips.ClipError, match="the second clip broke"):
        write_atomically(tmp_path / "film.mp4", half_then_fail)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_cannot_be_written_is_a_clear_error(tmp_path: Path) -> None:
    video = clip(tmp_path, "surf")
    not_a_folder = tmp_path / "videos"
    not_a_folder.write_bytes(b"a file where the folder should be")
    with pytest.raises(clips.ClipError, match=r"videos/film\.mp4 could not be written \(Not a directory\)"):
        clips.join_videos([video, video], not_a_folder / "film.mp4")
