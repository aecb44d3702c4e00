"""Frames in: decoding video files for video-to-video (pure: PyAV and numpy, no ComfyUI)."""

from .reader import (DEFAULT_FRAME_RATE, VIDEO_EXTENSIONS, Clip, LoadOptions, VideoInfo, VideoReadError,
                     list_videos, probe, read_frames, target_size)

__all__ = ["DEFAULT_FRAME_RATE", "VIDEO_EXTENSIONS", "Clip", "LoadOptions", "VideoInfo", "VideoReadError",
           "list_videos", "probe", "read_frames", "target_size"]
