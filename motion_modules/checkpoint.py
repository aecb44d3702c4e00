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


# Bytes per element of each safetensors dtype (the spec's list; torch may lack some of them).
SAFETENSORS_ITEMSIZE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2,
    "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "C64": 8, "C128": 16,
}
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors format's own limit
MAX_ELEMENTS = 2 ** 48                # far beyond any real tensor; guards the arithmetic below


def check_header_entry(name: str, key: str, info, data_size: int) -> tuple[list, int]:
    """One tensor entry of a safetensors header checked as the format defines it: ``shape`` a list of
    whole numbers >= 0, ``dtype`` known, ``data_offsets`` [begin, end] inside the data, and end - begin
    equal to the bytes the shape and dtype take. Returns (shape, end). Raises CheckpointError naming the
    file and the tensor, so that damaged or crafted headers never reach torch."""
    def bad(what):
        return CheckpointError(f"{name}: tensor '{key}' {what} in the safetensors header; the file is damaged or "
                               f"not a safetensors file: download it again")
    if not isinstance(info, dict):
        raise bad("has no description")
    shape = info.get("shape")
    if not isinstance(shape, list) or any(isinstance(d, bool) or not isinstance(d, int) for d in shape):
        raise bad(f"has the shape {shape!r}, which is not a list of whole numbers")
    if any(d < 0 for d in shape):
        raise bad(f"has a negative size in its shape {shape}")
    count = 1
    for d in shape:
        count *= d
        if count > MAX_ELEMENTS:
            raise bad(f"has the shape {shape}, far too large for any tensor (it overflows)")
    dtype = info.get("dtype")
    if dtype not in SAFETENSORS_ITEMSIZE:
        raise bad(f"has the unknown dtype {dtype!r}")
    offsets = info.get("data_offsets")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or any(isinstance(o, bool) or not isinstance(o, int) for o in offsets)):
        raise bad(f"has the data_offsets {offsets!r}, which are not two whole numbers")
    begin, end = offsets
    if not 0 <= begin <= end:
        raise bad(f"has the data_offsets {offsets}, which do not make a range")
    if end - begin != count * SAFETENSORS_ITEMSIZE[dtype]:
        raise bad(f"takes {end - begin} bytes for a {dtype} tensor of shape {shape} "
                  f"({count * SAFETENSORS_ITEMSIZE[dtype]} bytes)")
    if end > data_size:
        raise CheckpointError(
            f"{name}: the file ends early (tensor '{key}' needs {end - data_size} bytes more); it is truncated, "
            f"probably by an interrupted download or copy: download it again")
    return shape, end


def check_finite(tensors: dict, source: str, what: str = "motion module") -> None:
    """Refuse weights holding NaN or +-Infinity (they give black or noise videos reported as success).
    One sum over each floating tensor (meta tensors skipped), ``torch.isfinite`` where it is not finite; raises
    CheckpointError naming the file, the tensor and how many values are bad."""
    name = os.path.basename(source)
    for key, t in tensors.items():
        if not isinstance(t, torch.Tensor) or t.is_meta or not t.is_floating_point() or t.numel() == 0:
            continue
        values = t if t.dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64) else t.float()
        # One sum: any NaN or Infinity makes it non-finite (NaN propagates, inf + -inf is NaN). Only then
        # (or when large finite values overflow the sum) are the values looked at one by one.
        if bool(torch.isfinite(values.sum(dtype=torch.float64 if values.dtype == torch.float64 else torch.float32))):
            continue
        finite = torch.isfinite(values)
        if bool(finite.all()):
            continue
        nan = int(torch.isnan(values).sum())
        inf = int((~finite).sum()) - nan
        parts = ([f"{nan} NaN"] if nan else []) + ([f"{inf} infinite"] if inf else [])
        raise CheckpointError(
            f"{name}: tensor '{key}' holds {' and '.join(parts)} value{'s' if nan + inf > 1 else ''} (of "
            f"{t.numel()}); a {what} with such weights makes black or broken videos. The file is damaged or "
            f"was saved from a failed training run: download it again or use another file")


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
            if length > MAX_HEADER_BYTES:
                raise ValueError(f"a header of {length} bytes, more than the format allows")
            header = json.loads(f.read(length))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        end = 0
        out = {}
        for key, info in header.items():
            if key == "__metadata__":
                continue
            shape, tensor_end = check_header_entry(name, key, info, size - 8 - length)
            end = max(end, tensor_end)
            out[key] = torch.empty(shape, dtype=SAFETENSORS_DTYPES.get(info["dtype"], torch.uint8), device="meta")
    except CheckpointError:
        raise
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError, RuntimeError, OverflowError) as e:
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
    read_layout(path)  # the header checked first (shapes, dtypes, offsets), naming the file and tensor
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            # One copy per tensor, out of the memory map; keys not asked for are never read.
            return {k: f.get_tensor(k) for k in f.keys() if keys is None or k in keys}
    except CheckpointError:
        raise
    except SafetensorError as e:
        raise CheckpointError(
            f"{os.path.basename(path)}: not a readable safetensors file ({e}); it may be truncated by an "
            f"interrupted download: download it again") from None
    except (OSError, ValueError, RuntimeError, OverflowError, TypeError, MemoryError) as e:
        raise CheckpointError(f"{os.path.basename(path)}: cannot be read as safetensors ({e}); the file is damaged: "
                              f"download it again") from None


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
