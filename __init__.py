"""ComfyUI AnimateDiff node pack: motion modules, context windows and video output.

ComfyUI imports this folder as a package; everything inside uses relative imports.
"""

from .comfy_host import register_model_folders
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

register_model_folders()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
