"""Prompt Travel (keyframed prompts, one embedding per frame) inside a real ComfyUI host (in-process).

Every keyframe is pinned against the host's own CLIPTextEncode on the same text (bit for bit), frames
between keyframes against the interpolation's weights, the CLIP calls are counted (one per distinct
prompt), and the result is sampled on the tiny animated SD1.5 model. The tiny checkpoint has a full-size
random CLIP-L; 8 frames of 8x8 latents, 1-2 steps.
"""

import pytest
import torch

from tests.test_host_patching import apply
from tests.test_windows_conditioning import controlnet, mode  # noqa: F401 (fixtures)

FRAMES = 8
# Three prompt lengths: 77 tokens (one CLIP chunk), 154 (over 75 tokens: two chunks), 231 (three chunks).
SHORT = "a cat"
MEDIUM = ", ".join(["a red cat on a green sofa"] * 11)
LONG = ", ".join(["a red cat on a green sofa"] * 19)


@pytest.fixture(scope="module")
def motion(host, tiny_models):
    return host.motion_modules.load_motion_model(tiny_models.motion_module)


def travel(host, clip, text, frames=FRAMES, pre="", post="", interpolation="linear"):
    with torch.inference_mode():
        return host.pack.NODE_CLASS_MAPPINGS["PromptTravel"]().encode(clip, text, frames, pre, post,
                                                                      interpolation)[0]


def clip_text_encode(host, clip, text):
    with torch.inference_mode():
        return host.nodes.CLIPTextEncode().encode(clip, text)[0]


def tensors(conditioning):
    """(cond, pooled) of a one-entry CONDITIONING."""
    assert len(conditioning) == 1
    cond, options = conditioning[0]
    return cond, options["pooled_output"]


def ksample(host, model, positive, negative, steps=1, seed=1):
    latent = torch.zeros(FRAMES, 4, 8, 8)
    noise = host.comfy.sample.prepare_noise(latent, seed)
    with torch.inference_mode():
        return host.comfy.sample.sample(model, noise, steps, 7.5, "euler", "normal", positive, negative, latent,
                                        seed=seed, disable_pbar=True)


class CountingClip:
    """The host's CLIP object behind a wrapper that records what it tokenizes and how often it encodes
    (nothing of the host is patched; only this wrapper sees the calls)."""

    def __init__(self, clip):
        self._clip = clip
        self.tokenized = []
        self.encodes = 0

    def tokenize(self, text, *args, **kwargs):
        self.tokenized.append(text)
        return self._clip.tokenize(text, *args, **kwargs)

    def __getattr__(self, name):
        attr = getattr(self._clip, name)  # AttributeError where the host's CLIP has no such method
        if not name.startswith("encode"):
            return attr

        def counted(*args, **kwargs):
            self.encodes += 1
            return attr(*args, **kwargs)
        return counted


def test_single_keyframe_is_clip_text_encode_on_every_frame(host, sd15):
    out = travel(host, sd15.clip, f"0: {SHORT}")
    ref = clip_text_encode(host, sd15.clip, SHORT)
    cond, pooled = tensors(out)
    ref_cond, ref_pooled = tensors(ref)
    assert ref_cond.shape == (1, 77, 768) and ref_pooled.shape[0] == 1
    assert cond.shape == (FRAMES, 77, 768) and cond.dtype == ref_cond.dtype
    assert pooled.shape == (FRAMES, *ref_pooled.shape[1:]) and pooled.dtype == ref_pooled.dtype
    assert torch.equal(cond, ref_cond.expand(FRAMES, -1, -1))
    assert torch.equal(pooled, ref_pooled.expand(FRAMES, -1))
    assert set(out[0][1]) == set(ref[0][1])  # the same keys as CLIPTextEncode's on this host


def test_two_keyframes_blend_per_interpolation(host, sd15):
    a, a_pooled = tensors(clip_text_encode(host, sd15.clip, "a"))
    b, b_pooled = tensors(clip_text_encode(host, sd15.clip, "b"))
    weights = {"linear": [0, 0.25, 0.5, 0.75, 1, 1, 1, 1],
               "ease_in_out": [0, 0.15625, 0.5, 0.84375, 1, 1, 1, 1],  # smoothstep 3u² - 2u³
               "hold": [0, 0, 0, 0, 1, 1, 1, 1]}
    for interpolation, ts in weights.items():
        cond, pooled = tensors(travel(host, sd15.clip, "0: a\n4: b", interpolation=interpolation))
        for frame, t in enumerate(ts):
            for got, x, y in ((cond[frame], a[0], b[0]), (pooled[frame], a_pooled[0], b_pooled[0])):
                if t in (0, 1):
                    assert torch.equal(got, x if t == 0 else y), (interpolation, frame)
                else:
                    torch.testing.assert_close(got, (1 - t) * x + t * y, rtol=0, atol=1e-6)
    # Linear, frame 2 exactly half way.
    cond, pooled = tensors(travel(host, sd15.clip, "0: a\n4: b"))
    torch.testing.assert_close(cond[2], 0.5 * a[0] + 0.5 * b[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(pooled[2], 0.5 * a_pooled[0] + 0.5 * b_pooled[0], rtol=0, atol=1e-6)


def test_one_clip_call_per_distinct_prompt(host, sd15):
    clip = CountingClip(sd15.clip)
    cond, _ = tensors(travel(host, clip, "0: a cat\n2: a dog\n4: a cat\n6: a dog\n7: a cat", pre="photo"))
    assert cond.shape[0] == FRAMES
    assert sorted(clip.tokenized) == ["photo, a cat", "photo, a dog"] and clip.encodes == 2


def test_pre_post_text_prompt_weights_and_clip_skip_as_clip_text_encode(host, sd15):
    text = "0: (storm:1.3) at sea\n4: a calm sea"
    cond, pooled = tensors(travel(host, sd15.clip, text, pre="masterpiece,", post="oil painting"))
    storm, storm_pooled = tensors(clip_text_encode(host, sd15.clip, "masterpiece, (storm:1.3) at sea, oil painting"))
    calm, _ = tensors(clip_text_encode(host, sd15.clip, "masterpiece, a calm sea, oil painting"))
    assert torch.equal(cond[0], storm[0]) and torch.equal(pooled[0], storm_pooled[0])
    assert torch.equal(cond[4], calm[0])
    unweighted, _ = tensors(clip_text_encode(host, sd15.clip, "masterpiece, storm at sea, oil painting"))
    assert not torch.equal(cond[0], unweighted[0])  # the weight reached the encoder
    # CLIP skip (CLIPSetLastLayer) applies as in CLIPTextEncode.
    skipped = host.nodes.CLIPSetLastLayer().set_last_layer(sd15.clip, -2)[0]
    cond, pooled = tensors(travel(host, skipped, "0: a cat"))
    ref, ref_pooled = tensors(clip_text_encode(host, skipped, "a cat"))
    assert torch.equal(cond[3], ref[0]) and torch.equal(pooled[3], ref_pooled[0])
    assert not torch.equal(cond[3], tensors(clip_text_encode(host, sd15.clip, "a cat"))[0][0])


def test_prompts_of_different_token_lengths_meet_at_their_lcm(host, sd15, motion):
    refs = [tensors(clip_text_encode(host, sd15.clip, text))[0] for text in (SHORT, MEDIUM, LONG)]
    assert [r.shape[1] for r in refs] == [77, 154, 231]
    travelled = travel(host, sd15.clip, f"0: {SHORT}\n3: {MEDIUM}\n6: {LONG}")
    cond, pooled = tensors(travelled)
    assert cond.shape == (FRAMES, 462, 768) and pooled.shape[0] == FRAMES  # lcm(77, 154, 231) = 462
    # Each keyframe is its own embedding repeated along the token axis; frames between blend chunk by chunk.
    for frame, ref in ((0, refs[0]), (3, refs[1]), (6, refs[2]), (7, refs[2])):
        assert torch.equal(cond[frame], ref[0].repeat(462 // ref.shape[1], 1))
    torch.testing.assert_close(cond[5], (cond[3].float() + 2 * cond[6].float()) / 3, rtol=0, atol=1e-5)
    # It samples.
    negative = clip_text_encode(host, sd15.clip, "")
    out = ksample(host, apply(host, sd15.model, motion), travelled, negative)
    assert out.shape == (FRAMES, 4, 8, 8) and torch.isfinite(out).all()
    # Why repeating is sound: the UNet's cross-attention gives a sequence repeated k times the result of the
    # sequence itself (each softmax weight is split over the k copies), up to float32 rounding.
    attention = next(m for name, m in sd15.model.model.diffusion_model.named_modules() if name.endswith("attn2"))
    x = torch.randn(2, 16, attention.to_q.in_features, generator=torch.Generator().manual_seed(3))
    context = refs[0].expand(2, -1, -1)
    with torch.inference_mode():
        once = attention(x, context=context)
        six_times = attention(x, context=context.repeat(1, 6, 1))
    torch.testing.assert_close(six_times, once, rtol=0, atol=1e-5)


def test_errors_name_the_problem(host, sd15):
    clip = CountingClip(sd15.clip)
    cases = [
        ("0: a cat\nno colon here", {}, r"Prompt Travel: text: line 2: expected 'FRAME: TEXT' .*no colon. "
                                        r"The line reads: 'no colon here'"),
        ("0: a cat\n8: a dog", {}, r"line 2: keyframe 8 is past the last frame \(7\) of a 8-frame animation"),
        ("0: a cat\n4: a dog\n4: a fish", {}, r"line 3: frame 4 already has a keyframe on line 2 \('a dog'\)"),
        ("0: a cat", {"frames": 0}, r"Prompt Travel: frames is 0; expected a whole number from 1 to 4096"),
        ("0: a cat", {"interpolation": "cubic"},
         r"Prompt Travel: interpolation is 'cubic'; expected one of linear, ease_in_out, hold"),
        ("0: a cat", {"clip": None}, r"Prompt Travel: the CLIP input is empty: this checkpoint has no text "
                                     r"encoder; load one with a CLIP loader"),
    ]
    for text, kw, message in cases:
        with pytest.raises(ValueError, match=message):
            travel(host, kw.pop("clip", clip), text, **kw)
    assert clip.tokenized == [] and clip.encodes == 0  # refused before any encoding


def test_sampling_one_prompt_travelled_equals_clip_text_encode(host, sd15, motion):
    model = apply(host, sd15.model, motion)
    negative = clip_text_encode(host, sd15.clip, "")
    travelled = travel(host, sd15.clip, f"0: {SHORT}\n5: {SHORT}", interpolation="ease_in_out")
    plain = ksample(host, model, clip_text_encode(host, sd15.clip, SHORT), negative, steps=2)
    out = ksample(host, model, travelled, negative, steps=2)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, plain, rtol=0, atol=1e-6)


def test_prompt_travel_with_controlnet_in_windows_equals_each_window_alone(host, sd15, motion, mode, controlnet):
    """16 frames travelled over three keyframes, a ControlNet with one hint per frame applied after it, in
    two batched windows: equal to each half sampled alone with its frames of the travel and the hints."""
    from tests.test_windows_conditioning import (FRAMES as CLIP_FRAMES, assert_close, halves_alone, images,
                                                 model_output, windowed, with_controlnet)
    animated = apply(host, sd15.model, motion)
    travelled = travel(host, sd15.clip, "0: a calm sea\n6: a storm at sea\n15: a lighthouse", frames=CLIP_FRAMES)
    negative = clip_text_encode(host, sd15.clip, "blurry")
    hint = images(CLIP_FRAMES, 1)
    positive, negative_cn = with_controlnet(host, travelled, negative, controlnet, hint)
    cond, pooled = tensors(travelled)

    def inputs(part):
        window = [[cond[part], {"pooled_output": pooled[part]}]]
        p, n = with_controlnet(host, window, negative, controlnet, hint[part])
        return p, n, {}

    in_windows = model_output(host, windowed(host, animated), positive, negative_cn)
    assert_close(in_windows, halves_alone(host, animated, inputs))
    # The travel matters: the same clip with the first prompt on every frame differs.
    held = travel(host, sd15.clip, "0: a calm sea", frames=CLIP_FRAMES)
    p_held, n_held = with_controlnet(host, held, negative, controlnet, hint)
    assert (model_output(host, windowed(host, animated), p_held, n_held) - in_windows).abs().max().item() > 1e-3
