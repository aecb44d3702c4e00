"""Frames in: decoding video files and image folders for video-to-video (pure: PyAV, Pillow and numpy, no
ComfyUI)."""

from .images import (IMAGE_EXTENSIONS, ImageSequence, image_files, iter_images, list_image_folders, natural_key,
                     select_images)
from .reader import (DEFAULT_FRAME_RATE, VIDEO_EXTENSIONS, Clip, LoadOptions, MemoryPlan, Selection, VideoInfo,
                     VideoReadError, iter_frames, list_videos, planned_frame_count, probe, read_audio, read_frames,
                     target_size)

__all__ = ["DEFAULT_FRAME_RATE", "IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "Clip", "ImageSequence", "LoadOptions",
           "MemoryPlan", "Selection", "VideoInfo", "VideoReadError", "image_files", "iter_frames", "iter_images",
           "list_image_folders", "list_videos", "natural_key", "planned_frame_count", "probe", "read_audio",
           "read_frames", "select_images", "target_size"]
