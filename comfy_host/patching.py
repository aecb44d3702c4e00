"""Making animated clones: ApplyMotionModule, ContextScheduler and the motion-scale schedule on a
MODEL, and the beta schedule the motion module was trained with. Every change is made on a clone;
the input MODEL is never touched."""

from __future__ import annotations

import copy
import importlib

from ..motion_modules import BetaSchedule, MotionModel
from ..samplers import ContextOptions, MotionScaleSchedule
from . import runtime
from .animation import Animation, animation_of, with_animation
from .unet import cross_frame_norm_patches, model_object, motion_dtypes, motion_layer_patches
from ..motion_modules.unet_layers import FrameState


class NotAnimatedError(ValueError):
    pass


def apply_motion_model(model, motion: MotionModel, scale: float, beta_schedule: BetaSchedule | None,
                       groupnorm: str | None = None):
    """A clone of ``model`` whose UNet runs ``motion``'s temporal layers. ``groupnorm``: None / "as
    trained", or one of motion_modules.GROUPNORM_MODES."""
    cross_frame_motion_norm, cross_frame_unet_norm = motion.format.groupnorm(groupnorm)
    if animation_of(model) is not None:
        raise ValueError("this MODEL already has a motion module applied; apply one motion module per MODEL")
    state = FrameState()
    layers = motion_layer_patches(model, motion, state, scale, cross_frame_motion_norm)
    animation = Animation(motion=motion, frames=state, frame_limit=motion.format.pe_length)
    patched = with_animation(model, animation)
    for key, block in layers.items():
        patched.add_object_patch(key, block)
    if cross_frame_unet_norm and scale != 0:
        for key, norm in cross_frame_norm_patches(model, state).items():
            patched.add_object_patch(key, norm)
    runtime.install(patched)
    if beta_schedule is not None:
        _set_beta_schedule(patched, beta_schedule)
    # The host sizes its memory estimate once, from the bare UNet; count the inserted weights too.
    storage, compute, _ = motion_dtypes(model, motion)
    patched.size = model.model_size() + motion.nbytes_in(storage, compute)
    return patched


def _animation_or_error(model, what: str) -> Animation:
    animation = animation_of(model)
    if animation is None:
        raise NotAnimatedError(f"{what} needs a MODEL with a motion module applied: connect the MODEL output of "
                               f"Apply Motion Module")
    return animation


def set_context_options(model, context: ContextOptions | None):
    """A clone of ``model`` whose animation runs in context windows (or in one piece for None)."""
    animation = _animation_or_error(model, "context options")
    limit = animation.frame_limit
    if context is not None and context.context_length > limit:
        raise ValueError(f"context_length {context.context_length} is over the motion module's limit of {limit} "
                         f"frames; use at most {limit}")
    return with_animation(model, animation.replace(context=context))


def set_motion_scale_schedule(model, schedule: MotionScaleSchedule | None):
    """A clone of ``model`` whose temporal layers' strength follows ``schedule`` (times motion_scale)."""
    animation = _animation_or_error(model, "a motion scale schedule")
    return with_animation(model, animation.replace(motion_scale=schedule))


def motion_frame_limit(model) -> int | None:
    """The frame limit of the motion module applied to ``model``, or None if there is none."""
    animation = animation_of(model)
    return None if animation is None else animation.frame_limit


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
