"""LoadMotionModule's reading side: containers, dtypes, the v1/v2/v3 manifests, and bad files."""

import json
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from motion_modules import CheckpointError, MotionModuleSet, detect_format, load_motion_model
from tests.helpers import SMALL_DOWN, SMALL_UP, manifest_tensors, small_motion_tensors

SD15_MANIFESTS = {"animatediff_v1_sd15.json": ("v1", 24, False, 20),
                  "animatediff_v2_sd15.json": ("v2", 32, True, 21),
                  "animatediff_v3_sd15.json": ("v3", 32, False, 20)}


@pytest.mark.parametrize("manifest,expected", SD15_MANIFESTS.items())
def test_real_manifest_keys_and_shapes(reference_data, manifest, expected):
    version, pe_length, has_mid, count = expected
    shapes = json.load(open(os.path.join(reference_data, "manifests", manifest)))
    fmt = detect_format(manifest_tensors(shapes), source=manifest)
    assert (fmt.version, fmt.family, fmt.pe_length, bool(fmt.mid), fmt.module_count) == \
        (version, "SD1.5", pe_length, has_mid, count)
    assert fmt.cross_frame_unet_norm == (version == "v1")
    assert not fmt.cross_frame_motion_norm
    with torch.device("meta"):
        modules = MotionModuleSet(fmt.down, fmt.mid, fmt.up, fmt.pe_length, pe_stored=True)
    ours = {k: list(v.shape) for k, v in modules.state_dict().items()}
    assert ours == shapes  # every key and every shape, exactly


def save(tensors, path, wrap=False, extra=None):
    data = {"state_dict": tensors} if wrap else dict(tensors)
    if extra:
        data.update(extra)
    if str(path).endswith(".safetensors"):
        save_file(tensors, str(path))
    else:
        torch.save(data, str(path))
    return str(path)


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt", ".pt", ".pth", ".bin"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_containers_and_dtypes(tmp_path, suffix, dtype):
    reference = small_motion_tensors(dtype=torch.float32)
    tensors = {k: v.to(dtype) for k, v in reference.items()}
    path = save(tensors, tmp_path / f"mm{suffix}", wrap=suffix == ".ckpt",
                extra=None if suffix != ".pt" else {"animatediff_config": {"note": "not a tensor"}, "epoch": 3})
    motion = load_motion_model(path)
    assert motion.format.version == "v2" and motion.format.dtype == dtype
    assert motion.format.down == SMALL_DOWN and motion.format.up == SMALL_UP
    loaded = motion.modules.state_dict()
    assert loaded.keys() == reference.keys()
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    # The fp32 copy for an fp32 UNet is made once and reused.
    assert motion.modules_in(torch.float32) is motion.modules_in(torch.float32)
    info = motion.summary()
    for text in ("AnimateDiff v2", "max frames without context windows: 32", "per-frame",
                 str(dtype).replace("torch.", "")):
        assert text in info


def test_v1_and_v3_told_apart_by_pe_length(tmp_path):
    v1 = load_motion_model(save(small_motion_tensors(mid=None, pe_length=24), tmp_path / "a.safetensors"))
    v3 = load_motion_model(save(small_motion_tensors(mid=None, pe_length=32), tmp_path / "b.safetensors"))
    assert (v1.format.version, v1.format.pe_length, v1.format.cross_frame_unet_norm) == ("v1", 24, True)
    assert (v3.format.version, v3.format.pe_length, v3.format.cross_frame_unet_norm) == ("v3", 32, False)


def test_missing_file():
    with pytest.raises(CheckpointError, match="not found: /nowhere/mm.ckpt"):
        load_motion_model("/nowhere/mm.ckpt")


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_truncated_file(tmp_path, suffix):
    path = save(small_motion_tensors(), tmp_path / f"mm{suffix}")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"mm\%s.*(truncated|ends early|corrupt)" % suffix):
        load_motion_model(path)


def test_sd_checkpoint_given_as_motion_module(tmp_path):
    path = save({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4, 3, 3),
                 "first_stage_model.decoder.conv_in.weight": torch.zeros(2)}, tmp_path / "sd.safetensors")
    with pytest.raises(CheckpointError, match="full Stable Diffusion checkpoint.*Load Checkpoint"):
        load_motion_model(path)


def test_spatial_lora_given_as_motion_module(tmp_path):
    path = save({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 320)},
                tmp_path / "style.safetensors")
    with pytest.raises(CheckpointError, match="spatial LoRA.*LoraLoader"):
        load_motion_model(path)


def test_unknown_layout_names_expected_keys(tmp_path):
    path = save({"transformer.h.0.mlp.weight": torch.zeros(3)}, tmp_path / "x.safetensors")
    with pytest.raises(CheckpointError, match="expected keys like 'down_blocks.0.motion_modules.0"):
        load_motion_model(path)


def test_incomplete_module_names_missing_key(tmp_path):
    tensors = small_motion_tensors()
    del tensors["up_blocks.1.motion_modules.1.temporal_transformer.proj_out.weight"]
    with pytest.raises(CheckpointError, match="missing.*proj_out.weight"):
        load_motion_model(save(tensors, tmp_path / "cut.safetensors"))


class _Payload:
    """A pickle that would create a marker file when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    tensors = small_motion_tensors()
    tensors["payload"] = _Payload(str(marker))
    torch.save(tensors, str(path))
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused to load.*Nothing in it was executed"):
        load_motion_model(str(path))
    assert not marker.exists()


def test_plain_pickle_with_code_is_refused(tmp_path):
    marker = tmp_path / "pwned2"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"x": _Payload(str(marker))}, f)
    with pytest.raises(CheckpointError, match="refused|cannot be read"):
        load_motion_model(str(path))
    assert not marker.exists()
