"""ComfyUI AnimateDiff node pack: motion modules, context windows and video output.

ComfyUI imports this folder as a package; everything inside uses relative imports.
"""

try:
    import folder_paths  # noqa: F401  (always present when ComfyUI loads the pack)
except ImportError:
    # Imported outside ComfyUI, e.g. by pytest collecting the repository: the pure packages
    # (motion_modules, samplers, video) work alone, the nodes need a host.
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}
else:
    from .comfy_host import register_model_folders
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

    register_model_folders()

WEB_DIRECTORY = "./web"  # VideoCombine preview (web/video_preview.js), video loaders upload button (web/video_upload.js)
__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
