"""Frames in: decoding video files for video-to-video (pure: PyAV and numpy, no ComfyUI)."""

from .reader import (DEFAULT_FRAME_RATE, VIDEO_EXTENSIONS, Clip, LoadOptions, MemoryPlan, Selection, VideoInfo,
                     VideoReadError, iter_frames, list_videos, planned_frame_count, probe, read_audio, read_frames,
                     target_size)

__all__ = ["DEFAULT_FRAME_RATE", "VIDEO_EXTENSIONS", "Clip", "LoadOptions", "MemoryPlan", "Selection", "VideoInfo",
           "VideoReadError", "iter_frames", "list_videos", "planned_frame_count", "probe", "read_audio",
           "read_frames", "target_size"]
