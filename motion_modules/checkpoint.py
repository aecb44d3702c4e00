"""Reading tensors out of checkpoint containers, safely. Pure torch + safetensors."""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile

import torch

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


class CheckpointError(ValueError):
    """A file that cannot be used, with a message that names the file and says what to do."""


SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


def is_safetensors(path: str) -> bool:
    return os.path.basename(path).lower().endswith(SAFETENSORS_SUFFIXES)


def read_layout(path: str, what: str = "motion module") -> dict[str, torch.Tensor]:
    """Keys, shapes and dtypes of a checkpoint without reading its tensor data where the container
    allows it: a ``.safetensors`` header becomes meta-device tensors. Torch files are memory-mapped
    (zip format), so their tensors are returned as they are; reading them costs no copy either."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{what} file not found: {path}")
    if not is_safetensors(path):
        return read_tensors(path, what=what)
    name = os.path.basename(path)
    size = os.path.getsize(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            (length,) = struct.unpack("<Q", head) if len(head) == 8 else (None,)
            if length is None or length > size - 8:
                raise ValueError("header longer than the file")
            header = json.loads(f.read(length))
        end = 0
        out = {}
        for key, info in header.items():
            if key == "__metadata__":
                continue
            end = max(end, int(info["data_offsets"][1]))
            out[key] = torch.empty(info["shape"], dtype=SAFETENSORS_DTYPES.get(info["dtype"], torch.uint8),
                                   device="meta")
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"{name}: not a readable safetensors file ({e}); it may be truncated by an interrupted "
            f"download: download it again") from None
    if 8 + length + end > size:
        raise CheckpointError(
            f"{name}: the file ends early ({size} of {8 + length + end} bytes); it is truncated, probably by an "
            f"interrupted download or copy: download it again")
    if not out:
        raise CheckpointError(f"{name}: contains no tensors")
    return out


def read_tensors(path: str, keys=None, what: str = "motion module") -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint file (or only ``keys``) as a flat ``{key: tensor}`` dict on the CPU.

    Accepts ``.safetensors`` and torch files (``.ckpt .pt .pth .bin``). Torch files are read with
    ``weights_only=True``, so a pickle that would run code is refused without running it. A top-level
    ``state_dict`` wrapper is unwrapped and non-tensor entries are dropped, as the original loaders do.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"{what} file not found: {path}")
    name = os.path.basename(path)
    lower = name.lower()
    if lower.endswith(SAFETENSORS_SUFFIXES):
        data = _read_safetensors(path, keys)
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
    tensors = {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, torch.Tensor)
               and (keys is None or k in keys)}
    if not tensors:
        raise CheckpointError(f"{name}: contains no tensors")
    return tensors


def _read_safetensors(path: str, keys=None) -> dict:
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            # One copy per tensor, out of the memory map; keys not asked for are never read.
            return {k: f.get_tensor(k) for k in f.keys() if keys is None or k in keys}
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
