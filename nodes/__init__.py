"""Node declarations. Each node is a thin layer over the pure packages and comfy_host."""

from .motion import ApplyMotionModule, LoadMotionModule
from .video import VideoCombine

NODE_CLASS_MAPPINGS = {
    "LoadMotionModule": LoadMotionModule,
    "ApplyMotionModule": ApplyMotionModule,
    "VideoCombine": VideoCombine,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "LoadMotionModule": "Load Motion Module",
    "ApplyMotionModule": "Apply Motion Module",
    "VideoCombine": "Video Combine",
}
