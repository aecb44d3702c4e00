"""Small builders shared by tests (not fixtures: plain functions)."""

from __future__ import annotations

import torch

from tools.make_tiny_models import motion_module_tensors

# A small AnimateDiff-format layout: two levels of 64 channels, v2-style mid block.
SMALL_DOWN = [[64], [64]]
SMALL_UP = [[64, 64], [64, 64]]


def small_motion_tensors(mid=64, pe_length=32, dtype=torch.float32, seed=7):
    return motion_module_tensors(SMALL_DOWN, mid, SMALL_UP, pe_length=pe_length, seed=seed, dtype=dtype)


def manifest_tensors(manifest: dict, dtype=torch.float16) -> dict:
    """Meta-device tensors with exactly a manifest's keys and shapes (no memory)."""
    return {k: torch.empty(shape, dtype=dtype, device="meta") for k, shape in manifest.items()}
