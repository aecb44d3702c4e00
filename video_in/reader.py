"""Decode a video file into RGB frames with PyAV, choosing which frames and at what size.

No ComfyUI here: numpy arrays in, numpy arrays out. The node (nodes/video_in.py) turns them into an
IMAGE batch.

Order of the frame selection, each step working on the output of the one before:

1. ``force_rate``: the clip is re-timed to that many frames per second (0 keeps the source's frames).
   Each output instant shows the source frame on screen at that moment, so slowing down repeats frames
   and speeding up drops them;
2. ``skip_first_frames``: that many frames are dropped from the start;
3. ``select_every_nth``: of the rest, the 1st, (n+1)th, (2n+1)th, ... are kept;
4. ``frame_load_cap``: at most that many frames are returned (0 = all); decoding stops there.

The frame rate returned is the rate at which the selected frames play at the source's speed:
(``force_rate`` or the source's rate) / ``select_every_nth``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".m4v", ".gif", ".mpg", ".mpeg", ".wmv",
                    ".flv", ".ogv", ".ts", ".m2ts", ".3gp")
DEFAULT_FRAME_RATE = 8.0  # only when a file states no rate at all and timestamps do not tell either


class VideoReadError(ValueError):
    """A video could not be read; the message names the file and says what is wrong."""


@dataclass
class LoadOptions:
    frame_load_cap: int = 0
    skip_first_frames: int = 0
    select_every_nth: int = 1
    force_rate: float = 0.0
    width: int = 0            # 0: from the source (or from height, keeping the aspect ratio)
    height: int = 0
    multiple_of: int = 8      # 1: exact size; 8: width and height rounded to the nearest multiple of 8

    def check(self):
        if self.frame_load_cap < 0 or self.skip_first_frames < 0:
            raise ValueError("frame_load_cap and skip_first_frames must be 0 or more")
        if self.select_every_nth < 1:
            raise ValueError("select_every_nth must be 1 or more")
        if self.force_rate < 0 or not math.isfinite(self.force_rate):
            raise ValueError("force_rate must be 0 (keep the source's frames) or a positive rate")
        if self.width < 0 or self.height < 0 or self.multiple_of < 1:
            raise ValueError("width and height must be 0 (from the source) or positive; multiple_of 1 or more")


@dataclass
class VideoInfo:
    path: str
    width: int
    height: int
    frame_rate: float          # the source's rate (frames per second)
    frame_count: int | None    # as the container states it; None when it does not say
    duration: float | None     # seconds
    codec: str

    def describe(self) -> str:
        frames = f"{self.frame_count} frames" if self.frame_count else "frame count unknown"
        seconds = f", {self.duration:.2f} s" if self.duration else ""
        return f"{self.codec} {self.width}x{self.height} at {self.frame_rate:g} fps, {frames}{seconds}"


@dataclass
class Clip:
    frames: np.ndarray          # (N, H, W, 3) uint8 RGB
    frame_rate: float           # the rate at which these frames play at the source's speed
    source: VideoInfo
    source_indices: list = field(default_factory=list)  # for each frame, the index of the decoded source frame

    @property
    def frame_count(self) -> int:
        return int(self.frames.shape[0])


def list_videos(folder: str) -> list[str]:
    """Video files directly inside ``folder`` (by extension), sorted; [] when the folder is missing."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted(n for n in names
                  if n.lower().endswith(VIDEO_EXTENSIONS) and os.path.isfile(os.path.join(folder, n)))


def target_size(width: int, height: int, want_width: int = 0, want_height: int = 0, multiple_of: int = 8):
    """The output (width, height): the wanted size, a missing side following the source's aspect
    ratio, then each side rounded to the nearest multiple (never below one multiple)."""
    if want_width and want_height:
        w, h = want_width, want_height
    elif want_width:
        w, h = want_width, want_width * height / width
    elif want_height:
        w, h = want_height * width / height, want_height
    else:
        w, h = width, height

    def snap(v):
        return max(multiple_of, int(round(v / multiple_of)) * multiple_of)
    return snap(w), snap(h)


def _open(path: str):
    import av  # imported here so that listing files works without PyAV

    name = os.path.basename(path)
    if not os.path.exists(path):
        raise VideoReadError(f"video '{name}' not found ({path})")
    if os.path.isdir(path):
        raise VideoReadError(f"video '{name}' is a folder, not a file ({path})")
    if os.path.getsize(path) == 0:
        raise VideoReadError(f"video '{name}' is empty (0 bytes): the upload or copy did not finish")
    try:
        container = av.open(path)
    except av.error.FFmpegError as e:
        raise VideoReadError(f"cannot read video '{name}': FFmpeg does not recognise it as a video file "
                             f"({_ffmpeg_reason(e)})") from None
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["nothing"]
        container.close()
        raise VideoReadError(f"video '{name}' has no video stream (it holds {', '.join(kinds)})")
    return container


def _ffmpeg_reason(e) -> str:
    return getattr(e, "strerror", None) or str(e)


def _info(path: str, container) -> VideoInfo:
    stream = container.streams.video[0]
    ctx = stream.codec_context
    duration = None
    if stream.duration is not None and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / 1_000_000
    rate = None
    for candidate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if candidate and 0 < float(candidate) < 1000:
            rate = float(candidate)
            break
    if rate is None and stream.frames and duration:
        rate = stream.frames / duration
    return VideoInfo(path=path, width=ctx.width, height=ctx.height, frame_rate=rate or DEFAULT_FRAME_RATE,
                     frame_count=stream.frames or None, duration=duration, codec=ctx.name)


def probe(path: str) -> VideoInfo:
    """What the file is, without decoding it. Raises VideoReadError."""
    container = _open(path)
    try:
        return _info(path, container)
    finally:
        container.close()


def _retimed(decoded, source_rate: float, force_rate: float):
    """(source index, frame) pairs: every decoded frame, or the frame on screen at each 1/force_rate."""
    if not force_rate:
        yield from enumerate(decoded)
        return
    step = 1.0 / force_rate
    previous = None   # (index, frame, time)
    start = None
    k = 0
    for index, frame in enumerate(decoded):
        t = frame.time if frame.time is not None else index / source_rate
        if start is None:
            start = t
        if previous is not None:
            # The previous frame is on screen from its own time until this one's.
            while start + k * step < t - 1e-9:
                yield previous[0], previous[1]
                k += 1
        previous = (index, frame, t)
    if previous is not None:
        end = previous[2] + 1.0 / source_rate
        while start + k * step < end - 1e-9:
            yield previous[0], previous[1]
            k += 1


@dataclass
class Selection:
    """What :func:`iter_frames` decodes: filled in as it runs, complete once the iteration ends."""
    source: VideoInfo
    width: int
    height: int
    sequence_rate: float                                 # the re-timed sequence's rate (force_rate or the source's)
    skip_first_frames: int = 0
    select_every_nth: int = 1
    source_indices: list = field(default_factory=list)   # for each frame, the index of the decoded source frame
    positions: int = 0                                   # frames of the re-timed sequence looked at
    decoded: int = 0                                     # source frames decoded
    first_frame_time: float = 0.0                        # the first decoded frame's timestamp (seconds)

    @property
    def frame_rate(self) -> float:
        """The rate at which the selected frames play at the source's speed."""
        return self.sequence_rate / self.select_every_nth

    @property
    def frame_count(self) -> int:
        return len(self.source_indices)

    @property
    def start_time(self) -> float:
        """Seconds from the start of the clip to the first selected frame (where its sound starts)."""
        return self.skip_first_frames / self.sequence_rate

    @property
    def duration(self) -> float:
        """Seconds the selected frames play for at ``frame_rate``."""
        return self.frame_count / self.frame_rate


def iter_frames(path: str, options: LoadOptions | None = None):
    """``(selection, frames)``: the clip's facts, and a generator of the selected frames, each an
    (H, W, 3) uint8 RGB array (a repeated frame is the same array object). Nothing is decoded before the
    generator runs, and only the frame being converted is held, so a caller can consume a long clip a
    few frames at a time. Raises VideoReadError (file name and reason in the message) for missing,
    empty, unreadable or damaged files, and when the selection leaves no frame."""
    options = options or LoadOptions()
    options.check()
    container = _open(path)
    try:
        info = _info(path, container)
        if not info.width or not info.height:
            raise VideoReadError(f"video '{os.path.basename(path)}' states no picture size ({info.codec}); the "
                                 f"file is damaged or not a video")
    except BaseException:
        container.close()
        raise
    width, height = target_size(info.width, info.height, options.width, options.height, options.multiple_of)
    selection = Selection(source=info, width=width, height=height,
                          sequence_rate=options.force_rate or info.frame_rate,
                          skip_first_frames=options.skip_first_frames, select_every_nth=options.select_every_nth)
    return selection, _selected_frames(container, selection, options)


def _selected_frames(container, selection: Selection, options: LoadOptions):
    info, name = selection.source, os.path.basename(selection.source.path)
    width, height = selection.width, selection.height
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"

        def decoded():
            for frame in container.decode(stream):
                if selection.decoded == 0 and frame.time is not None:
                    selection.first_frame_time = float(frame.time)
                selection.decoded += 1
                yield frame

        last = None
        try:
            for source_index, frame in _retimed(decoded(), info.frame_rate, options.force_rate):
                position = selection.positions
                selection.positions += 1
                if not (position >= options.skip_first_frames
                        and (position - options.skip_first_frames) % options.select_every_nth == 0):
                    continue
                if not (selection.source_indices and selection.source_indices[-1] == source_index):
                    # a repeated frame (force_rate above the source's rate) is the previous array again
                    last = frame.to_ndarray(format="rgb24", width=width, height=height,
                                            interpolation="AREA" if width < frame.width else "BICUBIC")
                selection.source_indices.append(source_index)
                yield last
                if options.frame_load_cap and selection.frame_count >= options.frame_load_cap:
                    break
        except VideoReadError:
            raise
        except Exception as e:  # FFmpeg errors and anything a broken stream provokes
            import av
            if not isinstance(e, (av.error.FFmpegError, ValueError, EOFError)):
                raise
            if selection.decoded == 0:
                raise VideoReadError(f"cannot decode video '{name}' ({info.codec}): {_ffmpeg_reason(e)}") from None
            raise VideoReadError(f"video '{name}' is damaged: decoding failed after {selection.decoded} frames: "
                                 f"{_ffmpeg_reason(e)}") from None
        if not selection.frame_count:
            if selection.decoded == 0:
                raise VideoReadError(f"video '{name}' holds no frames that FFmpeg could decode ({info.codec})")
            raise VideoReadError(
                f"no frames left from video '{name}': it has {selection.positions} frames"
                f"{f' at {options.force_rate:g} fps' if options.force_rate else ''}, and skip_first_frames="
                f"{options.skip_first_frames} skips them all")
    finally:
        container.close()


def read_frames(path: str, options: LoadOptions | None = None) -> Clip:
    """Decode ``path`` with the selection and size of ``options`` into one array (see :func:`iter_frames`)."""
    selection, frames = iter_frames(path, options)
    stacked = np.stack(list(frames))
    return Clip(frames=stacked, frame_rate=selection.frame_rate, source=selection.source,
                source_indices=selection.source_indices)


def read_audio(path: str, start: float, duration: float, first_frame_time: float = 0.0):
    """The first audio stream's sound under the selected frames: ``(samples, rate)`` with samples float32
    ``(channels, n)``, ``n = round(duration * rate)`` (padded with silence where the stream ends early), or
    None when the file has no audio stream. ``start`` counts from the first video frame, whose timestamp
    is ``first_frame_time``; audio timestamps are on the same clock."""
    import av

    name = os.path.basename(path)
    container = _open(path)
    try:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate or stream.rate
        if not rate:
            raise VideoReadError(f"video '{name}': its audio stream states no sample rate")
        wanted = max(0, int(round(duration * rate)))
        first = int(round((first_frame_time + start) * rate))  # on the stream's sample clock
        resampler = av.AudioResampler(format="fltp", layout=stream.codec_context.layout, rate=rate)
        chunks, channels, position = [], None, None
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    samples = out.to_ndarray().astype(np.float32, copy=False)  # (channels, n), planar
                    if position is None:
                        channels = samples.shape[0]
                        position = int(round(out.time * rate)) if out.time is not None else 0
                        if position > first:  # the sound starts after the first frame: silence before it
                            chunks.append(np.zeros((channels, min(position - first, wanted)), np.float32))
                    lo, hi = max(first - position, 0), min(first + wanted - position, samples.shape[1])
                    if hi > lo:
                        chunks.append(samples[:, lo:hi])
                    position += samples.shape[1]
                if position is not None and position >= first + wanted:
                    break
        except av.error.FFmpegError as e:
            raise VideoReadError(f"cannot decode the audio of video '{name}': {_ffmpeg_reason(e)}") from None
        if channels is None:  # an audio stream without a decodable frame: silence of its layout
            channels = max(len(stream.codec_context.layout.channels), 1)
        samples = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)
        if samples.shape[1] < wanted:  # the stream ends early: silence after it
            samples = np.concatenate([samples, np.zeros((channels, wanted - samples.shape[1]), np.float32)], axis=1)
        return np.ascontiguousarray(samples[:, :wanted]), int(rate)
    finally:
        container.close()


def planned_frame_count(info: VideoInfo, options: LoadOptions) -> int | None:
    """How many frames ``options`` will select from the clip, from what the container states (before
    decoding); None when it states neither a frame count nor a duration and there is no cap."""
    count = info.frame_count or (round(info.duration * info.frame_rate) if info.duration else None)
    if count is not None and options.force_rate:
        seconds = info.duration or count / info.frame_rate
        count = math.ceil(seconds * options.force_rate - 1e-9)
    if count is None:
        return options.frame_load_cap or None
    selected = max(0, math.ceil((count - options.skip_first_frames) / options.select_every_nth))
    return min(selected, options.frame_load_cap) if options.frame_load_cap else selected


def _size(n: float) -> str:
    return f"{n / 1024 ** 3:.1f} GB" if n >= 1024 ** 3 else f"{n / 1024 ** 2:.1f} MB"


@dataclass(frozen=True)
class MemoryPlan:
    """What loading a clip will hold at its peak, to refuse before decoding what cannot fit."""
    frames: int
    width: int
    height: int
    bytes_per_value: float   # per colour value of every frame at the peak (5: uint8 frames + their float32 copy)
    what: str                # e.g. "as an IMAGE batch"

    @property
    def bytes(self) -> int:
        return int(self.frames * self.width * self.height * 3 * self.bytes_per_value)

    def check(self, available: int, name: str, alternative: str = ""):
        """Raise VideoReadError, naming what it would take and what would fit, when ``bytes`` exceeds
        ``available``."""
        if self.bytes <= available:
            return
        per_frame = self.width * self.height * 3 * self.bytes_per_value
        fits = int(available // per_frame)
        scale = math.sqrt(available / self.bytes)
        width = max(8, int(self.width * scale) // 8 * 8)
        advice = [f"frame_load_cap {fits} or less" if fits else None,
                  f"custom_width {width} or less (the height follows the aspect ratio)",
                  "select_every_nth above 1"]
        if alternative:
            advice.append(alternative)
        raise VideoReadError(
            f"video '{name}': {self.frames} frames at {self.width}x{self.height} would take "
            f"{_size(self.bytes)} {self.what}, but {_size(available)} of memory is free. To make it fit: "
            + "; or ".join(a for a in advice if a))
