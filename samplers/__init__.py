"""Sampling helpers for animations: context windows, noise, FreeInit, keyframed schedules. Pure torch, no
ComfyUI import."""

from .context import FUSE_METHODS, SCHEDULES, ContextError, ContextOptions, context_windows, fuse_weights
from .freeinit import FILTERS, low_pass_mask, mix_frequencies, reinitialised_noise
from .keyframes import (INTERPOLATIONS, MOTION_SCALE_SIDES, KeyframeError, MotionScaleSchedule, PromptKeyframe,
                        blend_per_frame, frame_blend, full_prompt, parse_prompt_keyframes, parse_value_keyframes,
                        values_per_frame)
from .noise import NOISE_TYPES, SEED_MODES, initial_noise
from .windowed import run_in_windows, slice_batch, window_batch_index

__all__ = ["FILTERS", "FUSE_METHODS", "NOISE_TYPES", "SCHEDULES", "SEED_MODES", "ContextError", "ContextOptions",
           "context_windows", "fuse_weights", "initial_noise", "low_pass_mask", "mix_frequencies",
           "reinitialised_noise", "run_in_windows", "slice_batch", "window_batch_index",
           "INTERPOLATIONS", "MOTION_SCALE_SIDES", "KeyframeError", "MotionScaleSchedule", "PromptKeyframe",
           "blend_per_frame", "frame_blend", "full_prompt", "parse_prompt_keyframes", "parse_value_keyframes",
           "values_per_frame"]
