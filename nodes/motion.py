"""LoadMotionModule and ApplyMotionModule: thin declarations over motion_modules/ and comfy_host."""

from .. import comfy_host
from ..motion_modules import BETA_SCHEDULES, load_motion_model

AUTOSELECT = "autoselect"
MODEL_OWN = "use model's own"
CATEGORY = "AnimateDiff"


class LoadMotionModule:
    DESCRIPTION = "Reads an AnimateDiff motion-module file and tells you what it is."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MOTION_MODEL", "STRING")
    RETURN_NAMES = ("motion_model", "info")
    OUTPUT_TOOLTIPS = ("The motion module, for ApplyMotionModule.",
                       "What was loaded: format, family, module count, channels, frame limit, dtype, GroupNorm mode.")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_name": (comfy_host.motion_model_names(), {
                "tooltip": "A file in models/animatediff_models (AnimateDiff v1/v2/v3; .ckpt, .pt or .safetensors)."}),
        }}

    def load(self, model_name):
        motion = load_motion_model(comfy_host.motion_model_path(model_name))
        return (motion, motion.summary())


class ApplyMotionModule:
    DESCRIPTION = ("Returns a copy of MODEL whose UNet runs the motion module's temporal layers. The latent "
                   "batch becomes the frames of one animation. The input MODEL is left untouched.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The animated model: use it with KSampler and a latent batch of frames.",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "An SD model whose family matches the motion module."}),
            "motion_model": ("MOTION_MODEL", {"tooltip": "From LoadMotionModule."}),
            "motion_scale": ("FLOAT", {
                "default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01,
                "tooltip": "Strength of the temporal layers. 1.0 is the module as trained; 0.0 switches them off "
                           "(plain image model, bit-identical)."}),
            "beta_schedule": ([AUTOSELECT, *BETA_SCHEDULES, MODEL_OWN], {
                "default": AUTOSELECT,
                "tooltip": "Noise schedule. 'autoselect' uses the schedule the motion module was trained with "
                           "(sqrt_linear for SD1.5 AnimateDiff); 'use model's own' keeps the checkpoint's."}),
        }}

    def apply(self, model, motion_model, motion_scale, beta_schedule):
        if beta_schedule == AUTOSELECT:
            schedule = motion_model.format.beta_schedule
        elif beta_schedule == MODEL_OWN:
            schedule = None
        else:
            schedule = BETA_SCHEDULES[beta_schedule]
        return (comfy_host.apply_motion_model(model, motion_model, motion_scale, schedule),)
