"""Reading tensors out of checkpoint containers, safely. Pure torch + safetensors."""

from __future__ import annotations

import os
import pickle
import zipfile

import torch

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


class CheckpointError(ValueError):
    """A file that cannot be used, with a message that names the file and says what to do."""


def read_tensors(path: str) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint file as a flat ``{key: tensor}`` dict on the CPU.

    Accepts ``.safetensors`` and torch files (``.ckpt .pt .pth .bin``). Torch files are read with
    ``weights_only=True``, so a pickle that would run code is refused without running it. A top-level
    ``state_dict`` wrapper is unwrapped and non-tensor entries are dropped, as the original loaders do.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"motion module file not found: {path}")
    name = os.path.basename(path)
    lower = name.lower()
    if lower.endswith(SAFETENSORS_SUFFIXES):
        data = _read_safetensors(path)
    elif lower.endswith(PICKLE_SUFFIXES):
        data = _read_torch(path)
    else:
        raise CheckpointError(
            f"{name}: unsupported file type; expected one of "
            f"{', '.join(SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES)}")
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise CheckpointError(f"{name}: holds a {type(data).__name__}, not a dict of tensors")
    tensors = {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{name}: contains no tensors")
    return tensors


def _read_safetensors(path: str) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        return load_file(path, device="cpu")
    except SafetensorError as e:
        raise CheckpointError(
            f"{os.path.basename(path)}: not a readable safetensors file ({e}); it may be truncated by an "
            f"interrupted download: download it again") from None
    except (OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{os.path.basename(path)}: cannot be read as safetensors ({e})") from None


def _read_torch(path: str):
    name = os.path.basename(path)
    try:
        try:
            # mmap keeps peak RAM at one copy for large zip checkpoints.
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e) and "zip" not in str(e).lower():
                raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else "unsupported object"
        raise CheckpointError(
            f"{name}: refused to load: the pickle asks to build objects other than tensors "
            f"({first_line}). Nothing in it was executed. Use a .safetensors copy of the model "
            f"from a source you trust.") from None
    except (EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(
            f"{name}: the file ends early or is corrupt ({type(e).__name__}); it may be a partial "
            f"download: download it again") from None
    except RuntimeError as e:
        raise CheckpointError(
            f"{name}: cannot be read as a torch checkpoint ({str(e).splitlines()[0]}); it may be "
            f"truncated or corrupt: download it again") from None
