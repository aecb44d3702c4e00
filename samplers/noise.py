"""Initial noise for animations. Pure torch."""

from __future__ import annotations

import torch

NOISE_TYPES = ("default", "constant", "repeated_context", "FreeNoise")
SEED_MODES = ("one generator for the batch", "seed + frame index")


def _draw(shape, seed: int, seed_mode: str) -> torch.Tensor:
    if seed_mode == SEED_MODES[0]:
        # The same draw as ComfyUI's prepare_noise: one CPU generator over the whole batch.
        return torch.randn(shape, generator=torch.manual_seed(seed), device="cpu")
    if seed_mode == SEED_MODES[1]:
        # Frame i gets seed + i, as A1111's AnimateDiff does: frames do not change when the count does.
        return torch.stack([torch.randn(shape[1:], generator=torch.manual_seed(seed + i)) for i in range(shape[0])])
    raise ValueError(f"unknown seed mode '{seed_mode}'; choose one of {', '.join(SEED_MODES)}")


def initial_noise(shape, seed: int, noise_type: str = "default", seed_mode: str = SEED_MODES[0],
                  context_length: int = 16, overlap: int = 4) -> torch.Tensor:
    """Noise of ``shape`` (frames, C, H, W).

    * default: independent noise per frame;
    * constant: the first frame's noise on every frame;
    * repeated_context: the first ``context_length`` frames' noise, repeated;
    * FreeNoise: the first window is random; each later hop of ``context_length - overlap`` frames
      reuses the previous window's noise in a seeded shuffle (FreeNoise's noise rescheduling), so
      distant windows stay correlated without repeating exactly.
    """
    frames = shape[0]
    if noise_type == "default":
        return _draw(shape, seed, seed_mode)
    if noise_type == "constant":
        return _draw((1,) + tuple(shape[1:]), seed, seed_mode).expand(shape).clone()
    length = min(context_length, frames)
    base = _draw((length,) + tuple(shape[1:]), seed, seed_mode)
    if noise_type == "repeated_context":
        reps = -(-frames // length)
        return base.repeat(reps, *([1] * (len(shape) - 1)))[:frames].clone()
    if noise_type == "FreeNoise":
        noise = torch.empty(shape)
        noise[:length] = base
        hop = max(length - overlap, 1)
        generator = torch.manual_seed(seed)
        for start in range(length, frames, hop):
            count = min(hop, frames - start)
            source = torch.arange(start - length, start)
            picked = source[torch.randperm(length, generator=generator)[:count]]
            noise[start:start + count] = noise[picked]
        return noise
    raise ValueError(f"unknown noise type '{noise_type}'; choose one of {', '.join(NOISE_TYPES)}")
