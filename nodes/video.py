"""VideoCombine: an IMAGE batch into an animation file, previewed in the UI."""

import os

from .. import comfy_host
from ..video import FORMATS, next_free_name, resolve_prefix, write_animation, write_sidecar


class VideoCombine:
    DESCRIPTION = ("Writes the frames as an animated GIF or WebP (workflow embedded where the format allows, "
                   "plus a .json sidecar) and shows it in the UI.")
    CATEGORY = "AnimateDiff"
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("images", "filename")
    OUTPUT_TOOLTIPS = ("The input frames, unchanged.", "Absolute path of the written file.")
    FUNCTION = "combine"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The frames, in order."}),
                "frame_rate": ("FLOAT", {"default": 8.0, "min": 0.1, "max": 240.0, "step": 0.1,
                                         "tooltip": "Frames per second."}),
                "loop_count": ("INT", {"default": 0, "min": 0, "max": 100,
                                       "tooltip": "0 loops forever; N plays the animation N more times after the first."}),
                "filename_prefix": ("STRING", {"default": "AnimateDiff",
                                               "tooltip": "File name stem, optionally with subfolders ('clips/run'). "
                                                          "Always inside the output folder."}),
                "format": (list(FORMATS), {"default": "image/webp", "tooltip": "File format."}),
                "pingpong": ("BOOLEAN", {"default": False,
                                         "tooltip": "Play forward then backward, for a seamless loop."}),
                "save_output": ("BOOLEAN", {"default": True,
                                            "tooltip": "Save to the output folder; off writes a preview to the temp folder."}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def combine(self, images, frame_rate, loop_count, filename_prefix, format, pingpong, save_output,
                prompt=None, extra_pnginfo=None):
        base, kind = comfy_host.output_directory(save_output)
        folder, stem = resolve_prefix(base, filename_prefix)
        name = next_free_name(folder, stem, FORMATS[format])
        path = os.path.join(folder, name)
        metadata = {}
        if prompt is not None:
            metadata["prompt"] = prompt
        if extra_pnginfo:
            metadata.update(extra_pnginfo)
        write_animation(images, path, format, frame_rate, loop_count, pingpong, metadata)
        write_sidecar(os.path.splitext(path)[0] + ".json", metadata)
        subfolder = os.path.relpath(folder, os.path.realpath(base))
        preview = {"filename": name, "subfolder": "" if subfolder == "." else subfolder, "type": kind}
        return {"ui": {"images": [preview], "animated": (True,)}, "result": (images, path)}
