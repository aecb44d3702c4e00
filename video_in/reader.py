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


def read_frames(path: str, options: LoadOptions | None = None) -> Clip:
    """Decode ``path`` with the selection and size of ``options``. Raises VideoReadError (file name
    and reason in the message) for missing, empty, unreadable or damaged files, and when the
    selection leaves no frame."""
    options = options or LoadOptions()
    options.check()
    name = os.path.basename(path)
    container = _open(path)
    try:
        info = _info(path, container)
        if not info.width or not info.height:
            raise VideoReadError(f"video '{name}' states no picture size ({info.codec}); the file is damaged "
                                 f"or not a video")
        width, height = target_size(info.width, info.height, options.width, options.height, options.multiple_of)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames, indices = [], []
        decoded_count = 0

        def decoded():
            nonlocal decoded_count
            for frame in container.decode(stream):
                decoded_count += 1
                yield frame

        position = 0   # index in the (re-timed) sequence
        try:
            for source_index, frame in _retimed(decoded(), info.frame_rate, options.force_rate):
                keep = (position >= options.skip_first_frames
                        and (position - options.skip_first_frames) % options.select_every_nth == 0)
                position += 1
                if not keep:
                    continue
                if indices and indices[-1] == source_index:
                    frames.append(frames[-1])  # a repeated frame (force_rate above the source's rate)
                else:
                    frames.append(frame.to_ndarray(format="rgb24", width=width, height=height,
                                                   interpolation="AREA" if width < frame.width else "BICUBIC"))
                indices.append(source_index)
                if options.frame_load_cap and len(frames) >= options.frame_load_cap:
                    break
        except VideoReadError:
            raise
        except Exception as e:  # FFmpeg errors and anything a broken stream provokes
            import av
            if not isinstance(e, (av.error.FFmpegError, ValueError, EOFError)):
                raise
            if decoded_count == 0:
                raise VideoReadError(f"cannot decode video '{name}' ({info.codec}): {_ffmpeg_reason(e)}") from None
            raise VideoReadError(f"video '{name}' is damaged: decoding failed after {decoded_count} frames: "
                                 f"{_ffmpeg_reason(e)}") from None
    finally:
        container.close()

    if not frames:
        if decoded_count == 0:
            raise VideoReadError(f"video '{name}' holds no frames that FFmpeg could decode ({info.codec})")
        raise VideoReadError(
            f"no frames left from video '{name}': it has {position} frames"
            f"{f' at {options.force_rate:g} fps' if options.force_rate else ''}, and skip_first_frames="
            f"{options.skip_first_frames} skips them all")
    rate = (options.force_rate or info.frame_rate) / options.select_every_nth
    return Clip(frames=np.stack(frames), frame_rate=rate, source=info, source_indices=indices)
