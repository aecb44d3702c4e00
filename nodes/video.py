"""VideoCombine: frames (IMAGE, or LATENT + VAE) into an animation or video file, previewed in the UI.

A thin declaration: encoding lives in ``video`` (pure), host contact in ``comfy_host``.
"""

from .. import comfy_host
from ..video import (DEFAULTS, FORMATS, PIX_FMT_CHOICES, PRESETS, CodecOptionError, EncodeError, ImageFrames,
                     LatentFrames, OutputPathError, check_codec_options, check_options, check_prefix, save, ui_for)
from ..video.combine import get_spec
from ..video.metadata import build as build_metadata
from .inputs import validated


@validated("VideoCombine")  # every widget by its declared range, when queued (NaN frame_rate before sampling)
class VideoCombine:
    DESCRIPTION = ("Writes the frames as animated WebP / GIF / APNG, a PNG sequence, or a video (MP4 H.264/H.265, "
                   "WebM VP9/AV1, ProRes MOV, when PyAV is installed), with the workflow embedded where the format "
                   "allows plus a .json sidecar, and shows it in the UI. Frames stream to the encoder one at a time.")
    CATEGORY = "AnimateDiff"
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("images", "filename")
    OUTPUT_TOOLTIPS = ("The input frames, unchanged (with a LATENT input: only the first frame, so the decoded "
                       "video is never held in memory).",
                       "Absolute path of the written file (a folder for a PNG sequence).")
    FUNCTION = "combine"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "frame_rate": ("FLOAT", {"default": 8.0, "min": 0.1, "max": 240.0, "step": 0.1,
                                         "tooltip": "Frames per second."}),
                "loop_count": ("INT", {"default": 0, "min": 0, "max": 100,
                                       "tooltip": "0 loops forever; N plays the animation N more times after the "
                                                  "first. Videos have no loop flag: there the frames are written "
                                                  "N + 1 times."}),
                "filename_prefix": ("STRING", {"default": "AnimateDiff",
                                               "tooltip": "File name stem, optionally with subfolders ('clips/run') "
                                                          "and date tokens ('%date:yyyy-MM-dd%/run'). Always inside "
                                                          "the output folder."}),
                "format": (list(FORMATS), {"default": "image/webp",
                                           "tooltip": "File format. Video formats are listed when PyAV (pip install "
                                                      "av) and its encoder are available."}),
                "pingpong": ("BOOLEAN", {"default": False,
                                         "tooltip": "Play forward then backward, for a seamless loop."}),
                "save_output": ("BOOLEAN", {"default": True,
                                            "tooltip": "Save to the output folder; off writes a preview to the temp "
                                                       "folder."}),
            },
            "optional": {
                "images": ("IMAGE", {"tooltip": "The frames, in order. Or connect latent + vae instead."}),
                "latent": ("LATENT", {"tooltip": "Frames as latents, decoded with `vae` a few at a time while "
                                                 "encoding (used when `images` is not connected)."}),
                "vae": ("VAE", {"tooltip": "Decodes `latent`."}),
                "audio": ("AUDIO", {"tooltip": "Sound for MP4 / WebM / MOV, cut or padded with silence to the "
                                               "video's length."}),
                "crf": ("INT", {"default": DEFAULTS["crf"], "min": 0, "max": 63,
                                "tooltip": "Video quality, lower is better: H.264/H.265 0-51 (0 lossless, 17-23 "
                                           "typical), VP9/AV1 0-63."}),
                "preset": (list(PRESETS), {"default": DEFAULTS["preset"],
                                           "tooltip": "Encoder speed: slower makes smaller files at the same "
                                                      "quality (x264/x265 presets; mapped for VP9, AV1, ProRes)."}),
                "pix_fmt": (list(PIX_FMT_CHOICES), {"default": DEFAULTS["pix_fmt"],
                                                    "tooltip": "Video pixel format. auto: yuv420p (most compatible), "
                                                               "with alpha where the format has it (VP9, ProRes); "
                                                               "10le = 10-bit."}),
                "quality": ("INT", {"default": DEFAULTS["quality"], "min": 0, "max": 100,
                                    "tooltip": "WebP quality (lossy), higher is better."}),
                "lossless": ("BOOLEAN", {"default": DEFAULTS["lossless"], "tooltip": "WebP: lossless frames."}),
                "codec_options": ("STRING", {"default": "", "tooltip": "Extra FFmpeg encoder options for video "
                                                                     "formats, 'key=value, ...', e.g. "
                                                                     "'tune=animation, g=48' or 'x264-params="
                                                                     "aq-mode=3:psy-rd=1.0,0.15'. Only options "
                                                                     "on the pack's allow-list are taken (none "
                                                                     "that name files); others are refused with "
                                                                     "the list."}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    @classmethod
    def VALIDATE_INPUTS(cls, format=None, codec_options=None, filename_prefix=None):
        """At queue time, before any node runs (after @validated's check of the declared ranges):
        filename_prefix, and codec_options against the allow-list of the format's encoder. None: fed by
        a link, checked when the node runs."""
        if isinstance(filename_prefix, str):
            try:
                check_prefix(comfy_host.output_directory(True)[0], filename_prefix)
            except OutputPathError as e:
                return f"VideoCombine: {e}"
        if format is None:
            return True
        spec = FORMATS.get(format) if isinstance(format, str) else None
        if spec is None:
            return f"VideoCombine: format is {format!r}; expected one of {', '.join(FORMATS)}"
        if isinstance(codec_options, str) and codec_options.strip():
            if not spec.is_video:
                return (f"VideoCombine: codec_options ({codec_options!r}) are for the video formats; {format} is "
                        f"written with Pillow and takes none")
            try:
                check_codec_options(spec.codec, codec_options)
            except CodecOptionError as e:
                return f"VideoCombine: {e}"
        return True

    def combine(self, frame_rate, loop_count, filename_prefix, format, pingpong, save_output, images=None,
                latent=None, vae=None, audio=None, prompt=None, extra_pnginfo=None, **options):
        base, kind = comfy_host.output_directory(save_output)
        temp, _ = comfy_host.output_directory(False)
        # Refused before a frame is decoded or encoded: codec_options off the allow-list, values out of
        # range, a filename_prefix that cannot be used.
        check_options(get_spec(format), options)
        check_prefix(base, filename_prefix)
        if images is not None:
            source = ImageFrames(images)
        elif latent is not None and vae is not None:
            samples = latent["samples"] if isinstance(latent, dict) else latent
            source = LatentFrames(samples, comfy_host.latent_decoder(vae))
        elif latent is not None:
            raise EncodeError("VideoCombine got a latent but no vae to decode it: connect the VAE too")
        else:
            raise EncodeError("VideoCombine has no frames: connect `images`, or `latent` and `vae`")
        result = save(source, base, filename_prefix, format, frame_rate, loop_count, pingpong,
                      metadata=build_metadata(prompt, extra_pnginfo) if comfy_host.metadata_enabled() else None,
                      options=options, audio=audio,
                      progress=comfy_host.encode_progress(source.count), preview_dir=temp)
        passthrough = images if images is not None else source.first()
        return {"ui": ui_for(result, base, kind, temp), "result": (passthrough, result.path)}
