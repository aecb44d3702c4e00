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
    from .comfy_host import register_model_folders, register_preview_route
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

    register_model_folders()
    register_preview_route()

# web/: VideoCombine preview (video_preview.js), the video loaders' upload button (video_upload.js), the animated
# preview while sampling (sampling_preview.js)
WEB_DIRECTORY = "./web"
__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
