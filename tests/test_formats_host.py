"""Formats inside a real ComfyUI host (in-process): the ApplyMotionModule GroupNorm input, AnimateLCM's
LCM sampling and 64 frames, the loader node's info."""

import os

import pytest
import torch
from safetensors.torch import save_file

from tests.helpers import sample as sample_frames
from tools.make_tiny_models import TINY_MOTION_DOWN, TINY_MOTION_UP, motion_module_tensors


def sample(host, model, frames, steps=1, **kw):
    return sample_frames(host, model, frames, steps=steps, **kw)


def nodes(host):
    return host.pack.NODE_CLASS_MAPPINGS


@pytest.fixture(scope="module")
def v1(host, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("v1") / "mm_sd_v15.safetensors")
    save_file(motion_module_tensors(TINY_MOTION_DOWN, None, TINY_MOTION_UP, pe_length=24), path)
    return host.motion_modules.load_motion_model(path)


def test_apply_node_keeps_old_widgets_first(host):
    inputs = nodes(host)["ApplyMotionModule"].INPUT_TYPES()
    assert list(inputs["required"]) == ["model", "motion_model", "motion_scale", "beta_schedule"]
    choices, options = inputs["optional"]["groupnorm"]
    assert choices == ["as trained", "per-frame", "cross-frame", "cross-frame incl. UNet ResNets"]
    assert options["default"] == "as trained"
    assert "lcm" in inputs["required"]["beta_schedule"][0]


def layers_and_norms(patched):
    layers = [b._modules["motion"] for b in patched.object_patches.values() if "motion" in getattr(b, "_modules", {})]
    norms = [k for k, v in patched.object_patches.items() if type(v).__name__ == "CrossFrameGroupNorm"]
    return layers, norms


@pytest.mark.parametrize("choice,motion_cross,unet_cross", [
    (None, False, True), ("as trained", False, True), ("per-frame", False, False), ("cross-frame", True, False),
    ("cross-frame incl. UNet ResNets", True, True)])
def test_groupnorm_override(host, sd15, v1, choice, motion_cross, unet_cross):
    node = nodes(host)["ApplyMotionModule"]()
    args = (sd15.model, v1, 1.0, "autoselect") + ((choice,) if choice else ())
    patched = node.apply(*args)[0]  # without the input: a workflow saved before it existed
    layers, norms = layers_and_norms(patched)
    assert len(layers) == v1.format.module_count
    assert all(layer.cross_frame_norm == motion_cross for layer in layers)
    resblocks = sum(type(m).__name__ == "ResBlock" for m in sd15.model.model.diffusion_model.modules())
    assert len(norms) == ((2 * resblocks + 1) if unet_cross else 0)


def test_groupnorm_choice_changes_the_animation(host, sd15, v1):
    apply = nodes(host)["ApplyMotionModule"]().apply
    per_frame = sample(host, apply(sd15.model, v1, 1.0, "autoselect", "per-frame")[0], frames=6)
    cross = sample(host, apply(sd15.model, v1, 1.0, "autoselect", "cross-frame")[0], frames=6)
    assert (per_frame - cross).abs().max() > 1e-4


def test_animatelcm_uses_lcm_sampling_and_64_frames(host, sd15, tmp_path):
    from comfy_extras.nodes_model_advanced import LCM, ModelSamplingDiscrete, ModelSamplingDiscreteDistilled
    tensors = {k: v for k, v in motion_module_tensors(TINY_MOTION_DOWN, 320, TINY_MOTION_UP).items()
               if not k.endswith("pos_encoder.pe")}
    path = str(tmp_path / "AnimateLCM_sd15_t2v.safetensors")
    save_file(tensors, path)
    motion = host.motion_modules.load_motion_model(path)
    info = motion.summary()
    assert "format: AnimateLCM" in info and "max frames without context windows: 64" in info
    assert "trained beta schedule: lcm" in info
    patched = nodes(host)["ApplyMotionModule"]().apply(sd15.model, motion, 1.0, "autoselect")[0]
    ours = host.host_module.current_model_sampling(patched)
    hosts = host.host_module.current_model_sampling(ModelSamplingDiscrete().patch(sd15.model, "lcm", False)[0])
    assert isinstance(ours, LCM) and isinstance(ours, ModelSamplingDiscreteDistilled)
    assert torch.equal(ours.sigmas, hosts.sigmas) and len(ours.sigmas) == 50
    x = torch.randn(2, 4, 8, 8)
    sigma = ours.sigmas[30].expand(2)
    out = torch.randn(2, 4, 8, 8)
    assert torch.equal(ours.calculate_denoised(sigma, out, x), hosts.calculate_denoised(sigma, out, x))
    # 40 frames: over v2's 32, within AnimateLCM's 64.
    video = sample(host, patched, frames=40, cfg=1.0)
    assert video.shape == (40, 4, 8, 8) and torch.isfinite(video).all()


def test_lcm_by_hand_on_a_v2_module(host, sd15, tiny_models):
    from comfy_extras.nodes_model_advanced import LCM
    motion = host.motion_modules.load_motion_model(tiny_models.motion_module)
    patched = nodes(host)["ApplyMotionModule"]().apply(sd15.model, motion, 1.0, "lcm")[0]
    assert isinstance(host.host_module.current_model_sampling(patched), LCM)
    assert not isinstance(host.host_module.current_model_sampling(sd15.model), LCM)


def test_loader_node_info(host, tiny_models):
    motion, info = nodes(host)["LoadMotionModule"]().load(os.path.basename(tiny_models.motion_module))
    for line in ("file: tiny_mm_v2.safetensors", "format: AnimateDiff v2 layout", "version: v2",
                 "family: custom", "modules: 7 (down 2, mid 1, up 4)", "channels: 320",
                 "max frames without context windows: 32", "dtype: float32", "motion-module GroupNorm: per-frame",
                 "base UNet ResNet GroupNorm: per-frame", "trained beta schedule: sqrt_linear (AnimateDiff)"):
        assert line in info
    assert motion.format.module_count == 7
