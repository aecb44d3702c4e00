"""Context windows: which frames each UNet call sees, and how overlapping results are blended.

Pure functions, no ComfyUI import. A *window* is a list of frame indices (ascending in time, possibly
wrapping around for looped schedules); a *schedule* turns (frame count, step) into windows; a *fuse
method* gives each position of a window a weight, and overlapping results are averaged with them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SCHEDULES = ("standard_static", "standard_uniform", "looped_uniform", "batched")
FUSE_METHODS = ("pyramid", "flat", "overlap-linear", "relative", "gaussian")


class ContextError(ValueError):
    pass


@dataclass(frozen=True)
class ContextOptions:
    context_length: int = 16
    overlap: int = 4
    stride: int = 1
    closed_loop: bool = False
    schedule: str = "standard_static"
    fuse_method: str = "pyramid"

    def __post_init__(self):
        if self.context_length < 1:
            raise ContextError(f"context_length must be at least 1, got {self.context_length}")
        if not 0 <= self.overlap < self.context_length:
            raise ContextError(f"overlap ({self.overlap}) must be at least 0 and smaller than context_length "
                               f"({self.context_length})")
        if self.stride < 1 or self.stride & (self.stride - 1):
            raise ContextError(f"stride must be a power of two (1, 2, 4, ...), got {self.stride}")
        if self.schedule not in SCHEDULES:
            raise ContextError(f"unknown schedule '{self.schedule}'; choose one of {', '.join(SCHEDULES)}")
        if self.fuse_method not in FUSE_METHODS:
            raise ContextError(f"unknown fuse method '{self.fuse_method}'; choose one of {', '.join(FUSE_METHODS)}")

    def windows(self, num_frames: int, step: int = 0) -> list[list[int]]:
        return context_windows(num_frames, step, self)

    def weights(self, window: list[int], num_frames: int) -> torch.Tensor:
        return fuse_weights(window, num_frames, self)


def ordered_halving(step: int) -> float:
    """Bit-reversal of ``step`` as a fraction in [0, 1): 0, 1/2, 1/4, 3/4, 1/8, ... A low-discrepancy
    sequence, so uniform windows shift to a different offset every step."""
    value = int(step) & 0xFFFFFFFFFFFFFFFF
    return int(f"{value:064b}"[::-1], 2) / (1 << 64)


def _static(num_frames, o):
    hop = o.context_length - o.overlap
    starts = list(range(0, num_frames - o.context_length + 1, hop))
    if starts[-1] + o.context_length < num_frames:
        starts.append(num_frames - o.context_length)  # the last window ends on the last frame
    windows = [list(range(s, s + o.context_length)) for s in starts]
    if o.closed_loop:
        # One more window bridging the end back to the start, so the loop has no seam.
        bridge_start = num_frames - o.context_length + hop
        if bridge_start < num_frames:
            windows.append([(bridge_start + i) % num_frames for i in range(o.context_length)])
    return windows


def _batched(num_frames, o):
    return [list(range(s, min(s + o.context_length, num_frames))) for s in range(0, num_frames, o.context_length)]


def _uniform(num_frames, step, o, looped):
    """AnimateDiff-CLI's "uniform" windows: hops of (length - overlap), shifted each step by
    ordered_halving(step), with dilated copies (stride 2, 4, ...) for long-range coherence."""
    strides = min(o.stride, 2 ** (math.ceil(math.log2(num_frames / o.context_length)) if num_frames > o.context_length else 0))
    windows = []
    dilation = 1
    while dilation <= strides:
        span = o.context_length * dilation
        pad = int(round(num_frames * ordered_halving(step)))
        start = int(ordered_halving(step) * dilation) + pad
        end = num_frames + pad + (0 if (looped and o.closed_loop) else -o.overlap)
        for j in range(start, end, span - o.overlap):
            windows.append([(e % num_frames) for e in range(j, j + span, dilation)])
        dilation *= 2
    if not looped:
        windows = [_unwrap(w, num_frames) for w in windows]
    return windows


def _unwrap(window, num_frames):
    """A window that wraps past the last frame, moved to end on the last frame instead."""
    if all(b > a for a, b in zip(window, window[1:])):
        return window
    dilation = (window[1] - window[0]) % num_frames if len(window) > 1 else 1
    last = num_frames - 1
    return [last - dilation * (len(window) - 1 - i) for i in range(len(window))]


def context_windows(num_frames: int, step: int, o: ContextOptions) -> list[list[int]]:
    """Windows for one sampling step. Every frame is in at least one window; duplicates removed."""
    if num_frames <= o.context_length:
        return [list(range(num_frames))]
    if o.schedule == "standard_static":
        windows = _static(num_frames, o)
    elif o.schedule == "batched":
        windows = _batched(num_frames, o)
    else:
        windows = _uniform(num_frames, step, o, looped=o.schedule == "looped_uniform")
    unique, seen = [], set()
    for w in windows:
        key = tuple(w)
        if key not in seen and min(w) >= 0 and len(set(w)) == len(w):
            seen.add(key)
            unique.append(w)
    covered = set(i for w in unique for i in w)
    for frame in range(num_frames):  # a safety net: no schedule may leave a frame out
        if frame not in covered:
            start = min(frame, num_frames - o.context_length)
            unique.append(list(range(start, start + o.context_length)))
            covered.update(unique[-1])
    return unique


def fuse_weights(window: list[int], num_frames: int, o: ContextOptions) -> torch.Tensor:
    """Weight of each position of ``window`` when overlapping results are averaged (all > 0)."""
    n = len(window)
    if o.fuse_method == "flat" or n == 1:
        return torch.ones(n)
    position = torch.arange(n, dtype=torch.float64)
    if o.fuse_method == "pyramid":
        # 1, 2, ..., peak, ..., 2, 1: the window's middle is trusted most.
        w = torch.minimum(position + 1, n - position)
    elif o.fuse_method == "gaussian":
        center, sigma = (n - 1) / 2, n / 4
        w = torch.exp(-0.5 * ((position - center) / sigma) ** 2)
    elif o.fuse_method == "relative":
        # Falls off linearly from the centre to 1/n at the edges.
        center = (n - 1) / 2
        w = 1.0 - (position - center).abs() / (center + 1)
    else:  # overlap-linear: ramps over the overlap, except at the ends of the whole clip
        w = torch.ones(n, dtype=torch.float64)
        ramp = max(o.overlap, 1)
        if window[0] != 0:
            w[:ramp] = torch.minimum(w[:ramp], (position[:ramp] + 1) / (ramp + 1))
        if window[-1] != num_frames - 1:
            w[n - ramp:] = torch.minimum(w[n - ramp:], (n - position[n - ramp:]) / (ramp + 1))
    return w.to(torch.float32)
