"""The AnimateDiff temporal layer ("motion module"), written from the math of docs/motion-module-formats.md §4.

Pure torch: no ComfyUI import. Parameter names reproduce the original checkpoints' key names, so a
state dict loads with ``strict=True`` and the meta-device manifest test can compare every key.

Layout note: the host hands us ``(B*F, C, H, W)`` with frames contiguous per batch entry. Every op
in the transformer except attention is per token, so after the GroupNorm we move to the
``(B*H*W, F, C)`` layout once, run the whole block there (attention over the frame axis is then a
plain batched attention), and move back at the end inside the residual addition, which reads the
strided view and writes the output it has to write anyway: one layout copy per module (two with
cross-frame GroupNorm; checked with the profiler by tests/test_attention.py and
benchmarks/temporal_layer.py).

Layer classes: every Linear, LayerNorm and GroupNorm is built from an ``operations`` namespace
(``.Linear``, ``.LayerNorm``, ``.GroupNorm``), as ComfyUI's own modules take ``operations=``. The default
is torch's own classes; inside ComfyUI the host's ``comfy.ops`` classes are passed, so the host's
manual cast (weights stored in one dtype, cast per call to the compute dtype, e.g. fp8 storage) and its
lowvram offloading (weights left on the CPU and cast onto the GPU per call) apply to these layers exactly
as to the UNet's own.
"""

from __future__ import annotations

import logging
import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from . import kernels

GROUPNORM_GROUPS = 32
GROUPNORM_EPS = 1e-6
LAYERNORM_EPS = 1e-5
HEADS = 8

# Scaled-dot-product attention kernels launch one block row per batch entry: CUDA grids allow at most
# 65535 blocks in their y and z dimensions, where torch's flash and memory-efficient kernels put the
# batch (here B*H*W) and the heads. Larger batches are split into chunks that fit; results are the
# same, since each row is an independent attention. On the CPU there is no such limit.
ATTENTION_BATCH_LIMIT = 65535
SPLIT_ON_CPU = False  # tests set this to check that a split gives what the unsplit call gives
_learned_limits: dict = {}  # device type -> a smaller limit a kernel turned out to need

# ANIMATEDIFF_TORCH_COMPILE=1: the token part of every motion module (proj_in, the transformer block,
# proj_out: all of its matrix products and attention) runs through torch.compile, one compiled graph for
# every module and size (dynamic shapes). Off by default: compiling takes a while on first use, and what
# it gains depends on the device; benchmarks/run.py --compile measures it.
def _compile_switch() -> bool:
    value = os.environ.get("ANIMATEDIFF_TORCH_COMPILE", "").strip().lower()
    if value not in ("", "0", "false", "no", "off", "1", "true", "yes", "on"):
        logging.getLogger("animatediff").warning(
            "ANIMATEDIFF_TORCH_COMPILE=%s is not one of 1/true/yes/on or 0/false/no/off; torch.compile stays off", value)
    return value in ("1", "true", "yes", "on")


COMPILE = _compile_switch()
_compiled: dict = {}

# On the CPU the token path runs in blocks of whole sequences of at most this many token values (rows x
# channels) each: every intermediate of a block (the feed-forward's 8x-wide one is 17 MB) then stays in
# heap memory the allocator reuses and largely in the CPU's caches, instead of activation-sized buffers
# freshly mapped (page faults) and streamed through memory by every op. Sequences are independent
# (attention runs within a sequence, everything else per token), so the result is the same, bit for bit
# (tests/test_attention.py). 1.2-1.5x faster modules from 16x16 latents of 320 channels on, the same below
# (benchmarks/README.md); GPUs take the whole batch at once.
CPU_BLOCK_VALUES = 1 << 19


class TorchOperations:
    """The layer classes the modules are built from when no host passes its own: torch's (the Linear
    computing through motion_modules/kernels.py)."""
    Linear = kernels.Linear
    LayerNorm = nn.LayerNorm
    GroupNorm = nn.GroupNorm


def sinusoidal_table(length: int, channels: int) -> torch.Tensor:
    """The Vaswani table ``[1, length, channels]`` in fp32, bit-identical to the original buffer."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, channels, 2, dtype=torch.float32) * (-math.log(10000.0) / channels))
    table = torch.zeros(1, length, channels, dtype=torch.float32)
    table[0, :, 0::2] = torch.sin(position * div_term)
    table[0, :, 1::2] = torch.cos(position * div_term)
    return table


def group_norm(x: torch.Tensor, frames: int, weight, bias, cross_frame: bool) -> torch.Tensor:
    """GroupNorm(32, eps 1e-6) on ``(B*F, C, H, W)``, per frame or with statistics spanning the frames."""
    if not cross_frame:
        return F.group_norm(x, GROUPNORM_GROUPS, weight, bias, GROUPNORM_EPS)
    bf, c, h, w = x.shape
    x5 = x.view(bf // frames, frames, c, h, w).transpose(1, 2)
    y5 = F.group_norm(x5, GROUPNORM_GROUPS, weight, bias, GROUPNORM_EPS)
    return y5.transpose(1, 2).reshape(bf, c, h, w)


class PositionalEncoding(nn.Module):
    """Holds ``pe`` [1, L, C]. Persistent only for formats whose files store it.

    The table is kept in the compute dtype (MotionModel.modules_in builds it so), so adding it is a plain
    add; it is moved or cast per call only when the host left it elsewhere (lowvram offloading keeps
    modules without weights on the CPU) or the caller computes in another dtype."""

    def __init__(self, channels: int, length: int, stored: bool, device=None):
        super().__init__()
        self.length = length
        table = sinusoidal_table(length, channels)
        self.register_buffer("pe", table.to(device) if device is not None else table, persistent=stored)

    def forward(self, tokens: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        frames = tokens.shape[-2]
        pe = self.pe[0, :frames]
        if pe.dtype != tokens.dtype or pe.device != tokens.device:
            pe = pe.to(device=tokens.device, dtype=tokens.dtype)
        return tokens.add_(pe) if inplace else tokens + pe


def _batch_limit(device: torch.device):
    if device.type == "cpu" and not SPLIT_ON_CPU:
        return None
    return _learned_limits.get(device.type, ATTENTION_BATCH_LIMIT)


def _is_launch_limit_error(e: RuntimeError) -> bool:
    text = str(e)
    return "invalid configuration argument" in text or ("grid" in text and "exceed" in text)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v`` over ``(N, heads, F, d)`` through torch's fused kernels (no
    ``(N, heads, F, F)`` score tensor where a fused kernel applies), in chunks of at most the kernel
    launch limit along N. A chunk size that still fails to launch is halved and remembered."""
    n = q.shape[0]
    limit = _batch_limit(q.device)
    if limit is None or n <= limit:
        try:
            return F.scaled_dot_product_attention(q, k, v)
        except RuntimeError as e:
            if limit is None or n < 2 or not _is_launch_limit_error(e):
                raise
            limit = _learned_limits[q.device.type] = max(1, n // 2)
    # The output in (N, F, heads, d) memory order, like the unsplit kernels write it, so the caller's
    # transpose back to (N, F, C) stays a view.
    _, heads, frames, head_dim = q.shape
    out = q.new_empty((n, frames, heads, head_dim)).transpose(1, 2)
    while True:
        try:
            for start in range(0, n, limit):
                rows = slice(start, start + limit)
                out[rows] = F.scaled_dot_product_attention(q[rows], k[rows], v[rows])
            return out
        except RuntimeError as e:
            if limit < 2 or not _is_launch_limit_error(e):
                raise
            limit = _learned_limits[q.device.type] = max(1, limit // 2)


class TemporalSelfAttention(nn.Module):
    """Self-attention over the frame axis of ``(N, F, C)`` tokens, with the PE added to its input."""

    def __init__(self, channels: int, pe_length: int, pe_stored: bool, device=None, dtype=None, operations=None):
        super().__init__()
        ops = operations or TorchOperations
        kw = {"device": device, "dtype": dtype}
        self.to_q = ops.Linear(channels, channels, bias=False, **kw)
        self.to_k = ops.Linear(channels, channels, bias=False, **kw)
        self.to_v = ops.Linear(channels, channels, bias=False, **kw)
        self.to_out = nn.ModuleList([ops.Linear(channels, channels, **kw)])
        self.pos_encoder = PositionalEncoding(channels, pe_length, pe_stored, device=device)

    def forward(self, normed: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """``inplace``: ``normed`` is the caller's own scratch tensor and may be overwritten."""
        n, frames, c = normed.shape
        tokens = self.pos_encoder(normed, inplace)
        head_dim = c // HEADS

        def heads(t):
            return t.view(n, frames, HEADS, head_dim).transpose(1, 2)

        q, k, v = heads(self.to_q(tokens)), heads(self.to_k(tokens)), heads(self.to_v(tokens))
        out = attention(q, k, v)
        out = out.transpose(1, 2).reshape(n, frames, c)  # a view: the kernels write (N, F, heads, d) order
        return self.to_out[0](out)


class GEGLU(nn.Module):
    def __init__(self, channels: int, inner: int, device=None, dtype=None, operations=None):
        super().__init__()
        ops = operations or TorchOperations
        self.proj = ops.Linear(channels, inner * 2, device=device, dtype=dtype)

    def forward(self, x, inplace: bool = False):
        value, gate = self.proj(x).chunk(2, dim=-1)
        if inplace:
            return F.gelu(gate).mul_(value)  # the same products, without another activation-sized buffer
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, channels: int, device=None, dtype=None, operations=None):
        super().__init__()
        ops = operations or TorchOperations
        inner = channels * 4
        # Indices 1 (Dropout) and 2 match the original ``ff.net.{0,2}`` key names.
        self.net = nn.ModuleList([GEGLU(channels, inner, device, dtype, ops), nn.Identity(),
                                  ops.Linear(inner, channels, device=device, dtype=dtype)])

    def forward(self, x, inplace: bool = False):
        return self.net[2](self.net[0](x, inplace))


class TemporalTransformerBlock(nn.Module):
    def __init__(self, channels: int, pe_length: int, pe_stored: bool, device=None, dtype=None, operations=None,
                 attention_blocks: int = 2):
        super().__init__()
        ops = operations or TorchOperations
        kw = {"device": device, "dtype": dtype}
        # Two self-attentions in every motion module; one in SparseCtrl's (motion_modules/sparse_control.py).
        self.attention_blocks = nn.ModuleList(
            [TemporalSelfAttention(channels, pe_length, pe_stored, operations=ops, **kw)
             for _ in range(attention_blocks)])
        self.norms = nn.ModuleList([ops.LayerNorm(channels, eps=LAYERNORM_EPS, **kw) for _ in range(attention_blocks)])
        self.ff = FeedForward(channels, operations=ops, **kw)
        self.ff_norm = ops.LayerNorm(channels, eps=LAYERNORM_EPS, **kw)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # Without autograd, intermediate buffers that only this block holds are reused for the
        # additions (same values: a + b == b + a), sparing an allocation (and, on the CPU, fresh page
        # faults) per addition. ``h`` itself, the caller's tensor, is never written.
        inplace = not torch.is_grad_enabled()
        for attention, norm in zip(self.attention_blocks, self.norms):
            out = attention(norm(h), inplace)
            h = out.add_(h) if inplace else h + out
        out = self.ff(self.ff_norm(h), inplace)
        return out.add_(h) if inplace else h + out


class TemporalTransformer(nn.Module):
    """One motion module's ``temporal_transformer``: GN -> proj_in -> block -> proj_out, plus residual."""

    def __init__(self, channels: int, pe_length: int, pe_stored: bool = True, device=None, dtype=None,
                 operations=None, attention_blocks: int = 2):
        super().__init__()
        if channels % GROUPNORM_GROUPS or channels % HEADS:
            raise ValueError(f"motion module width {channels} must be divisible by {GROUPNORM_GROUPS} and {HEADS}")
        ops = operations or TorchOperations
        kw = {"device": device, "dtype": dtype}
        self.channels = channels
        self.pe_length = pe_length
        self.norm = ops.GroupNorm(GROUPNORM_GROUPS, channels, eps=GROUPNORM_EPS, affine=True, **kw)
        self.proj_in = ops.Linear(channels, channels, **kw)
        self.transformer_blocks = nn.ModuleList(
            [TemporalTransformerBlock(channels, pe_length, pe_stored, operations=ops, attention_blocks=attention_blocks,
                                      **kw)])
        self.proj_out = ops.Linear(channels, channels, **kw)

    def forward(self, x: torch.Tensor, frames: int, cross_frame_norm: bool = False,
                scale: float | torch.Tensor = 1.0) -> torch.Tensor:
        """``scale``: the strength of the temporal delta, a float for the whole clip or a 1-D tensor of
        shape ``(frames,)`` with one strength per frame (the same for every batch entry)."""
        bf, c, h, w = x.shape
        if frames > self.pe_length:
            raise FrameLimitError(frames, self.pe_length)
        per_frame = isinstance(scale, torch.Tensor)
        if per_frame:
            # Checked before any work, so a wrong schedule fails at once instead of after the block ran.
            if scale.dim() != 1 or scale.shape[0] != frames:
                raise ValueError(
                    f"per-frame motion scale has shape {tuple(scale.shape)} but this clip has {frames} frames: "
                    f"give a 1-D tensor of {frames} scales, one per frame (or a float for all frames)")
        batch, hw = bf // frames, h * w
        # GroupNorm through the module (so the host's weight casting applies), then
        # (b f) c h w -> (b h w) f c: the one copy on the way in.
        if cross_frame_norm:
            normed = self.norm(x.reshape(batch, frames, c, h, w).transpose(1, 2))  # (b, c, f, h, w)
            # group_norm writes its output in its input's memory order, so this is a view again
            tokens = normed.transpose(1, 2).reshape(batch, frames, c, hw).permute(0, 3, 1, 2)
        else:
            tokens = self.norm(x).view(batch, frames, c, hw).permute(0, 3, 1, 2)
        tokens = self._tokens(tokens.reshape(batch * hw, frames, c))
        # (b h w) f c -> (b f) c h w as a strided view, read once by the residual addition, which
        # writes the output in x's layout: the one copy on the way out.
        delta = tokens.view(batch, hw, frames, c).permute(0, 2, 3, 1)
        residual = x.reshape(batch, frames, c, hw)
        if per_frame:
            # residual + delta * s in one pass (no delta-sized product), written in x's layout like the
            # float paths. s is cast to delta's dtype, as addcmul needs one dtype: in fp32 this is exact;
            # in fp16/bf16 each scale is rounded to that dtype first (float ``alpha`` is not).
            s = scale.to(device=delta.device, dtype=delta.dtype).view(1, frames, 1, 1)
            out = torch.addcmul(residual, delta, s)
        elif scale == 1.0:
            out = residual + delta
        else:
            out = torch.add(residual, delta, alpha=scale)
        return out.reshape(bf, c, h, w)

    def _tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """The token path on ``(N, F, C)`` tokens, in blocks of sequences on the CPU (CPU_BLOCK_VALUES)."""
        path = token_path()
        n, frames, c = tokens.shape
        blocks = -(-n * frames * c // CPU_BLOCK_VALUES)  # ceil
        if tokens.device.type != "cpu" or blocks <= 1:
            return path(self, tokens)
        per_block = -(-n // blocks)  # blocks of equal size (but the last)
        out = None
        for start in range(0, n, per_block):
            part = path(self, tokens[start:start + per_block])
            if out is None:
                out = part.new_empty((n,) + tuple(part.shape[1:]))
            out[start:start + part.shape[0]] = part
        return out


def _token_path(transformer: "TemporalTransformer", tokens: torch.Tensor) -> torch.Tensor:
    """proj_in -> transformer block(s) -> proj_out on ``(N, F, C)`` tokens."""
    tokens = transformer.proj_in(tokens)
    for block in transformer.transformer_blocks:
        tokens = block(tokens)
    return transformer.proj_out(tokens)


def token_path():
    """:func:`_token_path`, compiled once (and shared by every module) when COMPILE is on."""
    if not COMPILE:
        return _token_path
    if "token_path" not in _compiled:
        _compiled["token_path"] = torch.compile(_token_path, dynamic=True)
    return _compiled["token_path"]


class FrameLimitError(ValueError):
    def __init__(self, frames: int, limit: int):
        super().__init__(
            f"{frames} frames reach a motion module whose positional encoding covers at most {limit}. "
            f"Use at most {limit} frames, or attach context windows (ContextScheduler) so each "
            f"window holds at most {limit} frames.")
        self.frames = frames
        self.limit = limit


class MotionModule(nn.Module):
    """The unit stored as ``<block>.motion_modules.<j>`` in checkpoints."""

    def __init__(self, channels: int, pe_length: int, pe_stored: bool = True, device=None, dtype=None,
                 operations=None, attention_blocks: int = 2):
        super().__init__()
        self.temporal_transformer = TemporalTransformer(channels, pe_length, pe_stored, device, dtype, operations,
                                                        attention_blocks)

    def forward(self, x, frames, cross_frame_norm=False, scale=1.0):
        return self.temporal_transformer(x, frames, cross_frame_norm, scale)


class _Level(nn.Module):
    def __init__(self, modules):
        super().__init__()
        self.motion_modules = nn.ModuleList(modules)


class MotionModuleSet(nn.Module):
    """All motion modules of one checkpoint, named as in the original files:
    ``down_blocks.i.motion_modules.j``, ``mid_block.motion_modules.0``, ``up_blocks.i.motion_modules.j``.

    ``down`` and ``up`` are lists of per-level channel lists, e.g. SD1.5 down = [[320,320],[640,640],...].
    """

    def __init__(self, down, mid, up, pe_length: int, pe_stored: bool = True, device=None, dtype=None,
                 operations=None):
        super().__init__()

        def level(channels):
            return _Level([MotionModule(c, pe_length, pe_stored, device, dtype, operations) for c in channels])

        self.down_blocks = nn.ModuleList([level(chs) for chs in down])
        self.mid_block = level([mid]) if mid else None
        self.up_blocks = nn.ModuleList([level(chs) for chs in up])

    def in_unet_order(self):
        """Modules as (name, module) in the order the UNet runs them: down levels, mid, up levels."""
        order = [(f"down_blocks.{i}.motion_modules.{j}", m)
                 for i, lvl in enumerate(self.down_blocks) for j, m in enumerate(lvl.motion_modules)]
        if self.mid_block is not None:
            order.append(("mid_block.motion_modules.0", self.mid_block.motion_modules[0]))
        order += [(f"up_blocks.{i}.motion_modules.{j}", m)
                  for i, lvl in enumerate(self.up_blocks) for j, m in enumerate(lvl.motion_modules)]
        return order
