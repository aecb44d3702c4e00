"""Conditioning inside context windows, on the real host (in-process): ControlNet, T2I-Adapter, per-frame
masks, per-frame prompts, latent noise masks and other packs' attention patches.

The invariant: with the ``batched`` schedule (windows that do not overlap), sampling a clip in windows
equals sampling each window alone with its own frames of every per-frame input. One euler step to
sigma 0 returns the model's CFG-combined prediction itself, so the comparison is on the model output.

On current ComfyUI the tests also run with the 2024 host's code path (UNet-call windows with the
ControlNet residuals cut), forced through the capabilities record.
"""

import dataclasses
import os
import types

import pytest
import torch

from tests.test_host_patching import apply

FRAMES, HALF, SIZE = 16, 8, 8


@pytest.fixture(scope="module")
def motion(host, tiny_models):
    return host.motion_modules.load_motion_model(tiny_models.motion_module)


def _modes(host):
    modes = ["host"]
    if host.host_module.HOST.cond_batch_wrapper:
        modes.append("unet-call fallback")
    return modes


@pytest.fixture(params=["host", "unet-call fallback"])
def mode(request, host, monkeypatch):
    """'host': the runtime this host gets; 'unet-call fallback': the 2024 host's runtime (only where the
    host would otherwise use the cond-batch wrapper, i.e. current ComfyUI)."""
    if request.param not in _modes(host):
        pytest.skip("this host already runs the UNet-call fallback")
    if request.param == "unet-call fallback":
        capabilities = host.pack.comfy_host.capabilities
        monkeypatch.setattr(capabilities, "HOST", dataclasses.replace(capabilities.HOST, cond_batch_wrapper=False))
    return request.param


@pytest.fixture(scope="module")
def controlnet(host, tiny_models):
    return host.comfy.controlnet.load_controlnet(os.path.join(tiny_models.controlnet, "tiny_controlnet_sd15.safetensors"))


@pytest.fixture(scope="module")
def t2i_adapter(host, tiny_models):
    return host.comfy.controlnet.load_controlnet(os.path.join(tiny_models.controlnet, "tiny_t2i_adapter_sd15.safetensors"))


def conditioning(seed, batch=1, tokens=77):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(batch, tokens, 768, generator=g), {}]]


def images(frames, seed, size=SIZE * 8):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(frames, size, size, 3, generator=g)


def with_controlnet(host, positive, negative, net, hint, strength=1.0, start=0.0, end=1.0):
    node = host.nodes.ControlNetApplyAdvanced()
    return node.apply_controlnet(positive=positive, negative=negative, control_net=net, image=hint,
                                 strength=strength, start_percent=start, end_percent=end)


def windowed(host, model, context_length=HALF, schedule="batched", overlap=0):
    options = host.pack.samplers.ContextOptions(context_length=context_length, overlap=overlap, schedule=schedule,
                                                fuse_method="flat")
    return host.host_module.set_context_options(model, options)


def model_output(host, model, positive, negative, frames=FRAMES, noise_seed=3, latent=None, noise_mask=None,
                 size=SIZE, noise=None):
    """One euler step to sigma 0: the model's CFG-combined prediction for the noised latents."""
    shape = (frames, 4, size, size)
    latent = torch.zeros(shape) if latent is None else latent
    if noise is None:
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(noise_seed))
    with torch.inference_mode():
        return host.comfy.sample.sample(model, noise, 1, 7.5, "euler", "normal", positive, negative, latent,
                                        noise_mask=noise_mask, seed=1, disable_pbar=True)


def halves_alone(host, model, make_inputs, frames=FRAMES, size=SIZE, **kw):
    """Each window sampled alone: ``make_inputs(frame_slice)`` -> (positive, negative, extra kwargs)."""
    noise = torch.randn((frames, 4, size, size), generator=torch.Generator().manual_seed(3))
    outs = []
    for part in (slice(0, HALF), slice(HALF, frames)):
        positive, negative, extra = make_inputs(part)
        outs.append(model_output(host, model, positive, negative, frames=part.stop - part.start, size=size,
                                 noise=noise[part], **extra, **kw))
    return torch.cat(outs)


def assert_close(a, b, atol=1e-4):
    assert a.shape == b.shape
    assert (a - b).abs().max().item() <= atol, (a - b).abs().max().item()


def test_controlnet_per_frame_hints_in_windows_equal_each_window_alone(host, sd15, motion, controlnet, mode):
    animated = apply(host, sd15.model, motion)
    hint = images(FRAMES, 1)
    positive, negative = conditioning(5), conditioning(6)

    def inputs(part):
        p, n = with_controlnet(host, positive, negative, controlnet, hint[part])
        return p, n, {}

    p, n = with_controlnet(host, positive, negative, controlnet, hint)
    batches = []
    hook = controlnet.control_model.register_forward_pre_hook(
        lambda module, args, kwargs: batches.append(kwargs["x"].shape[0]), with_kwargs=True)
    try:
        in_windows = model_output(host, windowed(host, animated), p, n)
    finally:
        hook.remove()
    assert_close(in_windows, halves_alone(host, animated, inputs))
    # Where windows are cut at the conditioning level the ControlNet runs per window (cond + uncond of
    # 8 frames); the 2024 host's ControlNet runs once on the whole batch, its residuals are cut.
    per_window = mode == "host" and host.host_module.HOST.cond_batch_wrapper
    assert batches == ([2 * HALF, 2 * HALF] if per_window else [2 * FRAMES])

    # The ControlNet's effect inside windows is real, and the effect each window alone has.
    p0, n0 = with_controlnet(host, positive, negative, controlnet, hint, strength=0.0)
    without = model_output(host, windowed(host, animated), p0, n0)
    effect = (in_windows - without).abs().max().item()
    assert effect > 0.05, effect


def test_chained_controlnets_with_step_ranges_in_windows(host, sd15, motion, controlnet, mode):
    animated = apply(host, sd15.model, motion)
    first, second = images(FRAMES, 1), images(FRAMES, 2)
    positive, negative = conditioning(5), conditioning(6)

    def chain(part):
        p, n = with_controlnet(host, positive, negative, controlnet, first[part], strength=0.8)
        return with_controlnet(host, p, n, controlnet, second[part], strength=0.6, start=0.0, end=0.5)

    p, n = chain(slice(None))
    in_windows = model_output(host, windowed(host, animated), p, n)
    assert_close(in_windows, halves_alone(host, animated, lambda part: (*chain(part), {})))
    single = with_controlnet(host, positive, negative, controlnet, first, strength=0.8)
    assert (in_windows - model_output(host, windowed(host, animated), *single)).abs().max() > 0.01


def test_one_hint_image_applies_to_every_frame(host, sd15, motion, controlnet, mode):
    animated = apply(host, sd15.model, motion)
    hint = images(1, 4)
    positive, negative = with_controlnet(host, conditioning(5), conditioning(6), controlnet, hint)
    in_windows = model_output(host, windowed(host, animated), positive, negative)
    assert_close(in_windows, halves_alone(host, animated, lambda part: (positive, negative, {})))


def test_one_window_covering_all_frames_is_bit_identical_with_controlnet(host, sd15, motion, controlnet, mode):
    animated = apply(host, sd15.model, motion)
    positive, negative = with_controlnet(host, conditioning(5), conditioning(6), controlnet, images(FRAMES, 1))
    whole = model_output(host, animated, positive, negative)
    assert torch.equal(model_output(host, windowed(host, animated, context_length=FRAMES), positive, negative), whole)


def test_controlnet_in_overlapping_windows_runs_per_window(host, sd15, motion, controlnet, mode):
    """Overlapping windows: every window sees its own hint frames (the result differs from a clip whose
    hints are shuffled between windows), and the output stays finite."""
    animated = windowed(host, apply(host, sd15.model, motion), schedule="standard_static", overlap=2)
    hint = images(FRAMES, 1)
    positive, negative = conditioning(5), conditioning(6)
    out = model_output(host, animated, *with_controlnet(host, positive, negative, controlnet, hint))
    rolled = model_output(host, animated, *with_controlnet(host, positive, negative, controlnet, hint.roll(8, 0)))
    assert torch.isfinite(out).all()
    # Frames 0-3 keep their hints only if each window reads the hint frames at its own indices.
    assert (out - rolled).abs().amax(dim=(1, 2, 3)).min() > 1e-3


@pytest.mark.parametrize("hint_frames", [3, 32])
def test_hint_count_neither_one_nor_frame_count_is_refused(host, sd15, motion, controlnet, mode, hint_frames):
    animated = windowed(host, apply(host, sd15.model, motion))
    positive, negative = with_controlnet(host, conditioning(5), conditioning(6), controlnet, images(hint_frames, 1))
    message = rf"ControlNet hint image batch has {hint_frames} entries for an animation of {FRAMES} frames"
    with pytest.raises(Exception, match=message):
        model_output(host, animated, positive, negative)


def test_t2i_adapter_per_frame_hints_in_windows(host, sd15, motion, t2i_adapter, mode):
    """The tiny T2I-Adapter's residual fits the tiny UNet only on 1x1 latents (8x8 hints)."""
    animated = apply(host, sd15.model, motion)
    hint = images(FRAMES, 7, size=8)
    positive, negative = conditioning(5), conditioning(6)

    def inputs(part):
        return (*with_controlnet(host, positive, negative, t2i_adapter, hint[part]), {})

    p, n = with_controlnet(host, positive, negative, t2i_adapter, hint)
    in_windows = model_output(host, windowed(host, animated), p, n, size=1)
    assert_close(in_windows, halves_alone(host, animated, inputs, size=1))
    p0, n0 = with_controlnet(host, positive, negative, t2i_adapter, hint, strength=0.0)
    assert (in_windows - model_output(host, windowed(host, animated), p0, n0, size=1)).abs().max() > 1e-3


def test_per_frame_conditioning_masks_in_windows(host, sd15, motion, mode):
    animated = apply(host, sd15.model, motion)
    g = torch.Generator().manual_seed(9)
    masks = (torch.rand(FRAMES, SIZE * 8, SIZE * 8, generator=g) > 0.5).float()
    set_mask = host.nodes.ConditioningSetMask()

    def inputs(part):
        masked = set_mask.append(conditioning(11), masks[part], "default", 1.0)[0]
        return masked + conditioning(5), conditioning(6), {}

    positive, negative, _ = inputs(slice(None))
    in_windows = model_output(host, windowed(host, animated), positive, negative)
    assert_close(in_windows, halves_alone(host, animated, inputs))
    unmasked = model_output(host, windowed(host, animated), conditioning(5), negative)
    assert (in_windows - unmasked).abs().max() > 1e-3


def test_mask_count_neither_one_nor_frame_count_is_refused(host, sd15, motion, mode):
    # 4 masks for 16 frames: the host alone would tile them silently. (A count that does not divide the
    # frame count fails inside the 2024 host's own sampler first, with its own shape error.)
    masks = torch.ones(4, SIZE * 8, SIZE * 8)
    positive = host.nodes.ConditioningSetMask().append(conditioning(11), masks, "default", 1.0)[0]
    with pytest.raises(Exception, match=rf"conditioning mask has 4 entries for an animation of {FRAMES} frames"):
        model_output(host, windowed(host, apply(host, sd15.model, motion)), positive + conditioning(5),
                     conditioning(6))


def test_animate_sampler_refuses_mismatched_counts_before_sampling(host, sd15, motion, controlnet):
    calls = []
    animated = apply(host, sd15.model, motion)
    animated.set_model_attn1_patch(lambda q, k, v, extra_options: calls.append(1) or (q, k, v))
    positive, negative = with_controlnet(host, conditioning(5), conditioning(6), controlnet, images(5, 1))
    masked = host.nodes.ConditioningSetMask().append(conditioning(11), torch.ones(5, 64, 64), "default", 1.0)[0]
    sampler = host.pack.nodes.sampling.AnimateSampler()
    args = dict(model=animated, seed=1, steps=1, cfg=7.5, sampler_name="euler", scheduler="normal",
                latent_image={"samples": torch.zeros(FRAMES, 4, SIZE, SIZE)}, denoise=1.0, noise_type="default",
                seed_mode="one generator for the batch")
    with pytest.raises(Exception, match=r"ControlNet hint image batch has 5 entries for an animation of 16 frames: "
                                        r"give 1 \(used for every frame\) or 16"):
        sampler.sample(positive=positive, negative=negative, **args)
    with pytest.raises(Exception, match=r"conditioning mask has 5 entries"):
        sampler.sample(positive=masked, negative=conditioning(6), **args)
    with pytest.raises(Exception, match=r"conditioning 'c_crossattn' has 3 entries"):
        sampler.sample(positive=conditioning(5, batch=3), negative=conditioning(6), **args)
    assert calls == []  # refused before the first UNet call


def test_per_frame_prompts_in_windows(host, sd15, motion, mode):
    animated = apply(host, sd15.model, motion)
    per_frame = conditioning(21, batch=FRAMES)

    def inputs(part):
        return [[per_frame[0][0][part], {}]], conditioning(6), {}

    in_windows = model_output(host, windowed(host, animated), per_frame, conditioning(6))
    assert_close(in_windows, halves_alone(host, animated, inputs))


def test_per_frame_latent_noise_mask_in_windows(host, sd15, motion, mode):
    animated = apply(host, sd15.model, motion)
    g = torch.Generator().manual_seed(13)
    latent = torch.randn(FRAMES, 4, SIZE, SIZE, generator=g)
    noise_mask = (torch.rand(FRAMES, 1, SIZE, SIZE, generator=g) > 0.5).float()
    positive, negative = conditioning(5), conditioning(6)
    in_windows = model_output(host, windowed(host, animated), positive, negative, latent=latent,
                              noise_mask=noise_mask)
    noise = torch.randn((FRAMES, 4, SIZE, SIZE), generator=torch.Generator().manual_seed(3))
    alone = torch.cat([model_output(host, animated, positive, negative, frames=HALF, latent=latent[part],
                                    noise_mask=noise_mask[part], noise=noise[part])
                       for part in (slice(0, HALF), slice(HALF, FRAMES))])
    assert_close(in_windows, alone)
    kept = noise_mask.expand_as(latent) == 0
    # Unmasked latents come back as they were (up to the latent scaling round trip).
    assert (in_windows[kept] - latent[kept]).abs().max() < 1e-3 < (in_windows[~kept] - latent[~kept]).abs().max(), (
        (in_windows[kept] - latent[kept]).abs().max())


def test_other_packs_attention_patches_see_the_window(host, sd15, motion, mode):
    seen = []

    def attn1_patch(q, k, v, extra_options):
        window = extra_options.get(host.host_module.WINDOW_KEY)
        seen.append((q.shape[0], window.indices if window else None, window.total if window else None))
        return q, k, v

    animated = windowed(host, apply(host, sd15.model, motion))
    animated.set_model_attn1_patch(attn1_patch)
    model_output(host, animated, conditioning(5), conditioning(6))
    windows = {indices for _, indices, _ in seen}
    assert windows == {tuple(range(HALF)), tuple(range(HALF, FRAMES))}
    assert {total for _, _, total in seen} == {FRAMES}


class NativeStyleWindows:
    """Stands in for ComfyUI's own context handler (model_options["context_handler"]): it windows x and
    the timestep, marks transformer_options["context_window"], and leaves ControlNets whole, as
    comfy/context_windows.py does. (ComfyUI 0.3.64's own handler cannot step SD-style batches at all:
    its set_step compares a per-frame timestep with the sigma list.)"""

    def should_use_context(self, model, conds, x_in, timestep, model_options):
        return x_in.shape[0] > HALF

    def execute(self, calc_cond_batch, model, conds, x_in, timestep, model_options):
        window = types.SimpleNamespace(index_list=list(range(HALF)))
        model_options["transformer_options"]["context_window"] = window
        return calc_cond_batch(model, conds, x_in[:HALF], timestep[:HALF], model_options)


def test_comfyui_own_context_windows_with_per_frame_hints_are_refused(host, sd15, motion, controlnet):
    if not host.host_module.HOST.cond_batch_wrapper:
        pytest.skip("this ComfyUI has no context handler")
    animated = apply(host, sd15.model, motion).clone()
    animated.model_options["context_handler"] = NativeStyleWindows()
    positive, negative = with_controlnet(host, conditioning(5), conditioning(6), controlnet, images(FRAMES, 1))
    with pytest.raises(Exception, match=r"hint image batch has 16 entries for an animation of 8 frames.*"
                                        r"ComfyUI's own context windows .* Context Scheduler"):
        model_output(host, animated, positive, negative)
