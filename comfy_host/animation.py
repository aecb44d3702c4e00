"""The one record of a MODEL's animation, stored under one key of its options.

ApplyMotionModule makes a clone whose UNet holds temporal layers (object patches) and whose
``model_options["transformer_options"]["animatediff"]`` holds an :class:`Animation`. Everything that
later needs to know about the animation (the sampler-side runtime, ContextScheduler, AnimateSampler,
the motion-scale schedule) reads this record; nothing scans patches to rediscover state. The record
is immutable: a node that changes a setting stores a changed copy on a new clone, so the input MODEL
keeps its own. ``transformer_options`` is the one place every host hands to every hook (wrappers,
the 2024 host's UNet function wrapper, attention patches), so the record is found wherever it is needed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from ..motion_modules import MotionModel
from ..motion_modules.unet_layers import FrameState
from ..samplers import ContextOptions, MotionScaleSchedule
from .conditioning import DeferredControls, WindowControls

ANIMATION_KEY = "animatediff"
# Per UNet call (not per model): the frames of the context window being evaluated, as a WindowFrames.
WINDOW_KEY = "animatediff_window"


@dataclass(frozen=True)
class WindowFrames:
    """The frames a call evaluates (indices into the whole clip), and the clip's length. Attention
    patches from other packs find it under transformer_options["animatediff_window"]."""
    indices: tuple[int, ...]
    total: int


@dataclass(frozen=True, eq=False)
class Animation:
    motion: MotionModel                   # the applied motion module (with its LoRAs)
    frames: FrameState                    # per-call state shared with the inserted layers
    frame_limit: int                      # frames one temporal call may hold (the PE length)
    context: ContextOptions | None = None          # context windows, or None for one piece
    motion_scale: MotionScaleSchedule | None = None  # per-frame / per-side strength, or None
    progress: Any = None                  # AnimateSampler's step/window counter while it samples
    controls: WindowControls = dataclasses.field(default_factory=WindowControls)
    # 2024 host: per-window controls (SparseCtrl) recorded by get_control for the UNet call about to run.
    deferred_controls: DeferredControls = dataclasses.field(default_factory=DeferredControls)

    def replace(self, **changes) -> "Animation":
        return dataclasses.replace(self, **changes)

    def in_windows(self, frames: int) -> bool:
        """Whether a call of ``frames`` frames is cut into context windows."""
        return self.context is not None and frames > self.context.context_length

    def side_scales(self, window: tuple[int, ...] | list[int], total: int) -> dict[str, torch.Tensor] | None:
        """{side: (len(window),) scales} for the motion layers, or None when the strength is constant."""
        if self.motion_scale is None:
            return None
        per_frame = self.motion_scale.frame_scales(total)[list(window)]
        return {side: per_frame * self.motion_scale.side_scale(side) for side in ("down", "mid", "up")}

    def __deepcopy__(self, memo):
        # ModelPatcher.clone() deep-copies model_options; the record (immutable) and the layers' shared
        # state must stay the same objects in every clone.
        return self


def animation_of(model) -> Animation | None:
    return model.model_options.get("transformer_options", {}).get(ANIMATION_KEY)


def animation_in(transformer_options) -> Animation | None:
    return (transformer_options or {}).get(ANIMATION_KEY)


def with_animation(model, animation: Animation):
    """A clone of ``model`` holding ``animation``."""
    patched = model.clone()
    patched.model_options.setdefault("transformer_options", {})[ANIMATION_KEY] = animation
    return patched
