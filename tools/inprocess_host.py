"""ComfyUI imported into this process, with this pack loaded into it as ComfyUI loads custom nodes.

For tests and benchmarks that call the host's Python API directly instead of going through a server.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACK_MODULE = "comfyui_animatediff_under_test"


def load_host(host_dir: str, model_folders: dict[str, str] | None = None):
    """Import the host (CPU mode) and the pack. ``model_folders`` are declared before the pack loads,
    as a user's extra_model_paths.yaml would. Returns a namespace of the modules involved."""
    # The host's folder goes first: its top-level modules (nodes, folder_paths, ...) must win over
    # this repository's packages of the same name (our `nodes`).
    if host_dir in sys.path:
        sys.path.remove(host_dir)
    sys.path.insert(0, host_dir)
    import comfy.options
    if hasattr(comfy.options, "enable_args_parsing"):
        comfy.options.enable_args_parsing(False)
    import comfy.cli_args
    comfy.cli_args.args.cpu = True  # must precede comfy.model_management
    import folder_paths
    for name, path in (model_folders or {}).items():
        folder_paths.add_model_folder_path(name, path)
    import comfy.model_management  # noqa: F401
    import comfy.model_sampling  # noqa: F401
    import comfy.sample  # noqa: F401
    import comfy.samplers  # noqa: F401
    import comfy.sd  # noqa: F401
    import comfy.utils  # noqa: F401
    import nodes as host_nodes  # noqa: F401  (the host's nodes.py, which host modules import by name)
    if PACK_MODULE not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACK_MODULE, os.path.join(ROOT, "__init__.py"),
                                                      submodule_search_locations=[ROOT])
        pack = importlib.util.module_from_spec(spec)
        sys.modules[PACK_MODULE] = pack
        spec.loader.exec_module(pack)
    return types.SimpleNamespace(dir=host_dir, pack=sys.modules[PACK_MODULE], comfy=comfy, nodes=host_nodes,
                                 folder_paths=folder_paths, host_module=sys.modules[PACK_MODULE + ".comfy_host"],
                                 motion_modules=sys.modules[PACK_MODULE + ".motion_modules"])


def load_checkpoint(host, path: str):
    """(model patcher, clip, vae) as the host's CheckpointLoaderSimple loads them."""
    import torch
    with torch.inference_mode():
        out = host.comfy.sd.load_checkpoint_guess_config(
            path, output_vae=True, output_clip=True,
            embedding_directory=host.folder_paths.get_folder_paths("embeddings"))
    return types.SimpleNamespace(model=out[0], clip=out[1], vae=out[2])
