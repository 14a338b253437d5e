"""Clips joined end to end into one MP4.

When every clip has the first one's streams with the same codec parameters (Kling's clips of
one model and size do), their packets are copied as they are, shifted in time: fast, lossless.
Otherwise the pictures are re-encoded (H.264) at the first clip's size and frame rate, each clip
fitted inside it with black bars, and the sound (AAC) kept in step, silent where a clip has none.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kling_mcp.clips.video import duration_of, opened, write_atomically

if TYPE_CHECKING:
    from av.audio.fifo import AudioFifo
    from av.audio.frame import AudioFrame
    from av.audio.resampler import AudioResampler
    from av.audio.stream import AudioStream
    from av.container import OutputContainer
    from av.filter import Graph
    from av.video.frame import VideoFrame
    from av.video.stream import VideoStream

DEFAULT_FRAME_RATE = 24
SAMPLE_RATE = 48_000
AUDIO_FRAME_SAMPLES = 1024
"""What the AAC encoder takes per frame."""
TIME_SLACK = 1e-6
REENCODE_OPTIONS = {"crf": "18", "preset": "veryfast"}
"""Visually lossless H.264 at a speed fit for joining a few minutes of video on a laptop."""


@dataclass(frozen=True)
class JoinedVideo:
    path: Path
    duration: float
    """Seconds."""
    copied: bool
    """The clips' packets were copied as they were; False: re-encoded, because their formats differ."""


def join_videos(sources: Sequence[Path], target: Path) -> JoinedVideo:
    """`sources` joined in order into the MP4 `target`, which appears only once complete."""
    copied = copyable(sources)
    lengths: list[float] = []

    def write(temporary: Path) -> None:
        import av

        # Opened here, so a folder that cannot be written is told apart from a clip that cannot be read.
        with temporary.open("wb") as file, av.open(file, "w", format="mp4") as output:
            lengths.append(_copy(sources, output) if copied else _reencode(sources, output))

    write_atomically(target, write)
    return JoinedVideo(target, round(lengths[0], 3), copied)


def copyable(sources: Sequence[Path]) -> bool:
    """Whether the clips' packets can follow each other in one file: the same streams, same parameters."""
    layouts = [_layout(source) for source in sources]
    return all(layout == layouts[0] for layout in layouts)


def _layout(source: Path) -> tuple[Any, ...]:
    """What must be equal between clips for their packets to follow each other in one file."""
    with opened(source) as (container, video):
        streams: list[Any] = [video, *container.streams.audio]
        return tuple(_parameters(stream) for stream in streams)


def _parameters(stream: Any) -> tuple[Any, ...]:
    context = stream.codec_context
    if stream.type == "video":
        shape: tuple[Any, ...] = (context.width, context.height, context.pix_fmt)
    else:
        shape = (context.sample_rate, context.layout.name, context.format.name)
    return (stream.type, context.name, *shape, context.extradata)


def _copy(sources: Sequence[Path], output: OutputContainer) -> float:
    """Copy every clip's packets into `output`, each clip starting where the one before ended."""
    offset = Fraction(0)
    targets: list[Any] = []
    for source in sources:
        with opened(source) as (container, video):
            streams: list[Any] = [video, *container.streams.audio]
            if not targets:
                targets = [output.add_stream_from_template(stream) for stream in streams]
            into = {stream.index: target for stream, target in zip(streams, targets, strict=True)}
            packets: list[Any] = [packet for packet in container.demux(streams) if _timed(packet)]
            # The clip's earliest packet (sound's priming samples come before 0) goes at `offset`.
            start = offset - min((packet.dts * packet.time_base for packet in packets), default=0)
            end = offset
            for packet in packets:
                shift = round(start / packet.time_base)
                packet.pts, packet.dts = packet.pts + shift, packet.dts + shift
                end = max(end, (packet.pts + (packet.duration or 0)) * packet.time_base)
                packet.stream = into[packet.stream.index]
                output.mux(packet)
            offset = end
    return float(offset)


def _timed(packet: Any) -> bool:
    """Not the demuxer's empty packet at the end of each stream."""
    return packet.dts is not None and packet.pts is not None and packet.time_base is not None


def _reencode(sources: Sequence[Path], output: OutputContainer) -> float:
    """Decode every clip and encode it again at the first clip's size and rate, sound in step."""
    with opened(sources[0]) as (_, first):
        pictures = _Pictures(output, first.width, first.height, first.average_rate)
    sound = _Sound(output) if any(_has_audio(source) for source in sources) else None
    offset = 0.0
    for source in sources:
        offset = _reencode_clip(source, offset, pictures, sound)
    pictures.finish()
    if sound is not None:
        sound.finish()
    return offset


def _reencode_clip(source: Path, offset: float, pictures: _Pictures, sound: _Sound | None) -> float:
    """Add `source`, starting at `offset` seconds, to the pictures and the sound; its end, in seconds."""
    import av

    with opened(source) as (container, stream):
        fit = _fitting(stream, pictures.width, pictures.height)
        audio = container.streams.audio[0] if sound and container.streams.audio else None
        for frame in container.decode(*([stream, audio] if audio else [stream])):
            if isinstance(frame, av.AudioFrame):
                assert sound is not None
                sound.add(frame)
            else:
                pictures.add(frame, offset, fit)
        end = offset + duration_of(container, stream)
    if sound is not None:
        sound.pad_to(end)
    return end


def _has_audio(source: Path) -> bool:
    with opened(source) as (container, _):
        return bool(container.streams.audio)


def _fitting(stream: VideoStream, width: int, height: int) -> Graph:
    """A filter graph that scales each frame of `stream` to fit `width` x `height`, with black bars."""
    import av

    graph = av.filter.Graph()
    steps = [
        graph.add_buffer(template=stream),
        graph.add("scale", f"{width}:{height}:force_original_aspect_ratio=decrease"),
        graph.add("pad", f"{width}:{height}:-1:-1:color=black"),
        graph.add("setsar", "1"),
        graph.add("format", "yuv420p"),
        graph.add("buffersink"),
    ]
    for step, following in itertools.pairwise(steps):
        step.link_to(following)
    graph.configure()
    return graph


class _Pictures:
    """The joined pictures: H.264 at the first clip's size and frame rate."""

    def __init__(self, output: OutputContainer, width: int, height: int, rate: Fraction | None) -> None:
        self.width, self.height = width, height
        self._rate = rate or Fraction(DEFAULT_FRAME_RATE)
        self._stream = output.add_stream("libx264", rate=self._rate, options=REENCODE_OPTIONS)
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
        self._output = output
        self._last_pts = -1

    def add(self, frame: VideoFrame, offset: float, fit: Graph) -> None:
        """`frame`, fitted by `fit`, shown `offset` seconds later than in its own clip."""
        # The output frame whose time slot the frame starts in (a hair of slack for float error).
        pts = math.floor((offset + (frame.time or 0.0)) * self._rate + TIME_SLACK)
        if pts <= self._last_pts:
            return  # a faster clip's extra frames, at the first clip's rate
        fit.push(frame)
        fitted = fit.vpull()
        fitted.pts, fitted.time_base, self._last_pts = pts, 1 / self._rate, pts
        self._output.mux(self._stream.encode(fitted))

    def finish(self) -> None:
        self._output.mux(self._stream.encode(None))


class _Sound:
    """The joined sound: each clip's resampled to one format, silence where a clip has none."""

    def __init__(self, output: OutputContainer) -> None:
        import av

        self._stream: AudioStream = output.add_stream("aac", rate=SAMPLE_RATE, layout="stereo")
        self._output = output
        self._resampler = _resampler()
        self._fifo: AudioFifo = av.AudioFifo()
        self._written = 0
        """Samples given to the FIFO so far."""
        self._encoded = 0

    def add(self, frame: AudioFrame) -> None:
        for resampled in self._resampler.resample(frame):
            self._write(resampled)

    def pad_to(self, seconds: float) -> None:
        """Silence up to `seconds` (after a clip whose sound is shorter than its picture, or absent)."""
        for resampled in self._resampler.resample(None):
            self._write(resampled)
        self._resampler = _resampler()
        missing = round(seconds * SAMPLE_RATE) - self._written
        for size in _chunks(missing, AUDIO_FRAME_SAMPLES * 64):
            self._write(_silence(size))

    def finish(self) -> None:
        self._encode(final=True)
        self._output.mux(self._stream.encode(None))

    def _write(self, frame: AudioFrame) -> None:
        frame.pts = None
        self._fifo.write(frame)
        self._written += frame.samples
        self._encode(final=False)

    def _encode(self, final: bool) -> None:
        while self._fifo.samples >= AUDIO_FRAME_SAMPLES or (final and self._fifo.samples):
            chunk = self._fifo.read(min(AUDIO_FRAME_SAMPLES, self._fifo.samples))
            assert chunk is not None
            chunk.pts, chunk.time_base = self._encoded, Fraction(1, SAMPLE_RATE)
            self._encoded += chunk.samples
            self._output.mux(self._stream.encode(chunk))


def _resampler() -> AudioResampler:
    import av

    return av.AudioResampler(format="fltp", layout="stereo", rate=SAMPLE_RATE)


def _chunks(total: int, size: int) -> Iterator[int]:
    while total > 0:
        yield min(total, size)
        total -= size


def _silence(samples: int) -> AudioFrame:
    import av

    frame = av.AudioFrame(format="fltp", layout="stereo", samples=samples)
    frame.sample_rate = SAMPLE_RATE
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    return frame
