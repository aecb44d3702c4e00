"""The peer comparison in benchmarks/run.py runs the same weights in diffusers: checked here, so the
benchmark compares like with like (not a timing test)."""

import importlib.util
import os

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def bench():
    pytest.importorskip("diffusers")
    spec = importlib.util.spec_from_file_location("benchmarks_run", os.path.join(ROOT, "benchmarks", "run.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def models(bench, tiny_models):
    return bench.load_models(full=False)


def test_spatial_unet_converted_by_diffusers_matches_the_host(bench, models, host):
    # a UNet of its own, loaded as the benchmark loads it (the session's shared model may still hold
    # another test's temporal layers: the host unpatches lazily)
    hosted = bench.host_unet(host, models["unet_sd"])
    unet = bench.diffusers_unet(models)
    g = torch.Generator().manual_seed(0)
    x, context = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 77, 768, generator=g)
    t = torch.tensor([500.0, 20.0])
    with torch.inference_mode():
        ours = hosted.model.diffusion_model(x, t, context=context)
        theirs = unet(x, t, encoder_hidden_states=context).sample
    assert (ours - theirs).abs().max().item() <= 1e-4 * ours.abs().max().item()


def test_motion_adapter_converted_by_diffusers_matches_ours(bench, models, host, tiny_models):
    """diffusers' AnimateDiffTransformer3D normalises across frames (docs/motion-module-formats.md §3.8): so does ours in that
    mode, and the converted weights then give the same output."""
    adapter = bench.diffusers_adapter(models)
    motion = host.motion_modules.load_motion_model(tiny_models.motion_module)
    ours = dict(motion.modules_in(torch.float32).in_unet_order())
    x = torch.randn(2 * 16, 320, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        for name, theirs in (("down_blocks.1.motion_modules.0", adapter.down_blocks[1].motion_modules[0]),
                             ("mid_block.motion_modules.0", adapter.mid_block.motion_modules[0]),
                             ("up_blocks.0.motion_modules.1", adapter.up_blocks[0].motion_modules[1])):
            a = ours[name](x, 16, cross_frame_norm=True)
            b = theirs(x, num_frames=16)
            assert (a - b).abs().max().item() <= 1e-4, name


def test_unet_config_for_real_sd15(bench):
    config = bench.diffusers_unet_config(bench.SD15_UNET)
    assert config["block_out_channels"] == (320, 640, 1280, 1280) and config["layers_per_block"] == 2
    assert config["down_block_types"] == ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
    assert config["up_block_types"] == ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
