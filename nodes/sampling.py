"""ContextScheduler and AnimateSampler: thin declarations over samplers/ and comfy_host."""

import comfy.samplers

from .. import comfy_host
from ..samplers import FILTERS, FUSE_METHODS, NOISE_TYPES, SCHEDULES, SEED_MODES, ContextOptions
from .inputs import validated

CATEGORY = "AnimateDiff"


@validated("Context Scheduler")
class ContextScheduler:
    DESCRIPTION = ("Sliding context windows: the motion module sees context_length frames at a time, so animations "
                   "can be longer than its frame limit at flat memory. Connect to Apply Motion Module or AnimateSampler.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("CONTEXT_OPTIONS",)
    OUTPUT_TOOLTIPS = ("Context windows, for Apply Motion Module (any sampler) or AnimateSampler.",)
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "context_length": ("INT", {"default": 16, "min": 1, "max": 128,
                                       "tooltip": "Frames per window; 16 suits AnimateDiff (at most the module's limit)."}),
            "overlap": ("INT", {"default": 4, "min": 0, "max": 127,
                                "tooltip": "Frames shared by neighbouring windows; more hides seams, costs time."}),
            "schedule": (list(SCHEDULES), {"default": "standard_static",
                                           "tooltip": "standard_static: fixed windows; standard_uniform: windows shift "
                                                      "every step; looped_uniform: shifting windows that wrap around; "
                                                      "batched: no overlap."}),
            "fuse_method": (list(FUSE_METHODS), {"default": "pyramid",
                                                 "tooltip": "How overlapping windows are blended; pyramid trusts each "
                                                            "window's middle most."}),
            "stride": ("INT", {"default": 1, "min": 1, "max": 16,
                               "tooltip": "Uniform schedules: also run windows with frames 2, 4, ... apart (power of two) "
                                          "for long-range coherence."}),
            "closed_loop": ("BOOLEAN", {"default": False,
                                        "tooltip": "Add windows joining the last frames to the first, for a seamless loop."}),
        }}

    def build(self, context_length, overlap, schedule, fuse_method, stride, closed_loop):
        return (ContextOptions(context_length=context_length, overlap=overlap, stride=stride,
                               closed_loop=closed_loop, schedule=schedule, fuse_method=fuse_method),)


@validated("Animate Sampler")  # freeinit_iterations, cutoffs, ... checked before the first step
class AnimateSampler:
    DESCRIPTION = ("KSampler for animations: context windows, animation noise types, per-frame seeds, "
                   "video-to-video denoise and FreeInit.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The denoised frames.",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "A model with a motion module applied."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff, "control_after_generate": True,
                                 "tooltip": "Noise seed."}),
                "steps": ("INT", {"default": 20, "min": 1, "max": 10000, "tooltip": "Sampling steps."}),
                "cfg": ("FLOAT", {"default": 7.5, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01,
                                  "tooltip": "Classifier-free guidance scale."}),
                "sampler_name": (comfy.samplers.KSampler.SAMPLERS, {"tooltip": "Sampling algorithm."}),
                "scheduler": (comfy.samplers.KSampler.SCHEDULERS, {"tooltip": "Noise schedule spacing."}),
                "positive": ("CONDITIONING", {"tooltip": "What to show."}),
                "negative": ("CONDITIONING", {"tooltip": "What to avoid."}),
                "latent_image": ("LATENT", {"tooltip": "Empty latents (text to video) or encoded frames (video to video); "
                                                       "the batch is the frame count."}),
                "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                      "tooltip": "1.0 for text to video; below 1 keeps that much of the input frames."}),
                "noise_type": (list(NOISE_TYPES), {"default": "default",
                                                   "tooltip": "default: independent per frame; constant: one noise for "
                                                              "all frames; repeated_context: the first window's noise "
                                                              "repeated; FreeNoise: shuffled reuse across windows."}),
                "seed_mode": (list(SEED_MODES), {"default": SEED_MODES[0],
                                                 "tooltip": "One generator for the batch (as KSampler), or seed + i for "
                                                            "frame i (as A1111: frames stay put when the count changes)."}),
            },
            "optional": {
                "context_options": ("CONTEXT_OPTIONS", {"tooltip": "From ContextScheduler, for long animations."}),
                "freeinit_iterations": ("INT", {"default": 1, "min": 1, "max": 10,
                                                "tooltip": "FreeInit: 1 is off; N samples N times, re-initialising the "
                                                           "noise's low frequencies from each result."}),
                "freeinit_filter": (list(FILTERS), {"default": "butterworth", "tooltip": "FreeInit low-pass filter."}),
                "freeinit_spatial_cutoff": ("FLOAT", {"default": 0.25, "min": 0.01, "max": 1.0, "step": 0.01,
                                                      "tooltip": "FreeInit spatial cutoff (normalised frequency)."}),
                "freeinit_temporal_cutoff": ("FLOAT", {"default": 0.25, "min": 0.01, "max": 1.0, "step": 0.01,
                                                       "tooltip": "FreeInit temporal cutoff (normalised frequency)."}),
            },
        }

    def sample(self, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise,
               noise_type, seed_mode, context_options=None, freeinit_iterations=1, freeinit_filter="butterworth",
               freeinit_spatial_cutoff=0.25, freeinit_temporal_cutoff=0.25):
        settings = comfy_host.SamplerSettings(seed=seed, steps=steps, cfg=cfg, sampler_name=sampler_name,
                                              scheduler=scheduler, denoise=denoise, noise_type=noise_type,
                                              seed_mode=seed_mode)
        freeinit = None
        if freeinit_iterations > 1:
            freeinit = comfy_host.FreeInitOptions(freeinit_iterations, freeinit_filter, freeinit_spatial_cutoff,
                                                  freeinit_temporal_cutoff)
        samples = comfy_host.animate_sample(model, settings, positive, negative, latent_image, context_options,
                                            freeinit)
        out = dict(latent_image)
        out["samples"] = samples
        return (out,)
