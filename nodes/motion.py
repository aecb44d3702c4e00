"""LoadMotionModule, ApplyMotionModule, MotionScaleSchedule and LoadMotionLoRA: thin declarations over
motion_modules/, samplers/ and comfy_host."""

from .. import comfy_host
from ..motion_modules import (BETA_SCHEDULES, GROUPNORM_AS_TRAINED, GROUPNORM_MODES, apply_motion_lora,
                              load_motion_lora, load_motion_model)
from ..samplers import INTERPOLATIONS, KeyframeError, parse_value_keyframes
from ..samplers import MotionScaleSchedule as Schedule
from .inputs import check_number

AUTOSELECT = "autoselect"
MODEL_OWN = "use model's own"
CATEGORY = "AnimateDiff"
MOTION_SCALE_RANGE = (0.0, 10.0)  # motion_scale, keyframed scales and side multipliers alike
# The frame count is not known where a schedule is built: keyframes are parsed against this bound, and
# checked against the animation's real frame count when it is sampled (MotionScaleSchedule.frame_scales).
SCHEDULE_FRAME_BOUND = 100_000


def _check_scale(node: str, name: str, value, what: str) -> float:
    """``value`` as a float, or a clear error naming the input: raw API prompts skip the widget's range."""
    return float(check_number(node, name, value, *MOTION_SCALE_RANGE, what=what))


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


class ApplyMotionModule:  # checks its inputs itself (motion_scale below, groupnorm in MotionFormat)
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
            # Last: widgets of saved workflows keep their order.
            "scale_schedule": ("MOTION_SCALE_SCHEDULE", {
                "tooltip": "From Motion Scale Schedule: the temporal layers' strength per frame and per UNet side. "
                           "Each frame gets motion_scale x its scheduled value x the side's multiplier; frames are "
                           "counted in the whole animation, also inside context windows."}),
        }}

    def apply(self, model, motion_model, motion_scale, beta_schedule, groupnorm=GROUPNORM_AS_TRAINED,
              context_options=None, scale_schedule=None):
        motion_scale = _check_scale("Apply Motion Module", "motion_scale", motion_scale,
                                    "1.0 = the module as trained, 0.0 = off")
        if scale_schedule is not None and not isinstance(scale_schedule, Schedule):
            raise ValueError(f"Apply Motion Module: scale_schedule must come from a Motion Scale Schedule node, "
                             f"got {type(scale_schedule).__name__}")
        if beta_schedule == AUTOSELECT:
            schedule = motion_model.format.beta_schedule
        elif beta_schedule == MODEL_OWN:
            schedule = None
        else:
            schedule = BETA_SCHEDULES[beta_schedule]
        patched = comfy_host.apply_motion_model(model, motion_model, motion_scale, schedule, groupnorm)
        if context_options is not None:
            patched = comfy_host.set_context_options(patched, context_options)
        if scale_schedule is not None:
            # Keyframes past the animation's end are reported when it is sampled (the frame count is
            # known only then), before the first UNet evaluation, by MotionScaleSchedule.frame_scales.
            patched = comfy_host.set_motion_scale_schedule(patched, scale_schedule)
        return (patched,)


class MotionScaleSchedule:  # checks its inputs itself, with hints (build)
    DESCRIPTION = ("The motion module's strength over time: keyframed scales per frame, blended between "
                   "keyframes, times a multiplier per UNet side. Connect to Apply Motion Module (scale_schedule); "
                   "each frame's strength is motion_scale x schedule(frame) x side multiplier.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MOTION_SCALE_SCHEDULE",)
    RETURN_NAMES = ("scale_schedule",)
    OUTPUT_TOOLTIPS = ("The schedule, for Apply Motion Module's scale_schedule input.",)
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        lo, hi = MOTION_SCALE_RANGE
        side = ("Multiplies the scale of the motion modules in the UNet's {} (0 switches them off, 1 leaves "
                "them as scheduled).")
        return {"required": {
            "keyframes": ("STRING", {
                "default": "0: 1.0", "multiline": True,
                "tooltip": "FRAME: SCALE pairs separated by commas or new lines, e.g. '0: 1.0, 16: 0.6, 31: 1.2'. "
                           "Frames count from 0 in the whole animation; scales are 0 to 10. Frames before the first "
                           "keyframe and after the last hold its scale. A keyframe past the animation's last frame "
                           "is an error when sampling."}),
            "interpolation": (list(INTERPOLATIONS), {
                "default": "linear",
                "tooltip": "How frames between keyframes are blended: linear; ease_in_out (smoothstep: slow at "
                           "both ends of each change); hold (a step at each keyframe)."}),
            "down": ("FLOAT", {"default": 1.0, "min": lo, "max": hi, "step": 0.01,
                               "tooltip": side.format("down blocks")}),
            "mid": ("FLOAT", {"default": 1.0, "min": lo, "max": hi, "step": 0.01,
                              "tooltip": side.format("mid block (the coarsest level; v1 and v3 modules have none)")}),
            "up": ("FLOAT", {"default": 1.0, "min": lo, "max": hi, "step": 0.01,
                             "tooltip": side.format("up blocks")}),
        }}

    def build(self, keyframes, interpolation, down, mid, up):
        node = "Motion Scale Schedule"
        if not isinstance(keyframes, str):
            raise ValueError(f"{node}: keyframes must be text such as '0: 1.0, 16: 0.6', got "
                             f"{type(keyframes).__name__}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"{node}: interpolation is {interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}")
        sides = {name: _check_scale(node, name, value, f"multiplier for the UNet's {name} side")
                 for name, value in (("down", down), ("mid", mid), ("up", up))}
        lo, hi = MOTION_SCALE_RANGE
        try:
            pairs = parse_value_keyframes(keyframes, SCHEDULE_FRAME_BOUND, lo, hi)
        except KeyframeError as error:
            raise KeyframeError(f"{node}: keyframes: {error}") from None
        return (Schedule(keyframes=pairs, interpolation=interpolation, **sides),)


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
        # NaN or a raw API value out of range would merge into every weight; the file list is the host's.
        check_number("Load Motion LoRA", "strength", strength, -10.0, 10.0)
        lora = load_motion_lora(comfy_host.motion_lora_path(lora_name))
        return (apply_motion_lora(motion_model, lora, strength),)
