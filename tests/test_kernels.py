"""The temporal layers' matrix-product kernel (motion_modules/kernels.py): the same numbers as F.linear,
the oneDNN op where it applies, F.linear everywhere else."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from motion_modules import kernels

pytestmark = pytest.mark.pure

needs_onednn = pytest.mark.skipif(not kernels.onednn_available(), reason="oneDNN's inner product does not apply here")


class OpNames(TorchDispatchMode):
    """The aten/mkldnn ops a call dispatches."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def ops_of(fn):
    with OpNames() as seen:
        out = fn()
    return out, seen.names


def tensors(shape, out_features, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    w = torch.randn(out_features, shape[-1], generator=g) / shape[-1] ** 0.5
    return x, w, 0.1 * torch.randn(out_features, generator=g)


@pytest.mark.parametrize("shape,out_features", [((7, 64), 48), ((128, 16, 320), 320), ((32, 16, 1280), 2560),
                                                ((2, 3, 5, 40), 24)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_same_numbers_as_f_linear(shape, out_features, with_bias):
    x, w, b = tensors(shape, out_features)
    b = b if with_bias else None
    with torch.inference_mode():
        got, expected = kernels.linear(x, w, b), F.linear(x, w, b)
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert (got - expected).abs().max().item() <= 1e-5 * max(1.0, expected.abs().max().item())


def test_strided_input():
    x, w, b = tensors((16, 64, 40), 24)
    strided = x.transpose(0, 1)
    assert not strided.is_contiguous()
    with torch.inference_mode():
        assert torch.allclose(kernels.linear(strided, w, b), F.linear(strided, w, b), atol=1e-5)


@needs_onednn
def test_fp32_cpu_inference_goes_to_onednn():
    x, w, b = tensors((128, 16, 320), 320)
    with torch.inference_mode():
        _, names = ops_of(lambda: kernels.linear(x, w, b))
    assert names == ["mkldnn._linear_pointwise"]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_other_dtypes_take_f_linear(dtype):
    x, w, b = (t.to(dtype) for t in tensors((8, 64), 32))
    with torch.inference_mode():
        got, names = ops_of(lambda: kernels.linear(x, w, b))
        assert torch.equal(got, F.linear(x, w, b))
    assert "mkldnn._linear_pointwise" not in names


def test_gradients_still_flow():
    """The oneDNN op has no backward: with autograd wanted, F.linear runs and gradients arrive."""
    x, w, b = tensors((4, 16, 64), 32)
    w.requires_grad_()
    out, names = ops_of(lambda: kernels.linear(x, w, b))
    out.sum().backward()
    assert "mkldnn._linear_pointwise" not in names
    assert w.grad is not None and torch.allclose(w.grad, F.linear(x, w.detach(), b).new_ones(4, 16, 32)
                                                  .reshape(-1, 32).t() @ x.reshape(-1, 64))


def test_switched_off_by_environment(monkeypatch):
    monkeypatch.setenv("ANIMATEDIFF_CPU_LINEAR", "torch")
    assert kernels._probe() is None


def test_unknown_switch_value_is_reported(monkeypatch, caplog):
    monkeypatch.setenv("ANIMATEDIFF_CPU_LINEAR", "off")
    with caplog.at_level("WARNING", logger="animatediff"):
        kernels._switched_off()
    assert "ANIMATEDIFF_CPU_LINEAR=off is not one of: torch (F.linear), onednn or auto" in caplog.text


def test_unknown_compile_switch_value_is_reported(monkeypatch, caplog):
    from motion_modules import temporal
    monkeypatch.setenv("ANIMATEDIFF_TORCH_COMPILE", "2")
    with caplog.at_level("WARNING", logger="animatediff"):
        assert temporal._compile_switch() is False
    assert "ANIMATEDIFF_TORCH_COMPILE=2 is not one of 1/true/yes/on or 0/false/no/off" in caplog.text


def test_linear_module_is_torch_linear_with_the_kernel():
    layer = kernels.Linear(64, 32)
    x = torch.randn(3, 64)
    with torch.inference_mode():
        assert torch.allclose(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-5)
    assert isinstance(layer, torch.nn.Linear)
    assert set(layer.state_dict()) == {"weight", "bias"}


def test_linear_kernel_context_redirects_f_linear_only_inside():
    """What a host layer that casts its weights per call runs its final F.linear through."""
    x, w, b = tensors((128, 16, 320), 320)
    with torch.inference_mode():
        with kernels.LinearKernel():
            inside, inside_ops = ops_of(lambda: F.linear(x, w, b))
            summed = torch.add(x, 1.0)  # other functions pass through unchanged
        outside, outside_ops = ops_of(lambda: F.linear(x, w, b))
    assert torch.equal(inside, kernels.linear(x, w, b))
    assert torch.equal(summed, x + 1.0)
    if kernels.onednn_available():
        assert inside_ops == ["mkldnn._linear_pointwise"]
        assert "mkldnn._linear_pointwise" not in outside_ops
    assert torch.allclose(inside, outside, atol=1e-5)


def test_torch_compile_switch_gives_the_same_numbers(monkeypatch):
    """ANIMATEDIFF_TORCH_COMPILE=1 (temporal.COMPILE): the token path runs through torch.compile, one
    compiled graph for every module and size, with the eager numbers (to 1e-5)."""
    pytest.importorskip("torch._inductor")
    from motion_modules import MotionModule, temporal
    torch.manual_seed(0)
    module = MotionModule(64, 32).eval().requires_grad_(False)
    inputs = [torch.randn(16, 64, 4, 4), torch.randn(24, 64, 2, 2)]  # two sizes, 8 and 12 frames
    with torch.inference_mode():
        eager = [module(inputs[0], 8), module(inputs[1], 12)]
        monkeypatch.setattr(temporal, "COMPILE", True)
        monkeypatch.setattr(temporal, "_compiled", {})
        try:
            compiled = [module(inputs[0], 8), module(inputs[1], 12)]
        except Exception as e:  # no C++ compiler for inductor's CPU backend on this machine
            if "compiler" in str(e).lower() and "not found" in str(e).lower():
                pytest.skip(f"torch.compile cannot build here: {e}")
            raise
    assert "token_path" in temporal._compiled
    for a, b in zip(compiled, eager):
        assert (a - b).abs().max().item() <= 1e-5 * max(1.0, b.abs().max().item())
