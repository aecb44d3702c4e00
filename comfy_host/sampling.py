"""AnimateSampler: the host's own sampler with animation noise, context windows and FreeInit."""

from __future__ import annotations

import logging
import types
from dataclasses import dataclass

from ..motion_modules.temporal import FrameLimitError
from ..samplers import ContextOptions, initial_noise, low_pass_mask, reinitialised_noise
from .animation import animation_of, with_animation
from .conditioning import check_node_conditioning
from .files import progress_bar
from .patching import current_model_sampling, set_context_options

log = logging.getLogger("animatediff")

SWEET_SPOT_FRAMES = 16  # AnimateDiff modules were trained on 16-frame clips


@dataclass(frozen=True)
class FreeInitOptions:
    iterations: int = 1
    filter: str = "butterworth"
    spatial_cutoff: float = 0.25
    temporal_cutoff: float = 0.25


@dataclass(frozen=True)
class SamplerSettings:
    seed: int
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    denoise: float = 1.0
    noise_type: str = "default"
    seed_mode: str = "one generator for the batch"


class SamplingProgress:
    """Shared with the runtime during an AnimateSampler run: the current step (for schedules whose
    windows move each step) and a progress bar over iterations, steps and windows."""

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


def sampling_sigmas(model, sampler_name: str, scheduler: str, steps: int, denoise: float):
    """The sigmas the host's KSampler would use for these settings, on this model's schedule."""
    import comfy.samplers
    if hasattr(model, "get_model_object"):
        host_model = model
    else:  # the 2024 KSampler reads model.model_sampling off whatever it is given
        host_model = types.SimpleNamespace(model_sampling=current_model_sampling(model))
    return comfy.samplers.KSampler(host_model, steps=steps, device="cpu", sampler=sampler_name, scheduler=scheduler,
                                   denoise=denoise, model_options=model.model_options).sigmas


def animate_sample(model, settings: SamplerSettings, positive, negative, latent, context: ContextOptions | None,
                   freeinit: FreeInitOptions | None = None):
    import comfy.sample
    if context is not None:
        model = set_context_options(model, context)
    animation = animation_of(model)
    samples = latent["samples"]
    if hasattr(comfy.sample, "fix_empty_latent_channels"):
        samples = comfy.sample.fix_empty_latent_channels(model, samples)
    frames = samples.shape[0]
    context = animation.context if animation is not None else None
    if animation is None:
        log.warning("AnimateSampler: the MODEL has no motion module applied; frames are sampled as separate images")
    elif context is None and frames > animation.frame_limit:
        raise FrameLimitError(frames, animation.frame_limit)
    elif frames < SWEET_SPOT_FRAMES:
        log.warning("AnimateSampler: %d frames; AnimateDiff modules were trained on %d and move little with fewer",
                    frames, SWEET_SPOT_FRAMES)
    if animation is not None:
        check_node_conditioning(positive, frames)
        check_node_conditioning(negative, frames)
    length, overlap = (context.context_length, context.overlap) if context else (SWEET_SPOT_FRAMES, 4)
    noise = initial_noise(samples.shape, settings.seed, settings.noise_type, settings.seed_mode, length, overlap)
    sigmas = sampling_sigmas(model, settings.sampler_name, settings.scheduler, settings.steps, settings.denoise)
    iterations = freeinit.iterations if freeinit else 1
    progress = SamplingProgress(len(sigmas) - 1, iterations)
    if animation is not None:
        model = with_animation(model, animation.replace(progress=progress))
    first_noise = noise
    for iteration in range(iterations):
        progress.start_iteration(iteration)
        out = comfy.sample.sample(model, noise, settings.steps, settings.cfg, settings.sampler_name,
                                  settings.scheduler, positive, negative, samples, denoise=settings.denoise,
                                  noise_mask=latent.get("noise_mask"), sigmas=sigmas, callback=progress.step_done,
                                  disable_pbar=True, seed=settings.seed)
        if iteration + 1 < iterations:
            mask = low_pass_mask(frames, samples.shape[-2], samples.shape[-1], freeinit.filter,
                                 freeinit.spatial_cutoff, freeinit.temporal_cutoff)
            fresh = initial_noise(samples.shape, settings.seed + iteration + 1, "default", settings.seed_mode)
            to_model = model.model.process_latent_in
            noise = reinitialised_noise(to_model(out.float()), to_model(samples.float()), first_noise, fresh,
                                        float(sigmas[0]), mask)
    return out
