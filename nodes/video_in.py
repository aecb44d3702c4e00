"""LoadVideoFrames: a video file from the input folder as an IMAGE batch (thin layer over video_in/)."""

import os

from .. import comfy_host
from ..video_in import LoadOptions, VideoReadError, list_videos, probe, read_frames


class LoadVideoFrames:
    DESCRIPTION = ("Decodes a video from ComfyUI's input folder into an IMAGE batch (one image per frame), for "
                   "video-to-video: pick which frames, re-time, resize to a multiple of 8.")
    CATEGORY = "AnimateDiff"
    RETURN_TYPES = ("IMAGE", "INT", "FLOAT")
    RETURN_NAMES = ("images", "frame_count", "frame_rate")
    OUTPUT_TOOLTIPS = ("The selected frames, RGB.",
                       "How many frames were loaded.",
                       "Frames per second at which these frames play at the video's own speed: force_rate (or the "
                       "video's rate) divided by select_every_nth. Connect it to Video Combine's frame_rate.")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "video": (list_videos(comfy_host.input_directory()), {
                "tooltip": "A video file in ComfyUI's input folder (mp4, webm, mkv, mov, avi, gif, ...). Copy it "
                           "there, or upload it through the /upload/image route, then refresh."}),
            "force_rate": ("FLOAT", {
                "default": 0.0, "min": 0.0, "max": 240.0, "step": 0.5,
                "tooltip": "Re-time the video to this many frames per second before selecting frames (frames are "
                           "dropped or repeated, the speed stays). 0 keeps the video's own frames."}),
            "frame_load_cap": ("INT", {
                "default": 16, "min": 0, "max": 100000, "step": 1,
                "tooltip": "At most this many frames are loaded (0 = all). Without context windows the motion "
                           "module's limit applies (16-32)."}),
            "skip_first_frames": ("INT", {
                "default": 0, "min": 0, "max": 1000000, "step": 1,
                "tooltip": "Frames dropped from the start (counted after force_rate)."}),
            "select_every_nth": ("INT", {
                "default": 1, "min": 1, "max": 1000, "step": 1,
                "tooltip": "Keep one frame in n (1 = every frame), after skipping."}),
            "custom_width": ("INT", {
                "default": 0, "min": 0, "max": 8192, "step": 8,
                "tooltip": "Output width in pixels; 0 = from the video, or from custom_height keeping the aspect "
                           "ratio."}),
            "custom_height": ("INT", {
                "default": 0, "min": 0, "max": 8192, "step": 8,
                "tooltip": "Output height in pixels; 0 = from the video, or from custom_width keeping the aspect "
                           "ratio."}),
            "multiple_of_8": ("BOOLEAN", {
                "default": True,
                "tooltip": "Round width and height to the nearest multiple of 8 (what the VAE needs). Off keeps "
                           "the exact size."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, video):
        try:
            path = comfy_host.input_file_path(video)
        except ValueError as e:
            return str(e)
        if not os.path.isfile(path):
            return (f"video '{video}' is not in ComfyUI's input folder ({comfy_host.input_directory()}): copy or "
                    f"upload it there, then pick it from the list")
        try:
            probe(path)
        except VideoReadError as e:
            return str(e)
        return True

    @classmethod
    def IS_CHANGED(cls, video, **_):
        try:
            stat = os.stat(comfy_host.input_file_path(video))
        except (OSError, ValueError):
            return ""
        return f"{stat.st_mtime_ns}:{stat.st_size}"

    def load(self, video, force_rate, frame_load_cap, skip_first_frames, select_every_nth, custom_width,
             custom_height, multiple_of_8):
        import torch

        options = LoadOptions(frame_load_cap=frame_load_cap, skip_first_frames=skip_first_frames,
                              select_every_nth=select_every_nth, force_rate=force_rate, width=custom_width,
                              height=custom_height, multiple_of=8 if multiple_of_8 else 1)
        clip = read_frames(comfy_host.input_file_path(video), options)
        images = torch.from_numpy(clip.frames).to(torch.float32).div_(255.0)
        return (images, clip.frame_count, float(clip.frame_rate))
