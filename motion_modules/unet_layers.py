"""Layers that get placed into a host UNet. Pure torch; the host adapter decides where they go.

A UNet call sees ``(chunks * frames, C, H, W)`` where ``chunks`` is how many cond/uncond copies the
sampler batched together. Only the sampler knows ``chunks``, so a wrapper around each model call
records it in a :class:`FrameState` that every inserted layer of one application shares.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .temporal import MotionModule


class FrameContextError(RuntimeError):
    pass


class FrameState:
    """What the current UNet call carries: how many independent clips (cond/uncond chunks), and,
    when the motion strength is scheduled, one scale per frame of the call for each UNet side."""

    def __init__(self):
        self.chunks: int | None = None
        self.side_scales: dict[str, torch.Tensor] | None = None

    @contextmanager
    def model_call(self, chunks: int, side_scales: dict[str, torch.Tensor] | None = None):
        """``side_scales``: {"down"|"mid"|"up": (frames,) tensor} for this call's frames, or None for
        the layers' own constant scale."""
        previous = self.chunks, self.side_scales
        self.chunks, self.side_scales = chunks, side_scales
        try:
            yield
        finally:
            self.chunks, self.side_scales = previous

    def scale_for(self, side: str) -> torch.Tensor | None:
        return None if self.side_scales is None else self.side_scales[side]

    def frames_for(self, batch: int, chunks: int) -> int:
        if batch % chunks:
            raise FrameContextError(f"batch of {batch} latents cannot be split into {chunks} equal clips")
        return batch // chunks

    def frames(self, batch: int) -> int:
        if self.chunks is None:
            raise FrameContextError(
                "a motion module ran outside a sampling step prepared by ApplyMotionModule; another "
                "node probably replaced the model's function wrapper without calling the previous one")
        if batch % self.chunks:
            raise FrameContextError(f"batch of {batch} latents cannot be split into {self.chunks} equal clips")
        return batch // self.chunks

    def __deepcopy__(self, memo):
        # Model clones deep-copy model_options; every clone must keep talking to the same layers.
        return self


class TemporalLayer(nn.Module):
    """One motion module at one UNet position ("down", "mid" or "up" side), with this application's
    settings."""

    def __init__(self, motion: MotionModule, state: FrameState, scale: float, cross_frame_norm: bool,
                 side: str = "down"):
        super().__init__()
        self.motion = motion
        self.state = state
        self.scale = float(scale)
        self.cross_frame_norm = cross_frame_norm
        self.side = side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = self.state.frames(x.shape[0])
        scheduled = self.state.scale_for(self.side)
        scale = self.scale if scheduled is None else scheduled * self.scale
        return self.motion(x, frames, self.cross_frame_norm, scale)


class CrossFrameGroupNorm(nn.Module):
    """Stand-in for a base-UNet GroupNorm whose statistics must span the frames of each clip
    (AnimateDiff v1 was trained that way). Holds the original module's own parameters, under the
    same names, so the host's weight patches still find ``…in_layers.0.weight``."""

    def __init__(self, original: nn.GroupNorm, state: FrameState):
        super().__init__()
        self.num_groups = original.num_groups
        self.eps = original.eps
        self.weight = original.weight
        self.bias = original.bias
        self.state = state
        self._original = [original]  # kept unregistered: not part of this module's state dict

    @property
    def original(self) -> nn.Module:
        return self._original[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = self.state.frames(x.shape[0])
        bf, c = x.shape[:2]
        x5 = x.view(bf // frames, frames, c, *x.shape[2:]).transpose(1, 2)
        weight = None if self.weight is None else self.weight.to(x)
        bias = None if self.bias is None else self.bias.to(x)
        y5 = F.group_norm(x5, self.num_groups, weight, bias, self.eps)
        return y5.transpose(1, 2).reshape(x.shape)
