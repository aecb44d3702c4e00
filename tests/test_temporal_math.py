"""Our temporal layer against outputs of the ORIGINAL AnimateDiff code (tests/data/vectors)."""

import os

import pytest
import torch
from safetensors.torch import load_file

from motion_modules import MotionModule, sinusoidal_table
from motion_modules.unet_layers import CrossFrameGroupNorm, FrameState, TemporalLayer

VECTORS = {"temporal_block_tiny.safetensors": False, "temporal_block_tiny_crossframe_gn.safetensors": True}


def load_vector(reference_data, name):
    data = load_file(os.path.join(reference_data, "vectors", name))
    weights = {k[len("weights."):]: v for k, v in data.items() if k.startswith("weights.")}
    module = MotionModule(64, 32)
    module.load_state_dict(weights, strict=True)
    return module, data


@pytest.mark.parametrize("name,cross_frame", VECTORS.items())
def test_matches_original_code(reference_data, name, cross_frame):
    module, data = load_vector(reference_data, name)
    with torch.no_grad():
        out = module(data["input_bf"], frames=8, cross_frame_norm=cross_frame)
    assert (out - data["expected_output_bf"]).abs().max().item() <= 1e-4


def test_groupnorm_mode_matters(reference_data):
    """The two vectors differ a lot, so matching each one really checks the GroupNorm mode."""
    module, data = load_vector(reference_data, "temporal_block_tiny.safetensors")
    with torch.no_grad():
        wrong = module(data["input_bf"], frames=8, cross_frame_norm=True)
    assert (wrong - data["expected_output_bf"]).abs().max().item() > 0.5


def test_intermediate_after_groupnorm(reference_data):
    module, data = load_vector(reference_data, "temporal_block_tiny.safetensors")
    tt = module.temporal_transformer
    from motion_modules import group_norm
    got = group_norm(data["input_bf"], 8, tt.norm.weight, tt.norm.bias, cross_frame=False)
    assert (got - data["debug.after_groupnorm"]).abs().max().item() <= 1e-5


def test_positional_encoding_table(reference_data):
    module, data = load_vector(reference_data, "temporal_block_tiny.safetensors")
    stored = data["weights.temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder.pe"]
    # sin/cos of the same fp32 arguments differ by one ulp between torch builds, so a recomputed
    # table is checked to 1e-6 and a module built from a file keeps the file's own values exactly.
    assert (sinusoidal_table(32, 64) - stored).abs().max().item() <= 1e-6
    assert torch.equal(module.temporal_transformer.transformer_blocks[0].attention_blocks[0].pos_encoder.pe, stored)
    # Positions 0..23 do not depend on the table length (v1's 24 vs v2's 32).
    assert torch.equal(sinusoidal_table(24, 64), sinusoidal_table(32, 64)[:, :24])


def test_scale_zero_is_identity_and_scale_is_linear(reference_data):
    module, data = load_vector(reference_data, "temporal_block_tiny.safetensors")
    x = data["input_bf"]
    state = FrameState()
    with torch.no_grad(), state.model_call(2):
        assert torch.equal(TemporalLayer(module, state, 0.0, False)(x), x)
        full = TemporalLayer(module, state, 1.0, False)(x) - x
        half = TemporalLayer(module, state, 0.5, False)(x) - x
    assert torch.allclose(half, 0.5 * full, atol=1e-5)


def test_chunks_are_independent_clips(reference_data):
    """cond and uncond batched together give exactly what they give in separate calls."""
    module, data = load_vector(reference_data, "temporal_block_tiny_crossframe_gn.safetensors")
    x = data["input_bf"]  # 2 clips of 8 frames
    state = FrameState()
    layer = TemporalLayer(module, state, 1.0, True)
    with torch.no_grad():
        with state.model_call(2):
            together = layer(x)
        with state.model_call(1):
            apart = torch.cat([layer(x[:8]), layer(x[8:])])
    assert (together - apart).abs().max().item() <= 1e-5
    assert (together - data["expected_output_bf"]).abs().max().item() <= 1e-4


def test_layer_outside_sampling_step_says_why():
    from motion_modules.unet_layers import FrameContextError
    layer = TemporalLayer(MotionModule(64, 32), FrameState(), 1.0, False)
    with pytest.raises(FrameContextError, match="ApplyMotionModule"):
        layer(torch.zeros(4, 64, 2, 2))


def test_frame_limit_names_limit_and_context_windows():
    from motion_modules import FrameLimitError
    module = MotionModule(64, 24)
    with pytest.raises(FrameLimitError, match=r"at most 24.*context windows"):
        module(torch.zeros(32, 64, 2, 2), frames=32)


def test_cross_frame_groupnorm_spans_frames_per_clip():
    torch.manual_seed(0)
    norm = torch.nn.GroupNorm(32, 64, eps=1e-5)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    state = FrameState()
    x = torch.randn(2 * 6, 64, 3, 3) + torch.linspace(-2, 2, 12).view(12, 1, 1, 1)
    with state.model_call(2):
        got = CrossFrameGroupNorm(norm, state)(x)
    for clip in range(2):
        frames = x[clip * 6:(clip + 1) * 6]  # (f, c, h, w) -> (1, c, f, h, w)
        ref = torch.nn.functional.group_norm(frames.transpose(0, 1).unsqueeze(0), 32, norm.weight, norm.bias, 1e-5)
        assert torch.allclose(got[clip * 6:(clip + 1) * 6], ref.squeeze(0).transpose(0, 1), atol=1e-5)
