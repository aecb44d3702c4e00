"""Node declarations. Each node is a thin layer over the pure packages and comfy_host."""

from ..comfy_host.errors import plain_node_errors
from .conditioning import PromptTravel
from .motion import ApplyMotionModule, LoadMotionLoRA, LoadMotionModule, MotionScaleSchedule
from .sampling import AnimateSampler, ContextScheduler
from .sparse_control import ApplySparseCtrl, LoadSparseCtrl
from .video import VideoCombine
from .video_in import LoadImageFolder, LoadVideoFrames, LoadVideoLatents, LoadVideoPath

NODE_CLASS_MAPPINGS = {
    "LoadMotionModule": LoadMotionModule,
    "ApplyMotionModule": ApplyMotionModule,
    "MotionScaleSchedule": MotionScaleSchedule,
    "LoadMotionLoRA": LoadMotionLoRA,
    "ContextScheduler": ContextScheduler,
    "AnimateSampler": AnimateSampler,
    "LoadSparseCtrl": LoadSparseCtrl,
    "ApplySparseCtrl": ApplySparseCtrl,
    "VideoCombine": VideoCombine,
    "LoadVideoFrames": LoadVideoFrames,
    "LoadVideoLatents": LoadVideoLatents,
    "LoadVideoPath": LoadVideoPath,
    "LoadImageFolder": LoadImageFolder,
    "PromptTravel": PromptTravel,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "LoadMotionModule": "Load Motion Module",
    "ApplyMotionModule": "Apply Motion Module",
    "MotionScaleSchedule": "Motion Scale Schedule",
    "LoadMotionLoRA": "Load Motion LoRA",
    "ContextScheduler": "Context Scheduler",
    "AnimateSampler": "Animate Sampler",
    "LoadSparseCtrl": "Load SparseCtrl",
    "ApplySparseCtrl": "Apply SparseCtrl",
    "VideoCombine": "Video Combine",
    "LoadVideoFrames": "Load Video (frames)",
    "LoadVideoLatents": "Load Video (latents)",
    "LoadVideoPath": "Load Video (path)",
    "LoadImageFolder": "Load Images (folder)",
    "PromptTravel": "Prompt Travel (keyframed prompts)",
}

# A node that fails shows "ValueError: <message>" in ComfyUI, not this pack's module path before the
# message (comfy_host/errors.py).
for _node_class in NODE_CLASS_MAPPINGS.values():
    plain_node_errors(_node_class)
