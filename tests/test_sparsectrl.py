"""SparseCtrl, pure: the released files' keys and shapes, the math against the original code, loading,
recognition and refusals, keyframe inputs. (Host tests: tests/test_sparsectrl_host.py.)"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from motion_modules import CheckpointError, load_motion_model
from motion_modules.sparse_control import (MODE_RGB, MODE_SCRIBBLE, SparseCtrlInputError, condition_from_slots,
                                           detect_sparse_ctrl, expected_keys, fit_images, keyframe_slots,
                                           load_sparse_ctrl, parse_frame_indices, sparse_ctrl_from_tensors)
from motion_modules.temporal import FrameLimitError
from tests.helpers import SD15_CONFIG, manifest_tensors, small_motion_tensors
from tools.make_tiny_models import sparsectrl_tensors

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "sparsectrl")
MANIFESTS = {"sparsectrl_rgb_sd15.json": (MODE_RGB, 4, None),
             "sparsectrl_scribble_sd15.json": (MODE_SCRIBBLE, 3, (16, 32, 96, 256))}


def manifest(name):
    with open(os.path.join(DATA, name)) as f:
        return json.load(f)


def test_files_match_their_readme_checksums():
    rows = re.findall(r"^\| `([^`]+)` \| ([\d,]+) \| `([0-9a-f]{64})` \|$",
                      open(os.path.join(DATA, "README.md")).read(), re.M)
    assert sorted(r[0] for r in rows) == sorted(f for f in os.listdir(DATA) if f != "README.md")
    for name, size, digest in rows:
        data = open(os.path.join(DATA, name), "rb").read()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (int(size.replace(",", "")), digest), name


def sd15_input_channels():
    """Channels of the SD1.5 UNet's 12 input blocks, the order ControlNet residuals are consumed in."""
    mc, out = SD15_CONFIG["model_channels"], [SD15_CONFIG["model_channels"]]
    mult = SD15_CONFIG["channel_mult"]
    for i, m in enumerate(mult):
        out += [mc * m] * SD15_CONFIG["num_res_blocks"][i] + ([mc * m] if i < len(mult) - 1 else [])
    return out


@pytest.mark.parametrize("name", MANIFESTS)
def test_released_layouts(name):
    """The loader recognises exactly the released keys and shapes, and builds a network with exactly them."""
    mode, cond, embedding = MANIFESTS[name]
    shapes = manifest(name)
    fmt = detect_sparse_ctrl(manifest_tensors(shapes), name)
    assert (fmt.mode, fmt.condition_channels, fmt.embedding, fmt.family) == (mode, cond, embedding, "SD1.5")
    assert (fmt.channels, fmt.layers_per_block, fmt.pe_length, fmt.pe_stored) == ((320, 640, 1280, 1280), 2, 32, True)
    assert fmt.attention == (True, True, True, False) and fmt.motion == (True, True, True, True)
    assert fmt.hint_scale == (1 if mode == MODE_RGB else 8)
    assert {k: list(v) for k, v in expected_keys(fmt).items()} == shapes
    assert fmt.residual_channels() == sd15_input_channels()
    # one self-attention per motion module, 8 modules, none in the mid block
    assert not any("attention_blocks.1" in k or k.startswith("mid_block.motion_modules") for k in shapes)
    assert len({k.split(".temporal_transformer")[0] for k in shapes if ".motion_modules." in k}) == 8


def test_pe_not_stored_is_computed():
    shapes = {k: v for k, v in manifest("sparsectrl_rgb_sd15.json").items() if not k.endswith("pos_encoder.pe")}
    fmt = detect_sparse_ctrl(manifest_tensors(shapes), "no_pe")
    assert (fmt.pe_length, fmt.pe_stored) == (32, False)
    assert "computed" in fmt.summary()


# ---- the math against the original code (tests/data/sparsectrl/README.md) ---------------------------

def vector():
    return load_file(os.path.join(DATA, "sparsectrl_tiny.safetensors"))


def vector_weights(v, mode):
    weights = {k[len("weights."):]: t for k, t in v.items() if k.startswith("weights.")}
    weights.update({k[len(mode) + len(".weights."):]: t for k, t in v.items() if k.startswith(mode + ".weights.")})
    return weights


def frames_first(t):
    """(b, c, f, h, w), the original's layout -> (b*f, c, h, w), the host's."""
    b, c, f, h, w = t.shape
    return t.transpose(1, 2).reshape(b * f, c, h, w)


@pytest.mark.parametrize("mode,zero_input", [(MODE_RGB, True), (MODE_RGB, False), (MODE_SCRIBBLE, True)])
def test_residuals_match_the_original(mode, zero_input):
    v = vector()
    sc = sparse_ctrl_from_tensors(vector_weights(v, mode), "tiny")
    assert sc.format.mode == mode and sc.format.dtype == torch.float16
    fmt = dataclasses.replace(sc.format, zero_noisy_input=zero_input)
    net = dataclasses.replace(sc, format=fmt).build(dtype=torch.float32)
    sample = v["input.sample"]
    batch, frames = sample.shape[0], sample.shape[2]
    index = v["input.frame_index"].tolist()
    condition, mask = condition_from_slots(v[f"{mode}.input.images"], keyframe_slots(index, len(index), frames))
    # the pipeline's condition, rebuilt here from the keyframes alone, is the one the original was given
    with torch.no_grad():
        down, mid = net(frames_first(sample), v["input.timestep"],
                        v["input.encoder_hidden_states"].repeat_interleave(frames, 0),
                        condition.repeat(batch, 1, 1, 1), mask.repeat(batch, 1, 1, 1), frames)
    tag = "" if zero_input else "noisy_input."
    expected = [frames_first(v[f"{mode}.{tag}expected.down.{i}"]) for i in range(len(down))]
    assert len(down) == len([k for k in v if k.startswith(f"{mode}.{tag}expected.down.")])
    for ours, theirs in zip(down + [mid], expected + [frames_first(v[f"{mode}.{tag}expected.mid"])]):
        assert ours.shape == theirs.shape
        assert (ours - theirs).abs().max() <= 1e-4
    assert mid.abs().max() > 1  # not a trivially small output


def test_condition_is_built_as_the_original_pipeline_builds_it():
    images = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2) + 1
    condition, mask = condition_from_slots(images, keyframe_slots([0, 4], 2, 6))
    assert torch.equal(condition[0], images[0]) and torch.equal(condition[4], images[1])
    assert condition[[1, 2, 3, 5]].abs().sum() == 0
    assert mask.shape == (6, 1, 2, 2) and mask[:, 0, 0, 0].tolist() == [1, 0, 0, 0, 1, 0]


def test_frame_limit():
    v = vector()
    net = sparse_ctrl_from_tensors(vector_weights(v, MODE_RGB), "tiny").build(dtype=torch.float32)
    x = torch.zeros(17, 4, 4, 4)
    with pytest.raises(FrameLimitError, match="17 frames .* at most 16"):
        net(x, torch.tensor([1.0]), torch.zeros(1, 5, 16), torch.zeros(17, 4, 4, 4), torch.zeros(17, 1, 4, 4), 17)


# ---- files: containers, recognition, refusals ----------------------------------------------------

@pytest.fixture(scope="module")
def tiny_rgb():
    return sparsectrl_tensors("rgb", dtype=torch.float16)


@pytest.mark.parametrize("container", ["safetensors", "ckpt", "ckpt-state_dict", "ckpt-controlnet"])
def test_containers(tmp_path, tiny_rgb, container):
    if container == "safetensors":
        path = str(tmp_path / "sc.safetensors")
        save_file(tiny_rgb, path)
    else:
        path = str(tmp_path / "sc.ckpt")
        wrapper = container.partition("-")[2]
        data = {wrapper: tiny_rgb} if wrapper else dict(tiny_rgb)
        data["animatediff_config"] = {"note": "not a tensor"}
        torch.save(data, path)
    sc = load_sparse_ctrl(path)
    assert sc.format.mode == MODE_RGB and sc.format.channels == (320, 320)
    assert sc.format.dtype == torch.float16
    net = sc.build()
    assert all(torch.equal(net.state_dict()[k], tiny_rgb[k]) for k in tiny_rgb)


def test_pickle_that_runs_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo should-not-run",))

    path = str(tmp_path / "evil.ckpt")
    torch.save({"x": Evil()}, path)
    with pytest.raises(CheckpointError, match="refused to load.*Nothing in it was executed"):
        load_sparse_ctrl(path)


def test_motion_module_given_as_sparsectrl(tmp_path):
    path = str(tmp_path / "mm.safetensors")
    save_file(small_motion_tensors(), path)
    with pytest.raises(CheckpointError, match=r"mm.safetensors is not a SparseCtrl: it is an AnimateDiff motion "
                                              r"module \(found e.g. 'down_blocks.0.motion_modules.0.*Load Motion Module"):
        load_sparse_ctrl(path)


def test_sparsectrl_given_as_motion_module(tmp_path, tiny_rgb):
    path = str(tmp_path / "v3_sd15_sparsectrl_rgb.safetensors")
    save_file(tiny_rgb, path)
    with pytest.raises(CheckpointError, match=r"v3_sd15_sparsectrl_rgb.safetensors is not a motion module: it is a "
                                              r"SparseCtrl .*found 'controlnet_cond_embedding.*Load SparseCtrl"):
        load_motion_model(path)


def test_regular_controlnet_given_as_sparsectrl():
    keys = {"control_model.input_hint_block.0.weight": torch.empty(16, 3, 3, 3, device="meta"),
            "control_model.time_embed.0.weight": torch.empty(1280, 320, device="meta")}
    with pytest.raises(CheckpointError, match="cn.safetensors is not a SparseCtrl: it is a regular ControlNet .*"
                                              "control_model.input_hint_block.0.weight"):
        detect_sparse_ctrl(keys, "cn.safetensors")


def test_diffusers_layout_is_named():
    shapes = dict(manifest("sparsectrl_rgb_sd15.json"))
    shapes["down_blocks.0.motion_modules.0.transformer_blocks.0.attn1.to_q.weight"] = [320, 320]
    with pytest.raises(CheckpointError, match="diffusers layout .*attn1.to_q.weight"):
        detect_sparse_ctrl(manifest_tensors(shapes), "d.safetensors")


@pytest.mark.parametrize("change,message", [
    ("drop", r"1 of 486 SparseCtrl tensors are missing \(first: 'controlnet_mid_block.weight'\)"),
    ("extra", r"tensors that a SparseCtrl of this layout does not have \(first: 'extra.weight'\)"),
    ("shape", r"'controlnet_mid_block.bias' has shape \[7\], expected \[1280\]"),
])
def test_incomplete_or_wrong_files(change, message):
    shapes = dict(manifest("sparsectrl_rgb_sd15.json"))
    if change == "drop":
        del shapes["controlnet_mid_block.weight"]
    elif change == "extra":
        shapes["extra.weight"] = [3]
    else:
        shapes["controlnet_mid_block.bias"] = [7]
    with pytest.raises(CheckpointError, match=message):
        detect_sparse_ctrl(manifest_tensors(shapes), "f")


# ---- keyframe inputs ------------------------------------------------------------------------------

@pytest.mark.parametrize("text,frames,expected", [("0", 16, [0]), ("0, 15", 16, [0, 15]), ("0,8, 15", 16, [0, 8, 15]),
                                                  ("0, -1", 16, [0, 15]), (" 3 ;5", 8, [3, 5])])
def test_frame_indices(text, frames, expected):
    assert parse_frame_indices(text, frames) == expected


@pytest.mark.parametrize("text,message", [
    ("16", "frame index 16 is outside the clip of 16 frames"),
    ("0, -17", "frame index -17 is outside the clip of 16 frames"),
    ("0, x", "'x' is not a whole number"),
    ("", "frame_indices is empty"),
    ("0, 15, -1", "frame 15 is given twice"),
])
def test_bad_frame_indices(text, message):
    with pytest.raises(SparseCtrlInputError, match=message):
        parse_frame_indices(text, 16)


@pytest.mark.parametrize("images,indices,message", [
    (3, [0, 15], r"3 keyframe images but 2 frame indices \(0, 15\)"),
    (1, [0, 8, 15], r"1 keyframe image but 3 frame indices \(0, 8, 15\)"),
    (2, [0], r"2 keyframe images but 1 frame index \(0\)"),
])
def test_images_and_indices_must_pair(images, indices, message):
    with pytest.raises(SparseCtrlInputError, match=message):
        keyframe_slots(indices, images, 16)


def test_fit_images_crops_the_centre():
    wide = torch.zeros(1, 3, 4, 8)
    wide[..., :, 2:6] = 1.0  # the centre square
    out = fit_images(wide, 2, 2)
    assert out.shape == (1, 3, 2, 2) and torch.allclose(out, torch.ones_like(out))
    tall = torch.zeros(1, 3, 8, 4)
    tall[..., 2:6, :] = 1.0
    assert torch.allclose(fit_images(tall, 4, 4), torch.ones(1, 3, 4, 4))
    same = torch.rand(1, 3, 4, 4)
    assert fit_images(same, 4, 4) is same
