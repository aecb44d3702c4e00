"""Per-frame motion scale: ``scale`` as a (frames,) tensor scales each frame's temporal delta on its own."""

import pytest
import torch

from motion_modules.temporal import MotionModule

FRAMES = 8


def random_module(channels=64, seed=0):
    # Random weights large enough that the temporal delta is far from zero (checked below), so a scale
    # that is applied wrongly changes the output visibly.
    torch.manual_seed(seed)
    module = MotionModule(channels, 32)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.normal_(0, p.shape[1] ** -0.5) if p.ndim == 2 else p.normal_(1.0 if name.endswith("weight") else 0.0, 0.1)
    return module.eval()


def inputs(clips=2, frames=FRAMES, channels=64, size=5, seed=1):
    return torch.randn(clips * frames, channels, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def module():
    return random_module()


def per_clip_frames(t, frames=FRAMES):
    """(b f) c h w -> b f c h w, to pick frame i of every clip."""
    return t.view(-1, frames, *t.shape[1:])


@pytest.mark.parametrize("cross_frame", [False, True])
@pytest.mark.parametrize("s", [0.0, 0.37, 1.0, 1.6])
def test_equal_entries_match_float_scale(module, cross_frame, s):
    x = inputs()
    with torch.inference_mode():
        want = module(x, FRAMES, cross_frame, s)
        got = module(x, FRAMES, cross_frame, torch.full((FRAMES,), s))
    assert got.shape == x.shape and got.is_contiguous()
    assert (got - want).abs().max().item() <= 1e-6


def test_ones_are_bit_identical_to_scale_one(module):
    """A tensor of ones is bit-identical to scale=1.0: addcmul multiplies delta by exactly 1.0 before the
    same fp32 addition (observed on the CPU; the check is exact)."""
    x = inputs()
    with torch.inference_mode():
        assert torch.equal(module(x, FRAMES, False, torch.ones(FRAMES)), module(x, FRAMES, False, 1.0))


@pytest.mark.parametrize("cross_frame", [False, True])
def test_each_frame_takes_its_own_scale(module, cross_frame):
    """Frame i of the per-frame result equals frame i of the result with the float scale scales[i]: the
    block runs once, and only the residual addition of each frame is scaled independently."""
    x = inputs()
    scales = torch.tensor([0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 0.75, 3.0])
    with torch.inference_mode():
        got = per_clip_frames(module(x, FRAMES, cross_frame, scales))
        full = per_clip_frames(module(x, FRAMES, cross_frame, 1.0))
        for i, s in enumerate(scales.tolist()):
            want = per_clip_frames(module(x, FRAMES, cross_frame, s))
            assert (got[:, i] - want[:, i]).abs().max().item() <= 1e-6, f"frame {i} (scale {s})"
    # The delta is large, so the frames really differ by their scales (a scale ignored would show).
    xs = per_clip_frames(x)
    assert torch.equal(got[:, 0], xs[:, 0])  # scale 0: the input frame itself
    assert (full - xs).abs().max().item() > 0.5
    assert torch.allclose(got[:, 7] - xs[:, 7], 3.0 * (full[:, 7] - xs[:, 7]), atol=1e-5)


def test_scale_tensor_on_other_dtype_is_cast(module):
    """A float64 schedule (as a caller might build one) is cast to the compute dtype, not promoted."""
    x = inputs()
    scales = torch.linspace(0.0, 2.0, FRAMES, dtype=torch.float64)
    with torch.inference_mode():
        got = module(x, FRAMES, False, scales)
        want = module(x, FRAMES, False, scales.float())
    assert got.dtype == torch.float32
    assert torch.equal(got, want)


@pytest.mark.parametrize("bad", [torch.ones(7), torch.ones(9), torch.ones(2, FRAMES), torch.tensor(1.0)])
def test_wrong_shape_names_both_lengths(module, bad):
    x = inputs()
    with pytest.raises(ValueError) as e:
        module(x, FRAMES, False, bad)
    text = str(e.value)
    assert f"shape {tuple(bad.shape)}" in text
    assert f"this clip has {FRAMES} frames" in text and f"1-D tensor of {FRAMES} scales" in text


def test_layout_copy_count_unchanged():
    """The per-frame addition reads the strided delta and writes x's layout, like the float path: the
    module still makes exactly one layout copy (see tests/test_attention.py)."""
    from tests.test_attention import _layout_copies, _profile
    module, x = random_module(), inputs()
    with torch.inference_mode():
        copies = _layout_copies(_profile(lambda: module(x, FRAMES, False, torch.full((FRAMES,), 0.5))))
    assert len(copies) == 1, copies
