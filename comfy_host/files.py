"""Folders and I/O: model folders, input and output folders, progress bars, the VAE decode that the
video encoder streams from."""

from __future__ import annotations

import os

import folder_paths
import comfy.model_management
import comfy.utils

MOTION_MODELS = "animatediff_models"
MOTION_LORAS = "animatediff_motion_lora"


def register_model_folders():
    """Make models/animatediff_models and models/animatediff_motion_lora known to the host, keeping
    any folders a user declared for them in extra_model_paths.yaml."""
    for name in (MOTION_MODELS, MOTION_LORAS):
        default = os.path.join(folder_paths.models_dir, name)
        extensions = set(folder_paths.supported_pt_extensions) | {".safetensors", ".ckpt", ".pt", ".pth", ".bin"}
        if name in folder_paths.folder_names_and_paths:
            paths, old_ext = folder_paths.folder_names_and_paths[name]
            if default not in paths:
                paths.append(default)
            # A new set: the host's supported_pt_extensions object is shared and must not change.
            folder_paths.folder_names_and_paths[name] = (paths, set(old_ext) | extensions)
        else:
            folder_paths.folder_names_and_paths[name] = ([default], extensions)


def motion_model_names() -> list[str]:
    return folder_paths.get_filename_list(MOTION_MODELS)


def motion_lora_names() -> list[str]:
    return folder_paths.get_filename_list(MOTION_LORAS)


def motion_model_path(name: str) -> str:
    return _model_path(MOTION_MODELS, name, "motion module")


def motion_lora_path(name: str) -> str:
    return _model_path(MOTION_LORAS, name, "motion LoRA")


def _model_path(folder: str, name: str, what: str) -> str:
    path = folder_paths.get_full_path(folder, name)
    if path is None:
        folders = ", ".join(folder_paths.get_folder_paths(folder))
        raise FileNotFoundError(f"{what} '{name}' not found in {folder} ({folders})")
    return path


def output_directory(save_output: bool) -> tuple[str, str]:
    """(folder, ui type) where a node's files go."""
    if save_output:
        return folder_paths.get_output_directory(), "output"
    return folder_paths.get_temp_directory(), "temp"


def input_directory() -> str:
    """The host's input folder (uploads land here)."""
    return folder_paths.get_input_directory()


def input_file_path(name: str) -> str:
    """Absolute path of ``name`` in the input folder ("clip.mp4", "sub/clip.mp4", or annotated as the
    host's own loaders accept: "clip.mp4 [output]"). A name that leads outside its folder is refused."""
    path, base = folder_paths.annotated_filepath(name)
    base = base or folder_paths.get_input_directory()
    full = os.path.abspath(os.path.join(base, path))
    if os.path.commonpath((os.path.abspath(base), full)) != os.path.abspath(base):
        raise ValueError(f"'{name}' leads outside the folder it names ({base})")
    return full


# Folders outside the input folder that Load Video (path) may read, set by the server's owner (os.pathsep
# separated). Unset: loading by path is off, since anyone who can queue a prompt could otherwise read any
# video the server can.
VIDEO_DIRS_VARIABLE = "ANIMATEDIFF_VIDEO_DIRS"


def allowed_video_path(path: str) -> str:
    """``path`` (absolute, symlinks resolved) when it lies in a folder the server's owner allowed; else a
    ValueError saying how loading by path is allowed."""
    folders = [os.path.realpath(f) for f in os.environ.get(VIDEO_DIRS_VARIABLE, "").split(os.pathsep) if f.strip()]
    if not folders:
        raise ValueError(f"loading a video by path is off on this server; its owner can allow folders with the "
                         f"environment variable {VIDEO_DIRS_VARIABLE} (folders separated by '{os.pathsep}'), or put "
                         f"the clip in the input folder and use Load Video (frames)")
    if not isinstance(path, str) or not path.strip() or not os.path.isabs(path.strip()):
        raise ValueError(f"path {path!r} is not an absolute path; give the full path of a video in "
                         f"{', '.join(folders)}")
    full = os.path.realpath(path.strip())
    if not any(os.path.commonpath((folder, full)) == folder for folder in folders):
        raise ValueError(f"'{path}' is not in a folder this server allows ({', '.join(folders)}; set by "
                         f"{VIDEO_DIRS_VARIABLE})")
    return full


def metadata_enabled() -> bool:
    """False when ComfyUI runs with --disable-metadata (then savers embed no prompt or workflow)."""
    from comfy.cli_args import args
    return not getattr(args, "disable_metadata", False)


def progress_bar(total: int):
    return comfy.utils.ProgressBar(total)


def check_interrupted():
    comfy.model_management.throw_exception_if_processing_interrupted()


def encode_progress(total: int):
    """A callback(done, total) for the video encoder: advances the node's progress bar and stops the
    encode (by raising the host's interruption) when the user cancels."""
    bar = progress_bar(total)

    def report(done: int, total_: int):
        check_interrupted()
        bar.update_absolute(done, total_)
    return report


def latent_decoder(vae):
    """latent batch -> IMAGE batch (frames, height, width, 3), through the host's VAE."""
    def decode(samples):
        check_interrupted()
        images = vae.decode(samples)
        if images.ndim == 5:  # video VAEs return (batch, frames, h, w, c)
            images = images.reshape((-1,) + tuple(images.shape[-3:]))
        return images
    return decode


def image_encoder(vae):
    """IMAGE batch (frames, height, width, 3) -> latent samples, through the host's VAE (as VAEEncode)."""
    def encode(images):
        check_interrupted()
        return vae.encode(images[:, :, :, :3])
    return encode


def free_memory_bytes() -> int:
    """Memory free for decoded frames (which stay in RAM): what the host counts as free on the CPU."""
    import torch
    return int(comfy.model_management.get_free_memory(torch.device("cpu")))
