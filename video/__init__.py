"""Writing frames to animation and video files. Pure: Pillow, numpy and (optionally) PyAV; no ComfyUI
import. The node (nodes/video.py) passes folders, a VAE decode function and a progress callback in."""

from .animated import EncodeError, StreamInfo
from .codec_options import CodecOptionError, allowed_options, check_codec_options
from .combine import (DEFAULTS, SaveResult, atomic_output, check_options, check_prefix, encode, output_path, save,
                      ui_for, write_sidecar)
from .formats import FORMATS, HAVE_AV, PIX_FMT_CHOICES, PRESETS, UNAVAILABLE, FormatSpec
from .frames import FrameError, ImageFrames, LatentFrames, frame_order
from .outputs import STALE_AFTER, remove_stale_partials, stale_partials
from .paths import OutputPathError, expand_tokens, next_free_name, resolve_prefix

__all__ = ["CodecOptionError", "DEFAULTS", "FORMATS", "HAVE_AV", "PIX_FMT_CHOICES", "PRESETS", "UNAVAILABLE",
           "STALE_AFTER", "EncodeError", "allowed_options", "check_codec_options", "remove_stale_partials",
           "stale_partials",
           "FormatSpec", "FrameError", "ImageFrames", "LatentFrames", "OutputPathError", "SaveResult", "StreamInfo",
           "atomic_output", "check_options", "check_prefix", "encode", "expand_tokens", "frame_order", "next_free_name",
           "output_path", "resolve_prefix", "save", "ui_for", "write_sidecar"]
