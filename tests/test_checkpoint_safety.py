"""Damaged or crafted model files (issue 11): safetensors headers with negative, overflowing or
inconsistent shapes, and weights holding NaN or Infinity, are refused with a message naming the file
and the tensor, never a raw torch error and never a black video reported as success."""

from __future__ import annotations

import json
import struct
import time

import pytest
import torch
from safetensors.torch import save_file

from motion_modules import CheckpointError, load_motion_model, read_layout, read_tensors
from motion_modules.checkpoint import check_finite
from tests.helpers import small_motion_tensors


def raw_safetensors(path, header: dict, data: bytes = b""):
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)
    return str(path)


def entry(shape, dtype="F32", begin=0, end=None):
    count = 1
    for d in shape:
        count *= d
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, begin + 4 * count if end is None else end]}


@pytest.mark.parametrize("info,message", [
    (entry([-4, 8], end=0), "tensor 'w' has a negative size in its shape [-4, 8]"),
    ({"dtype": "F32", "shape": [2 ** 40, 2 ** 40], "data_offsets": [0, 16]},
     "tensor 'w' has the shape [1099511627776, 1099511627776], far too large for any tensor (it overflows)"),
    ({"dtype": "F32", "shape": [2 ** 63, 2], "data_offsets": [0, 16]}, "far too large for any tensor"),
    ({"dtype": "F32", "shape": [2.5, 2], "data_offsets": [0, 16]}, "has the shape [2.5, 2], which is not a list of "
                                                                   "whole numbers"),
    ({"dtype": "F32", "shape": "4", "data_offsets": [0, 16]}, "has the shape '4', which is not a list"),
    ({"dtype": "F32", "shape": [True, 4], "data_offsets": [0, 16]}, "which is not a list of whole numbers"),
    ({"dtype": "Q4", "shape": [4], "data_offsets": [0, 16]}, "has the unknown dtype 'Q4'"),
    ({"dtype": "F32", "shape": [4], "data_offsets": [8, 0]}, "has the data_offsets [8, 0], which do not make a range"),
    ({"dtype": "F32", "shape": [4], "data_offsets": [0]}, "has the data_offsets [0], which are not two whole numbers"),
    ({"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}, "takes 12 bytes for a F32 tensor of shape [4] (16 bytes)"),
    ({"dtype": "F32", "shape": [4]}, "has the data_offsets None"),
    ("nonsense", "has no description"),
])
def test_bad_header_entries_name_the_file_and_tensor(tmp_path, info, message):
    path = raw_safetensors(tmp_path / "crafted_mm.safetensors", {"w": info}, b"\0" * 16)
    for read in (read_layout, read_tensors, load_motion_model):
        with pytest.raises(CheckpointError) as error:
            read(path)
        text = str(error.value)
        assert text.startswith("crafted_mm.safetensors: ") and message in text, text
        assert "download it again" in text


def test_header_that_is_not_an_object_or_too_large(tmp_path):
    path = raw_safetensors(tmp_path / "list.safetensors", [1, 2, 3])
    with pytest.raises(CheckpointError, match=r"^list.safetensors: not a readable safetensors file \(the header is "
                                              r"not a JSON object\)"):
        read_layout(path)
    big = tmp_path / "big.safetensors"
    with open(big, "wb") as f:
        f.write(struct.pack("<Q", 200 * 1024 * 1024))
        f.truncate(8 + 200 * 1024 * 1024 + 1)  # sparse: the claimed header fits the file
    with pytest.raises(CheckpointError, match="more than the format allows"):
        read_layout(str(big))


def test_data_past_the_end_is_a_truncated_file(tmp_path):
    path = raw_safetensors(tmp_path / "short.safetensors", {"w": entry([4])}, b"\0" * 8)
    with pytest.raises(CheckpointError, match=r"^short.safetensors: the file ends early \(tensor 'w' needs 8 bytes "
                                              r"more\); it is truncated"):
        read_layout(path)


def test_a_good_crafted_header_reads(tmp_path):
    path = raw_safetensors(tmp_path / "ok.safetensors", {"__metadata__": {"a": "b"}, "w": entry([2, 2]),
                                                         "e": entry([0, 5], begin=16, end=16)}, b"\0" * 16)
    layout = read_layout(path)
    assert layout["w"].shape == (2, 2) and layout["e"].shape == (0, 5)
    assert read_tensors(path)["w"].shape == (2, 2)


# ---------------------------------------------------------------------------------------------
# Non-finite weights

def poisoned(tensors, key, value, index=3):
    out = {k: v.clone() for k, v in tensors.items()}
    out[key].view(-1)[index] = value
    return out


@pytest.mark.parametrize("suffix,dtype", [(".safetensors", torch.float32), (".safetensors", torch.float16),
                                          (".ckpt", torch.float32), (".safetensors", torch.bfloat16)])
@pytest.mark.parametrize("value,what", [(float("nan"), "1 NaN value"), (float("inf"), "1 infinite value"),
                                        (float("-inf"), "1 infinite value")])
def test_motion_module_with_non_finite_weights_is_refused_naming_file_and_tensor(tmp_path, suffix, dtype, value,
                                                                                 what):
    tensors = small_motion_tensors(dtype=dtype)
    key = next(k for k in tensors if k.endswith("attention_blocks.0.to_q.weight"))
    path = tmp_path / f"diverged{suffix}"
    bad = poisoned(tensors, key, value)
    if suffix == ".safetensors":
        save_file(bad, str(path))
    else:
        torch.save(bad, str(path))
    with pytest.raises(CheckpointError) as error:
        load_motion_model(str(path))
    assert str(error.value).startswith(f"diverged{suffix}: tensor '{key}' holds {what} (of ")
    assert "download it again or use another file" in str(error.value)


def test_counts_of_both_kinds(tmp_path):
    tensors = small_motion_tensors()
    key = next(iter(k for k in tensors if k.endswith("proj_in.weight")))
    bad = poisoned(poisoned(poisoned(tensors, key, float("nan"), 0), key, float("nan"), 1), key, float("inf"), 2)
    with pytest.raises(CheckpointError, match=rf"tensor '{key}' holds 2 NaN and 1 infinite values"):
        check_finite(bad, "x.safetensors")
    # large finite values whose sum overflows are fine (the sum is only the fast path)
    check_finite({"big": torch.full((1000,), 3e38), "h": torch.full((100,), 60000.0, dtype=torch.float16)}, "x")


def test_fp8_and_clean_files_load(tmp_path):
    tensors = small_motion_tensors()
    path = tmp_path / "clean.safetensors"
    save_file(tensors, str(path))
    assert load_motion_model(str(path)).format.version == "v2"
    if hasattr(torch, "float8_e4m3fn"):
        f8 = {k: v.to(torch.float8_e4m3fn) if v.is_floating_point() else v for k, v in tensors.items()}
        key = next(k for k in f8 if k.endswith("proj_out.weight"))
        f8[key].view(torch.uint8).view(-1)[0] = 0x7F  # NaN in e4m3fn
        with pytest.raises(CheckpointError, match=f"tensor '{key}' holds 1 NaN value"):
            check_finite(f8, "f8.safetensors")


def test_the_check_is_cheap():
    big = {"w": torch.randn(4096, 4096)}  # 64 MB of fp32: a module's largest tensors are this size
    start = time.perf_counter()
    check_finite(big, "big.safetensors")
    assert time.perf_counter() - start < 1.0
