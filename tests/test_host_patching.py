"""ApplyMotionModule inside a real ComfyUI host (in-process): clone isolation, exactness, frame counting."""

import os

import pytest
import torch
from safetensors.torch import save_file

from tests.helpers import sample
from tools.make_tiny_models import TINY_MOTION_DOWN, TINY_MOTION_UP, motion_module_tensors

SQRT_LINEAR_SIGMA_MAX = 25.1461
LINEAR_SIGMA_MAX = 14.6146


@pytest.fixture(scope="module")
def motion(host, tiny_models):
    return host.motion_modules.load_motion_model(tiny_models.motion_module)


def apply(host, model, motion, scale=1.0, schedule="autoselect"):
    schedules = host.motion_modules.BETA_SCHEDULES
    chosen = motion.format.beta_schedule if schedule == "autoselect" else schedules.get(schedule)
    return host.host_module.apply_motion_model(model, motion, scale, chosen)


def test_model_folders_registered(host, tiny_models):
    fp = host.folder_paths
    for name in ("animatediff_models", "animatediff_motion_lora"):
        paths, extensions = fp.folder_names_and_paths[name]
        assert os.path.join(fp.models_dir, name) in paths
        assert {".safetensors", ".ckpt", ".pt"} <= extensions
    # Declared before the pack loaded (as extra_model_paths.yaml does): still there, still listed.
    assert os.path.join(tiny_models.dir, "animatediff_models") in fp.get_folder_paths("animatediff_models")
    assert "tiny_mm_v2.safetensors" in fp.get_filename_list("animatediff_models")
    assert fp.supported_pt_extensions is not extensions


def test_input_model_untouched_and_plain_sampling_bit_identical(host, sd15, motion):
    model = sd15.model
    before = sample(host, model, frames=2)
    patched = apply(host, model, motion)
    animated = sample(host, patched, frames=16)
    after = sample(host, model, frames=2)
    assert torch.equal(before, after)
    assert not model.object_patches and "model_function_wrapper" not in model.model_options
    assert "motion" not in model.model.diffusion_model.input_blocks[1]._modules
    assert animated.shape == (16, 4, 8, 8) and torch.isfinite(animated).all()
    # The animation really ran through the temporal layers: frames are not independent images.
    plain16 = sample(host, model, frames=16)
    assert (animated - plain16).abs().max() > 1e-3


def test_scale_zero_is_plain_model_bit_identical(host, sd15, motion):
    patched = apply(host, sd15.model, motion, scale=0.0, schedule="use model's own")
    assert torch.equal(sample(host, patched, frames=16), sample(host, sd15.model, frames=16))


@pytest.mark.parametrize("cfg,negative_tokens", [(7.5, 77), (1.0, 77), (7.5, 231)])
def test_frame_count_from_cond_uncond_layout(host, sd15, motion, cfg, negative_tokens):
    """With CFG the host batches uncond and cond (2 clips); at cfg 1 only cond; conds of different
    lengths may go in separate calls (the 2024 host cannot concatenate them): frames stay 16."""
    seen = []
    hooks = [m.register_forward_pre_hook(lambda mod, args: seen.append((args[0].shape[0], args[1])))
             for _, m in motion.modules_in(torch.float32).in_unet_order()]
    try:
        sample(host, apply(host, sd15.model, motion), frames=16, cfg=cfg, steps=1, negative_tokens=negative_tokens)
    finally:
        for h in hooks:
            h.remove()
    assert seen and all(frames == 16 for _, frames in seen)
    assert {batch for batch, _ in seen} <= {16, 32}
    if cfg == 1.0:
        assert {batch for batch, _ in seen} == {16}


def test_beta_schedule_autoselect_and_keep(host, sd15, motion):
    current = host.host_module.current_model_sampling
    auto = current(apply(host, sd15.model, motion))
    own = current(apply(host, sd15.model, motion, schedule="use model's own"))
    assert float(auto.sigma_max) == pytest.approx(SQRT_LINEAR_SIGMA_MAX, abs=1e-3)
    assert float(own.sigma_max) == pytest.approx(LINEAR_SIGMA_MAX, abs=1e-3)
    assert "model_sampling" not in sd15.model.object_patches
    assert type(auto) is type(sd15.model.model.model_sampling)  # eps prediction kept


def test_memory_estimate_counts_motion_module(host, sd15, motion):
    patched = apply(host, sd15.model, motion)
    assert patched.model_size() == sd15.model.model_size() + motion.nbytes_in(torch.float32)
    assert motion.nbytes_in(torch.float32) > 60_000_000


def test_frames_over_limit_name_the_limit(host, sd15, motion):
    with pytest.raises(Exception, match=r"40 frames.*at most 32.*context windows"):
        sample(host, apply(host, sd15.model, motion), frames=40, steps=1)


def test_applying_twice_is_refused(host, sd15, motion):
    with pytest.raises(ValueError, match="already has a motion module"):
        apply(host, apply(host, sd15.model, motion), motion)


def test_module_that_does_not_fit_the_unet(host, sd15, tmp_path):
    tensors = motion_module_tensors([[320, 320], [640, 640]], None, [[640] * 3, [320] * 3], seed=3)
    path = str(tmp_path / "other_layout.safetensors")
    save_file(tensors, path)
    other = host.motion_modules.load_motion_model(path)
    with pytest.raises(ValueError, match=r"'other_layout.safetensors'.*does not fit this model's UNet"):
        apply(host, sd15.model, other)


def test_v1_normalises_resnets_across_frames(host, sd15, tmp_path):
    """v1 and v3 files with the same weights differ only in PE length; v1 also makes the base UNet's
    ResNet GroupNorms span frames, as the original v1 code did."""
    paths = {}
    for version, pe in (("v1", 24), ("v3", 32)):
        paths[version] = str(tmp_path / f"{version}.safetensors")
        save_file(motion_module_tensors(TINY_MOTION_DOWN, None, TINY_MOTION_UP, pe_length=pe), paths[version])
    v1 = host.motion_modules.load_motion_model(paths["v1"])
    v3 = host.motion_modules.load_motion_model(paths["v3"])
    assert (v1.format.version, v3.format.version) == ("v1", "v3")
    patched_v1 = apply(host, sd15.model, v1)
    cross = [k for k, v in patched_v1.object_patches.items() if type(v).__name__ == "CrossFrameGroupNorm"]
    resblocks = sum(type(m).__name__ == "ResBlock" for m in sd15.model.model.diffusion_model.modules())
    assert len(cross) == 2 * resblocks + 1  # in/out norm of every ResBlock, plus the output norm
    out_v1 = sample(host, patched_v1, frames=8, steps=1)
    out_v3 = sample(host, apply(host, sd15.model, v3), frames=8, steps=1)
    assert (out_v1 - out_v3).abs().max() > 1e-4
    # and at scale 0 v1 is the plain model again, GroupNorms included
    plain = sample(host, sd15.model, frames=8, steps=1)
    assert torch.equal(sample(host, apply(host, sd15.model, v1, 0.0, "use model's own"), frames=8, steps=1), plain)
