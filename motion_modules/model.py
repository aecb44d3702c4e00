"""MotionModel: a loaded checkpoint (its format plus weights), ready to be placed into a UNet."""

from __future__ import annotations

import os

import torch

from .checkpoint import read_tensors
from .formats import MotionFormat, detect_format, expected_keys
from .temporal import MotionModuleSet, PositionalEncoding, sinusoidal_table


class MotionModel:
    """The MOTION_MODEL value passed between nodes. Never modified after loading."""

    def __init__(self, fmt: MotionFormat, modules: MotionModuleSet, source: str):
        self.format = fmt
        self.modules = modules
        self.source = source
        self._by_dtype = {fmt.dtype: modules}

    def nbytes_in(self, dtype: torch.dtype) -> int:
        return sum(t.numel() * t.element_size() for t in self.modules_in(dtype).state_dict().values())

    def modules_in(self, dtype: torch.dtype) -> MotionModuleSet:
        """The modules with weights in ``dtype``: the loaded ones when the dtype matches, else a copy
        made once and kept, so sampling never casts weights per step."""
        if dtype not in self._by_dtype:
            self._by_dtype[dtype] = build_modules(self.format, self.modules.state_dict(), dtype)
        return self._by_dtype[dtype]

    def summary(self) -> str:
        return f"file: {os.path.basename(self.source)}\n" + self.format.summary()


def build_modules(fmt: MotionFormat, state_dict: dict, dtype: torch.dtype | None = None) -> MotionModuleSet:
    """Module objects holding ``state_dict``'s tensors (no copy when no cast is needed)."""
    with torch.device("meta"):
        modules = MotionModuleSet(fmt.down, fmt.mid, fmt.up, fmt.pe_length, fmt.pe_stored)
    if dtype is not None:
        state_dict = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
    modules.load_state_dict(state_dict, strict=True, assign=True)
    if not fmt.pe_stored:
        for m in modules.modules():
            if isinstance(m, PositionalEncoding):
                m.pe = sinusoidal_table(m.length, m.pe.shape[-1])
    return modules.requires_grad_(False).eval()


def load_motion_model(path: str) -> MotionModel:
    """Read, recognise and build a motion-module file. Raises CheckpointError with a clear message."""
    tensors = read_tensors(path)
    fmt = detect_format(tensors, source=os.path.basename(path))
    wanted = expected_keys(fmt)
    modules = build_modules(fmt, {k: v for k, v in tensors.items() if k in wanted})
    return MotionModel(fmt, modules, path)

