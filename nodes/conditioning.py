"""PromptTravel: a thin declaration over samplers.keyframes and comfy_host.prompts."""

from ..comfy_host.prompts import encode_prompt_travel
from ..samplers import INTERPOLATIONS, KeyframeError, parse_prompt_keyframes
from .inputs import validated

CATEGORY = "AnimateDiff"
MAX_FRAMES = 4096
NODE = "Prompt Travel"


@validated(NODE)  # frames by its declared range, text inputs as text, before any encoding
class PromptTravel:
    DESCRIPTION = ("Keyframed prompts for an animation: a CONDITIONING with one embedding per frame, blended "
                   "between keyframes, for prompts that change along the clip. Each distinct prompt is encoded "
                   "once, exactly as CLIP Text Encode encodes it.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("CONDITIONING",)
    OUTPUT_TOOLTIPS = ("One conditioning per frame (token embeddings and pooled output), for the positive input of "
                       "a sampler on a latent batch of exactly `frames` frames. Works with context windows "
                       "(each window gets its frames) and with ControlNet applied after it.",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "clip": ("CLIP", {"tooltip": "The text encoder, as for CLIP Text Encode (CLIP skip, CLIP LoRAs and "
                                         "textual inversions apply as there)."}),
            "text": ("STRING", {
                "default": "0: a calm sea\n12: a storm at sea", "multiline": True,
                "tooltip": "One 'FRAME: PROMPT' line per keyframe, e.g. '0: a calm sea' and '24: a storm'. Frames "
                           "count from 0 and must be below `frames`; frames before the first keyframe and after "
                           "the last hold its prompt. Prompt weights such as (storm:1.3) and embedding:name work "
                           "as in CLIP Text Encode. Blank lines and lines starting with # are skipped."}),
            "frames": ("INT", {
                "default": 16, "min": 1, "max": MAX_FRAMES,
                "tooltip": "The animation's frame count: the latent batch size. The sampler refuses a "
                           "conditioning whose frame count differs from the latent batch."}),
            "pre_text": ("STRING", {
                "default": "", "multiline": True,
                "tooltip": "Put before every keyframe's prompt (joined with ', '), e.g. 'masterpiece, best "
                           "quality'."}),
            "post_text": ("STRING", {
                "default": "", "multiline": True,
                "tooltip": "Put after every keyframe's prompt (joined with ', '), e.g. a style."}),
            "interpolation": (list(INTERPOLATIONS), {
                "default": "linear",
                "tooltip": "How frames between keyframes blend the two prompts' embeddings: linear; ease_in_out "
                           "(smoothstep: slow at both ends of each change); hold (a step at each keyframe)."}),
        }}

    def encode(self, clip, text, frames, pre_text="", post_text="", interpolation="linear"):
        if clip is None:
            raise ValueError(f"{NODE}: the CLIP input is empty: this checkpoint has no text encoder; load one with "
                             f"a CLIP loader")
        try:
            keyframes = parse_prompt_keyframes(text, frames)
        except KeyframeError as error:
            raise KeyframeError(f"{NODE}: text: {error}") from None
        return (encode_prompt_travel(clip, keyframes, frames, pre_text, post_text, interpolation),)
