"""SparseCtrl in the host's sampling: loading into the host's memory management, and the control object
the host's samplers call like a ControlNet.

The control object is a subclass of the host's ``comfy.controlnet.ControlBase``, because that is the
interface both hosts' samplers call for every control in a conditioning: ``pre_run``, ``get_control``
(with ``transformer_options`` on current ComfyUI), ``copy``, ``get_models``, ``cleanup``,
``set_previous_controlnet``. It chains with host ControlNets and T2I-Adapters either way round.

Per-frame data (docs/sparsectrl.md §4): the keyframes are kept once; ``cond_hint_original`` is a
``(frames,)`` tensor giving each frame's keyframe (or -1).

In context windows every window runs SparseCtrl on its own frames, with the keyframes that fall inside it
at window-local positions (its motion modules see the window's frames, so a frame's residuals depend on
the window it is in), one window at a time, with any schedule. On current ComfyUI the pack's windows cut
``cond_hint_original`` like any per-frame hint (comfy_host/conditioning.py), and each window's copy of
the control runs there. The 2024 host calls ``get_control`` once per UNet call on the whole clip, before
the pack's UNet function wrapper cuts the call into windows: there ``get_control`` passes the previous
controls' residuals on unchanged and defers its own to the wrapper (the animation's
``deferred_controls``), which computes them for each window on the window's frames and adds them to the
window's cut residuals (comfy_host/runtime.py).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

import comfy.controlnet
import comfy.latent_formats
import comfy.model_management
import comfy.model_patcher
import folder_paths

from ..motion_modules.sparse_control import (MODE_RGB, SparseCtrl, SparseCtrlInputError, condition_from_slots,
                                             fit_images, keyframe_slots, load_sparse_ctrl, parse_frame_indices)
from ..motion_modules.temporal import FrameLimitError
from ..samplers.windowed import slice_batch
from . import capabilities
from .animation import animation_of
from .conditioning import merge_residuals
from .errors import plain_errors
from .unet import MotionCastOperations, MotionOperations

FOLDER = "controlnet"  # the host's ControlNet folder (models/controlnet): where SparseCtrl files go too


class SparseCtrlModelError(ValueError):
    """A SparseCtrl applied to a model it was not made for."""


class SparseCtrlFrameLimitError(ValueError):
    """More frames reach SparseCtrl in one call than its motion modules take."""


def sparsectrl_names() -> list[str]:
    return folder_paths.get_filename_list(FOLDER)


def sparsectrl_path(name: str) -> str:
    path = folder_paths.get_full_path(FOLDER, name)
    if path is None:
        folders = ", ".join(folder_paths.get_folder_paths(FOLDER))
        raise FileNotFoundError(f"SparseCtrl '{name}' not found in {FOLDER} ({folders})")
    return path


class LoadedSparseCtrl:
    """The SPARSECTRL value: a recognised file, its network built from the host's layer classes in the
    host's dtype for ControlNets, and the ModelPatcher through which the host loads it onto the device."""

    def __init__(self, sparsectrl: SparseCtrl):
        self.sparsectrl = sparsectrl
        self.format = sparsectrl.format
        self.load_device = comfy.model_management.get_torch_device()
        self.dtype = comfy.model_management.unet_dtype()
        self.manual_cast_dtype = comfy.model_management.unet_manual_cast(self.dtype, self.load_device)
        operations = MotionCastOperations if self.manual_cast_dtype is not None else MotionOperations
        self.network = sparsectrl.build(dtype=self.dtype, operations=operations)
        self.patcher = comfy.model_patcher.ModelPatcher(
            self.network, load_device=self.load_device, offload_device=comfy.model_management.unet_offload_device())

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.manual_cast_dtype or self.dtype

    @property
    def name(self) -> str:
        return os.path.basename(self.sparsectrl.source)

    def summary(self) -> str:
        return self.sparsectrl.summary()


@plain_errors
def load(name: str) -> LoadedSparseCtrl:
    return LoadedSparseCtrl(load_sparse_ctrl(sparsectrl_path(name)))


@dataclass(frozen=True)
class SparseCtrlOptions:
    """How strongly and when: ``strength`` scales every residual; the percents bound the sampling steps."""
    strength: float = 1.0
    start_percent: float = 0.0
    end_percent: float = 1.0

    def __post_init__(self):
        for name in ("strength", "start_percent", "end_percent"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise SparseCtrlInputError(f"Apply SparseCtrl: {name} is {value!r}; expected a finite number")
        if not 0.0 <= self.strength <= 10.0:
            raise SparseCtrlInputError(f"Apply SparseCtrl: strength is {self.strength}; expected 0 to 10")
        if not 0.0 <= self.start_percent <= self.end_percent <= 1.0:
            raise SparseCtrlInputError(
                f"Apply SparseCtrl: start_percent {self.start_percent} and end_percent {self.end_percent} must satisfy "
                f"0 <= start_percent <= end_percent <= 1")


def keyframes_for(loaded: LoadedSparseCtrl, images: torch.Tensor, latent_shape, vae=None) -> torch.Tensor:
    """The keyframes as the network takes them, for a latent of ``latent_shape`` (frames, 4, h, w): RGB
    files get the images VAE-encoded (SD1.5 latent scale), scribble files the images themselves."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] < 3:
        raise SparseCtrlInputError(f"Apply SparseCtrl: images must be an IMAGE batch (n, height, width, 3); got "
                                   f"{tuple(getattr(images, 'shape', ())) or type(images).__name__}")
    fmt = loaded.format
    h, w = int(latent_shape[-2]), int(latent_shape[-1])
    pixels = images[..., :3].movedim(-1, 1).float()
    if fmt.mode == MODE_RGB:
        if vae is None:
            raise SparseCtrlInputError(
                f"Apply SparseCtrl: {loaded.name} is an RGB SparseCtrl, which takes the keyframes as VAE latents: "
                f"connect the checkpoint's VAE to the vae input")
        fitted = fit_images(pixels, h * 8, w * 8).clamp(0, 1)
        # One image at a time: a keyframe's latent is then the same however many keyframes come with it (the
        # VAE's results vary with the batch size by float rounding), so a clip and its windows sampled alone
        # see the same latents.
        with torch.inference_mode():  # as the host runs nodes (and its VAE Encode)
            encoded = torch.cat([vae.encode(image[None].movedim(1, -1)) for image in fitted])
        if tuple(encoded.shape[1:]) != (fmt.condition_channels, h, w):
            raise SparseCtrlInputError(
                f"Apply SparseCtrl: the VAE encodes {w * 8}x{h * 8} images to latents of shape "
                f"{tuple(encoded.shape[1:])}, but {loaded.name} takes ({fmt.condition_channels}, {h}, {w}): use the "
                f"SD1.5 checkpoint's VAE")
        return comfy.latent_formats.SD15().process_in(encoded.float()).cpu()
    scale = fmt.hint_scale
    return fit_images(pixels, h * scale, w * scale).cpu()


@plain_errors
def apply_sparsectrl(positive, negative, loaded: LoadedSparseCtrl, images: torch.Tensor, frame_indices: str,
                     latent: dict, options: SparseCtrlOptions, vae=None):
    """(positive, negative) with the SparseCtrl added to every entry's control chain, as the host's
    ControlNetApplyAdvanced does (a control already there becomes the previous one)."""
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if not isinstance(samples, torch.Tensor) or samples.ndim != 4:
        raise SparseCtrlInputError("Apply SparseCtrl: latent must be the LATENT you sample (a batch of frames)")
    if samples.shape[1] != loaded.format.in_channels:
        raise SparseCtrlInputError(
            f"Apply SparseCtrl: the latent has {samples.shape[1]} channels; {loaded.name} is for "
            f"{loaded.format.family} latents of {loaded.format.in_channels} channels")
    frames = int(samples.shape[0])
    indices = parse_frame_indices(frame_indices, frames)
    slots = keyframe_slots(indices, int(images.shape[0]) if isinstance(images, torch.Tensor) else 0, frames)
    keyframes = keyframes_for(loaded, images, samples.shape, vae)
    cache = {}
    out = []
    for conditioning in (positive, negative):
        entries = []
        for embedding, opts in conditioning:
            opts = opts.copy()
            previous = opts.get("control", None)
            if previous not in cache:
                control = SparseCtrlControl(loaded, keyframes, (int(samples.shape[2]), int(samples.shape[3])))
                control.set_cond_hint(slots, options.strength, (options.start_percent, options.end_percent))
                control.set_previous_controlnet(previous)
                cache[previous] = control
            opts["control"] = cache[previous]
            opts["control_apply_to_uncond"] = False
            entries.append([embedding, opts])
        out.append(entries)
    return out[0], out[1]


def _unet_input_channels(unet_config: dict) -> list[int]:
    mc = unet_config.get("model_channels")
    mult = list(unet_config.get("channel_mult") or ())
    res = unet_config.get("num_res_blocks")
    res = [res] * len(mult) if isinstance(res, int) else list(res or ())
    out = [mc]
    for i, m in enumerate(mult):
        out += [mc * m] * res[i] + ([mc * m] if i < len(mult) - 1 else [])
    return out


def _loaded_patcher(model):
    """The ModelPatcher the host loaded for ``model`` (a BaseModel) to sample it, if any: the 2024 host
    hands controls only the BaseModel, and the pack's Animation record lives on the patcher."""
    for loaded in getattr(comfy.model_management, "current_loaded_models", ()):
        patcher = getattr(loaded, "model", None)
        if getattr(patcher, "model", None) is model:
            return patcher
    return None


class SparseCtrlControl(comfy.controlnet.ControlBase):
    """The control the samplers call. ``cond_hint_original``: (frames,) keyframe index per frame (-1: none)."""

    def __init__(self, loaded: LoadedSparseCtrl, keyframes: torch.Tensor, latent_size: tuple[int, int]):
        super().__init__()
        self.loaded = loaded
        self.keyframes = keyframes
        self.latent_size = latent_size
        self.model_sampling_current = None
        self.animation = None  # 2024 host: the sampled model's Animation record, found at pre_run

    def copy(self):
        c = SparseCtrlControl(self.loaded, self.keyframes, self.latent_size)
        self.copy_to(c)
        return c

    def check_frame_count(self, frames: int):
        """Called where the pack checks every per-frame input against the clip (comfy_host/conditioning.py)."""
        if self.cond_hint_original.shape[0] != frames:
            raise SparseCtrlInputError(
                f"Apply SparseCtrl was given a latent of {self.cond_hint_original.shape[0]} frames, but the sampler is "
                f"sampling {frames}: connect the LATENT you sample to Apply SparseCtrl (its frame indices are "
                f"positions in that clip)")

    def get_models(self):
        return super().get_models() + [self.loaded.patcher]

    def cleanup(self):
        self.model_sampling_current = None
        self.animation = None
        super().cleanup()

    @plain_errors
    def pre_run(self, model, percent_to_timestep_function):
        super().pre_run(model, percent_to_timestep_function)
        self.model_sampling_current = model.model_sampling
        self._check_model(model)
        if not capabilities.HOST.cond_batch_wrapper:
            patcher = _loaded_patcher(model)
            self.animation = animation_of(patcher) if patcher is not None else None
            if self.animation is not None:
                self.animation.deferred_controls.clear()  # none left by a sampling that stopped mid-step

    def _check_model(self, model):
        fmt = self.loaded.format
        config = getattr(getattr(model, "model_config", None), "unet_config", None) or {}
        family = type(getattr(model, "model_config", None)).__name__
        unet = _unet_input_channels(config) if config.get("model_channels") else None
        context = config.get("context_dim")
        if (unet is not None and unet != fmt.residual_channels()) \
                or (context is not None and context != fmt.context_dim) \
                or config.get("in_channels", fmt.in_channels) != fmt.in_channels:
            raise SparseCtrlModelError(
                f"{self.loaded.name} is a SparseCtrl for {fmt.family} UNets (input-block channels "
                f"{fmt.residual_channels()}, text context {fmt.context_dim}), but the model being sampled is "
                f"{family} (input-block channels {unet}, text context {context}): use it with an SD1.5 checkpoint "
                f"(AnimateDiff v3 SparseCtrl exists for SD1.5 only)")

    @plain_errors
    def get_control(self, x_noisy, t, cond, batched_number, transformer_options=None):
        control_prev = None
        if self.previous_controlnet is not None:
            if transformer_options is None:
                control_prev = self.previous_controlnet.get_control(x_noisy, t, cond, batched_number)
            else:
                control_prev = self.previous_controlnet.get_control(x_noisy, t, cond, batched_number,
                                                                    transformer_options)
        if self.timestep_range is not None and (t[0] > self.timestep_range[0] or t[0] < self.timestep_range[1]):
            return control_prev
        slots = self.cond_hint_original
        if x_noisy.shape[0] % batched_number:
            raise SparseCtrlInputError(f"a batch of {x_noisy.shape[0]} latents cannot be split into {batched_number} "
                                       f"equal clips")
        frames = x_noisy.shape[0] // batched_number
        self.check_frame_count(frames)
        if tuple(x_noisy.shape[-2:]) != tuple(self.latent_size):
            h, w = self.latent_size
            raise SparseCtrlInputError(
                f"Apply SparseCtrl was given a {w}x{h} latent, but the sampler samples {x_noisy.shape[-1]}x"
                f"{x_noisy.shape[-2]} latents: connect the LATENT you sample to Apply SparseCtrl")
        context = cond.get("crossattn_controlnet", cond["c_crossattn"])
        if self.animation is not None and self.animation.in_windows(frames):
            # The 2024 host with context windows: this runs once on the whole clip, before the pack's runtime
            # cuts the UNet call into windows. A frame's residuals depend on its window (SparseCtrl's motion
            # modules see the window's frames), so the runtime computes them per window (comfy_host/runtime.py).
            self.animation.deferred_controls.add(_DeferredResiduals(self, x_noisy, t, context, batched_number))
            return control_prev
        return merge_residuals(self._control(x_noisy, t, context, slots, batched_number), control_prev)

    def _control(self, x_noisy, t, context, slots, clips: int) -> dict:
        """The residuals for ``clips`` clips of the frames ``slots`` describes, as a control dict."""
        down, mid = self._residuals(x_noisy, t, context, slots, clips)
        return {"input": [], "middle": [mid.to(x_noisy.dtype)], "output": [d.to(x_noisy.dtype) for d in down]}

    def _residuals(self, x_noisy, t, context, slots, clips: int):
        """The network's down and mid residuals for ``clips`` clips of the frames ``slots`` describes."""
        frames = slots.shape[0]
        dtype = self.loaded.compute_dtype
        device = x_noisy.device
        condition, mask = condition_from_slots(self.keyframes.to(device=device, dtype=dtype), slots)
        condition = condition.repeat(clips, 1, 1, 1)
        mask = mask.repeat(clips, 1, 1, 1)
        sampling = self.model_sampling_current
        timestep = sampling.timestep(t).float()
        x_in = sampling.calculate_input(t, x_noisy).to(dtype)
        try:
            return self.loaded.network(x_in, timestep, context.to(device=device, dtype=dtype), condition, mask,
                                       frames, scale=self.strength)
        except FrameLimitError:
            raise SparseCtrlFrameLimitError(
                f"{frames} frames reach SparseCtrl, whose motion modules take at most {self.loaded.format.pe_length}. "
                f"Attach context windows (Context Scheduler) with context_length at most "
                f"{self.loaded.format.pe_length}: each window then runs SparseCtrl on its own frames") from None


@dataclass(frozen=True, eq=False)
class _DeferredResiduals:
    """What SparseCtrl's get_control was given for one UNet call on the 2024 host; the pack's UNet function
    wrapper asks it for each window's residuals."""
    control: SparseCtrlControl
    x_noisy: torch.Tensor
    t: torch.Tensor
    context: torch.Tensor
    clips: int

    def residuals(self, index: torch.Tensor | None) -> dict:
        """The residuals of the window at batch positions ``index`` (chunk-major, as
        samplers/windowed.py cuts them; None: the whole batch), computed on the window's frames alone."""
        slots = self.control.cond_hint_original
        if index is None:
            return self.control._control(self.x_noisy, self.t, self.context, slots, self.clips)
        batch = self.x_noisy.shape[0]
        window = index[:index.shape[0] // self.clips].cpu()
        return self.control._control(
            self.x_noisy[index.to(self.x_noisy.device)], slice_batch(self.t, index, batch),
            slice_batch(self.context, index, batch), slots[window], self.clips)
