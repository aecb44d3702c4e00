"""LoadSparseCtrl and ApplySparseCtrl: thin declarations over motion_modules.sparse_control and
comfy_host.sparse_control (docs/sparsectrl.md)."""

from ..comfy_host import sparse_control as host

CATEGORY = "AnimateDiff"


class LoadSparseCtrl:
    DESCRIPTION = ("Reads a SparseCtrl file (AnimateDiff v3's sparse ControlNet, RGB or scribble) and tells you "
                   "what it is.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("SPARSECTRL", "STRING")
    RETURN_NAMES = ("sparsectrl", "info")
    OUTPUT_TOOLTIPS = ("The SparseCtrl, for Apply SparseCtrl.",
                       "What was loaded: RGB or scribble, family, levels, motion modules, frame limit, dtype.")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "sparsectrl_name": (host.sparsectrl_names(), {
                "tooltip": "A file in models/controlnet: v3_sd15_sparsectrl_rgb.ckpt or "
                           "v3_sd15_sparsectrl_scribble.ckpt (guoyww/animatediff on Hugging Face), or a .safetensors "
                           "copy. Recognised from its tensors, not its name."}),
        }}

    def load(self, sparsectrl_name):
        loaded = host.load(sparsectrl_name)
        return (loaded, loaded.summary())


class ApplySparseCtrl:
    DESCRIPTION = ("Conditions an animation on a few keyframes: an image (RGB SparseCtrl) or a scribble at chosen "
                   "frames, e.g. frame 0 to animate a picture, frames 0 and 15 to go from one picture to another. "
                   "Works with any sampler, with other ControlNets, and inside context windows.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    OUTPUT_TOOLTIPS = ("The positive conditioning with the SparseCtrl added (after any ControlNet already on it).",
                       "The negative conditioning with the SparseCtrl added.")
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "positive": ("CONDITIONING", {"tooltip": "What to show."}),
            "negative": ("CONDITIONING", {"tooltip": "What to avoid."}),
            "sparsectrl": ("SPARSECTRL", {"tooltip": "From Load SparseCtrl."}),
            "images": ("IMAGE", {"tooltip": "The keyframe images, one per frame index, in the same order. Scribble "
                                            "files take white lines on black. Cropped to the latent's aspect ratio "
                                            "around the centre and resized."}),
            "frame_indices": ("STRING", {
                "default": "0",
                "tooltip": "The frame of each image, comma-separated: '0' animates one image from the first frame; "
                           "'0, 15' goes from the first image to the second over 16 frames; -1 is the last frame. "
                           "One index per image; each inside the clip."}),
            "latent": ("LATENT", {"tooltip": "The latent you sample: its batch is the frame count, its size the "
                                             "video's size."}),
            "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01,
                                   "tooltip": "Scales the SparseCtrl's effect (1.0 as trained)."}),
            "start_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001,
                                        "tooltip": "Sampling progress at which the SparseCtrl starts acting."}),
            "end_percent": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.001,
                                      "tooltip": "Sampling progress at which it stops."}),
        }, "optional": {
            "vae": ("VAE", {"tooltip": "The checkpoint's VAE: RGB SparseCtrl encodes the keyframes with it "
                                       "(required there; scribble files use the images as they are and ignore it)."}),
        }}

    def apply(self, positive, negative, sparsectrl, images, frame_indices, latent, strength, start_percent,
              end_percent, vae=None):
        options = host.SparseCtrlOptions(strength=strength, start_percent=start_percent, end_percent=end_percent)
        return host.apply_sparsectrl(positive, negative, sparsectrl, images, frame_indices, latent, options, vae)
