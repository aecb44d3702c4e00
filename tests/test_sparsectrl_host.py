"""SparseCtrl in the real host (in-process): the tiny RGB and scribble files applied with Apply SparseCtrl and
sampled by the host's own KSampler; context windows; bad inputs.

The windows invariant: with the ``batched`` schedule, sampling in windows equals each window sampled alone
with its own keyframes (in window-local indices). One euler step to sigma 0 returns the model's
CFG-combined prediction, so the comparison is on the model output (tests/test_windows_conditioning.py).
With any schedule (windows that overlap, move every step or wrap around), every UNet call of a window
receives the residuals of SparseCtrl run alone on that window's frames with its window-local keyframes,
checked against the network called directly on the UNet's own inputs.
"""

import dataclasses
import logging
import os
import types

import pytest
import torch

from tests.test_host_patching import apply
from tests.test_windows_conditioning import (FRAMES, HALF, SIZE, assert_close, conditioning, images, mode,  # noqa: F401
                                             model_output, windowed)

RGB, SCRIBBLE = "tiny_sparsectrl_rgb.safetensors", "tiny_sparsectrl_scribble.safetensors"


@pytest.fixture(scope="module")
def motion(host, tiny_models):
    return host.motion_modules.load_motion_model(tiny_models.motion_module)


@pytest.fixture(scope="module")
def sparsectrl(host, tiny_models):
    loaded = {}

    def get(name):
        if name not in loaded:
            path = os.path.join(tiny_models.controlnet, name)
            if not os.path.exists(path):
                pytest.skip(f"{name} not generated (run scripts/setup.sh)")
            module = host.host_module.sparse_control
            loaded[name] = module.LoadedSparseCtrl(module.load_sparse_ctrl(path))
        return loaded[name]
    return get


def node(host, name):
    return host.pack.NODE_CLASS_MAPPINGS[name]()


def with_sparsectrl(host, sd15, loaded, keyframes, indices, frames, positive=None, negative=None, strength=1.0,
                    start=0.0, end=1.0, size=SIZE, vae=True):
    positive = conditioning(5) if positive is None else positive
    negative = conditioning(6) if negative is None else negative
    latent = {"samples": torch.zeros(frames, 4, size, size)}
    return node(host, "ApplySparseCtrl").apply(positive, negative, loaded, keyframes, indices, latent, strength,
                                               start, end, sd15.vae if vae else None)


def warnings_in(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("name", [RGB, SCRIBBLE])
def test_keyframes_change_the_animation(host, sd15, motion, sparsectrl, name, caplog):
    """Applied to the host's KSampler on the animated tiny model: the residuals fit the UNet (no warning),
    the keyframes have an effect, and the frames near a keyframe move most."""
    loaded = sparsectrl(name)
    animated = apply(host, sd15.model, motion)
    frames = 8
    keyframes = images(2, 11)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        on = model_output(host, animated, *with_sparsectrl(host, sd15, loaded, keyframes, "0, -1", frames),
                          frames=frames)
    assert warnings_in(caplog) == []
    off = model_output(host, animated, *with_sparsectrl(host, sd15, loaded, keyframes, "0, 7", frames, strength=0.0),
                       frames=frames)
    plain = model_output(host, animated, conditioning(5), conditioning(6), frames=frames)
    assert_close(off, plain, atol=1e-5)  # strength 0: nothing added
    effect = (on - off).abs().mean().item()
    assert effect > 0.01, effect
    # Other keyframes, another result: the images matter, not only the mask.
    other = model_output(host, animated, *with_sparsectrl(host, sd15, loaded, images(2, 12), "0, 7", frames),
                         frames=frames)
    assert (other - on).abs().max().item() > 1e-3
    # A step range that excludes the only step: no effect.
    late = model_output(host, animated, *with_sparsectrl(host, sd15, loaded, keyframes, "0, 7", frames, start=0.5),
                        frames=frames)
    assert_close(late, off, atol=1e-5)


def test_chains_with_a_host_controlnet(host, sd15, motion, sparsectrl, tiny_models):
    """SparseCtrl on top of a ControlNet and a ControlNet on top of SparseCtrl: both residuals reach the UNet."""
    controlnet = host.comfy.controlnet.load_controlnet(os.path.join(tiny_models.controlnet,
                                                                    "tiny_controlnet_sd15.safetensors"))
    animated = apply(host, sd15.model, motion)
    frames, loaded = 8, sparsectrl(RGB)
    hint = images(frames, 1)
    apply_cn = host.nodes.ControlNetApplyAdvanced()

    def cn(p, n, strength=1.0):
        return apply_cn.apply_controlnet(positive=p, negative=n, control_net=controlnet, image=hint, strength=strength,
                                         start_percent=0.0, end_percent=1.0)[:2]

    keyframes = images(1, 11)
    sc_only = model_output(host, animated, *with_sparsectrl(host, sd15, loaded, keyframes, "0", frames), frames=frames)
    cn_only = model_output(host, animated, *cn(conditioning(5), conditioning(6)), frames=frames)
    sc_then_cn = model_output(host, animated, *cn(*with_sparsectrl(host, sd15, loaded, keyframes, "0", frames)),
                              frames=frames)
    p, n = cn(conditioning(5), conditioning(6))
    cn_then_sc = model_output(host, animated, *with_sparsectrl(host, sd15, loaded, keyframes, "0", frames, p, n),
                              frames=frames)
    assert_close(sc_then_cn, cn_then_sc, atol=1e-4)  # residuals add up the same either way
    for alone in (sc_only, cn_only):
        assert (sc_then_cn - alone).abs().max().item() > 1e-3


def test_ksampler_animate_sampler_and_sampler_custom_agree(host, sd15, motion, sparsectrl):
    """The three ways to sample (KSampler's comfy.sample.sample, AnimateSampler, SamplerCustom's
    comfy.sample.sample_custom with KSamplerSelect / BasicScheduler) run the SparseCtrl alike: same samples,
    two steps, and not those without it."""
    from comfy_extras import nodes_custom_sampler as custom
    animated = apply(host, sd15.model, motion)
    frames = 8
    p, n = with_sparsectrl(host, sd15, sparsectrl(RGB), images(2, 11), "0, 7", frames)
    latent = torch.zeros(frames, 4, SIZE, SIZE)
    noise = host.comfy.sample.prepare_noise(latent, 1)
    with torch.inference_mode():
        ksampler = host.comfy.sample.sample(animated, noise, 2, 7.5, "euler", "normal", p, n, latent, seed=1,
                                            disable_pbar=True)
        plain = host.comfy.sample.sample(animated, noise, 2, 7.5, "euler", "normal", conditioning(5),
                                         conditioning(6), latent, seed=1, disable_pbar=True)
        animate = host.pack.nodes.sampling.AnimateSampler().sample(
            model=animated, seed=1, steps=2, cfg=7.5, sampler_name="euler", scheduler="normal", positive=p,
            negative=n, latent_image={"samples": latent}, denoise=1.0, noise_type="default",
            seed_mode="one generator for the batch")[0]["samples"]
        sampler = custom.KSamplerSelect().get_sampler("euler")[0]
        sigmas = custom.BasicScheduler().get_sigmas(animated, "normal", 2, 1.0)[0]
        sampler_custom = host.comfy.sample.sample_custom(animated, noise, 7.5, sampler, sigmas, p, n, latent,
                                                         seed=1, disable_pbar=True)
    assert_close(animate, ksampler, atol=1e-6)
    assert_close(sampler_custom, ksampler, atol=1e-6)
    assert (ksampler - plain).abs().max().item() > 0.01


@pytest.mark.parametrize("name", [RGB, SCRIBBLE])
def test_windows_equal_each_window_alone(host, sd15, motion, sparsectrl, mode, name):  # noqa: F811
    """16 frames in two batched windows of 8, keyframes at 0, 5 and 12: the first window sees 0 and 5, the
    second sees 12 as its frame 4. Current ComfyUI runs a copy of the SparseCtrl per window; on the 2024 host
    (and its code path forced on current ComfyUI) the pack's UNet-call windows compute each window's
    residuals on that window's frames."""
    loaded = sparsectrl(name)
    animated = apply(host, sd15.model, motion)
    keyframes = images(3, 21)
    p, n = with_sparsectrl(host, sd15, loaded, keyframes, "0, 5, 12", FRAMES)
    batches = []
    hook = loaded.network.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    try:
        in_windows = model_output(host, windowed(host, animated), p, n)
    finally:
        hook.remove()
    assert batches == [2 * HALF, 2 * HALF]  # cond + uncond of each window's 8 frames, on both code paths
    first = with_sparsectrl(host, sd15, loaded, keyframes[:2], "0, 5", HALF)
    second = with_sparsectrl(host, sd15, loaded, keyframes[2:], "4", HALF)
    noise = torch.randn((FRAMES, 4, SIZE, SIZE), generator=torch.Generator().manual_seed(3))
    alone = torch.cat([model_output(host, animated, *first, frames=HALF, noise=noise[:HALF]),
                       model_output(host, animated, *second, frames=HALF, noise=noise[HALF:])])
    assert_close(in_windows, alone, atol=1e-4)
    # ... and not what the whole clip's SparseCtrl would give each window: the keyframes of one window do not
    # reach the other.
    only_first = with_sparsectrl(host, sd15, loaded, keyframes[:2], "0, 5", FRAMES)
    differs = model_output(host, windowed(host, animated), *only_first)
    assert_close(differs[:HALF], in_windows[:HALF])
    assert (differs[HALF:] - in_windows[HALF:]).abs().max().item() > 1e-3


def test_long_clip_in_overlapping_windows(host, sd15, motion, sparsectrl, mode):  # noqa: F811
    """40 frames (beyond SparseCtrl's 32) with keyframes at 0, 20 and 39, in static windows of 16 sharing 4
    (frames 0-15, 12-27, 24-39): the keyframe at 20 reaches exactly the frames of the one window holding it."""
    loaded = sparsectrl(SCRIBBLE)
    animated = windowed(host, apply(host, sd15.model, motion), context_length=16, schedule="standard_static",
                        overlap=4)
    frames, keyframes = 40, images(3, 31, size=32)
    p, n = with_sparsectrl(host, sd15, loaded, keyframes, "0, 20, -1", frames, size=4)
    out = model_output(host, animated, p, n, frames=frames, size=4)
    without = model_output(host, animated, *with_sparsectrl(host, sd15, loaded, keyframes[[0, 2]], "0, -1", frames,
                                                            size=4), frames=frames, size=4)
    change = (out - without).abs().amax(dim=(1, 2, 3))
    assert change[:12].max().item() == 0 and change[28:].max().item() == 0, change.tolist()
    assert change[12:28].min().item() > 1e-4, change.tolist()  # 6e-4 to 3e-3 seen (tiny models, one step)


KEYFRAME_FRAMES = (0, 5, 12, 15)  # with 4 keyframe images: each window holds some; looped windows wrap 15 -> 0


def unet_calls(host, sd15, loaded, sample):
    """``sample()`` run with the UNet's inputs captured: one dict per UNet call (its latents, timestep, text
    context, the window's frames, its clip count and the control residuals it received, copied before the
    UNet pops them), and the order in which SparseCtrl's network and the UNet ran."""
    calls, order = [], []
    window_key = host.host_module.WINDOW_KEY

    def on_unet(module, args, kwargs):
        options = kwargs.get("transformer_options") or {}
        control = kwargs.get("control") or {}
        window = options.get(window_key)
        calls.append({"x": args[0].clone(), "t": args[1].clone(), "context": kwargs["context"].clone(),
                      "window": list(window.indices) if window is not None else None,
                      "clips": len(options.get("cond_or_uncond") or [0]),
                      "control": {side: [r.clone() if isinstance(r, torch.Tensor) else r for r in residuals]
                                  for side, residuals in control.items()}})
        order.append(("unet", args[0].shape[0]))

    def on_sparsectrl(module, args):
        order.append(("sparsectrl", args[0].shape[0]))

    hooks = [sd15.model.model.diffusion_model.register_forward_pre_hook(on_unet, with_kwargs=True),
             loaded.network.register_forward_pre_hook(on_sparsectrl)]
    try:
        out = sample()
    finally:
        for hook in hooks:
            hook.remove()
    return out, calls, order


def alone_on_window(host, loaded, keyframes, call, strength=1.0):
    """SparseCtrl run alone on a captured UNet call's frames: the keyframes that fall in its window, at
    window-local positions, on the UNet's own (already scaled) latents, timestep and text context."""
    module = host.host_module.sparse_control
    window = call["window"]
    slots = torch.full((len(window),), -1, dtype=torch.long)
    for image, frame in enumerate(KEYFRAME_FRAMES):
        if frame in window:
            slots[window.index(frame)] = image
    condition, mask = module.condition_from_slots(keyframes, slots)
    clips = call["clips"]
    with torch.inference_mode():
        down, mid = loaded.network(call["x"], call["t"], call["context"], condition.repeat(clips, 1, 1, 1),
                                   mask.repeat(clips, 1, 1, 1), len(window), scale=strength)
    return {"input": [], "middle": [mid], "output": list(down)}


def summed(*controls):
    """Residual dicts added position by position (None and missing entries count as nothing)."""
    out = {}
    for control in controls:
        for side, residuals in control.items():
            mine = out.setdefault(side, [])
            for i, r in enumerate(residuals):
                if i >= len(mine):
                    mine.append(r)
                elif r is not None:
                    mine[i] = r if mine[i] is None else mine[i] + r
    return out


def assert_same_residuals(got, expected, atol=1e-5):
    for side in ("input", "middle", "output"):
        a = [r for r in got.get(side, ()) if r is not None]
        b = [r for r in expected.get(side, ()) if r is not None]
        assert len(a) == len(b), (side, len(a), len(b))
        for x, y in zip(a, b):
            assert_close(x, y, atol=atol)


@pytest.mark.parametrize("schedule", ["standard_static", "standard_uniform", "looped_uniform"])
def test_overlapping_windows_get_each_windows_own_residuals(host, sd15, motion, sparsectrl, mode,  # noqa: F811
                                                            schedule):
    """16 frames in windows of 8 sharing 4 (frames in two windows; on the 2024 host the uniform windows move
    with the step and the looped ones wrap 15 -> 0): every window's UNet call receives what SparseCtrl alone
    on that window's frames gives, with the window's keyframes at window-local positions, computed one window
    at a time (SparseCtrl, then the UNet, per window)."""
    loaded = sparsectrl(SCRIBBLE)
    animated = windowed(host, apply(host, sd15.model, motion), schedule=schedule, overlap=4)
    keyframes = images(len(KEYFRAME_FRAMES), 41)
    p, n = with_sparsectrl(host, sd15, loaded, keyframes, ", ".join(map(str, KEYFRAME_FRAMES)), FRAMES)
    out, calls, order = unet_calls(host, sd15, loaded, lambda: model_output(host, animated, p, n))
    assert torch.isfinite(out).all()
    windows = [call["window"] for call in calls]
    assert len(windows) >= 3 and all(len(w) == HALF for w in windows), windows
    assert any(len(set(a) & set(b)) for i, a in enumerate(windows) for b in windows[i + 1:]), windows  # overlap
    assert order == [("sparsectrl", 2 * HALF), ("unet", 2 * HALF)] * len(calls)
    stored = p[0][1]["control"].keyframes
    for call in calls:
        assert_same_residuals(call["control"], alone_on_window(host, loaded, stored, call))
    # Strength 0, or a step range that excludes the only step: nothing added, on every window.
    plain = model_output(host, animated, conditioning(5), conditioning(6))
    for options in ({"strength": 0.0}, {"start": 0.5}):
        off = with_sparsectrl(host, sd15, loaded, keyframes, ", ".join(map(str, KEYFRAME_FRAMES)), FRAMES, **options)
        assert_close(model_output(host, animated, *off), plain, atol=1e-5)
    assert (out - plain).abs().amax(dim=(1, 2, 3)).min().item() > 1e-4  # every frame's window has a keyframe


@pytest.mark.parametrize("schedule", ["standard_static", "looped_uniform"])
def test_overlapping_windows_chained_with_a_host_controlnet(host, sd15, motion, sparsectrl, mode,  # noqa: F811
                                                            tiny_models, schedule):
    """SparseCtrl and a host ControlNet (per-frame hints) chained either way round, in overlapping windows:
    every window's UNet call receives exactly the sum of what each gives that window alone."""
    controlnet = host.comfy.controlnet.load_controlnet(os.path.join(tiny_models.controlnet,
                                                                    "tiny_controlnet_sd15.safetensors"))
    loaded = sparsectrl(SCRIBBLE)
    animated = windowed(host, apply(host, sd15.model, motion), schedule=schedule, overlap=4)
    hint = images(FRAMES, 1)
    keyframes = images(len(KEYFRAME_FRAMES), 41)
    indices = ", ".join(map(str, KEYFRAME_FRAMES))
    apply_cn = host.nodes.ControlNetApplyAdvanced()

    def cn(p, n):
        return apply_cn.apply_controlnet(positive=p, negative=n, control_net=controlnet, image=hint, strength=0.7,
                                         start_percent=0.0, end_percent=1.0)[:2]

    def sc(p=None, n=None):
        return with_sparsectrl(host, sd15, loaded, keyframes, indices, FRAMES, p, n)

    def run(inputs):
        return unet_calls(host, sd15, loaded, lambda: model_output(host, animated, *inputs))

    sc_out, sc_calls, _ = run(sc())
    cn_out, cn_calls, _ = run(cn(conditioning(5), conditioning(6)))
    sc_then_cn, calls_a, _ = run(cn(*sc()))
    cn_then_sc, calls_b, _ = run(sc(*cn(conditioning(5), conditioning(6))))
    assert [c["window"] for c in calls_a] == [c["window"] for c in calls_b] == [c["window"] for c in sc_calls] \
        == [c["window"] for c in cn_calls]
    stored = sc()[0][0][1]["control"].keyframes
    for chained in (calls_a, calls_b):
        for call, sc_call, cn_call in zip(chained, sc_calls, cn_calls):
            assert_same_residuals(sc_call["control"], alone_on_window(host, loaded, stored, sc_call))
            assert_same_residuals(call["control"], summed(sc_call["control"], cn_call["control"]))
    assert_close(sc_then_cn, cn_then_sc, atol=1e-4)
    for alone in (sc_out, cn_out):
        assert (sc_then_cn - alone).abs().max().item() > 1e-3


def test_overlapping_windows_as_on_current_comfyui(host, sd15, motion, sparsectrl, monkeypatch):
    """Current ComfyUI only: the 2024 host's code path (forced) samples overlapping windows with SparseCtrl as
    the host's own per-window SparseCtrl copies do (RGB keyframes, two steps)."""
    capabilities = host.pack.comfy_host.capabilities
    if not capabilities.HOST.cond_batch_wrapper:
        pytest.skip("needs current ComfyUI (the per-window SparseCtrl copies to compare with)")
    loaded = sparsectrl(RGB)
    keyframes = images(len(KEYFRAME_FRAMES), 41)
    p, n = with_sparsectrl(host, sd15, loaded, keyframes, ", ".join(map(str, KEYFRAME_FRAMES)), FRAMES)
    latent = torch.zeros(FRAMES, 4, SIZE, SIZE)
    noise = host.comfy.sample.prepare_noise(latent, 1)
    outs = {}
    for schedule in ("standard_static", "looped_uniform"):
        animated = windowed(host, apply(host, sd15.model, motion), schedule=schedule, overlap=4)
        for fallback in (False, True):
            if fallback:
                monkeypatch.setattr(capabilities, "HOST",
                                    dataclasses.replace(capabilities.HOST, cond_batch_wrapper=False))
                animated = windowed(host, apply(host, sd15.model, motion), schedule=schedule, overlap=4)
            with torch.inference_mode():
                outs[schedule, fallback] = host.comfy.sample.sample(animated, noise, 2, 7.5, "euler", "normal", p, n,
                                                                    latent, seed=1, disable_pbar=True)
        monkeypatch.undo()
        assert_close(outs[schedule, True], outs[schedule, False], atol=1e-4)
    assert (outs["standard_static", False] - outs["looped_uniform", False]).abs().max().item() > 1e-4


def test_too_many_frames_without_windows(host, sd15, motion, sparsectrl):
    loaded = sparsectrl(RGB)
    # The motion module itself allows 32; SparseCtrl too: 33 frames fail, with advice for this host.
    p, n = with_sparsectrl(host, sd15, loaded, images(1, 1), "0", 33, size=2)
    with pytest.raises(ValueError, match=r"33 frames reach SparseCtrl, whose motion modules take at most 32"):
        model_output(host, sd15.model, p, n, frames=33, size=2)


# ---- bad inputs --------------------------------------------------------------------------------------

@pytest.mark.parametrize("indices,count,message", [
    ("0, 16", 2, "frame index 16 is outside the clip of 16 frames"),
    ("-17", 1, "frame index -17 is outside the clip of 16 frames"),
    ("0, 15", 3, r"3 keyframe images but 2 frame indices \(0, 15\)"),
    ("0, 8, 15", 2, r"2 keyframe images but 3 frame indices \(0, 8, 15\)"),
])
def test_bad_keyframes(host, sd15, sparsectrl, indices, count, message):
    with pytest.raises(ValueError, match=message) as info:
        with_sparsectrl(host, sd15, sparsectrl(RGB), images(count, 1), indices, FRAMES)
    assert type(info.value) is ValueError  # the node hands the host a plain ValueError


def test_rgb_needs_the_vae(host, sd15, sparsectrl):
    with pytest.raises(ValueError, match="tiny_sparsectrl_rgb.safetensors is an RGB SparseCtrl.*connect the "
                                         "checkpoint's VAE"):
        with_sparsectrl(host, sd15, sparsectrl(RGB), images(1, 1), "0", FRAMES, vae=False)
    # scribble files do not use it
    with_sparsectrl(host, sd15, sparsectrl(SCRIBBLE), images(1, 1), "0", FRAMES, vae=False)


@pytest.mark.parametrize("strength,start,end,message", [
    (float("nan"), 0.0, 1.0, "strength is nan"),
    (1.0, 0.8, 0.2, "start_percent 0.8 and end_percent 0.2"),
])
def test_bad_options(host, sd15, sparsectrl, strength, start, end, message):
    with pytest.raises(ValueError, match=message):
        with_sparsectrl(host, sd15, sparsectrl(RGB), images(1, 1), "0", FRAMES, strength=strength, start=start,
                        end=end)


def test_latent_that_is_not_the_sampled_one(host, sd15, motion, sparsectrl):
    animated = apply(host, sd15.model, motion)
    p, n = with_sparsectrl(host, sd15, sparsectrl(RGB), images(1, 1), "0", 8)
    with pytest.raises(ValueError, match="Apply SparseCtrl was given a latent of 8 frames, but the sampler is "
                                         "sampling 6: connect the LATENT you sample"):
        model_output(host, animated, p, n, frames=6)
    with pytest.raises(ValueError, match=r"given a 8x8 latent, but the sampler samples 4x4 latents"):
        model_output(host, animated, p, n, frames=8, size=4)


def test_sdxl_model_refused(host, sparsectrl, tiny_models):
    from tests.test_sdxl import MODELS
    ckpt = os.path.join(MODELS, "checkpoints", "tiny_sdxl.safetensors")
    if not os.path.exists(ckpt):
        pytest.skip("tiny SDXL checkpoint not generated")
    with torch.inference_mode():
        model, _, vae = host.comfy.sd.load_checkpoint_guess_config(ckpt, output_vae=True, output_clip=False)[:3]
    positive = [[torch.randn(1, 77, 2048), {"pooled_output": torch.randn(1, 1280)}]]
    negative = [[torch.randn(1, 77, 2048), {"pooled_output": torch.randn(1, 1280)}]]
    p, n = with_sparsectrl(host, types.SimpleNamespace(vae=vae), sparsectrl(SCRIBBLE), images(1, 1), "0", 4,
                           positive, negative, size=4)
    with pytest.raises(ValueError, match=r"tiny_sparsectrl_scribble.safetensors is a SparseCtrl for custom UNets "
                                         r"\(input-block channels \[320, 320, 320, 320\], text context 768\), but the "
                                         r"model being sampled is SDXL"):
        model_output(host, model, p, n, frames=4, size=4)


def test_motion_module_and_sparsectrl_swapped(host, tiny_models):
    module = host.host_module.sparse_control
    with pytest.raises(ValueError, match="tiny_mm_v2.safetensors is not a SparseCtrl: it is an AnimateDiff motion "
                                         "module"):
        module.load_sparse_ctrl(tiny_models.motion_module)
    with pytest.raises(ValueError, match="tiny_sparsectrl_rgb.safetensors is not a motion module: it is a SparseCtrl"):
        host.motion_modules.load_motion_model(os.path.join(tiny_models.controlnet, RGB))
