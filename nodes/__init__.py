"""Node declarations. Each node is a thin layer over the pure packages and comfy_host."""

from .motion import ApplyMotionModule, LoadMotionLoRA, LoadMotionModule
from .video import VideoCombine
from .video_in import LoadVideoFrames

NODE_CLASS_MAPPINGS = {
    "LoadMotionModule": LoadMotionModule,
    "ApplyMotionModule": ApplyMotionModule,
    "LoadMotionLoRA": LoadMotionLoRA,
    "VideoCombine": VideoCombine,
    "LoadVideoFrames": LoadVideoFrames,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "LoadMotionModule": "Load Motion Module",
    "ApplyMotionModule": "Apply Motion Module",
    "LoadMotionLoRA": "Load Motion LoRA",
    "VideoCombine": "Video Combine",
    "LoadVideoFrames": "Load Video (frames)",
}
