"""Context windows and AnimateSampler inside a real ComfyUI host (in-process)."""

import pytest
import torch

from tests.test_host_patching import apply, sample


@pytest.fixture(scope="module")
def motion(host, tiny_models):
    return host.motion_modules.load_motion_model(tiny_models.motion_module)


def context(host, **kw):
    return host.pack.nodes.sampling.ContextScheduler().build(
        **{"context_length": 16, "overlap": 4, "schedule": "standard_static", "fuse_method": "pyramid",
           "stride": 1, "closed_loop": False, **kw})[0]


def record_calls(motion):
    seen = []
    hooks = [m.register_forward_pre_hook(lambda mod, args: seen.append((args[0].shape[0], args[1])))
             for _, m in motion.modules_in(torch.float32).in_unet_order()]
    return seen, hooks


def test_one_window_covering_all_frames_is_bit_identical(host, sd15, motion):
    patched = apply(host, sd15.model, motion)
    windowed = host.host_module.set_context_options(patched, context(host, context_length=8, overlap=2))
    assert torch.equal(sample(host, windowed, frames=8, steps=1), sample(host, patched, frames=8, steps=1))


def test_long_animation_in_windows_with_host_ksampler(host, sd15, motion):
    patched = host.host_module.set_context_options(apply(host, sd15.model, motion),
                                                   context(host, context_length=8, overlap=2))
    seen, hooks = record_calls(motion)
    try:
        out = sample(host, patched, frames=20, steps=1)
    finally:
        for h in hooks:
            h.remove()
    assert out.shape == (20, 4, 8, 8) and torch.isfinite(out).all()
    # Every temporal call is one window of 8 frames, holding both cond and uncond (2 x 8 latents).
    assert {frames for _, frames in seen} == {8} and {batch for batch, _ in seen} == {16}
    assert len(seen) == 3 * 7  # windows 0-7, 6-13, 12-19 x 7 motion modules, one step


def test_context_length_over_module_limit(host, sd15, motion):
    with pytest.raises(ValueError, match="context_length 40 is over the motion module's limit of 32"):
        host.host_module.set_context_options(apply(host, sd15.model, motion), context(host, context_length=40))


def animate(host, model, frames, **kw):
    latent = {"samples": torch.zeros(frames, 4, 8, 8)}
    g = torch.Generator().manual_seed(5)
    positive = [[torch.randn(1, 77, 768, generator=g), {}]]
    negative = [[torch.randn(1, 77, 768, generator=g), {}]]
    args = dict(seed=1, steps=2, cfg=7.5, sampler_name="euler", scheduler="normal", denoise=1.0,
                noise_type="default", seed_mode="one generator for the batch")
    args.update(kw)
    with torch.inference_mode():
        return host.pack.nodes.sampling.AnimateSampler().sample(
            model=model, positive=positive, negative=negative, latent_image=latent, **args)[0]["samples"]


def test_animate_sampler_defaults_equal_host_ksampler(host, sd15, motion):
    patched = apply(host, sd15.model, motion)
    assert torch.equal(animate(host, patched, 8), sample(host, patched, frames=8))


def test_animate_sampler_long_with_context_is_deterministic(host, sd15, motion):
    patched = apply(host, sd15.model, motion)
    opts = context(host, schedule="standard_uniform", context_length=8, overlap=2)
    first = animate(host, patched, 20, context_options=opts, noise_type="FreeNoise", steps=1)
    again = animate(host, patched, 20, context_options=opts, noise_type="FreeNoise", steps=1)
    assert torch.equal(first, again) and first.shape == (20, 4, 8, 8)


def test_animate_sampler_refuses_too_many_frames_without_context(host, sd15, motion):
    with pytest.raises(Exception, match=r"40 frames.*at most 32.*ContextScheduler"):
        animate(host, apply(host, sd15.model, motion), 40)


def test_freeinit_iterates_and_reports_progress(host, sd15, motion, monkeypatch):
    values = []
    monkeypatch.setattr(host.comfy.utils, "PROGRESS_BAR_HOOK", lambda value, total, preview, **kw: values.append((value, total)))
    patched = apply(host, sd15.model, motion)
    once = animate(host, patched, 8, steps=1)
    values.clear()
    twice = animate(host, patched, 8, steps=1, freeinit_iterations=2, freeinit_filter="gaussian")
    assert not torch.equal(once, twice) and torch.isfinite(twice).all()
    assert values[-1] == (2, 2) and all(total == 2 for _, total in values)
    assert [v for v, _ in values] == sorted(v for v, _ in values)


def test_window_progress_is_reported(host, sd15, motion, monkeypatch):
    values = []
    monkeypatch.setattr(host.comfy.utils, "PROGRESS_BAR_HOOK", lambda value, total, preview, **kw: values.append(value))
    animate(host, apply(host, sd15.model, motion), 12, steps=1,
            context_options=context(host, context_length=8, overlap=2))
    assert any(0 < v < 1 for v in values)  # fractions of the first step, one per window


def test_few_frames_warn(host, sd15, motion, caplog):
    with caplog.at_level("WARNING", logger="animatediff"):
        animate(host, apply(host, sd15.model, motion), 4, steps=1)
    assert "4 frames; AnimateDiff modules were trained on 16" in caplog.text
