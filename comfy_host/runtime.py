"""The per-call runtime: what runs around every evaluation of an animated model.

Current ComfyUI (wrappers): context windows are cut in a CALC_COND_BATCH wrapper, where the sampler
evaluates conditionings, as ComfyUI's own context windows are: each window is a complete evaluation
of its frames (ControlNet, masks, areas, hooks, per-frame prompts), fused afterwards. An APPLY_MODEL
wrapper tells the temporal layers, per UNet call, how many cond/uncond clips the batch holds and
which frames it covers. A PREPARE_SAMPLING wrapper sizes the host's memory estimate for one window.

The 2024 host has none of these: one UNet function wrapper (``model_function_wrapper``, chained with
any wrapper that was there before) cuts the UNet call into windows, with the ControlNet residuals cut
to each window (its ControlNet runs once per step on the whole batch, before the wrapper is called)
and, for each window, the residuals of controls that must run per window (SparseCtrl: its get_control
defers to the wrapper) computed on the window's frames and added; a post-CFG function checks per-frame
conditionings against the frame count.

Nothing here replaces a host function: every hook is registered on the clone ApplyMotionModule made.
The host calls each hook directly, so each hands this pack's errors to it as builtin types
(comfy_host/errors.py): the temporal layers' frame-limit errors, raised inside the UNet call, leave
through the APPLY_MODEL wrapper (current ComfyUI) or the UNet function wrapper (2024 host).
"""

from __future__ import annotations

import torch

from ..motion_modules.temporal import FrameLimitError
from ..motion_modules.unet_layers import FrameContextError
from ..samplers import run_in_windows
from . import capabilities
from .animation import WINDOW_KEY, Animation, WindowFrames, animation_in
from .conditioning import ConditioningError, add_deferred_residuals, check_conditioning, cut_conds, cut_unet_conds
from .errors import plain_errors
from .preview import post_cfg_preview

PATCH_KEY = "animatediff"


def install(patched):
    """Register the runtime hooks on ``patched`` (a fresh clone holding an Animation record)."""
    if capabilities.HOST.cond_batch_wrapper:
        import comfy.patcher_extension as ext
        patched.add_wrapper_with_key(ext.WrappersMP.CALC_COND_BATCH, PATCH_KEY, _calc_cond_batch_wrapper)
        patched.add_wrapper_with_key(ext.WrappersMP.APPLY_MODEL, PATCH_KEY, _apply_model_wrapper)
        patched.add_wrapper_with_key(ext.WrappersMP.PREPARE_SAMPLING, PATCH_KEY, _estimate_memory_per_window)
        patched.add_callback_with_key(ext.CallbacksMP.ON_CLEANUP, PATCH_KEY, _drop_window_copies)
    else:
        patched.set_model_unet_function_wrapper(_UnetCallWindows(patched.model_options.get("model_function_wrapper")))
        patched.set_model_sampler_post_cfg_function(_check_conditioning_post_cfg)
    # The animated preview of the whole batch (off until a frontend switches it on: comfy_host/preview.py).
    patched.set_model_sampler_post_cfg_function(post_cfg_preview)


def _chunks(transformer_options) -> int:
    return len(transformer_options.get("cond_or_uncond") or [0])


def step_index(transformer_options, sigma) -> int:
    """Which sampling step this call belongs to, for schedules whose windows move every step."""
    animation = animation_in(transformer_options)
    if animation is not None and animation.progress is not None:
        return animation.progress.step
    sample_sigmas = transformer_options.get("sample_sigmas")
    current = float(sigma.reshape(-1)[0]) if hasattr(sigma, "reshape") else float(sigma)
    if sample_sigmas is not None:
        return int((sample_sigmas.to("cpu").float() - current).abs().argmin())
    return int(round(current * 1000))  # no schedule known (2024 host): any per-step integer will do


def _needs_windows(animation: Animation, frames: int) -> bool:
    if not animation.in_windows(frames):
        if frames > animation.frame_limit:
            raise FrameLimitError(frames, animation.frame_limit)
        return False
    return True


def _on_window(animation: Animation):
    return animation.progress.window if animation.progress is not None else None


# ----------------------------------------------------------------------------------------------
# Current ComfyUI: windows where conditionings are evaluated

NATIVE_WINDOWS_ADVICE = (
    " ComfyUI's own context windows (the Context Windows node) are cutting this clip: they do not cut "
    "ControlNet hints, per-frame prompts or the motion scale schedule to each window. Remove that node and "
    "connect the pack's Context Scheduler to Apply Motion Module (or AnimateSampler) instead.")


@plain_errors
def _calc_cond_batch_wrapper(executor, model, conds, x_in, timestep, model_options):
    options = model_options.get("transformer_options", {})
    animation = animation_in(options)
    frames = x_in.shape[0]
    native_windows = model_options.get("context_handler") is not None and "context_window" in options
    try:
        check_conditioning(conds, frames)
    except ConditioningError as error:
        raise ConditioningError(str(error) + NATIVE_WINDOWS_ADVICE) if native_windows else error
    if native_windows and animation is not None and animation.motion_scale is not None:
        raise ConditioningError("a motion scale schedule is set." + NATIVE_WINDOWS_ADVICE)
    if animation is None or not _needs_windows(animation, frames):
        return executor(model, conds, x_in, timestep, model_options)
    step = step_index(options, timestep)

    def window_call(x_window, index):
        if index is None:
            return executor(model, conds, x_window, timestep, model_options)
        window = index.tolist()
        window_options = dict(model_options, transformer_options=dict(options, **{
            WINDOW_KEY: WindowFrames(tuple(window), frames)}))
        return executor(model, cut_conds(conds, window, frames, model, animation.controls, step), x_window,
                        timestep[index.to(timestep.device)] if timestep.ndim else timestep, window_options)

    return run_in_windows(window_call, x_in, 1, animation.context, step, on_window=_on_window(animation))


@plain_errors
def _apply_model_wrapper(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={},
                         **kwargs):
    animation = animation_in(transformer_options)
    chunks = _chunks(transformer_options)
    if x.shape[0] % chunks:
        raise FrameContextError(f"batch of {x.shape[0]} latents cannot be split into {chunks} equal clips")
    frames = x.shape[0] // chunks
    if frames > animation.frame_limit:
        raise FrameLimitError(frames, animation.frame_limit)
    window = _window_frames(transformer_options, frames)
    with animation.frames.model_call(chunks, animation.side_scales(window.indices, window.total)):
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)


def _window_frames(transformer_options, frames: int) -> WindowFrames:
    """The frames of this call: our context window, else the whole clip (ComfyUI's own context windows
    are only allowed without a motion scale schedule, for which the frames do not matter)."""
    window = transformer_options.get(WINDOW_KEY)
    return window if window is not None else WindowFrames(tuple(range(frames)), frames)


@plain_errors
def _estimate_memory_per_window(executor, model, noise_shape, *args, **kwargs):
    """Memory estimates for one window of frames, not the whole batch."""
    animation = animation_in(model.model_options.get("transformer_options"))
    context = animation.context if animation is not None else None
    if context is not None and noise_shape[0] > context.context_length:
        noise_shape = [context.context_length] + list(noise_shape[1:])
    return executor(model, noise_shape, *args, **kwargs)


def _drop_window_copies(patcher):
    animation = animation_in(patcher.model_options.get("transformer_options"))
    if animation is not None:
        animation.controls.clear()


# ----------------------------------------------------------------------------------------------
# The 2024 host: windows inside the UNet function wrapper

class _UnetCallWindows:
    """model_function_wrapper for hosts without wrappers; calls any wrapper that was there before."""

    def __init__(self, inner):
        self.inner = inner

    @plain_errors
    def __call__(self, apply_model, args):
        x, c = args["input"], args["c"]
        options = c.get("transformer_options", {})
        animation = animation_in(options)
        chunks = len(args["cond_or_uncond"])
        if x.shape[0] % chunks:
            raise FrameContextError(f"batch of {x.shape[0]} latents cannot be split into {chunks} equal clips")
        frames = x.shape[0] // chunks
        # Controls that compute their residuals per window (SparseCtrl), recorded by their get_control for
        # this call: taken (so none is left for the next call) and computed for each window in turn.
        deferred = animation.deferred_controls.take()

        def call(x_part, index):
            if index is None:
                part, window = args, tuple(range(frames))
                if deferred:
                    part = dict(args, c=dict(c, control=add_deferred_residuals(deferred, c.get("control"), None)))
            else:
                window = tuple(index[:len(index) // chunks].tolist())
                part_c = cut_unet_conds(c, index, x.shape[0])
                if deferred:
                    part_c["control"] = add_deferred_residuals(deferred, part_c.get("control"), index)
                part_c["transformer_options"] = dict(options, **{WINDOW_KEY: WindowFrames(window, frames)})
                part = dict(args, input=x_part, timestep=cut_unet_conds({"t": args["timestep"]}, index, x.shape[0])["t"],
                            c=part_c)
            with animation.frames.model_call(chunks, animation.side_scales(window, frames)):
                if self.inner is not None:
                    return self.inner(apply_model, part)
                return apply_model(part["input"], part["timestep"], **part["c"])

        if not _needs_windows(animation, frames):
            return call(x, None)
        return run_in_windows(call, x, chunks, animation.context, step_index(options, args["timestep"]),
                              on_window=_on_window(animation))

    def __deepcopy__(self, memo):
        return self


@plain_errors
def _check_conditioning_post_cfg(args):
    """The 2024 host shows the sampler's conditionings to post-CFG functions only: checked there, on
    the first step (its ControlNet has then run once, on the whole batch)."""
    frames = args["input"].shape[0]
    check_conditioning([args.get("cond"), args.get("uncond")], frames)
    return args["denoised"]

