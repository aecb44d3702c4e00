"""The matrix-product kernel the temporal layers' Linear layers run on. Pure torch.

On x86 CPUs in fp32, ``F.linear`` goes to the BLAS library torch was built with (MKL), while the
host UNet's convolutions go to oneDNN, whose JIT-compiled kernels use the CPU's widest vector units.
On the 2-core AMD EPYC the benchmarks ran on (benchmarks/README.md, "Where the time goes"), oneDNN's
fp32 inner product runs the motion modules' products 2.0-2.3x faster than ``F.linear`` at every size
the UNet levels see (16x16 tokens of 320 channels down to one token of 1280), without a packed copy
of the weights. So, where it applies, a Linear here calls oneDNN's inner product instead (torch's own
``mkldnn::_linear_pointwise``, the op torch.compile emits for CPU linears). Same arithmetic in fp32;
only the summation order differs (|difference| ~1e-6 on unit-scale outputs).

It applies when: the op exists and works in this torch (checked once, on first use, against
``F.linear``), the CPU is x86, input, weight and bias are fp32 CPU tensors, and no gradient is
wanted (the op has no backward), and not inside torch.compile. Everything else, GPUs and fp16/bf16 included, takes ``F.linear``.
``ANIMATEDIFF_CPU_LINEAR=torch`` in the environment turns it off (read once, on first use; another value than
torch, onednn or auto is reported in the log).
"""

from __future__ import annotations

import logging
import os
import platform

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

log = logging.getLogger("animatediff")
SWITCH = "ANIMATEDIFF_CPU_LINEAR"
_state = {}  # "op": oneDNN's inner product where it works here, else None (probed on first use)


def _switched_off() -> bool:
    value = os.environ.get(SWITCH, "").strip().lower()
    if value not in ("", "auto", "onednn", "torch"):
        log.warning("%s=%s is not one of: torch (F.linear), onednn or auto (the default); using the default",
                    SWITCH, value)
    return value == "torch"


def _probe():
    """oneDNN's fp32 inner product, when it is there and agrees with F.linear on this machine; else None."""
    if _switched_off() or platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return None
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        op = torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None
    g = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(shape, generator=g) for shape in ((3, 5, 64), (48, 64), (48,)))
    try:
        with torch.no_grad():
            agrees = torch.allclose(op(x, w, b, "none", [], ""), F.linear(x, w, b), rtol=1e-5, atol=1e-5)
    except RuntimeError:
        return None
    return op if agrees else None


def _onednn_op():
    if "op" not in _state:
        _state["op"] = _probe()
    return _state["op"]


def onednn_available() -> bool:
    return _onednn_op() is not None


def _applies(x: torch.Tensor, weight: torch.Tensor, bias) -> bool:
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32 \
            or weight.device.type != "cpu" or x.dim() < 2:
        return False
    if bias is not None and (bias.dtype != torch.float32 or bias.device.type != "cpu"):
        return False
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        return False
    if torch.compiler.is_compiling():
        return False  # torch.compile lowers F.linear itself (its oneDNN lowering needs frozen weights)
    return onednn_available()


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, through oneDNN's inner product where it applies (module docstring)."""
    if _applies(x, weight, bias):
        return _onednn_op()(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


class LinearKernel(TorchFunctionMode):
    """Inside this context, ``F.linear`` computes through :func:`linear`: for layers whose forward casts
    their weights per call before calling ``F.linear`` (a host's manual-cast and lowvram layers), so
    that they compute with the same kernel, and give the same numbers, as when they do not cast."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            return linear(*args, **kwargs)  # the mode is off inside its own handler: no recursion
        return func(*args, **kwargs)


class Linear(nn.Linear):
    """torch's Linear, computing through :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
