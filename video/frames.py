"""Where frames come from: an IMAGE batch, or a LATENT batch decoded a few frames at a time.

Frames are produced one at a time as uint8 (H, W, 3|4) arrays, so encoding never holds more than
one converted frame (or one decoded latent batch) beside the input. Pure: torch is used only if the
input is a torch tensor; no ComfyUI import.
"""

from __future__ import annotations

import math

import numpy as np


class FrameError(ValueError):
    pass


def _to_uint8(frame) -> np.ndarray:
    """One frame, floats in [0, 1], (H, W, C) -> uint8, rounded to nearest (not truncated)."""
    if hasattr(frame, "detach"):  # torch.Tensor, possibly on a GPU or in inference mode
        import torch
        with torch.no_grad():
            t = frame.detach().to("cpu", torch.float32)
            return t.mul(255.0).round_().clamp_(0.0, 255.0).to(torch.uint8).numpy()
    a = np.asarray(frame, dtype=np.float32)
    return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)


def _rgb(frame: np.ndarray) -> np.ndarray:
    if frame.shape[-1] == 1:
        return np.repeat(frame, 3, axis=-1)
    return np.ascontiguousarray(frame)


class ImageFrames:
    """An IMAGE batch (N, H, W, C), C in 1, 3, 4, floats in [0, 1] (torch tensor or numpy array)."""

    def __init__(self, images):
        shape = tuple(images.shape)
        if len(shape) != 4 or shape[-1] not in (1, 3, 4) or shape[0] == 0 or shape[1] == 0 or shape[2] == 0:
            raise FrameError(f"expected an IMAGE batch shaped (frames, height, width, 1|3|4) with at least one "
                             f"frame, got {shape}")
        self.images = images
        self.count, self.height, self.width, channels = shape
        self.has_alpha = channels == 4

    def frame(self, index: int) -> np.ndarray:
        return _rgb(_to_uint8(self.images[index]))

    def first(self):
        """The first frame as the input type (used as the IMAGE output in latent mode)."""
        return self.images[0:1]


class LatentFrames:
    """A LATENT batch decoded by ``decode`` (a callable: latent batch -> IMAGE batch) in batches of at
    most ``batch_size`` frames. Only the current decoded batch is held; a backward pass (pingpong)
    decodes batches again rather than keeping every frame."""

    def __init__(self, samples, decode, batch_size: int | None = None, budget_bytes: int = 128 << 20):
        shape = tuple(samples.shape)
        if len(shape) != 4 or shape[0] == 0:
            raise FrameError(f"expected a LATENT whose 'samples' are shaped (frames, channels, height, width), "
                             f"got {shape}")
        self.samples = samples
        self.decode = decode
        self.count = shape[0]
        self._cache_start = None
        self._cache = None
        self.batch_size = batch_size or 1
        self._load(0)  # the first batch tells the frame size
        if not batch_size:  # as many frames as fit the budget as float32 RGBA, at most 16
            frame_bytes = self.height * self.width * 4 * 4
            self.batch_size = max(1, min(16, budget_bytes // max(frame_bytes, 1)))

    def _load(self, start: int):
        end = min(self.count, start + self.batch_size)
        images = self.decode(self.samples[start:end])
        if images is None or len(tuple(images.shape)) != 4 or images.shape[0] != end - start:
            got = None if images is None else tuple(images.shape)
            raise FrameError(f"the VAE returned {got} for {end - start} latent frames; expected "
                             f"({end - start}, height, width, 3)")
        self._cache, self._cache_start = images, start
        _, self.height, self.width, channels = tuple(images.shape)
        self.has_alpha = channels == 4

    def frame(self, index: int) -> np.ndarray:
        start = self._cache_start
        if start is None or not (start <= index < start + self._cache.shape[0]):
            # Batches are aligned on multiples of batch_size, so forward and backward passes
            # each decode a batch once.
            self._load((index // self.batch_size) * self.batch_size)
        return _rgb(_to_uint8(self._cache[index - self._cache_start]))

    def first(self):
        if self._cache_start == 0:
            return self._cache[0:1]
        return self.decode(self.samples[0:1])


def frame_order(count: int, pingpong: bool = False, plays: int = 1) -> list[int]:
    """Frame indices in output order: forward, then (pingpong) backward without repeating the two end
    frames, the whole repeated ``plays`` times."""
    order = list(range(count))
    if pingpong and count >= 3:
        order += list(range(count - 2, 0, -1))
    return order * max(1, plays)


def check_frame_rate(frame_rate) -> float:
    try:
        rate = float(frame_rate)
    except (TypeError, ValueError):
        raise FrameError(f"frame_rate must be a number of frames per second, got {frame_rate!r}") from None
    if not math.isfinite(rate) or rate <= 0:
        raise FrameError(f"frame_rate must be a positive number of frames per second, got {frame_rate!r}")
    if rate > 1000:
        raise FrameError(f"frame_rate {frame_rate!r} is above 1000 frames per second")
    return rate


def check_loop_count(loop_count) -> int:
    if isinstance(loop_count, bool) or not isinstance(loop_count, (int, np.integer)) or loop_count < 0:
        raise FrameError(f"loop_count must be a whole number, 0 (forever) or more, got {loop_count!r}")
    return int(loop_count)
