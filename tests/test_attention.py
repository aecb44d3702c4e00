"""Temporal attention: fused SDPA kernels, batch splitting at the kernel launch limit, no needless copies."""

import pytest
import torch

from motion_modules import temporal
from motion_modules.temporal import MotionModule
from tests.helpers import small_motion_tensors


def random_module(channels=64, seed=0):
    torch.manual_seed(seed)
    module = MotionModule(channels, 32)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.normal_(0, p.shape[1] ** -0.5) if p.ndim == 2 else p.normal_(1.0 if name.endswith("weight") else 0.0, 0.1)
    return module.eval()


def inputs(clips=2, frames=8, channels=64, size=5, seed=1):
    return torch.randn(clips * frames, channels, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cross_frame", [False, True])
@pytest.mark.parametrize("limit", [1, 7, 49])
def test_split_batch_gives_the_unsplit_result(monkeypatch, cross_frame, limit):
    """B*H*W rows over the limit are attended in chunks; each row is independent, so the result is the
    same (checked bit-exact, and at worst to 1e-6)."""
    module, x = random_module(), inputs()  # 2 clips * 5 * 5 = 50 attention rows
    with torch.inference_mode():
        whole = module(x, 8, cross_frame)
        calls = []
        real = temporal.F.scaled_dot_product_attention

        def counting(q, k, v, *a, **kw):
            calls.append(q.shape[0])
            return real(q, k, v, *a, **kw)

        monkeypatch.setattr(temporal, "SPLIT_ON_CPU", True)
        monkeypatch.setattr(temporal, "ATTENTION_BATCH_LIMIT", limit)
        monkeypatch.setattr(temporal.F, "scaled_dot_product_attention", counting)
        split = module(x, 8, cross_frame)
    assert max(calls) <= limit and sum(calls) == 2 * 50  # two attention blocks
    assert (split - whole).abs().max().item() <= 1e-6
    assert torch.equal(split, whole)


def test_launch_failure_is_retried_in_smaller_chunks(monkeypatch):
    """A kernel that refuses a launch (CUDA's "invalid configuration argument") gets halved chunks,
    and the chunk size that worked is remembered for the next calls."""
    module, x = random_module(), inputs()
    with torch.inference_mode():
        whole = module(x, 8)
        real = temporal.F.scaled_dot_product_attention
        tried = []

        def picky(q, k, v, *a, **kw):
            tried.append(q.shape[0])
            if q.shape[0] > 13:
                raise RuntimeError("CUDA error: invalid configuration argument")
            return real(q, k, v, *a, **kw)

        monkeypatch.setattr(temporal, "SPLIT_ON_CPU", True)
        monkeypatch.setattr(temporal, "_learned_limits", {})
        monkeypatch.setattr(temporal.F, "scaled_dot_product_attention", picky)
        got = module(x, 8)
        assert torch.equal(got, whole)
        assert temporal._learned_limits["cpu"] <= 13
        tried.clear()
        module(x, 8)
        assert max(tried) <= 13  # no failed launches the second time


def test_other_errors_are_not_swallowed(monkeypatch):
    module, x = random_module(), inputs()

    def broken(*a, **kw):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(temporal, "SPLIT_ON_CPU", True)
    monkeypatch.setattr(temporal, "_learned_limits", {})
    monkeypatch.setattr(temporal.F, "scaled_dot_product_attention", broken)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="out of memory"):
        module(x, 8)


def _profile(fn):
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn()
    return prof.events()


def test_fused_attention_no_score_tensor():
    """Attention runs in torch's SDPA and no (rows, heads, F, F) softmax is materialised on the CPU."""
    module, x = random_module(), inputs()
    with torch.inference_mode():
        names = {e.name for e in _profile(lambda: module(x, 8))}
    assert "aten::scaled_dot_product_attention" in names
    assert not names & {"aten::softmax", "aten::_softmax", "aten::bmm", "aten::baddbmm"}


def _layout_copies(events):
    """Copies that are not a matmul's bias broadcast (addmm starts from a copy of its bias)."""
    out = []
    for e in events:
        if e.name != "aten::copy_":
            continue
        parent, chain = e.cpu_parent, []
        while parent is not None:
            chain.append(parent.name)
            parent = parent.cpu_parent
        if not any(n in ("aten::addmm", "aten::linear") for n in chain):
            out.append((chain[-1] if chain else e.name, e.input_shapes[0]))
    return out


@pytest.mark.parametrize("cross_frame", [False, True])
@pytest.mark.parametrize("values,blocks", [(8 * 64 * 7, 8), (8 * 64 * 25, 2), (8 * 64 * 49, 2)])
def test_cpu_blocks_give_the_whole_batch_result(monkeypatch, cross_frame, values, blocks):
    """On the CPU the token path runs in blocks of whole sequences (temporal.CPU_BLOCK_VALUES); sequences
    are independent, so the result is the whole batch's, bit for bit."""
    module, x = random_module(), inputs()  # 2 clips * 5 * 5 = 50 sequences of 8 frames, 64 channels
    with torch.inference_mode():
        whole = module(x, 8, cross_frame)
        calls = []
        real = temporal._token_path

        def counting(transformer, tokens):
            calls.append(tokens.shape[0])
            return real(transformer, tokens)

        monkeypatch.setattr(temporal, "_token_path", counting)
        monkeypatch.setattr(temporal, "CPU_BLOCK_VALUES", values)
        blocked = module(x, 8, cross_frame)
    assert len(calls) == blocks and sum(calls) == 50 and max(calls) * 8 * 64 <= values
    assert torch.equal(blocked, whole)


@pytest.mark.parametrize("cross_frame,expected", [(False, 1), (True, 2)])
def test_layout_copies_once_per_module(cross_frame, expected):
    """(b f) c h w -> (b h w) f c is one copy; the way back is read by the residual addition (no copy);
    the cross-frame GroupNorm needs its input contiguous in (b, c, f, h, w): one more."""
    module, x = random_module(), inputs()
    with torch.inference_mode():
        copies = _layout_copies(_profile(lambda: module(x, 8, cross_frame)))
    assert len(copies) == expected, copies
    out = module(x, 8, cross_frame)
    assert out.is_contiguous() and out.shape == x.shape


def test_no_per_call_casts_in_compute_dtype():
    """Modules built for a dtype hold weights and positional encodings in it: a call casts nothing."""
    from motion_modules import motion_model_from_tensors
    motion = motion_model_from_tensors(small_motion_tensors(dtype=torch.float16), "mm.safetensors")
    modules = motion.modules_in(torch.float32)
    assert {t.dtype for t in modules.state_dict().values()} == {torch.float32}
    assert all(m.pe.dtype == torch.float32 for m in modules.modules() if isinstance(m, temporal.PositionalEncoding))
    module = modules.in_unet_order()[0][1]
    x = inputs()
    with torch.inference_mode():
        names = [e.name for e in _profile(lambda: module(x, 8))]
    assert "aten::_to_copy" not in names


def test_positional_encoding_in_compute_dtype_when_not_stored():
    """Formats without a stored table (AnimateLCM) compute it once, in the compute dtype."""
    from motion_modules import motion_model_from_tensors
    tensors = {k: v for k, v in small_motion_tensors(dtype=torch.float16).items() if not k.endswith("pos_encoder.pe")}
    motion = motion_model_from_tensors(tensors, "lcm.safetensors")
    assert not motion.format.pe_stored
    for dtype in (torch.float16, torch.float32, torch.bfloat16):
        pes = [m.pe for m in motion.modules_in(dtype).modules() if isinstance(m, temporal.PositionalEncoding)]
        assert pes and all(pe.dtype == dtype for pe in pes)
