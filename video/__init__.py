"""Writing IMAGE batches to animation files. Pure: Pillow and numpy, no ComfyUI import."""

from .animated import FORMATS, EncodeError, write_animation, write_sidecar
from .paths import OutputPathError, next_free_name, resolve_prefix

__all__ = ["FORMATS", "EncodeError", "OutputPathError", "next_free_name", "resolve_prefix", "write_animation",
           "write_sidecar"]
