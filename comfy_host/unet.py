"""Where motion layers go in the host's UNet, and in which dtype they run.

A motion module follows the last SpatialTransformer of a block, else its first ResBlock
(docs/motion-module-formats.md §5.2). Blocks are replaced through object patches on a clone, never
edited in place, and always read through the patcher (``model_object``): the 2024 host unpatches
clones lazily, so the live module tree may still hold the layers of the clone sampled last.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import torch
import comfy.ops
import comfy.utils
from comfy.ldm.modules.attention import SpatialTransformer
from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock, TimestepEmbedSequential

from ..motion_modules import MotionModel, kernels
from ..motion_modules.formats import SD15_DOWN, SD15_UP, SDXL_DOWN, SDXL_UP
from ..motion_modules.model import set_default_operations
from ..motion_modules.unet_layers import CrossFrameGroupNorm, FrameState, TemporalLayer
from .capabilities import HOST


def _casts_per_call(layer) -> bool:
    return bool(layer.comfy_cast_weights or getattr(layer, "weight_function", None)
                or getattr(layer, "bias_function", None))


class _MotionLinear(comfy.ops.disable_weight_init.Linear):
    """The host's Linear computing through motion_modules/kernels.py (oneDNN's inner product on x86 CPUs
    in fp32, ``F.linear`` everywhere else). Where the host casts or patches the weights per call (manual
    cast, lowvram offloading, current ComfyUI's ``weight_function``s), its own forward runs as it is and
    only its final ``F.linear`` goes to the same kernel, so every mode gives the same numbers."""

    def forward(self, x):
        if _casts_per_call(self):
            with kernels.LinearKernel():
                return super().forward(x)
        return kernels.linear(x, self.weight, self.bias)


class _MotionCastLinear(_MotionLinear, comfy.ops.manual_cast.Linear):
    """:class:`_MotionLinear` for weights stored in another dtype than they compute in: the host's
    manual-cast Linear (``comfy_cast_weights`` always on), so it always takes the per-call-cast path."""


class MotionOperations(comfy.ops.disable_weight_init):
    """The layer classes motion modules (and SparseCtrl) are built from where weights are stored in the
    compute dtype: the host's, with :class:`_MotionLinear`."""
    Linear = _MotionLinear


class MotionCastOperations(comfy.ops.manual_cast):
    """The host's manual-cast layer classes, with :class:`_MotionCastLinear`."""
    Linear = _MotionCastLinear


# Motion modules are built from the host's layer classes, so its manual cast and lowvram loading
# (per-call weight casting and offloading) apply to them as to the UNet's own layers.
set_default_operations(MotionOperations)
FP8_DTYPES = tuple(getattr(torch, name) for name in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, name))
MOTION_CHILD = "motion"  # name of the inserted child; original children keep their names "0", "1", …


def model_object(model, name: str):
    """The object ``name`` (relative to the BaseModel) as this patcher sees it without our layers:
    its own object patch, else the original."""
    if HOST.model_object_lookup:
        found = model.get_model_object(name)
    elif name in model.object_patches:
        found = model.object_patches[name]
    else:
        found = model.object_patches_backup.get(name) or comfy.utils.get_attr(model.model, name)
    if name in model.object_patches:
        return found
    if isinstance(found, TimestepEmbedSequential) and MOTION_CHILD in found._modules:
        return TimestepEmbedSequential(OrderedDict((k, v) for k, v in found._modules.items() if k != MOTION_CHILD))
    if isinstance(found, CrossFrameGroupNorm):
        return found.original
    return found


def _insertion_point(block):
    """(index of the child a motion module follows, channels), or None."""
    last_st = first_res = None
    for index, child in enumerate(block):
        if isinstance(child, SpatialTransformer):
            last_st = index
        elif isinstance(child, ResBlock) and first_res is None:
            first_res = index
    if last_st is not None:
        return last_st, block[last_st].in_channels
    if first_res is not None:
        return first_res, block[first_res].out_channels
    return None


def _unet_blocks(model):
    """(side, object-patch key, block) for every input, middle and output block, as this model sees them."""
    unet = model.model.diffusion_model
    names = ([("down", f"diffusion_model.input_blocks.{i}") for i in range(len(unet.input_blocks))]
             + [("mid", "diffusion_model.middle_block")]
             + [("up", f"diffusion_model.output_blocks.{i}") for i in range(len(unet.output_blocks))])
    return [(side, key, model_object(model, key)) for side, key in names]


def _unet_slots(model):
    """The UNet's motion-module positions: {"down": [...], "mid": [...], "up": [...]}, each entry
    (object-patch key, block, child index, channels)."""
    slots = {"down": [], "mid": [], "up": []}
    for side, key, block in _unet_blocks(model):
        point = _insertion_point(block)
        if point is not None:
            slots[side].append((key, block, point[0], point[1]))
    return slots


def _family_of_channels(down, up) -> str:
    flat = lambda levels: [c for lvl in levels for c in lvl]  # noqa: E731
    if down == flat(SD15_DOWN) and up == flat(SD15_UP):
        return "SD1.5"
    if down == flat(SDXL_DOWN) and up == flat(SDXL_UP):
        return "SDXL"
    return "custom"


def _pair_modules_with_slots(motion: MotionModel, slots, modules):
    """[(slot, side, module)] in UNet order, or a clear error when the module does not fit the UNet."""
    fmt = motion.format
    by_name = dict(modules.in_unet_order())
    want_down = [(f"down_blocks.{i}.motion_modules.{j}", c) for i, lvl in enumerate(fmt.down) for j, c in enumerate(lvl)]
    want_up = [(f"up_blocks.{i}.motion_modules.{j}", c) for i, lvl in enumerate(fmt.up) for j, c in enumerate(lvl)]
    have_down = [s[3] for s in slots["down"]]
    have_up = [s[3] for s in slots["up"]]
    fits = ([c for _, c in want_down] == have_down and [c for _, c in want_up] == have_up
            and (not fmt.mid or (len(slots["mid"]) == 1 and slots["mid"][0][3] == fmt.mid)))
    if not fits:
        unet_family = _family_of_channels(have_down, have_up)
        hint = ""
        if fmt.family != "custom" and unet_family != "custom" and fmt.family != unet_family:
            hint = (f" An {fmt.family} motion module needs an {fmt.family} checkpoint: pick a motion module made "
                    f"for {unet_family} models, or an {fmt.family} checkpoint.")
        raise ValueError(
            f"motion module '{os.path.basename(motion.source)}' ({fmt.name}, {fmt.family}) does not fit this "
            f"model's UNet ({unet_family}): the module has {len(want_down)} down / {1 if fmt.mid else 0} mid / "
            f"{len(want_up)} up layers at channels {sorted(set(c for _, c in want_down))}, the UNet has "
            f"{len(have_down)} down / {len(slots['mid'])} mid / {len(have_up)} up positions at channels "
            f"{sorted(set(have_down))}.{hint}")
    pairs = [(slot, "down", by_name[name]) for slot, (name, _) in zip(slots["down"], want_down)]
    if fmt.mid:
        pairs.append((slots["mid"][0], "mid", by_name["mid_block.motion_modules.0"]))
    pairs += [(slot, "up", by_name[name]) for slot, (name, _) in zip(slots["up"], want_up)]
    return pairs


def _block_with_layer(block, after_index, layer):
    children = list(block._modules.items())
    ordered = OrderedDict(children[:after_index + 1] + [(MOTION_CHILD, layer)] + children[after_index + 1:])
    return TimestepEmbedSequential(ordered)


def motion_layer_patches(model, motion: MotionModel, state: FrameState, scale: float, cross_frame_norm: bool):
    """{object-patch key: block with its temporal layer} for every motion module of ``motion``."""
    storage, compute, ops = motion_dtypes(model, motion)
    modules = motion.modules_in(storage, compute, ops)
    patches = {}
    for (key, block, after_index, _), side, module in _pair_modules_with_slots(motion, _unet_slots(model), modules):
        patches[key] = _block_with_layer(block, after_index, TemporalLayer(module, state, scale, cross_frame_norm, side))
    return patches


def cross_frame_norm_patches(model, state: FrameState):
    """{object-patch key: CrossFrameGroupNorm} for every ResBlock GroupNorm and the output GroupNorm."""
    keys = [f"{block_key}.{child_name}.{seq}.0"
            for _, block_key, block in _unet_blocks(model)
            for child_name, child in block._modules.items() if isinstance(child, ResBlock)
            for seq in ("in_layers", "out_layers")]
    keys.append("diffusion_model.out.0")
    return {key: CrossFrameGroupNorm(model_object(model, key), state) for key in keys}


def compute_dtype(model):
    base = model.model
    return getattr(base, "manual_cast_dtype", None) or base.get_dtype()


def motion_dtypes(model, motion: MotionModel):
    """(storage dtype, compute dtype, layer classes) of the motion module inside ``model``'s UNet. It
    computes in the UNet's compute dtype. Its weights are stored in that dtype too (cast once, when
    applied), except fp8: an fp8 file stays fp8, and a UNet stored in fp8 (--fp8_e4m3fn-unet, …) gets
    its motion weights stored in the same fp8 type; fp8 weights are cast per call by the host's
    manual-cast layers, as the UNet's are."""
    compute = compute_dtype(model)
    storage = compute
    if HOST.manual_cast:
        if motion.format.dtype in FP8_DTYPES:
            storage = motion.format.dtype
        elif model.model.get_dtype() in FP8_DTYPES:
            storage = model.model.get_dtype()
    ops = MotionOperations if storage == compute else MotionCastOperations
    return storage, compute, ops
