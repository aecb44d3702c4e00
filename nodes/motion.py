"""LoadMotionModule, ApplyMotionModule and LoadMotionLoRA: thin declarations over motion_modules/ and comfy_host."""

from .. import comfy_host
from ..motion_modules import (BETA_SCHEDULES, GROUPNORM_AS_TRAINED, GROUPNORM_MODES, apply_motion_lora,
                              load_motion_lora, load_motion_model)

AUTOSELECT = "autoselect"
MODEL_OWN = "use model's own"
CATEGORY = "AnimateDiff"


class LoadMotionModule:
    DESCRIPTION = "Reads a motion-module file and tells you what it is."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MOTION_MODEL", "STRING")
    RETURN_NAMES = ("motion_model", "info")
    OUTPUT_TOOLTIPS = ("The motion module, for ApplyMotionModule.",
                       "What was loaded: format, version, family, module count, channels, frame limit, dtype, "
                       "GroupNorm modes, trained beta schedule.")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_name": (comfy_host.motion_model_names(), {
                "tooltip": "A file in models/animatediff_models: AnimateDiff v1/v2/v3, SDXL beta, HotShot-XL, "
                           "AnimateLCM, AnimateDiff-Lightning, or a diffusers MotionAdapter "
                           "(diffusion_pytorch_model.safetensors, with its config.json beside it if you have it). "
                           "The format is recognised from the tensors, not the file name."}),
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
            "model": ("MODEL", {"tooltip": "An SD model whose family (SD1.5 / SDXL) matches the motion module."}),
            "motion_model": ("MOTION_MODEL", {"tooltip": "From LoadMotionModule (or LoadMotionLoRA)."}),
            "motion_scale": ("FLOAT", {
                "default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01,
                "tooltip": "Strength of the temporal layers. 1.0 is the module as trained; 0.0 switches them off "
                           "(plain image model, bit-identical)."}),
            "beta_schedule": ([AUTOSELECT, *BETA_SCHEDULES, MODEL_OWN], {
                "default": AUTOSELECT,
                "tooltip": "Noise schedule. 'autoselect' uses the schedule the motion module was trained with "
                           "(sqrt_linear for SD1.5 AnimateDiff, linear 0.020 for AnimateDiff-SDXL, the SDXL default "
                           "for HotShot-XL, lcm for AnimateLCM); 'use model's own' keeps the checkpoint's."}),
        }, "optional": {
            # Optional and last: saved workflows with [motion_scale, beta_schedule] keep working.
            "groupnorm": ([GROUPNORM_AS_TRAINED, *GROUPNORM_MODES], {
                "default": GROUPNORM_AS_TRAINED,
                "tooltip": "Which GroupNorms compute their statistics across the frames. 'as trained' follows the "
                           "module (see the loader's info). 'per-frame': none do (motion modules and UNet per "
                           "frame). 'cross-frame': the motion modules' GroupNorm spans the frames (SDXL beta, "
                           "diffusers). 'cross-frame incl. UNet ResNets': that, plus the base UNet's ResNet "
                           "GroupNorms (as v1 and HotShot-XL were trained)."}),
            "context_options": ("CONTEXT_OPTIONS", {
                "tooltip": "From ContextScheduler: run the animation in sliding windows, so any sampler (KSampler, "
                           "KSamplerAdvanced, SamplerCustom) can make it longer than the module's frame limit."}),
        }}

    def apply(self, model, motion_model, motion_scale, beta_schedule, groupnorm=GROUPNORM_AS_TRAINED,
              context_options=None):
        if beta_schedule == AUTOSELECT:
            schedule = motion_model.format.beta_schedule
        elif beta_schedule == MODEL_OWN:
            schedule = None
        else:
            schedule = BETA_SCHEDULES[beta_schedule]
        patched = comfy_host.apply_motion_model(model, motion_model, motion_scale, schedule, groupnorm)
        if context_options is not None:
            patched = comfy_host.set_context_options(patched, context_options)
        return (patched,)


class LoadMotionLoRA:
    DESCRIPTION = ("Adds an AnimateDiff motion LoRA (camera moves such as v2_lora_ZoomIn) to a motion module. "
                   "Chain several to stack them. The loaded motion module is not changed.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MOTION_MODEL",)
    RETURN_NAMES = ("motion_model",)
    OUTPUT_TOOLTIPS = ("The motion module with this LoRA (and any earlier ones) applied, for ApplyMotionModule.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "motion_model": ("MOTION_MODEL", {"tooltip": "From LoadMotionModule or another LoadMotionLoRA."}),
            "lora_name": (comfy_host.motion_lora_names(), {
                "tooltip": "A file in models/animatediff_motion_lora (AnimateDiff v2 MotionLoRA format). Spatial "
                           "LoRAs, including the v3 domain adapter, go through the host's LoraLoader instead."}),
            "strength": ("FLOAT", {
                "default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01,
                "tooltip": "W + strength * (up @ down). 0 leaves the module exactly as it was; negative values "
                           "reverse the motion."}),
        }}

    def load(self, motion_model, lora_name, strength):
        lora = load_motion_lora(comfy_host.motion_lora_path(lora_name))
        return (apply_motion_lora(motion_model, lora, strength),)
